// Package fib is the kernel FIB as xrouter sees and writes it: our routes
// (protocol 186) installed, replaced and removed in batches, BGP next hops
// resolved through the FIB and tracked as it changes, and the kernel's own
// routes read for redistribution.
package fib

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Defaults of Settings' zero values. The metric is not the kernel's default (0) so
// that our routes are distinct kernel routes from an operator's static route
// for the same prefix: NLM_F_REPLACE matches on prefix, table and metric and
// ignores the protocol, so with the same metric we would overwrite it.
const (
	// ProtocolBGP is rtnetlink's RTPROT_BGP, the protocol our routes carry.
	ProtocolBGP = 186
	// DefaultMetric is the metric of the routes we write.
	DefaultMetric = 20
	// DefaultTable is the main routing table.
	DefaultTable = 254
	// DefaultStaleTimeout is how long routes found in the kernel at start are
	// kept without being confirmed by the RIB, so that a restart does not
	// blackhole traffic while the sessions come up again.
	DefaultStaleTimeout = 2 * time.Minute
	// DefaultResyncInterval is the period of the full diff against the
	// kernel, the safety net for routes removed behind our back (link down
	// flushes the routes through it, an operator's `ip route flush`).
	DefaultResyncInterval = 5 * time.Minute
)

// Nexthop is one kernel next hop: a gateway on a connected subnet and the
// interface to reach it through.
type Nexthop struct {
	Gateway   netip.Addr `json:"gateway"`
	LinkIndex int        `json:"link_index"`
}

// InstalledRoute is one route of ours in the kernel.
type InstalledRoute struct {
	Prefix netip.Prefix `json:"prefix"`
	// NextHops are the next hops as BGP gave them (before resolution); nil
	// for a route found in the kernel at start and not yet confirmed.
	NextHops []netip.Addr `json:"next_hops,omitempty"`
	// Kernel are the next hops the kernel holds, after resolution.
	Kernel []Nexthop `json:"kernel"`
	// NHID is the nexthop object the route uses (0: its own gateways).
	NHID uint32 `json:"nhid,omitempty"`
	// Backup is the next hop the route fails over to (PIC), if any.
	Backup netip.Addr `json:"backup,omitzero"`
}

// Op is one write into the FIB: NextHops nil deletes our route for Prefix.
type Op struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
	// Backup is the next hop to fail over to (PIC, pic.go) when the
	// single next hop's peer goes away; the zero Addr for none.
	Backup netip.Addr
}

// Result is the outcome of one Op: the next hops the kernel now holds (for
// a replace), or the error. Errors are classified with IsTransient.
type Result struct {
	Kernel []Nexthop
	// NHID is the nexthop object the route was put on (0: none).
	NHID uint32
	Err  error
}

// Writer writes our routes into a FIB. The kernel implementation is
// KernelWriter; tests inject a fake so the reconcile logic runs without root.
type Writer interface {
	// Apply performs ops, which are for distinct prefixes, and stores the
	// outcome of ops[i] in res[i] (len(res) == len(ops)). A replace installs
	// the prefix via its next hops (one route, multipath when more than
	// one), resolving next hops that are not on a connected subnet; a delete
	// of a route already gone is no error.
	Apply(ops []Op, res []Result)
	// List returns all our routes (our protocol, table and metric).
	List() ([]InstalledRoute, error)
}

// IsTransient reports whether a netlink error is worth retrying: the kernel
// was short of buffers or busy, nothing was wrong with the request.
func IsTransient(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EINTR)
}

// RoutesStats counts what the worker did, for metrics and `xrouter routes`.
type RoutesStats struct {
	Installed int    `json:"installed"`
	Desired   int    `json:"desired"`
	Pending   int    `json:"pending"`
	Replaces  uint64 `json:"replaces"`
	Deletes   uint64 `json:"deletes"`
	Retries   uint64 `json:"retries"`
	Failures  uint64 `json:"failures"`
}

