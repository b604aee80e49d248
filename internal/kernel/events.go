// Package kernel follows the kernel's network state for the rest of the
// daemon: one rtnetlink subscription per network namespace, whose messages
// are read once, filtered on their raw header, decoded once and handed to
// every subscriber that asked for them. When the socket overruns (events
// were lost), every subscriber is told to re-read what it follows; this is
// the one place that detects it. It also holds the production code's one
// way of running something inside another network namespace.
package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Kind is a class of rtnetlink event; Kinds combine with |.
type Kind uint16

// The kinds of event a subscriber can ask for.
const (
	Link Kind = 1 << iota
	Addr
	Route
	Neigh
	Rule
	Nexthop
	Netconf
	// Lost is never asked for: every subscriber receives it when events
	// were lost (the socket overran, or the subscriber's own queue was
	// full). Whatever the subscriber derives from events must be read
	// again from the kernel.
	Lost
	// TC: qdiscs, tc filters and filter chains added, changed or removed
	// (RTNLGRP_TC). The event carries only its Type.
	TC

	// All is every kind of event.
	All = Link | Addr | Route | Neigh | Rule | Nexthop | Netconf | TC
)

// groups are the rtnetlink multicast groups that carry each kind.
var groups = []struct {
	kind  Kind
	group uint
}{
	{Link, unix.RTNLGRP_LINK},
	{Addr, unix.RTNLGRP_IPV4_IFADDR},
	{Addr, unix.RTNLGRP_IPV6_IFADDR},
	{Route, unix.RTNLGRP_IPV4_ROUTE},
	{Route, unix.RTNLGRP_IPV6_ROUTE},
	{Neigh, unix.RTNLGRP_NEIGH},
	{Rule, unix.RTNLGRP_IPV4_RULE},
	{Rule, unix.RTNLGRP_IPV6_RULE},
	{Nexthop, unix.RTNLGRP_NEXTHOP},
	{Netconf, unix.RTNLGRP_IPV4_NETCONF},
	{Netconf, unix.RTNLGRP_IPV6_NETCONF},
	{TC, unix.RTNLGRP_TC},
}

// kindOf maps a message type to its kind (0: not an event we follow).
func kindOf(typ uint16) Kind {
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		return Link
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		return Addr
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		return Route
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		return Neigh
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		return Rule
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		return Nexthop
	case unix.RTM_NEWNETCONF, unix.RTM_DELNETCONF:
		return Netconf
	case unix.RTM_NEWQDISC, unix.RTM_DELQDISC, unix.RTM_NEWTFILTER, unix.RTM_DELTFILTER,
		unix.RTM_NEWCHAIN, unix.RTM_DELCHAIN:
		return TC
	}
	return 0
}

// Event is one rtnetlink notification, decoded for its kind.
type Event struct {
	Kind Kind
	// Type is the message type (unix.RTM_NEWLINK, unix.RTM_DELROUTE, ...);
	// 0 for Lost.
	Type uint16
	// Link is set for Link events.
	Link netlink.Link
	// Route is set for Route events.
	Route RouteInfo
	// Neigh is set for Neigh events.
	Neigh *netlink.Neigh
	// Rule is set for Rule events.
	Rule RuleInfo
	// Nexthop is set for Nexthop events.
	Nexthop NexthopInfo
}

// NexthopInfo is what a nexthop object event (or dump) says about the
// object.
type NexthopInfo struct {
	ID uint32
	// Group: the object is a group (NHA_GROUP); the kernel never turns a
	// single object into a group or back under the same id.
	Group    bool
	Protocol uint8
}

// sizeofNhmsg is struct nhmsg's size.
const sizeofNhmsg = 8

// DecodeNexthop reads a nexthop message's body (struct nhmsg and
// attributes), from an event or a dump.
func DecodeNexthop(b []byte) (NexthopInfo, bool) {
	if len(b) < sizeofNhmsg {
		return NexthopInfo{}, false
	}
	n := NexthopInfo{Protocol: b[2]}
	attrs, err := nl.ParseRouteAttr(b[sizeofNhmsg:])
	if err != nil {
		return NexthopInfo{}, false
	}
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.NHA_ID:
			if len(a.Value) == 4 {
				n.ID = nl.NativeEndian().Uint32(a.Value)
			}
		case unix.NHA_GROUP:
			n.Group = true
		}
	}
	return n, n.ID != 0
}

