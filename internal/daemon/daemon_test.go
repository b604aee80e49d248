package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/flowspec"
)

// The daemon's parts are fakes that record what the daemon asks of them,
// in order; nothing here needs root or touches the system.

type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, fmt.Sprintf(format, args...))
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// patience bounds every wait of a fake for the daemon.
const patience = 2 * time.Second

type fakeDP struct {
	r         *recorder
	attachErr error
	adopted   bool
	running   chan struct{} // closed when Run is entered

	fsMu   sync.Mutex
	loaded bool            // the program is loaded: SetFlowspec works
	rules  []flowspec.Rule // the classifier's rules
}

// Attach: the program is loaded, loaded is called, then the interfaces
// are attached ("dp.attached").
func (f *fakeDP) Attach(loaded func() error) error {
	f.r.add("dp.attach")
	if f.attachErr != nil {
		return f.attachErr
	}
	f.fsMu.Lock()
	f.loaded = true
	f.fsMu.Unlock()
	if err := loaded(); err != nil {
		return err
	}
	f.r.add("dp.attached")
	return nil
}

// SetFlowspec records the sources of the rules in classifier order
// ("dp.flowspec config peer 10.0.0.2"; "-": none).
func (f *fakeDP) SetFlowspec(rules []flowspec.Rule) error {
	f.fsMu.Lock()
	defer f.fsMu.Unlock()
	if !f.loaded {
		return errors.New("not loaded")
	}
	srcs := []string{"-"}
	for i, r := range rules {
		if i == 0 {
			srcs = nil
		}
		srcs = append(srcs, r.Source)
	}
	f.r.add("dp.flowspec %s", strings.Join(srcs, ","))
	f.rules = slices.Clone(rules)
	return nil
}

func (f *fakeDP) FlowspecStats() ([]dataplane.FlowspecRuleStats, error) {
	f.fsMu.Lock()
	defer f.fsMu.Unlock()
	var out []dataplane.FlowspecRuleStats
	for i, r := range f.rules {
		out = append(out, dataplane.FlowspecRuleStats{Rule: r, Packets: uint64(10 * (i + 1)), Bytes: 1000})
	}
	return out, nil
}

func (f *fakeDP) Adopted() bool { return f.adopted }

func (f *fakeDP) Watch(ctx context.Context) func() {
	f.r.add("dp.watch")
	return func() {
		select {
		case <-ctx.Done():
			f.r.add("dp.watchers stopped")
		case <-time.After(patience):
			f.r.add("dp.watchers waited for without their context ending")
		}
	}
}

func (f *fakeDP) Metrics() http.Handler { return http.NotFoundHandler() }

func (f *fakeDP) Run(ctx context.Context) error {
	f.r.add("dp.run")
	close(f.running)
	<-ctx.Done()
	f.r.add("dp.run end")
	return nil
}

func (f *fakeDP) Resync()           { f.r.add("dp.resync") }
func (f *fakeDP) Ports() int        { return 2 }
func (f *fakeDP) Close(detach bool) { f.r.add("dp.close detach=%v", detach) }

type fakeRoutes struct {
	r       *recorder
	runErr  error         // Run fails with it at once
	running chan struct{} // closed when Run is entered
}

func (f *fakeRoutes) Set(netip.Prefix, []netip.Addr) {}
func (f *fakeRoutes) Delete(netip.Prefix)            {}
func (f *fakeRoutes) Sweep()                         {}

func (f *fakeRoutes) Run(ctx context.Context) error {
	f.r.add("routes.run")
	close(f.running)
	if f.runErr != nil {
		return f.runErr
	}
	<-ctx.Done()
	f.r.add("routes.end")
	return nil
}

func (f *fakeRoutes) Installed() []fib.InstalledRoute {
	return []fib.InstalledRoute{{Prefix: netip.MustParsePrefix("10.9.0.0/24")}}
}

func (f *fakeRoutes) CountByNextHop() map[netip.Addr]int {
	return map[netip.Addr]int{netip.MustParseAddr("10.0.0.2"): 3}
}

type fakeSpeaker struct {
	r         *recorder
	routes    *fakeRoutes
	startErr  error
	gr        bool // a neighbour has graceful restart: Leave applies
	reloadErr error
	reloaded  []bgp.Config
	onFS      func(source string, rules []flowspec.Rule)
}

