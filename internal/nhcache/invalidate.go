// Package nhcache is the user-space side of the fast path's next-hop cache:
// its generation, lease and bypass flags, and the multipath tries; and,
// from the same route events, what kernel forwarding adds to a lookup
// (route mtu metrics, hash policy, PMTU exceptions: fibstate.go), which the
// program needs whether or not the cache is enabled.
//
// Invalidation: the cache answers for bpf_fib_lookup, so every kernel
// change that could alter a lookup's result must move the cache's
// generation before the next packet relies on it:
// routes, neighbours, links (state, MTU, address), addresses, policy rules,
// nexthop objects, forwarding sysctls (netconf), and our own devmap. Learned
// PMTU exceptions send no event, hence the periodic bump (max_age). A lost
// event (socket overrun) bumps and re-reads everything.
package nhcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/kernel"
)

// Invalidator owns the cache's generation. It is the only writer of the
// xr_cache_gen map and of the multipath tries.
type Invalidator struct {
	cfg dataplane.CacheSettings
	dp  *dataplane.Dataplane
	log *slog.Logger

	mu    sync.Mutex
	state dataplane.CacheState
	// ready: the tries, flags and neighbours were read after subscribing;
	// until then (and after Stop) bumps leave the cache off.
	ready bool
	// Why lookups may depend on more than the destination, per family.
	customRules4, customRules6 bool
	tosRoutes4, srcRoutes6     bool
	neigh                      map[neighKey]neighVal
	fib                        fibState
	// singleNH are the nexthop objects known not to be groups: a route
	// on one has one next hop and is cached like a plain route. A route
	// on an object not known here counts as multipath.
	singleNH map[uint32]bool
}

type neighKey struct {
	ifindex int32
	addr    netip.Addr
}

type neighVal struct {
	lladdr string
	valid  bool
}

// nudValid is NUD_VALID: the states in which bpf_fib_lookup uses an entry.
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE | unix.NUD_STALE | unix.NUD_DELAY

// NewInvalidator takes over the cache's control block and turns the cache
// off until Start has read the kernel's state: a control block left by an
// earlier run (even one killed) must not validate anything. Of cfg it
// reads Enabled (off, the generation stays 0) and MaxAge, the period of the
// unconditional bump (PMTU exceptions and anything else the kernel does
// not announce; 0: 2 s).
func NewInvalidator(cfg dataplane.CacheSettings, dp *dataplane.Dataplane, log *slog.Logger) (*Invalidator, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 2 * time.Second
	}
	st, err := dp.CacheState()
	if err != nil {
		return nil, fmt.Errorf("next-hop cache: %w", err)
	}
	// Generations never repeat: entries of an older program may still sit
	// in its cache while it is being replaced.
	if st.Generation > st.Bumps {
		st.Bumps = st.Generation
	}
	st.Generation = 0
	st.LeaseNs = 0
	if err := dp.SetCacheState(st); err != nil {
		return nil, fmt.Errorf("next-hop cache: %w", err)
	}
	return &Invalidator{cfg: cfg, dp: dp, log: log, state: st, neigh: map[neighKey]neighVal{},
		fib: fibState{mtus: map[rtKey]uint32{}}, singleNH: map[uint32]bool{}}, nil
}

// State returns the control block as last written.
func (v *Invalidator) State() dataplane.CacheState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

// Lease: the program trusts the cache only until leaseTime after the last
// renewal, which happens every leaseRenew, so that a killed daemon (which
// can no longer bump) leaves at most leaseTime of stale answers.
const (
	leaseTime  = time.Second
	leaseRenew = 250 * time.Millisecond
)

func (v *Invalidator) lease() uint64 {
	return dataplane.MonotonicCoarseNs() + uint64(leaseTime)
}

// renew extends the lease without invalidating anything.
func (v *Invalidator) renew() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.ready || v.state.Generation == 0 {
		return
	}
	st := v.state
	st.LeaseNs = v.lease()
	if err := v.dp.SetCacheState(st); err != nil {
		v.log.Warn("next-hop cache: renewing the lease", "err", err)
		return
	}
	v.state = st
}

// Bump invalidates every cache entry now.
func (v *Invalidator) Bump(reason string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.bumpLocked(reason)
}