// RouteInfo is what a route event (or a route dump) says about the route,
// without its next hops (which no subscriber needs): small enough to be
// passed by value, so that a table being written costs no allocation per
// route beyond parsing.
type RouteInfo struct {
	Family   uint8
	Dst      netip.Prefix
	Src      netip.Prefix // RTA_SRC with rtm_src_len (IPv6 source-specific routes)
	SrcLen   uint8
	Tos      uint8
	Protocol uint8
	Scope    uint8
	Type     uint8
	Table    uint32
	Priority uint32 // RTA_PRIORITY (the metric)
	// MTU is the RTAX_MTU metric (0: none).
	MTU uint32
	// Multipath: RTA_MULTIPATH, or a nexthop object (which may be a group).
	Multipath bool
	// NHID is the nexthop object the route uses (RTA_NH_ID; 0: none).
	NHID uint32
	// Realms: a realm (RTA_FLOW) on the route or on one of its paths.
	Realms bool
}

// DecodeRoute reads a route message's body (struct rtmsg and attributes),
// from an event or a dump.
func DecodeRoute(b []byte) (RouteInfo, bool) {
	if len(b) < unix.SizeofRtMsg {
		return RouteInfo{}, false
	}
	m := nl.DeserializeRtMsg(b)
	r := RouteInfo{Family: m.Family, SrcLen: m.Src_len, Tos: m.Tos, Protocol: m.Protocol,
		Scope: m.Scope, Type: m.Type, Table: uint32(m.Table)}
	var addr netip.Addr
	switch r.Family {
	case unix.AF_INET:
		addr = netip.IPv4Unspecified()
	case unix.AF_INET6:
		addr = netip.IPv6Unspecified()
	default:
		return RouteInfo{}, false
	}
	src := addr
	attrs, err := nl.ParseRouteAttr(b[m.Len():])
	if err != nil {
		return RouteInfo{}, false
	}
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.RTA_DST:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				addr = ip
			}
		case unix.RTA_SRC:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				src = ip
			}
		case unix.RTA_TABLE:
			if len(a.Value) == 4 {
				r.Table = nl.NativeEndian().Uint32(a.Value)
			}
		case unix.RTA_PRIORITY:
			if len(a.Value) == 4 {
				r.Priority = nl.NativeEndian().Uint32(a.Value)
			}
		case unix.RTA_METRICS:
			r.MTU = metricMTU(a.Value)
		case unix.RTA_FLOW:
			r.Realms = r.Realms || realm(a.Value)
		case unix.RTA_MULTIPATH:
			r.Multipath = true
			r.Realms = r.Realms || pathRealms(a.Value)
		case rtaNHID:
			r.Multipath = true
			if len(a.Value) == 4 {
				r.NHID = nl.NativeEndian().Uint32(a.Value)
			}
		}
	}
	if sp, err := src.Prefix(int(r.SrcLen)); err == nil {
		r.Src = sp
	}
	p, err := addr.Prefix(int(m.Dst_len))
	if err != nil {
		return RouteInfo{}, false
	}
	r.Dst = p
	return r, true
}

// realm reports whether an RTA_FLOW (or FRA_FLOW) value names a realm.
func realm(v []byte) bool { return len(v) >= 4 && nl.NativeEndian().Uint32(v) != 0 }

// metricMTU reads RTAX_MTU from an RTA_METRICS attribute's nested ones.
func metricMTU(b []byte) uint32 {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return 0
	}
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK == unix.RTAX_MTU && len(a.Value) == 4 {
			return nl.NativeEndian().Uint32(a.Value)
		}
	}
	return 0
}