// Routes owns the kernel routes xrouter writes. Producers (the BGP speaker)
// call Set and Delete, which only record the latest wish per prefix and
// never block on the kernel; one worker (Run) drains those wishes and applies
// them. So a burst of changes to one prefix costs one kernel write, and the
// memory held is bounded by the number of prefixes, not by the churn.
//
// The worker keeps the desired state (what BGP wants) and the installed state
// (what the kernel holds, as far as our successful writes say); the installed
// state changes only when a write succeeded, so a failed write is retried by
// the next resync instead of being forgotten.
//
// Writes go to the Writer in chunks (KernelWriter sends them batched on one
// netlink socket); each route's outcome is known, transient errors are
// retried with backoff, permanent ones are logged with the prefix.
//
// When the Writer is a NexthopTracker (KernelWriter is), the worker follows
// kernel route, address and link changes: when a next hop that is not on a
// connected subnet resolves differently (the route it resolves through
// moved, appeared or went), the routes using it are rewritten at once, and
// removed from the kernel while the next hop does not resolve at all.
type Routes struct {
	w   Writer
	log *slog.Logger
	cfg Settings

	mu      sync.Mutex
	pending map[pkey]wish
	// failover are the next hops whose peer went away, for the worker
	// to fail over (PIC).
	failover []failoverReq
	// backups interns backup next hops (few distinct), so that an
	// entry holds a pointer rather than an address.
	backups map[netip.Addr]*netip.Addr
	// recent are next-hop sets handed out lately: a million routes via
	// one peer share one slice.
	recent     [8][]netip.Addr
	recentNext int
	kick       chan struct{}
	sweep      chan struct{}

	// Owned by the worker; read by Installed and Stats under stateMu.
	stateMu sync.Mutex
	// routes holds, per prefix, the desired and the installed state; one
	// map rather than two, and shared installed states, because at a
	// million routes every byte per prefix is a megabyte.
	routes     map[pkey]entry
	nDesired   int
	nInstalled int
	shared     map[sharedKey]*inst
	stale      map[pkey]struct{}
	stats      RoutesStats
	// refs counts the installed routes per nexthop object (ObjectWriter);
	// unused is set when a count fell to 0 or an object may have been
	// made for a route that failed: the writer then prunes.
	refs   map[uint32]int
	unused bool
	// failed are the objects Failover repointed: a route on one is
	// rewritten at its next wish, whatever it wants (see pic.go).
	failed map[uint32]bool

	// backoff is the wait before retry i (i from 0); a variable so tests run fast.
	backoff func(i int) time.Duration
}

// nexthopSettle is how long the worker waits after a kernel route change
// before it re-resolves the next hops.
const nexthopSettle = 50 * time.Millisecond

// retries is how many times a transient error is retried before it is
// reported as a failure.
const retries = 4

// NewRoutes returns the route owner; nothing is written before Run. Of s
// it reads StaleTimeout, ResyncInterval (negative disables the periodic
// diff) and RemoveOnStop; zero values take the defaults.
func NewRoutes(w Writer, s Settings, log *slog.Logger) *Routes {
	if log == nil {
		log = slog.Default()
	}
	return &Routes{
		w:       w,
		log:     log,
		cfg:     s.withDefaults(),
		pending: make(map[pkey]wish),
		backups: make(map[netip.Addr]*netip.Addr),
		failed:  make(map[uint32]bool),
		kick:    make(chan struct{}, 1),
		sweep:   make(chan struct{}, 1),
		routes:  make(map[pkey]entry),
		shared:  make(map[sharedKey]*inst),
		stale:   make(map[pkey]struct{}),
		refs:    make(map[uint32]int),
		backoff: func(i int) time.Duration { return 10 * time.Millisecond << (2 * i) },
	}
}