func (v *Invalidator) bumpLocked(reason string) {
	if !v.cfg.Enabled || !v.ready {
		return
	}
	st := v.state
	st.Bumps++
	st.Generation = st.Bumps
	st.LeaseNs = v.lease()
	st.Bypass4 = v.customRules4 || v.tosRoutes4
	st.Bypass6 = v.customRules6 || v.srcRoutes6
	if err := v.dp.SetCacheState(st); err != nil {
		// The old generation may be stale now: turn the cache off
		// rather than trust it.
		v.log.Error("next-hop cache: bumping the generation failed, turning the cache off", "reason", reason, "err", err)
		st.Generation = 0
		if err2 := v.dp.SetCacheState(st); err2 != nil {
			v.log.Error("next-hop cache: cannot turn the cache off", "err", err2)
		}
		v.state = st
		return
	}
	if st.Bypass4 != v.state.Bypass4 || st.Bypass6 != v.state.Bypass6 {
		v.log.Info("next-hop cache bypass changed", "ipv4", st.Bypass4, "ipv6", st.Bypass6,
			"custom_rules_v4", v.customRules4, "custom_rules_v6", v.customRules6, "tos_routes_v4", v.tosRoutes4, "src_routes_v6", v.srcRoutes6)
	}
	v.state = st
}

// Stop turns the cache off (nobody will invalidate it once we are gone);
// only a full re-read turns it on again.
func (v *Invalidator) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ready = false
	v.state.Generation = 0
	v.state.LeaseNs = 0
	if err := v.dp.SetCacheState(v.state); err != nil {
		v.log.Warn("next-hop cache: turning off", "err", err)
	}
}

// kinds are the rtnetlink events that can change a bpf_fib_lookup result.
const kinds = kernel.Link | kernel.Neigh | kernel.Addr | kernel.Route | kernel.Rule | kernel.Nexthop | kernel.Netconf

// eventQueue is how many events may wait for the invalidator. It follows
// every route, xrouter's own too (a BGP table being written), and batches
// them; together with the hub's 16 MiB socket buffer this is more room than
// the invalidator's own socket had. A full queue counts as lost events.
const eventQueue = 1 << 16

// Run subscribes, reads the kernel's state, enables the cache and then
// follows events until ctx ends. With the cache disabled the generation
// stays 0, but the events still keep route MTUs, multipath prefixes and
// the forwarding sysctls in the data plane. The cache is off again when
// Run returns.
func (v *Invalidator) Run(ctx context.Context) error {
	if !v.cfg.Enabled {
		v.log.Info("next-hop cache disabled (dataplane.cache.enabled)")
	}
	defer v.Stop()
	for {
		err := v.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Without a subscription nothing can be trusted.
		v.Stop()
		v.log.Warn("next-hop cache: event subscription failed; cache off until it is back", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (v *Invalidator) follow(ctx context.Context) error {
	sub, err := kernel.Subscribe("", kernel.Filter{Kinds: kinds, Queue: eventQueue})
	if err != nil {
		return fmt.Errorf("subscribing to rtnetlink events: %w", err)
	}
	defer sub.Close()
	// Subscribed first, then read: nothing between the two is lost.
	if err := v.resync("start"); err != nil {
		return err
	}
	if v.cfg.Enabled {
		v.log.Info("next-hop cache enabled", "generation", v.State().Generation, "max_age", v.cfg.MaxAge)
	}

	events := make(chan error, 1)
	go func() { events <- v.readLoop(ctx, sub.Events(), sub.Err) }()
	tick := time.NewTicker(v.cfg.MaxAge)
	defer tick.Stop()
	renew := time.NewTicker(leaseRenew)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			<-events
			return nil
		case err := <-events:
			return err
		case <-tick.C:
			// Sysctls send no event: re-read them as often.
			v.refreshFIB()
			v.Bump("max_age")
		case <-renew.C:
			v.renew()
		}
	}
}

// readLoop applies events until ctx ends or the subscription ends (errOf
// then says why).
func (v *Invalidator) readLoop(ctx context.Context, events <-chan kernel.Event, errOf func() error) error {
	var buf []kernel.Event
	for {
		var ev kernel.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-events:
		}
		if !ok {
			return fmt.Errorf("reading netlink events: %w", errOf())
		}
		got := time.Now()
		buf = batch(append(buf[:0], ev), events)
		if lost(buf) {
			// Events were lost: nothing cached can be trusted, and
			// the tries may lack a multipath route. Off until
			// everything is read again.
			v.Stop()
			v.log.Warn("next-hop cache: events lost, re-reading the kernel's state", "why", "netlink overrun, full queue or unparsable message")
			if err := v.resync("events lost"); err != nil {
				return err
			}
			continue
		}
		if reason := v.apply(buf); reason != "" {
			v.Bump(reason)
			v.log.Debug("next-hop cache generation bumped", "reason", reason, "generation", v.State().Generation, "took", time.Since(got))
		}
	}
}

