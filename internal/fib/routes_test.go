package fib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeWriter is a kernel FIB in a map, with injectable failures.
type fakeWriter struct {
	mu       sync.Mutex
	routes   map[netip.Prefix][]Nexthop
	calls    []string
	failNext map[netip.Prefix][]error // errors returned by the next calls for a prefix, in order
	listErr  error
	block    chan struct{} // when set, Replace waits on it (to pile up wishes)
}

func newFakeWriter() *fakeWriter {
	return &fakeWriter{routes: map[netip.Prefix][]Nexthop{}, failNext: map[netip.Prefix][]error{}}
}

func (f *fakeWriter) fail(p netip.Prefix) error {
	if errs := f.failNext[p]; len(errs) > 0 {
		f.failNext[p] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *fakeWriter) Replace(p netip.Prefix, nh []netip.Addr) ([]Nexthop, error) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("replace %s %v", p, nh))
	if err := f.fail(p); err != nil {
		return nil, err
	}
	var k []Nexthop
	for _, a := range nh {
		k = append(k, Nexthop{Gateway: a, LinkIndex: 1})
	}
	f.routes[p] = k
	return k, nil
}

func (f *fakeWriter) Delete(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("delete %s", p))
	if err := f.fail(p); err != nil {
		return err
	}
	delete(f.routes, p)
	return nil
}

func (f *fakeWriter) Apply(ops []Op, res []Result) {
	for i, op := range ops {
		if op.NextHops == nil {
			res[i] = Result{Err: f.Delete(op.Prefix)}
			continue
		}
		k, err := f.Replace(op.Prefix, op.NextHops)
		res[i] = Result{Kernel: k, Err: err}
	}
}

func (f *fakeWriter) List() ([]InstalledRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []InstalledRoute
	for p, k := range f.routes {
		out = append(out, InstalledRoute{Prefix: p, Kernel: slices.Clone(k)})
	}
	return out, nil
}

func (f *fakeWriter) snapshot() (map[netip.Prefix][]Nexthop, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[netip.Prefix][]Nexthop, len(f.routes))
	for p, k := range f.routes {
		m[p] = slices.Clone(k)
	}
	return m, slices.Clone(f.calls)
}