// Set asks for prefix to be routed via nexthops (ECMP when more than one).
// It replaces any earlier wish for the prefix that the worker has not
// applied yet. An empty nexthops is a Delete.
func (r *Routes) Set(prefix netip.Prefix, nexthops []netip.Addr) {
	if len(nexthops) == 0 {
		r.Delete(prefix)
		return
	}
	k := keyOf(prefix.Masked())
	r.mu.Lock()
	r.pending[k] = wish{nh: r.intern(nexthops)}
	r.mu.Unlock()
	r.wake()
}

// SetProtected asks for prefix to be routed via nexthop, with backup as
// the next hop to fail over to when Failover(nexthop) is called (PIC).
// Callers must check Protects first; backup must be a next hop that
// offers the prefix.
func (r *Routes) SetProtected(prefix netip.Prefix, nexthop, backup netip.Addr) {
	k := keyOf(prefix.Masked())
	r.mu.Lock()
	b := r.backups[backup]
	if b == nil {
		b = &backup
		r.backups[backup] = b
	}
	r.pending[k] = wish{nh: r.intern([]netip.Addr{nexthop}), backup: b}
	r.mu.Unlock()
	r.wake()
}

// Protects reports whether SetProtected and Failover work: fib.pic is
// on and routes go on nexthop objects.
func (r *Routes) Protects() bool {
	if !r.cfg.PIC {
		return false
	}
	type objects interface{ NexthopObjects() bool }
	o, ok := r.w.(objects)
	_, fo := r.w.(failoverWriter)
	if !ok || !fo || !o.NexthopObjects() {
		r.log.Info("fast failover (fib.pic) off: it needs routes on nexthop objects (fib.nexthop_objects, Linux 5.3 or later)")
		return false
	}
	return true
}

// Failover is told that the peer behind next hop nh went away: with
// repoint, the protected routes via nh move to their backup at once (one
// object replace per (nh, backup) pair), without waiting for BGP's
// withdrawals. In every case nh stops being a backup.
func (r *Routes) Failover(nh netip.Addr, repoint bool) {
	r.mu.Lock()
	r.failover = append(r.failover, failoverReq{nh, repoint})
	r.mu.Unlock()
	r.wake()
}

// failoverWriter is a Writer with protected objects (KernelWriter).
type failoverWriter interface {
	Failover(nh netip.Addr, repoint bool) []uint32
}

type failoverReq struct {
	nh      netip.Addr
	repoint bool
}

// doFailover runs the failovers asked for; worker goroutine.
func (r *Routes) doFailover() {
	r.mu.Lock()
	nhs := r.failover
	r.failover = nil
	r.mu.Unlock()
	fw, ok := r.w.(failoverWriter)
	if !ok || len(nhs) == 0 {
		return
	}
	for _, f := range nhs {
		ids := fw.Failover(f.nh, f.repoint)
		r.stateMu.Lock()
		for _, id := range ids {
			r.failed[id] = true
		}
		r.stateMu.Unlock()
	}
	if ow, ok := r.w.(ObjectWriter); ok {
		r.objectsMoved(ow.Moved())
	}
}

// Delete asks for our route for prefix to be removed.
func (r *Routes) Delete(prefix netip.Prefix) {
	r.mu.Lock()
	r.pending[keyOf(prefix.Masked())] = wish{}
	r.mu.Unlock()
	r.wake()
}

// wish is a pending wish: next hops (nil: delete) and the backup.
type wish struct {
	nh     []netip.Addr
	backup *netip.Addr
}

// Sweep removes now the routes found in the kernel at start that the RIB did
// not confirm, instead of waiting for the stale timeout: call it when every
// peer has sent End-of-RIB.
func (r *Routes) Sweep() {
	select {
	case r.sweep <- struct{}{}:
	default:
	}
}