// maxBatch bounds how many queued messages one bump covers.
const maxBatch = 256

// batch adds to evs whatever else is already queued (up to maxBatch), so
// that a burst (a BGP table being installed) costs one bump rather than
// one per route.
func batch(evs []kernel.Event, events <-chan kernel.Event) []kernel.Event {
	for len(evs) <= maxBatch {
		select {
		case ev, ok := <-events:
			if !ok {
				return evs // the next receive reports why
			}
			evs = append(evs, ev)
		default:
			return evs
		}
	}
	return evs
}

// lost reports whether the hub lost events (a socket overrun, a full
// queue or an unparsable message) among evs.
func lost(evs []kernel.Event) bool {
	for _, ev := range evs {
		if ev.Kind == kernel.Lost {
			return true
		}
	}
	return false
}

// apply records what the events change (multipath tries, bypass flags,
// neighbour table) and returns why they invalidate the cache, or "".
// The rules are re-read once however many rule events there are.
func (v *Invalidator) apply(evs []kernel.Event) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	reason, rules := "", false
	for _, ev := range evs {
		r := v.event(ev)
		rules = rules || r == "rule"
		if r != "" && reason == "" {
			reason = r
		}
	}
	if rules {
		v.readRules()
	}
	if v.fib.reread {
		if err := v.rereadMTUs(); err != nil {
			// The old entries stay: more packets go to the kernel.
			v.log.Warn("route MTUs: re-reading routes", "err", err)
		}
	}
	if err := v.writeFIB(false); err != nil {
		v.log.Error("writing route MTUs to the data plane", "err", err)
	}
	return reason
}

// refreshFIB re-reads the forwarding sysctls and writes what changed.
func (v *Invalidator) refreshFIB() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.writeFIB(false); err != nil {
		v.log.Error("writing forwarding settings to the data plane", "err", err)
	}
}

// event returns why ev invalidates the cache, or "" when it does not.
func (v *Invalidator) event(ev kernel.Event) string {
	switch ev.Kind {
	case kernel.Route:
		if ev.Type == unix.RTM_NEWROUTE {
			v.noteRoute(ev.Route)
		}
		v.noteRouteMTU(ev.Route, ev.Type == unix.RTM_DELROUTE)
		return "route"
	case kernel.Neigh:
		return v.neighEvent(ev.Type, ev.Neigh)
	case kernel.Link:
		return "link"
	case kernel.Addr:
		return "address"
	case kernel.Rule:
		return "rule" // apply re-reads the rules
	case kernel.Nexthop:
		if ev.Type == unix.RTM_DELNEXTHOP || ev.Nexthop.Group {
			delete(v.singleNH, ev.Nexthop.ID)
		} else {
			v.singleNH[ev.Nexthop.ID] = true
		}
		return "nexthop"
	case kernel.Netconf:
		return "netconf"
	}
	return "unknown event"
}

// noteRoute records what a new route means for the cache. Called with
// v.mu held, before the bump.
func (v *Invalidator) noteRoute(r kernel.RouteInfo) {
	if multipath(r, v.singleNH) {
		if err := v.dp.AddMultipath(r.Dst); err != nil {
			// Without the prefix in the trie the cache could pin
			// flows of this route: stop caching the family.
			v.log.Error("next-hop cache: recording a multipath route failed; bypassing the family", "prefix", r.Dst, "err", err)
			if r.Family == unix.AF_INET {
				v.tosRoutes4 = true
			} else {
				v.srcRoutes6 = true
			}
		}
	}
	if r.Family == unix.AF_INET && r.Tos != 0 {
		v.tosRoutes4 = true
	}
	if r.Family == unix.AF_INET6 && r.SrcLen != 0 {
		v.srcRoutes6 = true
	}
}