func (f *fakeSpeaker) OnFlowSpec(fn func(string, []flowspec.Rule)) {
	f.r.add("bgp.onflowspec")
	f.onFS = fn
}

func (f *fakeSpeaker) FlowSpec() []bgp.FlowSpecPeerView {
	return []bgp.FlowSpecPeerView{{
		Peer: netip.MustParseAddr("10.0.0.2"), Source: "peer 10.0.0.2",
		Rules: []bgp.FlowSpecRuleView{{Family: "ipv4", NLRI: "dst 10.0.0.0/8", Reason: "no such action"}},
	}}
}

func (f *fakeSpeaker) SetRestarting(b bool) { f.r.add("bgp.restarting=%v", b) }

func (f *fakeSpeaker) Start(ctx context.Context) error {
	// The route table must be running before paths arrive.
	select {
	case <-f.routes.running:
	case <-time.After(patience):
		f.r.add("bgp.start without the route table running")
	}
	f.r.add("bgp.start")
	return f.startErr
}

func (f *fakeSpeaker) Leave() bool {
	f.r.add("bgp.leave")
	return f.gr
}

func (f *fakeSpeaker) Stop() { f.r.add("bgp.stop") }

func (f *fakeSpeaker) Reload(_ context.Context, next bgp.Config) (bgp.ReloadSummary, error) {
	f.r.add("bgp.reload")
	if f.reloadErr != nil {
		return bgp.ReloadSummary{}, f.reloadErr
	}
	f.reloaded = append(f.reloaded, next)
	return bgp.ReloadSummary{}, nil
}

func (f *fakeSpeaker) Redistribute(context.Context, string, []netip.Prefix) error { return nil }

func (f *fakeSpeaker) Peers(context.Context) ([]bgp.PeerState, error) {
	return []bgp.PeerState{{Address: netip.MustParseAddr("10.0.0.2"), PeerAS: 65002, State: "established"}}, nil
}

// closeRecorder is a real loopback listener whose Close is recorded.
type closeRecorder struct {
	net.Listener
	r    *recorder
	key  string
	once sync.Once
}

func (c *closeRecorder) Close() error {
	c.once.Do(func() { c.r.add("close %s", c.key) })
	return c.Listener.Close()
}

// rig is a daemon on fakes.
type rig struct {
	r         *recorder
	dp        *fakeDP
	routes    *fakeRoutes
	sp        *fakeSpeaker
	listenErr map[string]error
	redistErr error
	cfg       *config.Config
}

func newRig(t *testing.T) *rig {
	r := &recorder{}
	routes := &fakeRoutes{r: r, running: make(chan struct{})}
	return &rig{
		r:         r,
		dp:        &fakeDP{r: r, running: make(chan struct{})},
		routes:    routes,
		sp:        &fakeSpeaker{r: r, routes: routes, gr: true},
		listenErr: map[string]error{},
		cfg: &config.Config{
			File:      "test.yaml",
			Dataplane: devmap.Settings{Interfaces: []string{"eth0"}, Mode: "auto", PinPath: t.TempDir()},
			Log:       config.Log{Level: "info", Format: "text"},
			Metrics:   config.Metrics{Listen: "127.0.0.1:0"},
			Debug:     config.Debug{PProf: "127.0.0.1:0"},
			API:       config.API{Socket: "/run/test.sock"},
			FIB:       fib.Settings{Metric: 20, Table: 254},
			BGP:       bgp.Config{AS: 65001, RouterID: "10.0.0.1", Networks: []string{"10.1.0.0/24"}},
		},
	}
}