func (r *Routes) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Installed returns our routes as the kernel holds them, sorted by prefix.
func (r *Routes) Installed() []InstalledRoute {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	out := make([]InstalledRoute, 0, r.nInstalled)
	for k, e := range r.routes {
		if e.have != nil {
			ir := InstalledRoute{Prefix: k.prefix(), NextHops: e.have.nh, Kernel: e.have.kernel, NHID: e.have.nhid}
			if e.have.backup != nil {
				ir.Backup = *e.have.backup
			}
			out = append(out, ir)
		}
	}
	slices.SortFunc(out, func(a, b InstalledRoute) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// CountByNextHop counts installed routes per next hop as BGP gave it (the
// peer's address, for eBGP), without copying the table.
func (r *Routes) CountByNextHop() map[netip.Addr]int {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	out := map[netip.Addr]int{}
	for _, e := range r.routes {
		if e.have == nil {
			continue
		}
		for _, nh := range e.have.nh {
			out[nh]++
		}
	}
	return out
}

// Stats returns the worker's counters.
func (r *Routes) Stats() RoutesStats {
	r.mu.Lock()
	pending := len(r.pending)
	r.mu.Unlock()
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	s := r.stats
	s.Installed, s.Desired, s.Pending = r.nInstalled, r.nDesired, pending
	return s
}

// Run lists our routes already in the kernel (left by an earlier run), then
// applies wishes until ctx is done. Routes found at start are kept until
// they are set again, or removed at Sweep or the stale timeout; they are
// never flushed blindly. Run returns an error only when the start-up listing
// fails.
func (r *Routes) Run(ctx context.Context) error {
	if err := r.load(); err != nil {
		return err
	}
	staleTimer := time.NewTimer(r.cfg.StaleTimeout)
	defer staleTimer.Stop()
	var resync <-chan time.Time
	if r.cfg.ResyncInterval > 0 {
		t := time.NewTicker(r.cfg.ResyncInterval)
		defer t.Stop()
		resync = t.C
	}
	var tr NexthopTracker
	nhKick := make(chan struct{}, 1)
	nhTimer := time.NewTimer(time.Hour)
	nhTimer.Stop()
	defer nhTimer.Stop()
	nhArmed := false
	if t, ok := r.w.(NexthopTracker); ok {
		tr = t
		wctx, cancel := context.WithCancel(ctx)
		watchDone := make(chan struct{})
		defer func() { cancel(); <-watchDone }()
		go func() {
			defer close(watchDone)
			err := tr.Watch(wctx, func() {
				select {
				case nhKick <- struct{}{}:
				default:
				}
			})
			if err != nil {
				r.log.Error("next-hop tracking stopped; dependent routes move only at resync", "err", err)
			}
		}()
	}
	r.drain(ctx)
	for {
		select {
		case <-nhKick:
			// Changes come in bursts: look once they settle a little.
			if !nhArmed {
				nhArmed = true
				nhTimer.Reset(nexthopSettle)
			}
		case <-nhTimer.C:
			nhArmed = false
			r.drain(ctx)
			r.renexthop(ctx, tr)
		case <-ctx.Done():
			if r.cfg.RemoveOnStop {
				r.removeAll()
			}
			return nil
		case <-r.kick:
			r.drain(ctx)
		case <-staleTimer.C:
			r.sweepStale(ctx)
		case <-r.sweep:
			r.sweepStale(ctx)
		case <-resync:
			r.Resync(ctx)
		}
	}
}

// load takes the kernel's routes of ours as installed and stale.
func (r *Routes) load() error {
	found, err := r.w.List()
	if err != nil {
		return fmt.Errorf("listing our routes at start: %w", err)
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	for _, ir := range found {
		k := keyOf(ir.Prefix)
		r.setHave(k, &inst{kernel: ir.Kernel, nhid: ir.NHID})
		r.stale[k] = struct{}{}
	}
	if len(found) > 0 {
		r.log.Info("found routes of an earlier run; keeping them until the RIB confirms them",
			"routes", len(found), "stale_timeout", r.cfg.StaleTimeout)
	}
	return nil
}

// writeChunk is how many ops the worker hands the writer at once; the
// installed state and the stats move after each chunk.
const writeChunk = 8192

// maxLoggedFailures bounds the per-route error lines of one write; the rest
// are counted in one summary line.
const maxLoggedFailures = 10

// drain applies every pending wish, taking the whole map at once so that
// producers never wait for the kernel.
func (r *Routes) drain(ctx context.Context) {
	r.doFailover()
	r.mu.Lock()
	batch := r.pending
	r.pending = make(map[pkey]wish)
	r.mu.Unlock()
	ops := make([]Op, 0, min(len(batch), writeChunk))
	for p, w := range batch {
		if ctx.Err() != nil {
			// Put the rest back: nothing is lost if Run is started again.
			for _, op := range ops {
				batch[keyOf(op.Prefix)] = wish{nh: op.NextHops, backup: r.backupOf(op.Backup)}
			}
			r.mu.Lock()
			for q, n := range batch {
				if _, newer := r.pending[q]; !newer {
					r.pending[q] = n
				}
			}
			r.mu.Unlock()
			return
		}
		delete(batch, p)
		if op, ok := r.want(p, w); ok {
			ops = append(ops, op)
		}
		if len(ops) == writeChunk {
			r.write(ctx, ops)
			ops = ops[:0]
			// A failover does not wait for a long drain.
			r.doFailover()
		}
	}
	r.write(ctx, ops)
}

// want records the wish for one prefix (nh nil: delete) and returns the
// write that brings the kernel there, if one is needed.
func (r *Routes) want(k pkey, w wish) (Op, bool) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	delete(r.stale, k)
	e := r.routes[k]
	e.want, e.backup = w.nh, w.backup
	r.put(k, e)
	cur := e.have
	if w.nh == nil {
		return Op{Prefix: k.prefix()}, cur != nil
	}
	if cur != nil && slices.Equal(cur.nh, w.nh) && cur.backup == w.backup && !r.failed[cur.nhid] {
		return Op{}, false
	}
	return e.op(k), true
}

// backupOf is the interned pointer of backup (nil for none). Called
// by the worker.
func (r *Routes) backupOf(backup netip.Addr) *netip.Addr {
	if !backup.IsValid() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backups[backup]
	if b == nil {
		b = &backup
		r.backups[backup] = b
	}
	return b
}

// failure is an op that failed for good, and why.
type failure struct {
	op  Op
	err error
}

// write performs ops in chunks, retries the transient failures with
// backoff, and moves the installed state for each op that succeeded, and
// only for those. It returns the ops that failed for good.
func (r *Routes) write(ctx context.Context, ops []Op) []failure {
	var failed []failure
	res := make([]Result, min(len(ops), writeChunk))
	for len(ops) > 0 {
		n := min(len(ops), writeChunk)
		failed = r.writeChunk(ctx, ops[:n], res, failed)
		ops = ops[n:]
	}
	r.prune()
	if len(failed) > maxLoggedFailures {
		waiting := 0
		for _, f := range failed {
			if errors.Is(f.err, ErrNextHopUnresolved) {
				waiting++
			}
		}
		r.log.Error("route writes failed", "routes", len(failed), "waiting_for_next_hop", waiting, "logged", maxLoggedFailures)
	}
	return failed
}

func (r *Routes) writeChunk(ctx context.Context, ops []Op, res []Result, failed []failure) []failure {
	for attempt := 0; len(ops) > 0; attempt++ {
		res = res[:len(ops)]
		r.w.Apply(ops, res)
		var again []Op
		r.stateMu.Lock()
		for i, op := range ops {
			rs := res[i]
			switch {
			case rs.Err == nil && op.NextHops == nil:
				r.stats.Deletes++
				r.setHave(keyOf(op.Prefix), nil)
			case rs.Err == nil:
				r.stats.Replaces++
				r.setHave(keyOf(op.Prefix), r.share(op.NextHops, rs.Kernel, rs.NHID, r.routes[keyOf(op.Prefix)].backupFor(op)))
			case IsTransient(rs.Err) && attempt < retries:
				r.stats.Retries++
				again = append(again, op)
			default:
				r.stats.Failures++
				// An object made for it may be used by nothing.
				r.unused = r.unused || op.NextHops != nil
				failed = append(failed, failure{op, rs.Err})
				if len(failed) <= maxLoggedFailures {
					switch {
					case op.NextHops == nil:
						r.log.Error("removing route", "prefix", op.Prefix, "err", rs.Err)
					case errors.Is(rs.Err, ErrNextHopUnresolved):
						r.log.Warn("route not installed: its next hop does not resolve; it waits for it", "prefix", op.Prefix, "next_hops", op.NextHops, "err", rs.Err)
					default:
						r.log.Error("installing route", "prefix", op.Prefix, "next_hops", op.NextHops, "err", rs.Err)
					}
				}
			}
		}
		r.stateMu.Unlock()
		if len(again) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			r.stateMu.Lock()
			r.stats.Failures += uint64(len(again))
			r.stateMu.Unlock()
			for _, op := range again {
				failed = append(failed, failure{op, fmt.Errorf("giving up: %w", ctx.Err())})
			}
			r.log.Error("route writes abandoned at shutdown", "routes", len(again))
			return failed
		case <-time.After(r.backoff(attempt)):
		}
		ops = again
	}
	return failed
}

// renexthop moves the routes whose next hops resolve differently now (the
// route they resolve through changed, a subnet appeared or went). A route
// whose next hop no longer resolves is removed from the kernel and stays
// wanted: it comes back when the next hop resolves again.
func (r *Routes) renexthop(ctx context.Context, tr NexthopTracker) {
	changed := tr.Refresh()
	if ow, ok := r.w.(ObjectWriter); ok {
		r.objectsMoved(ow.Moved())
	}
	if len(changed) == 0 {
		return
	}
	moved := make(map[netip.Addr]bool, len(changed))
	for _, a := range changed {
		moved[a] = true
	}
	var ops []Op
	r.stateMu.Lock()
	// An object made again for a next hop back from no carrier may have
	// no route left to use it: prune after the writes.
	r.unused = true
	for k, e := range r.routes {
		if e.have != nil && r.failed[e.have.nhid] {
			continue // failed over: BGP's next wish moves it
		}
		for _, a := range e.want {
			if moved[a] {
				ops = append(ops, e.op(k))
				break
			}
		}
	}
	r.stateMu.Unlock()
	r.log.Info("next hops resolve differently: rewriting dependent routes", "next_hops", changed, "routes", len(ops))
	failed := r.write(ctx, ops)
	var gone []Op
	r.stateMu.Lock()
	for _, f := range failed {
		if r.routes[keyOf(f.op.Prefix)].have != nil && !IsTransient(f.err) {
			gone = append(gone, Op{Prefix: f.op.Prefix})
		}
	}
	r.stateMu.Unlock()
	if len(gone) > 0 {
		r.log.Warn("removing routes whose next hop no longer resolves", "routes", len(gone))
		r.write(ctx, gone)
	}
}

// sweepStale removes the routes found at start that were not confirmed.
func (r *Routes) sweepStale(ctx context.Context) {
	r.drain(ctx) // a wish already queued may confirm a stale route
	r.stateMu.Lock()
	var gone []netip.Prefix
	for k := range r.stale {
		if r.routes[k].want == nil {
			gone = append(gone, k.prefix())
		}
	}
	clear(r.stale)
	// Objects of an earlier run no route uses go too.
	r.unused = true
	r.stateMu.Unlock()
	if len(gone) > 0 {
		r.log.Info("removing routes of an earlier run the RIB did not confirm", "routes", len(gone))
	}
	ops := make([]Op, len(gone))
	for i, p := range gone {
		ops[i] = Op{Prefix: p}
	}
	r.write(ctx, ops)
}

// prune lets an ObjectWriter delete the nexthop objects no installed
// route uses, when a count fell to 0 since the last time.
func (r *Routes) prune() {
	ow, ok := r.w.(ObjectWriter)
	if !ok || !r.unused {
		return
	}
	r.unused = false
	// refs is written by this goroutine only (under stateMu, for the
	// readers of the installed state).
	ow.Prune(func(id uint32) bool { return r.refs[id] > 0 })
}

// objectsMoved records that the kernel next hops of objects changed in
// place (one replace of the object moved all their routes): the installed
// state of those routes follows, without a write.
func (r *Routes) objectsMoved(moved map[uint32][]Nexthop) {
	if len(moved) == 0 {
		return
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	n := 0
	for k, e := range r.routes {
		if e.have == nil || e.have.nhid == 0 {
			continue
		}
		if kernel, ok := moved[e.have.nhid]; ok {
			r.setHave(k, r.share(e.have.nh, kernel, e.have.nhid, e.have.backup))
			n++
		}
	}
	r.log.Info("next hops resolve differently: nexthop objects replaced, no route rewritten", "objects", len(moved), "routes", n)
}

// Resync is the full diff: it lists the kernel and brings it, and the
// installed state, back to the desired state. It repairs routes removed
// behind our back and retries writes that failed.
func (r *Routes) Resync(ctx context.Context) {
	r.drain(ctx)
	found, err := r.w.List()
	if err != nil {
		r.log.Error("resync: listing our routes", "err", err)
		return
	}
	inKernel := make(map[pkey]InstalledRoute, len(found))
	for _, ir := range found {
		inKernel[keyOf(ir.Prefix)] = ir
	}

	var fixes []Op
	r.stateMu.Lock()
	for p, e := range r.routes {
		if e.have == nil {
			continue
		}
		ir, ok := inKernel[p]
		if !ok {
			// Gone behind our back: forget it, reinstall below if wanted.
			r.setHave(p, nil)
			continue
		}
		if ir.NHID != e.have.nhid || !slices.Equal(ir.Kernel, e.have.kernel) {
			// Changed behind our back: rewrite below.
			r.setHave(p, &inst{kernel: ir.Kernel, nhid: ir.NHID})
		}
	}
	for p, ir := range inKernel {
		if r.routes[p].have == nil {
			// Ours but unknown (a write we thought failed went through).
			r.setHave(p, &inst{kernel: ir.Kernel, nhid: ir.NHID})
		}
	}
	for p, e := range r.routes {
		if e.have != nil && r.failed[e.have.nhid] {
			// Failed over: BGP's next wish moves it (writing what it
			// wanted before would undo the failover).
			continue
		}
		if e.want != nil && (e.have == nil || !slices.Equal(e.have.nh, e.want) || e.have.backup != e.backup) {
			fixes = append(fixes, e.op(p))
		}
		_, stale := r.stale[p]
		if e.want == nil && e.have != nil && !stale {
			fixes = append(fixes, Op{Prefix: p.prefix()})
		}
	}
	r.stateMu.Unlock()

	if len(fixes) > 0 {
		r.log.Info("resync: kernel differs from the RIB", "fixes", len(fixes))
	}
	r.write(ctx, fixes)
}

func (r *Routes) removeAll() {
	r.stateMu.Lock()
	all := make([]Op, 0, r.nInstalled)
	for p, e := range r.routes {
		if e.have != nil {
			all = append(all, Op{Prefix: p.prefix()})
		}
	}
	r.stateMu.Unlock()
	// ctx is done: removal gets its own bound so that a stuck kernel cannot
	// hold up shutdown forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.write(ctx, all)
}

// pkey is a prefix as a map key: 18 bytes against netip.Prefix's 32, which
// counts in maps of a million routes.
type pkey struct {
	a    [16]byte
	bits uint8
	v6   bool
}

func keyOf(p netip.Prefix) pkey {
	return pkey{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (k pkey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.a)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// inst is one installed route: next hops as BGP gave them (nil for a route
// found in the kernel and not confirmed) and as the kernel holds them.
// Routes with the same next hops share one (see share).
type inst struct {
	nh     []netip.Addr
	kernel []Nexthop
	nhid   uint32 // the nexthop object the route is on (0: none)
	// backup is the route's backup next hop (PIC), interned; nil: none.
	backup *netip.Addr
}

// entry is what the worker knows of one prefix: the next hops BGP wants
// (nil: none) with their backup (interned; nil: none), and the route
// installed (nil: none).
type entry struct {
	want   []netip.Addr
	backup *netip.Addr
	have   *inst
}

// op is the write that installs what e wants.
func (e entry) op(k pkey) Op {
	op := Op{Prefix: k.prefix(), NextHops: e.want}
	if e.backup != nil {
		op.Backup = *e.backup
	}
	return op
}

// backupFor is the interned backup of op, as e wants it (nil when op
// has none).
func (e entry) backupFor(op Op) *netip.Addr {
	if e.backup != nil && *e.backup == op.Backup {
		return e.backup
	}
	return nil
}

// put stores e for k (removing the prefix when it is neither wanted nor
// installed) and keeps the counts. Called with stateMu held.
func (r *Routes) put(k pkey, e entry) {
	if old, ok := r.routes[k]; ok {
		r.count(old, -1)
	}
	if e.want == nil && e.have == nil {
		delete(r.routes, k)
		return
	}
	r.count(e, 1)
	r.routes[k] = e
}

func (r *Routes) count(e entry, d int) {
	if e.want != nil {
		r.nDesired += d
	}
	if e.have != nil {
		r.nInstalled += d
	}
}

func (r *Routes) setHave(k pkey, in *inst) {
	e := r.routes[k]
	if e.have != nil && e.have.nhid != 0 {
		if r.refs[e.have.nhid]--; r.refs[e.have.nhid] <= 0 {
			delete(r.refs, e.have.nhid)
			delete(r.failed, e.have.nhid)
			r.unused = true
		}
	}
	if in != nil && in.nhid != 0 {
		r.refs[in.nhid]++
	}
	e.have = in
	r.put(k, e)
}

// sharedKey identifies an installed state by the slices it holds: the
// next-hop sets from intern and the kernel next hops from the writer are
// shared slices, so a full table via one peer is one inst.
type sharedKey struct {
	nh     *netip.Addr
	nhLen  int
	kernel *Nexthop
	kLen   int
	nhid   uint32
	backup *netip.Addr
}

// maxShared bounds the table of shared installed states; past it the table
// starts over (states already handed out stay valid).
const maxShared = 1 << 16

func (r *Routes) share(nh []netip.Addr, kernel []Nexthop, nhid uint32, backup *netip.Addr) *inst {
	key := sharedKey{unsafe.SliceData(nh), len(nh), unsafe.SliceData(kernel), len(kernel), nhid, backup}
	if in, ok := r.shared[key]; ok {
		return in
	}
	if len(r.shared) >= maxShared {
		clear(r.shared)
	}
	in := &inst{nh: nh, kernel: kernel, nhid: nhid, backup: backup}
	r.shared[key] = in
	return in
}

// intern returns nh sorted and deduplicated, as a slice shared with the
// equal sets handed out lately (a full table via one peer is a million
// routes with one next-hop set). Called with mu held.
func (r *Routes) intern(nh []netip.Addr) []netip.Addr {
	for _, s := range r.recent {
		if s != nil && slices.Equal(s, nh) {
			return s
		}
	}
	n := normalise(nh)
	for _, s := range r.recent {
		if s != nil && slices.Equal(s, n) {
			return s
		}
	}
	r.recent[r.recentNext] = n
	r.recentNext = (r.recentNext + 1) % len(r.recent)
	return n
}

// normalise sorts and deduplicates next hops so that equal sets compare
// equal whatever order BGP listed them in.
func normalise(nh []netip.Addr) []netip.Addr {
	out := slices.Clone(nh)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