// neighEvent bumps when an entry's link-layer address or its NUD_VALID
// membership changes: REACHABLE, STALE, DELAY and PROBE with the same
// address give bpf_fib_lookup the same answer.
func (v *Invalidator) neighEvent(typ uint16, n *netlink.Neigh) string {
	k, val := neighEntry(n)
	if !k.addr.IsValid() {
		return "" // bridge FDB and the like: not an IP neighbour
	}
	old, known := v.neigh[k]
	if typ == unix.RTM_DELNEIGH {
		delete(v.neigh, k)
		if known && !old.valid {
			return ""
		}
		return "neighbour deleted"
	}
	v.neigh[k] = val
	if known && old == val {
		return ""
	}
	if !known && !val.valid {
		return "" // a new entry being resolved answers NO_NEIGH either way
	}
	return "neighbour"
}

// neighEntry is what the cache keeps of a neighbour entry; the address is
// not valid for entries that are not IP neighbours.
func neighEntry(n *netlink.Neigh) (neighKey, neighVal) {
	k := neighKey{ifindex: int32(n.LinkIndex)}
	// A 4-byte link-layer address (ipip, gre) is decoded as LLIPAddr.
	lladdr := []byte(n.HardwareAddr)
	if len(lladdr) == 0 {
		lladdr = n.LLIPAddr
	}
	val := neighVal{lladdr: string(lladdr), valid: n.State&nudValid != 0}
	if n.Family != unix.AF_INET && n.Family != unix.AF_INET6 {
		return k, val
	}
	if ip, ok := netip.AddrFromSlice(n.IP); ok {
		k.addr = ip
	}
	return k, val
}