// pathRealms reports whether any path (struct rtnexthop and its
// attributes) of an RTA_MULTIPATH carries a realm.
func pathRealms(b []byte) bool {
	for len(b) >= unix.SizeofRtNexthop {
		l := int(nl.DeserializeRtNexthop(b).RtNexthop.Len)
		if l < unix.SizeofRtNexthop || l > len(b) {
			return false
		}
		if attrs, err := nl.ParseRouteAttr(b[unix.SizeofRtNexthop:l]); err == nil {
			for _, a := range attrs {
				if a.Attr.Type&nl.NLA_TYPE_MASK == unix.RTA_FLOW && realm(a.Value) {
					return true
				}
			}
		}
		al := (l + unix.RTNH_ALIGNTO - 1) &^ (unix.RTNH_ALIGNTO - 1)
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	return false
}

// RuleInfo is what a policy rule event says about the rule.
type RuleInfo struct {
	Family   uint8
	Protocol uint8 // FRA_PROTOCOL: who made it (unix.RTPROT_KERNEL for the defaults)
	// Realms: the rule sets a realm (FRA_FLOW).
	Realms bool
}

// sizeofRuleHdr is struct fib_rule_hdr's size.
const sizeofRuleHdr = 12

// DecodeRule reads a rule message's body (struct fib_rule_hdr and
// attributes).
func DecodeRule(b []byte) (RuleInfo, bool) {
	if len(b) < sizeofRuleHdr {
		return RuleInfo{}, false
	}
	r := RuleInfo{Family: b[0]}
	attrs, err := nl.ParseRouteAttr(b[sizeofRuleHdr:])
	if err != nil {
		return RuleInfo{}, false
	}
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.FRA_PROTOCOL:
			if len(a.Value) >= 1 {
				r.Protocol = a.Value[0]
			}
		case nl.FRA_FLOW:
			r.Realms = r.Realms || realm(a.Value)
		}
	}
	return r, true
}

// Filter says what a subscriber receives.
type Filter struct {
	// Kinds are the kinds of event wanted (Lost always comes).
	Kinds Kind
	// IgnoreProtocol, when not 0, keeps route events of that protocol
	// away: a subscriber that does not care about xrouter's own routes
	// (protocol 186) is neither woken nor charged for a full table being
	// written. When every route subscriber ignores the same protocol, the
	// kernel drops those events before they reach the socket.
	IgnoreProtocol uint8
	// Queue is how many events may wait for the subscriber (default 1024).
	// When it is full, events are dropped for this subscriber alone and it
	// receives Lost once there is room again.
	Queue int
}

// Subscription is one subscriber's view of its namespace's events.
type Subscription struct {
	hub    *hub
	filter Filter
	ch     chan Event
	// lost: events were dropped for this subscriber and it has not been
	// told yet. Only the hub's reader touches it.
	lost   bool
	closed atomic.Bool
	err    error // set before ch is closed
}

// Events delivers the subscription's events. It is closed when the
// namespace's socket fails (Err says why); the subscriber then subscribes
// again and re-reads what it follows.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err is why Events was closed.
func (s *Subscription) Err() error { return s.err }

// Close ends the subscription; the namespace's socket closes with its last
// subscription.
func (s *Subscription) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.hub.remove(s)
}

// Subscribe subscribes to the events of the network namespace at nsPath
// (empty: the calling thread's). Every event the kernel sends after
// Subscribe returns reaches the subscription, so a subscriber reads the
// kernel's state after subscribing and then applies the events.
func Subscribe(nsPath string, f Filter) (*Subscription, error) {
	if f.Queue <= 0 {
		f.Queue = 1024
	}
	key, err := nsKey(nsPath)
	if err != nil {
		return nil, err
	}
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[key]
	if h == nil {
		if h, err = openHub(nsPath, key); err != nil {
			return nil, err
		}
		hubs[key] = h
	}
	s := &Subscription{hub: h, filter: f, ch: make(chan Event, f.Queue)}
	if err := h.add(s); err != nil {
		if len(h.subscribers()) == 0 {
			h.stop()
		}
		return nil, err
	}
	return s, nil
}

var (
	hubsMu sync.Mutex
	hubs   = map[[2]uint64]*hub{}
)