func (g *rig) parts() parts {
	return parts{
		dataPlane: func(devmap.Settings, *slog.Logger) dataPlane { return g.dp },
		routeTable: func(fib.Settings, *slog.Logger) (routeTable, func(), error) {
			return g.routes, func() { g.r.add("routes.release") }, nil
		},
		speaker: func(bgp.Config, bgp.RouteSink, *slog.Logger) (bgpSpeaker, error) { return g.sp, nil },
		listen: func(key, _, _ string) (net.Listener, error) {
			g.r.add("listen %s", key)
			if err := g.listenErr[key]; err != nil {
				return nil, err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			return &closeRecorder{Listener: ln, r: g.r, key: key}, nil
		},
		watchRoutes: func(context.Context, *slog.Logger, func(fib.KernelRoutes)) error {
			g.r.add("redistribute")
			return g.redistErr
		},
	}
}

func (g *rig) daemon(t *testing.T) *Daemon {
	t.Helper()
	d, err := newDaemon(g.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), g.parts())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// start starts d and waits until the link-event loop runs (its last step).
func (g *rig) start(t *testing.T, d *Daemon) {
	t.Helper()
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case <-g.dp.running:
	case <-time.After(patience):
		t.Fatal("the link-event loop did not start")
	}
}

// inOrder checks that each of want happened exactly once, in this order.
func inOrder(t *testing.T, evs []string, want ...string) {
	t.Helper()
	last := -1
	for _, w := range want {
		i := slices.Index(evs, w)
		switch {
		case i < 0:
			t.Errorf("%q did not happen; events: %q", w, evs)
			return
		case slices.Index(evs[i+1:], w) >= 0:
			t.Errorf("%q happened twice; events: %q", w, evs)
		case i < last:
			t.Errorf("%q happened before %q; events: %q", w, evs[last], evs)
		}
		last = i
	}
}

func present(t *testing.T, evs []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(evs, w) {
			t.Errorf("%q did not happen; events: %q", w, evs)
		}
	}
}

func absent(t *testing.T, evs []string, not ...string) {
	t.Helper()
	for _, n := range not {
		if slices.Contains(evs, n) {
			t.Errorf("%q happened; events: %q", n, evs)
		}
	}
}

// since returns the events after the first n.
func since(evs []string, n int) []string { return evs[n:] }

// TestStartOrder: the listeners first (an address in use attaches
// nothing), then the data plane attached with its watchers, and only then
// the route table and BGP; the link-event loop last.
func TestStartOrder(t *testing.T) {
	g := newRig(t)
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	evs := g.r.events()
	inOrder(t, evs, "listen metrics.listen", "listen debug.pprof", "listen api.socket",
		"dp.attach", "dp.watch", "routes.run", "bgp.start", "redistribute", "dp.run")
	inOrder(t, evs, "dp.watch", "bgp.restarting=false", "bgp.start")
	absent(t, evs, "bgp.start without the route table running")
	if n := d.Interfaces(); n != 2 {
		t.Errorf("Interfaces() = %d, want 2", n)
	}
}

// TestStartAdoptedIsRestart: a data plane left by an earlier run makes
// the speaker announce a restart (graceful restart's Restart State).
func TestStartAdoptedIsRestart(t *testing.T) {
	g := newRig(t)
	g.dp.adopted = true
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	inOrder(t, g.r.events(), "dp.attach", "bgp.restarting=true", "bgp.start")
}

// TestStopOrder: on stop, BGP goes first (while routes and data plane still
// forward), then the route table, the watchers, the data plane, the
// listeners and the route table's handle — for each stop policy, with the
// graceful-restart decision it implies.
func TestStopOrder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		gr           bool // a neighbour has graceful restart
		removeOnStop bool
		detach       bool
		bgp          []string // what the speaker is asked
		notBGP       []string
	}{
		{"graceful restart", true, false, false, []string{"bgp.leave"}, []string{"bgp.stop"}},
		{"no graceful restart on any neighbour", false, false, false, []string{"bgp.leave", "bgp.stop"}, nil},
		{"fib.remove_on_stop", true, true, false, []string{"bgp.stop"}, []string{"bgp.leave"}},
		{"dataplane.detach_on_exit", true, false, true, []string{"bgp.stop"}, []string{"bgp.leave"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.sp.gr = tc.gr
			g.cfg.FIB.RemoveOnStop = tc.removeOnStop
			g.cfg.Dataplane.DetachOnExit = tc.detach
			d := g.daemon(t)
			g.start(t, d)
			n := len(g.r.events())
			if err := d.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			evs := since(g.r.events(), n)
			want := append([]string{"dp.run end"}, tc.bgp...)
			want = append(want, "dp.watchers stopped", fmt.Sprintf("dp.close detach=%v", tc.detach), "routes.release")
			inOrder(t, evs, want...)
			// The HTTP servers close their listeners when the context ends;
			// Stop closes whatever is still open.
			present(t, evs, "close api.socket", "close debug.pprof", "close metrics.listen")
			// The route table ends with the context, before the watchers are
			// waited for and the data plane is closed.
			inOrder(t, evs, "routes.end", "dp.watchers stopped")
			absent(t, evs, tc.notBGP...)
			n = len(g.r.events())
			if err := d.Stop(); err != nil || len(g.r.events()) != n {
				t.Errorf("a second Stop: err %v, did %q", err, since(g.r.events(), n))
			}
		})
	}
}