// resync re-reads everything the event stream maintains, then bumps.
func (v *Invalidator) resync(reason string) error {
	// Objects first: a route on an object made after this dump counts
	// as multipath (safe, only slower) until the next re-read.
	singles, err := listSingleNexthops()
	if err != nil {
		return err
	}
	routes, err := listRoutes()
	if err != nil {
		return err
	}
	neighs, err := listNeighs()
	if err != nil {
		return err
	}
	var mpath []netip.Prefix
	tos4, src6 := false, false
	for _, r := range routes {
		if multipath(r, singles) {
			mpath = append(mpath, r.Dst)
		}
		tos4 = tos4 || (r.Family == unix.AF_INET && r.Tos != 0)
		src6 = src6 || (r.Family == unix.AF_INET6 && r.SrcLen != 0)
	}
	nt := map[neighKey]neighVal{}
	for i := range neighs {
		if k, val := neighEntry(&neighs[i]); k.addr.IsValid() {
			nt[k] = val
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.dp.SetMultipath(mpath); err != nil {
		return fmt.Errorf("next-hop cache: %w", err)
	}
	v.fib.mtus = mtusFrom(routes)
	v.fib.reread = false
	if err := v.writeFIB(true); err != nil {
		return err
	}
	v.tosRoutes4, v.srcRoutes6 = tos4, src6
	v.neigh = nt
	v.singleNH = singles
	v.readRules()
	v.ready = true
	v.bumpLocked(reason)
	return nil
}

// readRules decides per family whether the policy rules are the kernel's
// defaults (local, main, default: the lookup depends on the destination
// and the ingress only). Anything else, or a failure to tell, bypasses the
// cache for the family. Called with v.mu held.
func (v *Invalidator) readRules() {
	msgs, err := dump(unix.RTM_GETRULE, unix.RTM_NEWRULE)
	if err != nil {
		v.log.Warn("next-hop cache: listing rules failed; bypassing the cache", "err", err)
		v.customRules4, v.customRules6 = true, true
		return
	}
	v.customRules4, v.customRules6 = !defaultRules(msgs, unix.AF_INET), !defaultRules(msgs, unix.AF_INET6)
}

// defaultRules reports whether the rules of family (struct fib_rule_hdr
// and attributes, as dumped) are exactly the kernel's default set. Read
// from the raw messages rather than netlink.RuleList: any attribute not
// known here (a selector newer than the library) must count as custom.
func defaultRules(msgs [][]byte, family uint8) bool {
	want := map[[2]uint32]bool{{0, unix.RT_TABLE_LOCAL}: true, {32766, unix.RT_TABLE_MAIN}: true}
	if family == unix.AF_INET {
		want[[2]uint32{32767, unix.RT_TABLE_DEFAULT}] = true
	}
	seen := 0
	for _, b := range msgs {
		if len(b) < 12 || b[0] != family {
			continue
		}
		// fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2,
		// action, flags.
		if b[1] != 0 || b[2] != 0 || b[3] != 0 || b[7] != 1 /* FR_ACT_TO_TBL */ || binary.NativeEndian.Uint32(b[8:]) != 0 {
			return false
		}
		attrs, err := nl.ParseRouteAttr(b[12:])
		if err != nil {
			return false
		}
		table, prio := uint32(b[4]), uint32(0)
		for _, a := range attrs {
			switch a.Attr.Type & nl.NLA_TYPE_MASK {
			case unix.FRA_TABLE:
				if len(a.Value) == 4 {
					table = binary.NativeEndian.Uint32(a.Value)
				}
			case unix.FRA_PRIORITY:
				if len(a.Value) == 4 {
					prio = binary.NativeEndian.Uint32(a.Value)
				}
			case unix.FRA_PROTOCOL:
			case unix.FRA_SUPPRESS_PREFIXLEN, unix.FRA_SUPPRESS_IFGROUP:
				// Always reported; -1 means unset.
				if len(a.Value) != 4 || binary.NativeEndian.Uint32(a.Value) != 0xffffffff {
					return false
				}
			default:
				return false // a selector, goto, suppress_*, ...
			}
		}
		if !want[[2]uint32{prio, table}] {
			return false
		}
		seen++
	}
	return seen == len(want)
}

// dumpAttempts bounds how often a dump interrupted by changes is retried.
const dumpAttempts = 10

// dump lists an rtnetlink table (family 0: every family) in the calling
// thread's namespace, retried while changes interrupt the dump.
func dump(typ, reply uint16) ([][]byte, error) {
	var msgs [][]byte
	err := dumpIter(typ, reply, func() { msgs = msgs[:0] }, func(b []byte) { msgs = append(msgs, b) })
	return msgs, err
}

// dumpIter is dump calling f for each message; reset starts again after
// an interrupted attempt.
func dumpIter(typ, reply uint16, reset func(), f func([]byte)) error {
	var err error
	for range dumpAttempts {
		reset()
		req := nl.NewNetlinkRequest(int(typ), unix.NLM_F_DUMP)
		req.AddData(&nl.RtMsg{}) // rtmsg, fib_rule_hdr and ndmsg are all 12 bytes
		err = req.ExecuteIter(unix.NETLINK_ROUTE, reply, func(b []byte) bool {
			f(b)
			return true
		})
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	return err
}

// listRoutes reads every route of every table and family.
func listRoutes() ([]kernel.RouteInfo, error) {
	var out []kernel.RouteInfo
	err := dumpIter(unix.RTM_GETROUTE, unix.RTM_NEWROUTE, func() { out = out[:0] }, func(b []byte) {
		if r, ok := kernel.DecodeRoute(b); ok {
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	return out, nil
}

// multipath reports whether the kernel may pick one of several next hops
// for a route: RTA_MULTIPATH, or a nexthop object not known to be single.
func multipath(r kernel.RouteInfo, singleNH map[uint32]bool) bool {
	if r.NHID != 0 && singleNH[r.NHID] {
		return false
	}
	return r.Multipath
}

// listSingleNexthops reads the ids of the nexthop objects that are not
// groups. A kernel without nexthop objects has none.
func listSingleNexthops() (map[uint32]bool, error) {
	out := map[uint32]bool{}
	var err error
	for range dumpAttempts {
		clear(out)
		req := nl.NewNetlinkRequest(unix.RTM_GETNEXTHOP, unix.NLM_F_DUMP)
		req.AddData(nhmsg{}) // AF_UNSPEC: every family
		err = req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWNEXTHOP, func(b []byte) bool {
			if n, ok := kernel.DecodeNexthop(b); ok && !n.Group {
				out[n.ID] = true
			}
			return true
		})
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nexthop objects: %w", err)
	}
	return out, nil
}

// nhmsg is a zeroed struct nhmsg, the header of a nexthop dump request.
type nhmsg struct{}

func (nhmsg) Len() int          { return 8 }
func (nhmsg) Serialize() []byte { return make([]byte, 8) }

// listNeighs reads every neighbour entry.
func listNeighs() ([]netlink.Neigh, error) {
	var ns []netlink.Neigh
	var err error
	for range dumpAttempts {
		ns, err = netlink.NeighList(0, 0)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing neighbours: %w", err)
	}
	return ns, nil
}