// nsKey identifies a network namespace by its inode.
func nsKey(nsPath string) ([2]uint64, error) {
	p := nsPath
	if p == "" {
		p = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return [2]uint64{}, fmt.Errorf("network namespace %s: %w", p, err)
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// hub is the one subscription of a namespace.
type hub struct {
	key  [2]uint64
	sock *nl.NetlinkSocket
	fd   int

	mu     sync.Mutex // serialises add/remove and the socket options
	joined Kind
	// filtered is the protocol the kernel drops route events of (0: none).
	filtered uint8
	subs     atomic.Pointer[[]*Subscription]

	quit chan struct{}
	done chan struct{}
}

// recvBuf is the socket's receive buffer: big enough for the route bursts
// of a BGP table being written; an overrun is still handled.
const recvBuf = 16 << 20

// pollTimeout bounds how long the reader takes to notice stop and to hand
// a pending Lost to a subscriber whose queue was full.
const pollTimeout = 200 * time.Millisecond

func openHub(nsPath string, key [2]uint64) (*hub, error) {
	var sock *nl.NetlinkSocket
	err := InNamespace(nsPath, func() error {
		var err error
		// No groups yet: each subscription joins those it needs.
		sock, err = nl.Subscribe(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to rtnetlink events: %w", err)
	}
	fd := sock.GetFd()
	// The reader blocks in recvfrom with a timeout rather than going
	// through the library's Receive, which allocates 64 KiB per call.
	if err := unix.SetNonblock(fd, false); err != nil {
		sock.Close()
		return nil, fmt.Errorf("rtnetlink events: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuf)
	}
	tv := unix.NsecToTimeval(pollTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		sock.Close()
		return nil, fmt.Errorf("rtnetlink events: receive timeout: %w", err)
	}
	h := &hub{key: key, sock: sock, fd: fd, quit: make(chan struct{}), done: make(chan struct{})}
	h.subs.Store(&[]*Subscription{})
	go h.run()
	return h, nil
}

func (h *hub) subscribers() []*Subscription { return *h.subs.Load() }

// add joins the groups s needs and adjusts the kernel-side filter before
// s starts receiving. Called with hubsMu held.
func (h *hub) add(s *Subscription) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range groups {
		if s.filter.Kinds&g.kind == 0 || h.joined&g.kind != 0 {
			continue
		}
		if err := unix.SetsockoptInt(h.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g.group)); err != nil {
			return fmt.Errorf("joining rtnetlink group %d: %w", g.group, err)
		}
	}
	for _, g := range groups {
		h.joined |= s.filter.Kinds & g.kind
	}
	next := append(append([]*Subscription{}, h.subscribers()...), s)
	if err := h.setFilter(next); err != nil {
		return err
	}
	h.subs.Store(&next)
	return nil
}

// remove drops s; the last subscriber closes the socket.
func (h *hub) remove(s *Subscription) {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h.mu.Lock()
	var next []*Subscription
	for _, o := range h.subscribers() {
		if o != s {
			next = append(next, o)
		}
	}
	h.subs.Store(&next)
	if len(next) > 0 {
		// A failure only misses an optimisation: the reader filters too.
		_ = h.setFilter(next)
	}
	h.mu.Unlock()
	if len(next) == 0 {
		h.stop()
	}
}

// stop ends the reader and closes the socket. Called with hubsMu held.
func (h *hub) stop() {
	if hubs[h.key] == h {
		delete(hubs, h.key)
	}
	select {
	case <-h.quit:
	default:
		close(h.quit)
	}
	// The socket is closed by the reader once it has left recvfrom, so
	// that the descriptor is never reused under it.
}

// setFilter makes the kernel drop route events of a protocol that every
// route subscriber ignores. Called with h.mu held.
func (h *hub) setFilter(subs []*Subscription) error {
	var proto uint8
	routeSubs := 0
	for _, s := range subs {
		if s.filter.Kinds&Route == 0 {
			continue
		}
		routeSubs++
		if routeSubs == 1 {
			proto = s.filter.IgnoreProtocol
		} else if s.filter.IgnoreProtocol != proto {
			proto = 0
		}
	}
	if proto == h.filtered {
		return nil
	}
	if proto == 0 {
		if err := unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing the rtnetlink socket filter: %w", err)
		}
	} else if err := attachProtocolFilter(h.fd, proto); err != nil {
		return err
	}
	h.filtered = proto
	return nil
}

// attachProtocolFilter makes the kernel drop RTM_NEWROUTE and RTM_DELROUTE
// notifications of protocol proto (each notification is one message in its
// own skb), before they are queued on the socket.
func attachProtocolFilter(fd int, proto uint8) error {
	// nlmsg_type is host-endian; classic BPF loads bytes, so pick the byte
	// that holds the (small) type value.
	typeOff := uint32(4)
	if nl.NativeEndian().Uint16([]byte{0, 1}) == 1 { // big endian
		typeOff = 5
	}
	const protoOff = unix.SizeofNlMsghdr + 5 // rtmsg.rtm_protocol
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: typeOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.RTM_NEWROUTE},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 2, K: unix.RTM_DELROUTE},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: protoOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: uint32(proto)},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // keep
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // drop
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: unsafe.SliceData(prog)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attaching the rtnetlink socket filter: %w", err)
	}
	return nil
}

