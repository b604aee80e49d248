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
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// Config configures the next-hop cache's invalidation.
type Config struct {
	// Enabled turns the cache on; off, the generation stays 0.
	Enabled bool
	// MaxAge is the period of the unconditional bump (PMTU exceptions
	// and anything else the kernel does not announce).
	MaxAge time.Duration
}

// Invalidator owns the cache's generation. It is the only writer of the
// xr_cache_gen map and of the multipath tries.
type Invalidator struct {
	cfg Config
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
// earlier run (even one killed) must not validate anything.
func NewInvalidator(cfg Config, dp *dataplane.Dataplane, log *slog.Logger) (*Invalidator, error) {
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
		fib: fibState{mtus: map[rtKey]uint32{}}}, nil
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

// groups are the rtnetlink multicast groups whose events can change a
// bpf_fib_lookup result.
var groups = []int{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_NEIGH,
	unix.RTNLGRP_IPV4_IFADDR,
	unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE,
	unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV4_RULE,
	unix.RTNLGRP_IPV6_RULE,
	unix.RTNLGRP_NEXTHOP,
	unix.RTNLGRP_IPV4_NETCONF,
	unix.RTNLGRP_IPV6_NETCONF,
}

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
	fd, err := subscribe()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Subscribed first, then read: nothing between the two is lost.
	if err := v.resync("start"); err != nil {
		return err
	}
	if v.cfg.Enabled {
		v.log.Info("next-hop cache enabled", "generation", v.State().Generation, "max_age", v.cfg.MaxAge)
	}

	events := make(chan error, 1)
	go func() { events <- v.readLoop(ctx, fd) }()
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

func subscribe() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink bind: %w", err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("joining rtnetlink group %d: %w", g, err)
		}
	}
	// Big enough for route bursts (a BGP table); an overrun is still
	// handled (ENOBUFS: bump and resync).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink receive timeout: %w", err)
	}
	return fd, nil
}

func (v *Invalidator) readLoop(ctx context.Context, fd int) error {
	buf := make([]byte, 1<<20)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		got := time.Now()
		reason, lost, err := v.batch(fd, buf, n, err)
		if err != nil {
			return err
		}
		if lost != "" {
			// Events were lost: nothing cached can be trusted, and
			// the tries may lack a multipath route. Off until
			// everything is read again.
			v.Stop()
			v.log.Warn("next-hop cache: events lost, re-reading the kernel's state", "why", lost)
			if err := v.resync(lost); err != nil {
				return err
			}
			continue
		}
		if reason != "" {
			v.Bump(reason)
			v.log.Debug("next-hop cache generation bumped", "reason", reason, "generation", v.State().Generation, "took", time.Since(got))
		}
	}
	return nil
}

// maxBatch bounds how many queued messages one bump covers.
const maxBatch = 256

// batch applies the message just received and whatever else is already
// queued (up to maxBatch), so that a burst (a BGP table being installed)
// costs one bump rather than one per route. It returns why to bump, or
// why events were lost.
func (v *Invalidator) batch(fd int, buf []byte, n int, err error) (reason, lost string, _ error) {
	for i := 0; ; i++ {
		switch {
		case errors.Is(err, unix.ENOBUFS):
			return "", "netlink overrun", nil
		case err != nil:
			return "", "", fmt.Errorf("reading netlink events: %w", err)
		}
		msgs, perr := syscall.ParseNetlinkMessage(buf[:n])
		if perr != nil {
			return "", "unparsable netlink message", nil
		}
		if r := v.apply(msgs); r != "" && reason == "" {
			reason = r
		}
		if i == maxBatch {
			return reason, "", nil
		}
		n, _, err = unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return reason, "", nil
		}
	}
}