var (
	pfxA = netip.MustParsePrefix("198.51.100.0/24")
	pfxB = netip.MustParsePrefix("203.0.113.0/24")
	pfx6 = netip.MustParsePrefix("2001:db8:77::/48")
	nh1  = netip.MustParseAddr("10.77.0.2")
	nh2  = netip.MustParseAddr("10.77.0.6")
	nh6  = netip.MustParseAddr("2001:db8:ff::2")
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs the worker until the test ends.
func start(t *testing.T, r *Routes) {
	t.Helper()
	r.backoff = func(int) time.Duration { return time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRoutesInstallReplaceDelete(t *testing.T) {
	f := newFakeWriter()
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)

	r.Set(pfxA, []netip.Addr{nh2, nh1, nh1}) // unordered, duplicated: one ECMP route of two
	r.Set(pfx6, []netip.Addr{nh6})
	eventually(t, "two routes installed", func() bool { return r.Stats().Installed == 2 })
	routes, _ := f.snapshot()
	if got := routes[pfxA]; len(got) != 2 || got[0].Gateway != nh1 || got[1].Gateway != nh2 {
		t.Errorf("ECMP route %s = %v, want next hops %s and %s", pfxA, got, nh1, nh2)
	}

	r.Delete(pfxA)
	eventually(t, "route deleted", func() bool { return r.Stats().Installed == 1 })
	if routes, _ := f.snapshot(); routes[pfxA] != nil || routes[pfx6] == nil {
		t.Errorf("after delete kernel holds %v", routes)
	}
	// Deleting a prefix we never installed writes nothing.
	r.Delete(pfxB)
	r.Set(pfx6, []netip.Addr{nh6}) // unchanged: no write
	eventually(t, "queue drained", func() bool { return r.Stats().Pending == 0 })
	time.Sleep(20 * time.Millisecond)
	_, calls := f.snapshot()
	want := []string{"delete " + pfxA.String()}
	var deletes []string
	for _, c := range calls {
		if c[0] == 'd' {
			deletes = append(deletes, c)
		}
	}
	if !slices.Equal(deletes, want) {
		t.Errorf("delete calls = %v, want %v", deletes, want)
	}
	if n := r.Stats().Replaces; n != 2 {
		t.Errorf("replaces = %d, want 2 (an unchanged Set must not write)", n)
	}
}

func TestRoutesCoalesceLatestWins(t *testing.T) {
	f := newFakeWriter()
	f.block = make(chan struct{})
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)

	// The worker is stuck in its first write; everything after piles up in
	// the pending map, one entry per prefix whatever the churn.
	r.Set(pfxB, []netip.Addr{nh1})
	eventually(t, "worker busy", func() bool { return r.Stats().Pending == 0 })
	for i := range 10000 {
		if i%2 == 0 {
			r.Set(pfxA, []netip.Addr{nh1})
		} else {
			r.Delete(pfxA)
		}
		r.Set(pfx6, []netip.Addr{nh6})
	}
	r.Set(pfxA, []netip.Addr{nh2})
	if p := r.Stats().Pending; p != 2 {
		t.Fatalf("pending = %d after 20001 wishes for 2 prefixes, want 2", p)
	}
	close(f.block)
	eventually(t, "all installed", func() bool { return r.Stats().Installed == 3 })
	routes, calls := f.snapshot()
	if got := routes[pfxA]; len(got) != 1 || got[0].Gateway != nh2 {
		t.Errorf("%s = %v, want via %s (latest wins)", pfxA, got, nh2)
	}
	if len(calls) != 3 {
		t.Errorf("kernel writes = %v, want 3 (one per prefix)", calls)
	}
}

func TestRoutesTransientErrorsRetried(t *testing.T) {
	f := newFakeWriter()
	f.failNext[pfxA] = []error{syscall.ENOBUFS, fmt.Errorf("wrapped: %w", syscall.EAGAIN), syscall.EBUSY}
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	r.Set(pfxA, []netip.Addr{nh1})
	eventually(t, "installed after retries", func() bool { return r.Stats().Installed == 1 })
	if s := r.Stats(); s.Retries != 3 || s.Failures != 0 {
		t.Errorf("stats = %+v, want 3 retries and no failure", s)
	}
}

func TestRoutesPermanentErrorKeepsState(t *testing.T) {
	f := newFakeWriter()
	f.routes[pfxA] = []Nexthop{{Gateway: nh1, LinkIndex: 1}}
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	eventually(t, "start-up listing", func() bool { return r.Stats().Installed == 1 })

	// A replace that fails for good: the installed state still says what the
	// kernel holds (the old route), not what we wished.
	f.mu.Lock()
	f.failNext[pfxA] = []error{syscall.EINVAL}
	f.mu.Unlock()
	r.Set(pfxA, []netip.Addr{nh2})
	eventually(t, "failure counted", func() bool { return r.Stats().Failures == 1 })
	inst := r.Installed()
	if len(inst) != 1 || inst[0].Kernel[0].Gateway != nh1 {
		t.Errorf("installed = %+v, want the old route via %s", inst, nh1)
	}
	// A delete that fails for good keeps the route tracked, so it is not lost.
	f.mu.Lock()
	f.failNext[pfxA] = []error{syscall.EPERM}
	f.mu.Unlock()
	r.Delete(pfxA)
	eventually(t, "failure counted", func() bool { return r.Stats().Failures == 2 })
	if inst := r.Installed(); len(inst) != 1 {
		t.Errorf("installed = %+v after a failed delete, want the route still tracked", inst)
	}
	// The resync retries and the kernel converges.
	r.Resync(context.Background())
	if routes, _ := f.snapshot(); len(routes) != 0 {
		t.Errorf("after resync kernel holds %v, want nothing", routes)
	}
}

func TestRoutesPersistentTransientErrorGivesUp(t *testing.T) {
	f := newFakeWriter()
	f.failNext[pfxA] = slices.Repeat([]error{syscall.EAGAIN}, retries+1)
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	r.Set(pfxA, []netip.Addr{nh1})
	eventually(t, "failure", func() bool { return r.Stats().Failures == 1 })
	if s := r.Stats(); s.Retries != retries || s.Installed != 0 {
		t.Errorf("stats = %+v, want %d retries and nothing installed", s, retries)
	}
}

func TestRoutesStaleKeptUntilSweep(t *testing.T) {
	f := newFakeWriter()
	// Left by an earlier run: A will be confirmed by the RIB, B will not.
	f.routes[pfxA] = []Nexthop{{Gateway: nh1, LinkIndex: 1}}
	f.routes[pfxB] = []Nexthop{{Gateway: nh1, LinkIndex: 1}}
	r := NewRoutes(f, Settings{ResyncInterval: -1, StaleTimeout: time.Hour}, quiet())
	start(t, r)
	eventually(t, "start-up listing", func() bool { return r.Stats().Installed == 2 })

	r.Set(pfxA, []netip.Addr{nh2})
	eventually(t, "A rewritten", func() bool { return r.Stats().Replaces == 1 })
	// Nothing is flushed before the sweep, not even by a resync.
	r.Resync(context.Background())
	if routes, _ := f.snapshot(); routes[pfxB] == nil {
		t.Fatal("stale route removed before End-of-RIB or the timeout")
	}
	r.Sweep()
	eventually(t, "stale route swept", func() bool { return r.Stats().Installed == 1 })
	routes, calls := f.snapshot()
	if routes[pfxB] != nil || routes[pfxA][0].Gateway != nh2 {
		t.Errorf("after sweep kernel holds %v", routes)
	}
	for _, c := range calls {
		if c == "delete "+pfxA.String() {
			t.Errorf("confirmed route was deleted: %v", calls)
		}
	}
}

func TestRoutesStaleTimeout(t *testing.T) {
	f := newFakeWriter()
	f.routes[pfxB] = []Nexthop{{Gateway: nh1, LinkIndex: 1}}
	r := NewRoutes(f, Settings{ResyncInterval: -1, StaleTimeout: 30 * time.Millisecond}, quiet())
	start(t, r)
	eventually(t, "stale route removed at the timeout", func() bool {
		routes, _ := f.snapshot()
		return len(routes) == 0
	})
}

func TestRoutesResyncRepairsKernel(t *testing.T) {
	f := newFakeWriter()
	r := NewRoutes(f, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	r.Set(pfxA, []netip.Addr{nh1})
	r.Set(pfxB, []netip.Addr{nh1})
	eventually(t, "installed", func() bool { return r.Stats().Installed == 2 })

	// Behind our back: A removed (link down), B changed, a route of ours we
	// do not know about appears.
	f.mu.Lock()
	delete(f.routes, pfxA)
	f.routes[pfxB] = []Nexthop{{Gateway: nh2, LinkIndex: 7}}
	f.routes[pfx6] = []Nexthop{{Gateway: nh6, LinkIndex: 1}}
	f.mu.Unlock()

	r.Resync(context.Background())
	routes, _ := f.snapshot()
	if len(routes) != 2 || routes[pfxA][0].Gateway != nh1 || routes[pfxB][0].Gateway != nh1 {
		t.Errorf("after resync kernel holds %v, want A and B via %s only", routes, nh1)
	}
}

func TestRoutesListErrorFailsRun(t *testing.T) {
	f := newFakeWriter()
	f.listErr = errors.New("boom")
	r := NewRoutes(f, Settings{}, quiet())
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded although the start-up listing failed")
	}
}

func TestRoutesRemoveOnStop(t *testing.T) {
	f := newFakeWriter()
	r := NewRoutes(f, Settings{ResyncInterval: -1, RemoveOnStop: true}, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.Set(pfxA, []netip.Addr{nh1})
	eventually(t, "installed", func() bool { return r.Stats().Installed == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if routes, _ := f.snapshot(); len(routes) != 0 {
		t.Errorf("after stop kernel holds %v, want nothing", routes)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.EAGAIN, true},
		{fmt.Errorf("replacing route: %w", syscall.ENOBUFS), true},
		{syscall.EBUSY, true},
		{syscall.EINVAL, false},
		{syscall.ENETUNREACH, false},
		{errors.New("other"), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// trackingWriter is a fakeWriter whose next hops resolve through a table
// the test changes, with the NexthopTracker side of KernelWriter.
type trackingWriter struct {
	*fakeWriter
	tmu      sync.Mutex
	via      map[netip.Addr]netip.Addr // next hop → gateway; missing: unreachable
	resolved map[netip.Addr]netip.Addr // what Apply used (zero: unreachable)
	changed  func()
	watching chan struct{}
}

func (w *trackingWriter) Apply(ops []Op, res []Result) {
	w.tmu.Lock()
	defer w.tmu.Unlock()
	for i, op := range ops {
		if op.NextHops == nil {
			res[i] = Result{Err: w.Delete(op.Prefix)}
			continue
		}
		var gws []netip.Addr
		for _, nh := range op.NextHops {
			gw, ok := w.via[nh]
			w.resolved[nh] = gw // the zero Addr: unreachable
			if !ok {
				res[i] = Result{Err: fmt.Errorf("route %s: next hop %s unreachable", op.Prefix, nh)}
				break
			}
			gws = append(gws, gw)
		}
		if res[i].Err != nil {
			continue
		}
		k, err := w.Replace(op.Prefix, gws)
		res[i] = Result{Kernel: k, Err: err}
	}
}

func (w *trackingWriter) Watch(ctx context.Context, changed func()) error {
	w.tmu.Lock()
	w.changed = changed
	w.tmu.Unlock()
	close(w.watching)
	<-ctx.Done()
	return nil
}

func (w *trackingWriter) Refresh() []netip.Addr {
	w.tmu.Lock()
	defer w.tmu.Unlock()
	var out []netip.Addr
	for nh, old := range w.resolved {
		if gw := w.via[nh]; gw != old {
			out = append(out, nh)
			w.resolved[nh] = gw
		}
	}
	return out
}

func (w *trackingWriter) move(nh, gw netip.Addr) {
	w.tmu.Lock()
	if gw.IsValid() {
		w.via[nh] = gw
	} else {
		delete(w.via, nh)
	}
	changed := w.changed
	w.tmu.Unlock()
	changed()
}

func TestRoutesNexthopTracking(t *testing.T) {
	ibgp := netip.MustParseAddr("192.0.2.1")
	w := &trackingWriter{fakeWriter: newFakeWriter(), via: map[netip.Addr]netip.Addr{ibgp: nh1, nh2: nh2},
		resolved: map[netip.Addr]netip.Addr{}, watching: make(chan struct{})}
	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	<-w.watching
	r.Set(pfxA, []netip.Addr{ibgp})
	r.Set(pfxB, []netip.Addr{nh2})
	eventually(t, "installed", func() bool { return r.Stats().Installed == 2 })
	via := func(p netip.Prefix) netip.Addr {
		routes, _ := w.snapshot()
		if len(routes[p]) == 0 {
			return netip.Addr{}
		}
		return routes[p][0].Gateway
	}
	if got := via(pfxA); got != nh1 {
		t.Fatalf("%s via %s, want %s", pfxA, got, nh1)
	}
	// The route to the iBGP next hop moves: only the dependent route is rewritten.
	w.move(ibgp, nh2)
	eventually(t, "dependent route moved", func() bool { return via(pfxA) == nh2 })
	if s := r.Stats(); s.Replaces != 3 {
		t.Errorf("replaces = %d, want 3 (two installs, one move)", s.Replaces)
	}
	// Unreachable: the route leaves the kernel but stays wanted.
	w.move(ibgp, netip.Addr{})
	eventually(t, "route removed", func() bool { return !via(pfxA).IsValid() })
	if s := r.Stats(); s.Installed != 1 || s.Desired != 2 {
		t.Errorf("stats %+v, want 1 installed, 2 desired", s)
	}
	// Reachable again: back.
	w.move(ibgp, nh1)
	eventually(t, "route back", func() bool { return via(pfxA) == nh1 })
	if got := via(pfxB); got != nh2 {
		t.Errorf("unrelated route %s via %s", pfxB, got)
	}
}

func TestPrefixKeyRoundTrip(t *testing.T) {
	seen := map[pkey]netip.Prefix{}
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "198.51.100.0/24", "203.0.113.7/32",
		"::/0", "2001:db8::/32", "2001:db8:77::/48", "::ffff:198.51.100.0/120", "::ffff:0.0.0.0/96", "::/96"} {
		p := netip.MustParsePrefix(s)
		k := keyOf(p)
		if got := k.prefix(); got != p {
			t.Errorf("keyOf(%s).prefix() = %s", p, got)
		}
		if q, dup := seen[k]; dup {
			t.Errorf("%s and %s share a key", p, q)
		}
		seen[k] = p
	}
}

func TestRoutesShareNexthopSets(t *testing.T) {
	r := NewRoutes(newFakeWriter(), Settings{}, quiet())
	r.Set(pfxA, []netip.Addr{nh2, nh1})
	r.Set(pfxB, []netip.Addr{nh1, nh2, nh1})
	a, b := r.pending[keyOf(pfxA)].nh, r.pending[keyOf(pfxB)].nh
	if !slices.Equal(a, []netip.Addr{nh1, nh2}) || &a[0] != &b[0] {
		t.Errorf("next-hop sets %v and %v: want one shared sorted set", a, b)
	}
}

// PIC needs a writer with nexthop objects: without, Protects says no (and
// logs why), whatever fib.pic says.
func TestRoutesProtectsNeedsObjects(t *testing.T) {
	var log bytes.Buffer
	r := NewRoutes(newFakeWriter(), Settings{PIC: true}, slog.New(slog.NewTextHandler(&log, nil)))
	if r.Protects() {
		t.Error("Protects() true on a writer without nexthop objects")
	}
	if !strings.Contains(log.String(), "fast failover (fib.pic) off") {
		t.Errorf("no log line saying fast failover is off: %q", log.String())
	}
}