// run reads the socket until stop, or until it fails: then every
// subscription's Events is closed with the error, and the namespace's next
// Subscribe opens a new socket.
func (h *hub) run() {
	defer close(h.done)
	defer h.sock.Close()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-h.quit:
			h.closeAll(nil)
			return
		default:
		}
		n, _, err := unix.Recvfrom(h.fd, buf, 0)
		switch {
		case err == nil:
			h.dispatch(buf[:n])
		case errors.Is(err, unix.ENOBUFS):
			for _, s := range h.subscribers() {
				s.lost = true
			}
			h.flushLost()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			h.flushLost()
		default:
			hubsMu.Lock()
			if hubs[h.key] == h {
				delete(hubs, h.key)
			}
			hubsMu.Unlock()
			h.closeAll(fmt.Errorf("reading rtnetlink events: %w", err))
			return
		}
	}
}

// errStopped is why a subscription's events end when its namespace's
// socket was stopped rather than failed.
var errStopped = errors.New("rtnetlink event subscription stopped")

func (h *hub) closeAll(err error) {
	if err == nil {
		err = errStopped
	}
	for _, s := range h.subscribers() {
		s.err = err
		close(s.ch)
	}
	h.subs.Store(&[]*Subscription{})
}

// flushLost tells the subscribers that lost events, as soon as their queue
// has room.
func (h *hub) flushLost() {
	for _, s := range h.subscribers() {
		if s.lost {
			select {
			case s.ch <- Event{Kind: Lost}:
				s.lost = false
			default:
			}
		}
	}
}

// dispatch hands the messages of one datagram to the subscribers that want
// them. The header (and a route's protocol) is looked at before anything is
// decoded, and each message is decoded at most once.
func (h *hub) dispatch(b []byte) {
	subs := h.subscribers()
	for len(b) >= unix.SizeofNlMsghdr {
		hdr := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
		l := int(hdr.Len)
		if l < unix.SizeofNlMsghdr || l > len(b) {
			// A garbled datagram: what it held is lost.
			for _, s := range subs {
				s.lost = true
			}
			h.flushLost()
			return
		}
		data := b[unix.SizeofNlMsghdr:l]
		if a := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1); a < len(b) {
			b = b[a:]
		} else {
			b = nil
		}
		kind := kindOf(hdr.Type)
		if kind == 0 {
			continue
		}
		var proto uint8
		if kind == Route && len(data) >= unix.SizeofRtMsg {
			proto = data[5] // rtmsg.rtm_protocol
		}
		decoded := false
		var ev Event
		for _, s := range subs {
			if s.filter.Kinds&kind == 0 || (proto != 0 && proto == s.filter.IgnoreProtocol) {
				continue
			}
			if !decoded {
				decoded = true
				var ok bool
				if ev, ok = decode(kind, hdr, data); !ok {
					// Unparsable: the subscribers cannot know what
					// it changed.
					for _, s := range subs {
						if s.filter.Kinds&kind != 0 {
							s.lost = true
						}
					}
					break
				}
			}
			h.send(s, ev)
		}
	}
	h.flushLost()
}

// send queues ev for s without ever blocking the reader: a subscriber that
// falls behind loses events and is told so.
func (h *hub) send(s *Subscription, ev Event) {
	if s.lost {
		return // Lost goes first, once there is room
	}
	select {
	case s.ch <- ev:
	default:
		s.lost = true
	}
}

// decode builds the typed event. Link and neighbour messages are copied
// first: the library's decoders keep slices of their input, and the
// reader's buffer is reused.
func decode(kind Kind, hdr *unix.NlMsghdr, data []byte) (Event, bool) {
	ev := Event{Kind: kind, Type: hdr.Type}
	switch kind {
	case Link:
		l, err := netlink.LinkDeserialize(hdr, bytes.Clone(data))
		if err != nil {
			return ev, false
		}
		ev.Link = l
	case Route:
		r, ok := DecodeRoute(data)
		if !ok {
			return ev, false
		}
		ev.Route = r
	case Rule:
		r, ok := DecodeRule(data)
		if !ok {
			return ev, false
		}
		ev.Rule = r
	case Nexthop:
		n, ok := DecodeNexthop(data)
		if !ok {
			return ev, false
		}
		ev.Nexthop = n
	case Neigh:
		if len(data) < unix.SizeofNdMsg {
			return ev, false
		}
		n, err := netlink.NeighDeserialize(bytes.Clone(data))
		if err != nil {
			return ev, false
		}
		ev.Neigh = n
	}
	return ev, true
}

// rtaNHID is RTA_NH_ID (a route on a nexthop object), which x/sys/unix
// does not name.
const rtaNHID = 30
