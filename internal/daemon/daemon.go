// Package daemon is the router daemon that `xrouter run` starts: it composes
// the data plane, the kernel routes, the BGP speaker and the listeners
// (metrics, pprof, the local API), starts them in order, applies a reload of
// the bgp section and stops them so that a restart is graceful.
//
// The parts whose order matters are behind the small interfaces below, each
// with only the methods the daemon calls, so that the order and the
// graceful-restart decisions are tested with fakes (daemon_test.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/flowspec"
)

// dataPlane is the XDP side: the program and its maps, the interfaces it is
// attached to and the watchers that keep it in step with the kernel
// (next-hop cache invalidator, netfilter, neighbour confirmation).
type dataPlane interface {
	// Attach loads the program (adopting the pins of an earlier run), calls
	// loaded (which installs what must be in the program before it sees a
	// packet: the static FlowSpec rules), reads the kernel's state into it
	// and attaches it to the selected interfaces. On error it leaves
	// nothing behind but an earlier run's pins, which are a data plane
	// still forwarding.
	Attach(loaded func() error) error
	// Adopted reports whether Attach found an earlier run's data plane: this
	// start is a restart.
	Adopted() bool
	// Watch starts the watchers; they end with ctx, and wait waits for them.
	Watch(ctx context.Context) (wait func())
	// Metrics serves the counters as Prometheus metrics.
	Metrics() http.Handler
	// Run follows link events until ctx ends.
	Run(ctx context.Context) error
	// Resync re-lists the interfaces and re-reads their sysctls.
	Resync()
	// Ports is the number of attached interfaces.
	Ports() int
	// SetFlowspec installs the complete, ordered FlowSpec rule set in the
	// classifier (all or, with an error, none); only after Attach loaded
	// the program.
	SetFlowspec(rules []flowspec.Rule) error
	// FlowspecStats lists the installed FlowSpec rules with their counters.
	FlowspecStats() ([]dataplane.FlowspecRuleStats, error)
	// Close releases the handles; with detach it removes the program and
	// the pins, otherwise the data plane keeps forwarding.
	Close(detach bool)
}

// routeTable is the kernel routes BGP's best paths become (fib.Routes).
type routeTable interface {
	bgp.RouteSink
	// Run loads an earlier run's routes, then applies the sink's wishes
	// until ctx ends.
	Run(ctx context.Context) error
	Installed() []fib.InstalledRoute
	CountByNextHop() map[netip.Addr]int
}

// bgpSpeaker is the embedded BGP speaker (bgp.Speaker).
type bgpSpeaker interface {
	SetRestarting(restarting bool)
	Start(ctx context.Context) error
	// Leave is the graceful-restart stop; false when no neighbour has
	// graceful restart, and then Stop must be called.
	Leave() bool
	Stop()
	Reload(ctx context.Context, next bgp.Config) (bgp.ReloadSummary, error)
	Redistribute(ctx context.Context, kind string, prefixes []netip.Prefix) error
	Peers(ctx context.Context) ([]bgp.PeerState, error)
	// OnFlowSpec sets where the neighbours' FlowSpec rules go: each call
	// is one neighbour's whole current rule set (empty: withdrawn).
	OnFlowSpec(fn func(source string, rules []flowspec.Rule))
	// FlowSpec is every neighbour's FlowSpec rules as the speaker judged
	// them (accepted, or rejected with the reason).
	FlowSpec() []bgp.FlowSpecPeerView
}

// parts builds the daemon's components: realParts in the daemon, fakes in
// tests.
type parts struct {
	dataPlane  func(s devmap.Settings, log *slog.Logger) dataPlane
	routeTable func(s fib.Settings, log *slog.Logger) (rt routeTable, release func(), err error)
	speaker    func(c bgp.Config, sink bgp.RouteSink, log *slog.Logger) (bgpSpeaker, error)
	// listen opens the listener of a config key (metrics.listen,
	// debug.pprof, api.socket).
	listen func(key, addr, group string) (net.Listener, error)
	// watchRoutes follows the kernel's connected and static routes until
	// ctx ends.
	watchRoutes func(ctx context.Context, log *slog.Logger, fn func(fib.KernelRoutes)) error
}

// Daemon is a running router. New builds it, Start starts it, Stop stops
// it; Reload and Resync are what SIGHUP does.
type Daemon struct {
	log   *slog.Logger
	parts parts

	mu  sync.Mutex
	cfg *config.Config // the running config; Reload replaces it

	dp      dataPlane
	fs      *flowspec.Table // the classifier's rules: the config's and the peers'
	routes  routeTable      // nil when BGP is off
	speaker bgpSpeaker      // nil when BGP is off
	ctl     *control

	metricsLn, pprofLn, apiLn net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	// undo holds what New and Start did, to be undone last first by Stop,
	// or by Start when a later step fails.
	undo     []func()
	stopOnce sync.Once

	done     chan struct{} // closed when a part ends by itself
	failOnce sync.Once
	errMu    sync.Mutex
	err      error // why it ended
}