// TestStartFailureUndoes: a step that fails undoes what the earlier steps
// started, last first, and starts nothing after it.
func TestStartFailureUndoes(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		fail    func(g *rig)
		errText string
		undo    []string // in this order
		closed  []string // listeners closed (by their servers or by the undo)
		not     []string
	}{
		{
			name: "api socket in use", fail: func(g *rig) { g.listenErr["api.socket"] = boom },
			errText: `key "api.socket": boom`,
			undo:    []string{"close debug.pprof", "close metrics.listen", "routes.release"},
			not:     []string{"dp.attach", "bgp.start", "close api.socket"},
		},
		{
			name: "attach", fail: func(g *rig) { g.dp.attachErr = boom },
			errText: "boom",
			undo:    []string{"dp.attach", "close api.socket", "close debug.pprof", "close metrics.listen", "routes.release"},
			not:     []string{"dp.watch", "dp.close detach=false", "routes.run", "bgp.start"},
		},
		{
			name: "bgp start", fail: func(g *rig) { g.sp.startErr = boom },
			errText: "starting BGP: boom",
			undo:    []string{"bgp.start", "routes.end", "dp.watchers stopped", "dp.close detach=false", "routes.release"},
			closed:  []string{"close api.socket", "close debug.pprof", "close metrics.listen"},
			not:     []string{"bgp.leave", "bgp.stop", "redistribute", "dp.run"},
		},
		{
			name: "redistribution", fail: func(g *rig) { g.redistErr = boom },
			errText: "redistribution: boom",
			undo:    []string{"redistribute", "bgp.leave", "routes.end", "dp.watchers stopped", "dp.close detach=false", "routes.release"},
			closed:  []string{"close api.socket", "close debug.pprof", "close metrics.listen"},
			not:     []string{"bgp.stop", "dp.run"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			tc.fail(g)
			d := g.daemon(t)
			err := d.Start(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Start: err = %v, want one with %q", err, tc.errText)
			}
			evs := g.r.events()
			inOrder(t, evs, tc.undo...)
			present(t, evs, tc.closed...)
			absent(t, evs, tc.not...)
			if err := d.Stop(); err != nil || len(g.r.events()) != len(evs) {
				t.Errorf("Stop after a failed Start: err %v, did %q", err, since(g.r.events(), len(evs)))
			}
		})
	}
}

// TestRouteTableFailureEndsDaemon: the route table failing at its start
// (it cannot list the kernel's routes) ends the daemon: Done, and Stop
// returns the error after stopping everything.
func TestRouteTableFailureEndsDaemon(t *testing.T) {
	g := newRig(t)
	g.routes.runErr = errors.New("listing our routes at start: no netlink")
	d := g.daemon(t)
	g.start(t, d)
	select {
	case <-d.Done():
	case <-time.After(patience):
		t.Fatal("Done not closed after the route table failed")
	}
	err := d.Stop()
	if err == nil || !strings.Contains(err.Error(), "fib: listing our routes") {
		t.Errorf("Stop: err = %v, want the route table's", err)
	}
	inOrder(t, g.r.events(), "dp.run end", "bgp.leave", "dp.watchers stopped", "dp.close detach=false", "routes.release")
}

// TestBGPOff: without bgp.as there is no route table and no speaker.
func TestBGPOff(t *testing.T) {
	g := newRig(t)
	g.cfg.BGP = bgp.Config{}
	d := g.daemon(t)
	g.start(t, d)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	evs := g.r.events()
	inOrder(t, evs, "dp.attach", "dp.watch", "dp.run", "dp.run end", "dp.watchers stopped", "dp.close detach=false")
	absent(t, evs, "routes.run", "bgp.start", "redistribute", "routes.release", "bgp.leave", "bgp.stop")
}