// apply records what the messages change (multipath tries, bypass flags,
// neighbour table) and returns why they invalidate the cache, or "".
// The rules are re-read once however many rule events the messages hold.
func (v *Invalidator) apply(msgs []syscall.NetlinkMessage) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	reason, rules := "", false
	for _, m := range msgs {
		r := v.event(m)
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

// event returns why m invalidates the cache, or "" when it does not.
func (v *Invalidator) event(m syscall.NetlinkMessage) string {
	switch m.Header.Type {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if r, ok := parseRoute(m.Data); ok {
			if m.Header.Type == unix.RTM_NEWROUTE {
				v.noteRoute(r)
			}
			v.noteRouteMTU(r, m.Header.Type == unix.RTM_DELROUTE)
		}
		return "route"
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		return v.neighEvent(m)
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		return "link"
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		return "address"
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		return "rule" // apply re-reads the rules
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		return "nexthop"
	case unix.RTM_NEWNETCONF, unix.RTM_DELNETCONF:
		return "netconf"
	case unix.NLMSG_ERROR, unix.NLMSG_DONE, unix.NLMSG_NOOP:
		return ""
	}
	return "unknown event"
}

// route is what the cache needs to know about one kernel route.
type route struct {
	family    uint8
	dst       netip.Prefix
	tos       uint8
	srcLen    uint8
	multipath bool // RTA_MULTIPATH or a nexthop object (which may be a group)
	table     uint32
	src       netip.Prefix
	priority  uint32
	mtu       uint32 // RTAX_MTU of RTA_METRICS, 0 for none
}

const rtaNHID = 30 // RTA_NH_ID

func parseRoute(b []byte) (route, bool) {
	if len(b) < unix.SizeofRtMsg {
		return route{}, false
	}
	// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	r := route{family: b[0], tos: b[3], srcLen: b[2], table: uint32(b[4])}
	dstLen := int(b[1])
	attrs, err := parseAttrs(b[unix.SizeofRtMsg:])
	if err != nil {
		return route{}, false
	}
	var addr, src netip.Addr
	switch r.family {
	case unix.AF_INET:
		addr = netip.IPv4Unspecified()
	case unix.AF_INET6:
		addr = netip.IPv6Unspecified()
	default:
		return route{}, false
	}
	src = addr
	for _, a := range attrs {
		switch a.typ {
		case unix.RTA_DST:
			if ip, ok := netip.AddrFromSlice(a.val); ok {
				addr = ip
			}
		case unix.RTA_SRC:
			if ip, ok := netip.AddrFromSlice(a.val); ok {
				src = ip
			}
		case unix.RTA_MULTIPATH, rtaNHID:
			r.multipath = true
		case unix.RTA_TABLE:
			if len(a.val) == 4 {
				r.table = binary.NativeEndian.Uint32(a.val)
			}
		case unix.RTA_PRIORITY:
			if len(a.val) == 4 {
				r.priority = binary.NativeEndian.Uint32(a.val)
			}
		case unix.RTA_METRICS:
			r.mtu = metricMTU(a.val)
		}
	}
	if sp, err := src.Prefix(int(r.srcLen)); err == nil {
		r.src = sp
	}
	p, err := addr.Prefix(dstLen)
	if err != nil {
		return route{}, false
	}
	r.dst = p
	return r, true
}

// noteRoute records what a new route means for the cache. Called with
// v.mu held, before the bump.
func (v *Invalidator) noteRoute(r route) {
	if r.multipath {
		if err := v.dp.AddMultipath(r.dst); err != nil {
			// Without the prefix in the trie the cache could pin
			// flows of this route: stop caching the family.
			v.log.Error("next-hop cache: recording a multipath route failed; bypassing the family", "prefix", r.dst, "err", err)
			if r.family == unix.AF_INET {
				v.tosRoutes4 = true
			} else {
				v.srcRoutes6 = true
			}
		}
	}
	if r.family == unix.AF_INET && r.tos != 0 {
		v.tosRoutes4 = true
	}
	if r.family == unix.AF_INET6 && r.srcLen != 0 {
		v.srcRoutes6 = true
	}
}

type attr struct {
	typ uint16
	val []byte
}

func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofRtAttr || l > len(b) {
			return nil, errors.New("bad attribute length")
		}
		out = append(out, attr{typ: t, val: b[unix.SizeofRtAttr:l]})
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out, nil
}