// New builds the daemon for cfg, which must have been validated
// (config.Load). It changes nothing in the system: BGP's settings are
// checked and the route table opened, and Stop releases them.
func New(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	return newDaemon(cfg, log, realParts())
}

func newDaemon(cfg *config.Config, log *slog.Logger, p parts) (*Daemon, error) {
	d := &Daemon{log: log, parts: p, cfg: cfg, done: make(chan struct{})}
	for _, w := range cfg.Warnings() {
		log.Warn("open control surface: " + w)
	}
	d.ctl = &control{pinPath: cfg.Dataplane.PinPath, matches: cfg.Dataplane.Matches}
	if cfg.BGP.AS != 0 {
		if err := d.newBGP(); err != nil {
			d.unwind()
			return nil, err
		}
	}
	d.dp = p.dataPlane(cfg.Dataplane, log)
	d.fs = flowspec.NewTable(d.dp.SetFlowspec)
	d.ctl.flowspec = d.dp.FlowspecStats
	return d, nil
}

// newBGP builds the route table and the speaker that fills it.
func (d *Daemon) newBGP() error {
	rt, release, err := d.parts.routeTable(d.cfg.FIB, d.log)
	if err != nil {
		return err
	}
	d.push(release)
	sp, err := d.parts.speaker(d.cfg.BGP, rt, d.log)
	if err != nil {
		return fmt.Errorf("config %s: %w", d.cfg.File, err)
	}
	d.routes, d.speaker = rt, sp
	d.ctl.routes, d.ctl.speaker = rt, sp
	return nil
}

// Start starts the router, in this order: the listeners (an address in use
// must not leave a half-started router behind), the data plane (attached,
// with its watchers), the HTTP servers, the route table, the BGP speaker
// and redistribution, and last the link-event loop. If a step fails, what
// the earlier ones started is stopped as Stop would, and Start returns the
// error. The parts run until ctx ends or Stop.
func (d *Daemon) Start(ctx context.Context) (err error) {
	if d.ctx != nil {
		return errors.New("daemon: Start called twice")
	}
	d.ctx, d.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			d.stopOnce.Do(d.unwind)
		}
	}()
	if err := d.listen(); err != nil {
		return err
	}
	// FlowSpec: the static rules are in the classifier before the program
	// is attached (the BGP speaker adds its peers' through the same table).
	if err := d.dp.Attach(func() error { return d.applyStaticFlowspec(d.cfg) }); err != nil {
		return err
	}
	detach := d.cfg.Dataplane.DetachOnExit // read at start only
	d.push(func() { d.dp.Close(detach) })
	wait := d.dp.Watch(d.ctx)
	d.push(func() { d.cancel(); wait() })
	d.serve()
	if d.speaker != nil {
		if err := d.startBGP(); err != nil {
			return err
		}
	}
	d.runLinks()
	return nil
}

// listen opens the configured listeners.
func (d *Daemon) listen() error {
	c := d.cfg
	for _, l := range []struct {
		key, addr, group string
		ln               *net.Listener
	}{
		{"metrics.listen", c.Metrics.Listen, "", &d.metricsLn},
		{"debug.pprof", c.Debug.PProf, "", &d.pprofLn},
		{"api.socket", c.API.Socket, c.API.Group, &d.apiLn},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := d.parts.listen(l.key, l.addr, l.group)
		if err != nil {
			return fmt.Errorf("config %s: key %q: %w", c.File, l.key, err)
		}
		d.push(func() { _ = ln.Close() })
		*l.ln = ln
	}
	return nil
}

// serve serves metrics, the API and pprof on their listeners until the
// daemon's context ends.
func (d *Daemon) serve() {
	if d.metricsLn != nil {
		serveHTTP(d.ctx, d.metricsLn, newHTTPServer(d.dp.Metrics()), d.log)
		d.log.Info("serving metrics", "addr", d.metricsLn.Addr().String())
	}
	if d.apiLn != nil {
		serveHTTP(d.ctx, d.apiLn, apiServer(d.ctl.handler()), d.log)
	}
	if d.pprofLn != nil {
		serveHTTP(d.ctx, d.pprofLn, newHTTPServer(pprofHandler()), d.log)
		d.log.Info("serving profiles (debug.pprof)", "addr", d.pprofLn.Addr().String()+"/debug/pprof/")
	}
}