// TestReload: the bgp section is applied; a config that changes anything
// else, or that the speaker refuses, is rejected whole and the running
// config stays what the next reload is compared with.
func TestReload(t *testing.T) {
	g := newRig(t)
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	orig := *g.cfg

	bad := orig
	bad.Dataplane.Interfaces = []string{"eth9"}
	bad.BGP.Networks = []string{"10.2.0.0/24"}
	if err := d.Reload(&bad); err == nil || !strings.Contains(err.Error(), `key "dataplane"`) {
		t.Errorf("a dataplane change: err = %v, want one naming dataplane", err)
	}
	off := orig
	off.BGP = bgp.Config{}
	if err := d.Reload(&off); err == nil || !strings.Contains(err.Error(), `"bgp.as"`) {
		t.Errorf("turning BGP off: err = %v, want one naming bgp.as", err)
	}
	if slices.Contains(g.r.events(), "bgp.reload") {
		t.Fatal("a rejected config reached the speaker")
	}

	g.sp.reloadErr = errors.New("neighbour 10.0.0.9: bad")
	refused := orig
	refused.BGP.Networks = []string{"10.3.0.0/24"}
	if err := d.Reload(&refused); err == nil || !strings.Contains(err.Error(), "config test.yaml: neighbour 10.0.0.9") {
		t.Errorf("speaker refuses: err = %v", err)
	}
	if d.config() != g.cfg {
		t.Error("a rejected reload replaced the running config")
	}

	g.sp.reloadErr = nil
	good := orig
	good.BGP.Networks = []string{"10.1.0.0/24", "10.4.0.0/24"}
	if err := d.Reload(&good); err != nil {
		t.Fatalf("a bgp change: %v", err)
	}
	if len(g.sp.reloaded) != 1 || !slices.Equal(g.sp.reloaded[0].Networks, good.BGP.Networks) {
		t.Errorf("speaker got %+v, want the new bgp section", g.sp.reloaded)
	}
	if d.config() != &good {
		t.Error("the applied config is not the running one")
	}
	d.Resync()
	inOrder(t, g.r.events(), "dp.run", "dp.resync")
}

// TestReloadBGPOff: without BGP a reload has nothing to apply but is
// still checked.
func TestReloadBGPOff(t *testing.T) {
	g := newRig(t)
	g.cfg.BGP = bgp.Config{}
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	next := *g.cfg
	if err := d.Reload(&next); err != nil {
		t.Errorf("an unchanged config: %v", err)
	}
	on := *g.cfg
	on.BGP = bgp.Config{AS: 65001, RouterID: "10.0.0.1"}
	if err := d.Reload(&on); err == nil || !strings.Contains(err.Error(), `"bgp.as"`) {
		t.Errorf("turning BGP on: err = %v, want one naming bgp.as", err)
	}
}

// TestAPIPeers: /peers joins the speaker's neighbours with the routes
// installed through each; /routes is the route table's.
func TestAPIPeers(t *testing.T) {
	g := newRig(t)
	d := g.daemon(t)
	defer d.Stop()
	srv := httptest.NewServer(d.ctl.handler())
	defer srv.Close()
	var rows []PeerRow
	getJSON(t, srv.URL+"/peers", &rows)
	if len(rows) != 1 || rows[0].Address != netip.MustParseAddr("10.0.0.2") || rows[0].Installed != 3 {
		t.Errorf("/peers = %+v, want 10.0.0.2 with 3 installed", rows)
	}
	var routes []fib.InstalledRoute
	getJSON(t, srv.URL+"/routes", &routes)
	if len(routes) != 1 || routes[0].Prefix.String() != "10.9.0.0/24" {
		t.Errorf("/routes = %+v", routes)
	}

	off := &control{}
	srv2 := httptest.NewServer(off.handler())
	defer srv2.Close()
	var none []PeerRow
	getJSON(t, srv2.URL+"/peers", &none)
	if none == nil || len(none) != 0 {
		t.Errorf("/peers without BGP = %#v, want []", none)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