// neighEvent bumps when an entry's link-layer address or its NUD_VALID
// membership changes: REACHABLE, STALE, DELAY and PROBE with the same
// address give bpf_fib_lookup the same answer.
func (v *Invalidator) neighEvent(m syscall.NetlinkMessage) string {
	k, val, ok := parseNeigh(m.Data)
	if !ok {
		return "neighbour"
	}
	if !k.addr.IsValid() {
		return "" // bridge FDB and the like: not an IP neighbour
	}
	old, known := v.neigh[k]
	if m.Header.Type == unix.RTM_DELNEIGH {
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

func parseNeigh(b []byte) (neighKey, neighVal, bool) {
	if len(b) < unix.SizeofNdMsg {
		return neighKey{}, neighVal{}, false
	}
	family := b[0]
	k := neighKey{ifindex: int32(binary.NativeEndian.Uint32(b[4:]))}
	state := binary.NativeEndian.Uint16(b[8:])
	val := neighVal{valid: state&nudValid != 0}
	attrs, err := parseAttrs(b[unix.SizeofNdMsg:])
	if err != nil {
		return neighKey{}, neighVal{}, false
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return k, val, true
	}
	for _, a := range attrs {
		switch a.typ {
		case unix.NDA_DST:
			if ip, ok := netip.AddrFromSlice(a.val); ok {
				k.addr = ip
			}
		case unix.NDA_LLADDR:
			val.lladdr = string(bytes.Clone(a.val))
		}
	}
	return k, val, true
}

// resync re-reads everything the event stream maintains, then bumps.
func (v *Invalidator) resync(reason string) error {
	routes, err := dumpRetry(unix.RTM_GETROUTE, make([]byte, unix.SizeofRtMsg))
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	neighs, err := dumpRetry(unix.RTM_GETNEIGH, make([]byte, unix.SizeofNdMsg))
	if err != nil {
		return fmt.Errorf("listing neighbours: %w", err)
	}
	var mpath []netip.Prefix
	tos4, src6 := false, false
	for _, m := range routes {
		r, ok := parseRoute(m.Data)
		if !ok {
			continue
		}
		if r.multipath {
			mpath = append(mpath, r.dst)
		}
		tos4 = tos4 || (r.family == unix.AF_INET && r.tos != 0)
		src6 = src6 || (r.family == unix.AF_INET6 && r.srcLen != 0)
	}
	nt := map[neighKey]neighVal{}
	for _, m := range neighs {
		if k, val, ok := parseNeigh(m.Data); ok && k.addr.IsValid() {
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
	msgs, err := dumpRetry(unix.RTM_GETRULE, make([]byte, 12))
	if err != nil {
		v.log.Warn("next-hop cache: listing rules failed; bypassing the cache", "err", err)
		v.customRules4, v.customRules6 = true, true
		return
	}
	v.customRules4, v.customRules6 = !defaultRules(msgs, unix.AF_INET), !defaultRules(msgs, unix.AF_INET6)
}

// defaultRules reports whether the rules of family are exactly the kernel's
// default set.
func defaultRules(msgs []syscall.NetlinkMessage, family uint8) bool {
	want := map[[2]uint32]bool{{0, unix.RT_TABLE_LOCAL}: true, {32766, unix.RT_TABLE_MAIN}: true}
	if family == unix.AF_INET {
		want[[2]uint32{32767, unix.RT_TABLE_DEFAULT}] = true
	}
	seen := 0
	for _, m := range msgs {
		b := m.Data
		if len(b) < 12 || b[0] != family {
			continue
		}
		// fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2,
		// action, flags.
		if b[1] != 0 || b[2] != 0 || b[3] != 0 || b[7] != 1 /* FR_ACT_TO_TBL */ || binary.NativeEndian.Uint32(b[8:]) != 0 {
			return false
		}
		attrs, err := parseAttrs(b[12:])
		if err != nil {
			return false
		}
		table, prio := uint32(b[4]), uint32(0)
		for _, a := range attrs {
			switch a.typ {
			case unix.FRA_TABLE:
				if len(a.val) == 4 {
					table = binary.NativeEndian.Uint32(a.val)
				}
			case unix.FRA_PRIORITY:
				if len(a.val) == 4 {
					prio = binary.NativeEndian.Uint32(a.val)
				}
			case unix.FRA_PROTOCOL:
			case unix.FRA_SUPPRESS_PREFIXLEN, unix.FRA_SUPPRESS_IFGROUP:
				// Always reported; -1 means unset.
				if len(a.val) != 4 || binary.NativeEndian.Uint32(a.val) != 0xffffffff {
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

var errDumpInterrupted = errors.New("dump interrupted by a change")

// dumpRetry is dump, retried while changes interrupt it.
func dumpRetry(typ uint16, hdr []byte) ([]syscall.NetlinkMessage, error) {
	for i := 0; ; i++ {
		msgs, err := dump(typ, hdr)
		if !errors.Is(err, errDumpInterrupted) || i == 9 {
			return msgs, err
		}
	}
}

// dump runs one rtnetlink dump request on a fresh socket.
func dump(typ uint16, hdr []byte) ([]syscall.NetlinkMessage, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	req := make([]byte, unix.SizeofNlMsghdr+len(hdr))
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	copy(req[unix.SizeofNlMsghdr:], hdr)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
					return nil, errDumpInterrupted
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			// Copy: buf is reused.
			m.Data = bytes.Clone(m.Data)
			out = append(out, m)
		}
	}
}