// startBGP runs the route table, then starts the speaker and the
// redistribution. Routes left by an earlier run are loaded first and kept
// until the peers confirm them or End-of-RIB: no blind flush. A data plane
// pinned by an earlier run means this is a restart: with graceful restart,
// peers are told so and keep our routes.
func (d *Daemon) startBGP() error {
	routesDone := make(chan struct{})
	go func() {
		defer close(routesDone)
		if err := d.routes.Run(d.ctx); err != nil {
			d.fail(fmt.Errorf("fib: %w", err))
		}
	}()
	d.push(func() { d.cancel(); <-routesDone })
	d.speaker.OnFlowSpec(d.bgpFlowspec)
	d.speaker.SetRestarting(d.dp.Adopted())
	if err := d.speaker.Start(d.ctx); err != nil {
		return fmt.Errorf("starting BGP: %w", err)
	}
	d.push(d.stopBGP)
	return d.redistribute()
}

// stopBGP: with the routes and the data plane staying, a graceful restart
// (peers keep our routes); otherwise the sessions are closed properly.
func (d *Daemon) stopBGP() {
	c := d.config()
	keep := !c.FIB.RemoveOnStop && !c.Dataplane.DetachOnExit
	if !keep || !d.speaker.Leave() {
		d.speaker.Stop()
	}
}

// redistribute follows the kernel's connected and static routes and hands
// them to the speaker, which announces those its bgp.redistribute prefix
// lists match. It always runs, so that a reload that turns redistribution
// on needs no restart.
func (d *Daemon) redistribute() error {
	err := d.parts.watchRoutes(d.ctx, d.log, func(kr fib.KernelRoutes) {
		for _, k := range []struct {
			kind string
			ps   []netip.Prefix
		}{{bgp.RedistributeConnected, kr.Connected}, {bgp.RedistributeStatic, kr.Static}} {
			if err := d.speaker.Redistribute(d.ctx, k.kind, k.ps); err != nil {
				d.log.Error("redistribution", "kind", k.kind, "err", err)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("redistribution: %w", err)
	}
	return nil
}

// runLinks follows link events until the daemon's context ends.
func (d *Daemon) runLinks() {
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := d.dp.Run(d.ctx); err != nil || d.ctx.Err() == nil {
			d.fail(err)
		}
	}()
	d.push(func() { d.cancel(); <-ran })
}

// Interfaces is the number of interfaces the data plane is attached to.
func (d *Daemon) Interfaces() int { return d.dp.Ports() }

// Done is closed when a part stopped by itself (the route table could not
// read the kernel's routes); Stop then returns why.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Reload applies what may change while running: the bgp section
// (neighbours, networks, prefix lists, policies, redistribution, graceful
// restart, max-prefix) and the static FlowSpec rules. next is checked
// completely first; one that changes a key which needs a restart is
// rejected and nothing is applied.
func (d *Daemon) Reload(next *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := restartOnly(d.cfg, next); err != nil {
		return fmt.Errorf("config %s: %w", next.File, err)
	}
	if d.ctx == nil {
		return errors.New("daemon: Reload before Start")
	}
	if err := d.applyStaticFlowspec(next); err != nil {
		return err
	}
	if d.speaker == nil {
		d.log.Info("config reloaded", "config", next.File, "flowspec_rules", len(next.Flowspec.Rules))
		d.cfg = next
		return nil
	}
	sum, err := d.speaker.Reload(d.ctx, next.BGP)
	if err != nil {
		// Back to the running config's rules: nothing of next applies.
		_ = d.applyStaticFlowspec(d.cfg)
		return fmt.Errorf("config %s: %w", next.File, err)
	}
	d.log.Info("config reloaded", "config", next.File, "bgp", sum.String())
	d.cfg = next
	return nil
}

// Resync re-lists the interfaces, re-reads their sysctls and logs the data
// plane's warnings again.
func (d *Daemon) Resync() { d.dp.Resync() }

// Stop stops what Start started, last first: the link-event loop, BGP (a
// graceful restart unless fib.remove_on_stop or dataplane.detach_on_exit),
// the route table, the watchers, the data plane (left forwarding unless
// dataplane.detach_on_exit), the listeners and what New opened. It returns
// why the daemon ended if a part stopped by itself (Done), else nil.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(d.unwind)
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// push records how to undo a step that succeeded.
func (d *Daemon) push(f func()) { d.undo = append(d.undo, f) }

// unwind undoes the recorded steps, last first.
func (d *Daemon) unwind() {
	for len(d.undo) > 0 {
		f := d.undo[len(d.undo)-1]
		d.undo = d.undo[:len(d.undo)-1]
		f()
	}
	if d.cancel != nil {
		d.cancel()
	}
}

// fail ends the daemon with err (nil: it ended without one).
func (d *Daemon) fail(err error) {
	d.failOnce.Do(func() {
		d.errMu.Lock()
		d.err = err
		d.errMu.Unlock()
		close(d.done)
	})
}
