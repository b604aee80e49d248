package bgp

import (
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// picSink records what the PIC table hands it.
type picSink struct {
	routes    map[netip.Prefix]string // "nh" or "nh>backup"
	failovers []string
}

func (s *picSink) Set(p netip.Prefix, nh []netip.Addr) { s.routes[p] = nh[0].String() }
func (s *picSink) Delete(p netip.Prefix)               { delete(s.routes, p) }
func (s *picSink) Sweep()                              {}
func (s *picSink) Protects() bool                      { return true }
func (s *picSink) SetProtected(p netip.Prefix, nh, b netip.Addr) {
	s.routes[p] = nh.String() + ">" + b.String()
}
func (s *picSink) Failover(nh netip.Addr, repoint bool) {
	s.failovers = append(s.failovers, nh.String()+map[bool]string{true: " repoint", false: " retire"}[repoint])
}

// adjPath is a received unicast path from neighbour nb (withdrawn: nh
// empty).
func adjPath(t *testing.T, nb, prefix, nh string) *api.Path {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	path := &api.Path{Family: familyAPI(FamilyIPv4Unicast), Nlri: nlri, NeighborIp: nb, IsWithdraw: nh == ""}
	if nh != "" {
		a, _ := anypb.New(&api.NextHopAttribute{NextHop: nh})
		path.Pattrs = []*anypb.Any{a}
	}
	return path
}

func TestPICBackups(t *testing.T) {
	const a, b, c = "192.0.2.1", "192.0.2.2", "192.0.2.3"
	sink := &picSink{routes: map[netip.Prefix]string{}}
	tb := newPICTable(sink, []Neighbor{{Address: a}, {Address: b}, {Address: c}})
	for _, n := range []string{a, b, c} {
		tb.peerUp(netip.MustParseAddr(n))
	}
	both, onlyA := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")
	nhA := []netip.Addr{netip.MustParseAddr(a)}

	// The best path arrives before the received paths: protected once
	// they are known.
	tb.wish(both, nhA, nhA[0])
	tb.wish(onlyA, nhA, nhA[0])
	if got := sink.routes[both]; got != a {
		t.Errorf("before the received paths: %s routed %q, want %q", both, got, a)
	}
	tb.adjIn([]*api.Path{adjPath(t, a, "10.1.0.0/16", a), adjPath(t, a, "10.2.0.0/16", a), adjPath(t, b, "10.1.0.0/16", b)})
	if got, want := sink.routes[both], a+">"+b; got != want {
		t.Errorf("offered by A and B: %s routed %q, want %q", both, got, want)
	}
	if got := sink.routes[onlyA]; got != a {
		t.Errorf("offered by A only: %s routed %q, want %q (no backup)", onlyA, got, a)
	}
	// B withdraws: no backup any more.
	tb.adjIn([]*api.Path{adjPath(t, b, "10.1.0.0/16", "")})
	if got := sink.routes[both]; got != a {
		t.Errorf("B withdrew: %s routed %q, want %q", both, got, a)
	}
	// C offers it: C is the backup.
	tb.adjIn([]*api.Path{adjPath(t, c, "10.1.0.0/16", c)})
	if got, want := sink.routes[both], a+">"+c; got != want {
		t.Errorf("C offers it: %s routed %q, want %q", both, got, want)
	}
	// B offers it again: B, first in the configuration, is the backup.
	tb.adjIn([]*api.Path{adjPath(t, b, "10.1.0.0/16", b)})
	if got, want := sink.routes[both], a+">"+b; got != want {
		t.Errorf("B back: %s routed %q, want %q", both, got, want)
	}

	// B's session goes down: B stops being a backup (retired), and new
	// wishes get C.
	tb.peerDown(netip.MustParseAddr(b), false)
	tb.wish(both, nhA, nhA[0])
	if got, want := sink.routes[both], a+">"+c; got != want {
		t.Errorf("B down: %s routed %q, want %q", both, got, want)
	}
	// A's session goes down: its next hop fails over.
	tb.peerDown(netip.MustParseAddr(a), false)
	want := []string{b + " repoint", a + " repoint"}
	if len(sink.failovers) != 2 || sink.failovers[0] != want[0] || sink.failovers[1] != want[1] {
		t.Errorf("failovers %v, want %v", sink.failovers, want)
	}
	// A graceful restart only retires the next hop as a backup.
	tb.peerDown(netip.MustParseAddr(c), true)
	if got := sink.failovers[len(sink.failovers)-1]; got != c+" retire" {
		t.Errorf("graceful restart: %q, want %q", got, c+" retire")
	}
}

// A neighbour whose paths carry several next hops is no backup, and while
// it is established (it may carry any next hop) or another neighbour
// shares a next hop, the loss of a session repoints nothing.
func TestPICSeveralNextHops(t *testing.T) {
	const a, b, c = "192.0.2.1", "192.0.2.2", "192.0.2.3"
	sink := &picSink{routes: map[netip.Prefix]string{}}
	tb := newPICTable(sink, []Neighbor{{Address: a}, {Address: b}, {Address: c}})
	for _, n := range []string{a, b, c} {
		tb.peerUp(netip.MustParseAddr(n))
	}
	tb.adjIn([]*api.Path{adjPath(t, a, "10.1.0.0/16", a), adjPath(t, b, "10.1.0.0/16", "198.51.100.1"),
		adjPath(t, b, "10.2.0.0/16", "198.51.100.2")})
	p := netip.MustParsePrefix("10.1.0.0/16")
	tb.wish(p, []netip.Addr{netip.MustParseAddr(a)}, netip.MustParseAddr(a))
	if got := sink.routes[p]; got != a {
		t.Errorf("backup with several next hops: %s routed %q, want %q", p, got, a)
	}
	// C uses A's next hop, B may: A's loss does not repoint it.
	tb.adjIn([]*api.Path{adjPath(t, c, "10.3.0.0/16", a)})
	tb.peerDown(netip.MustParseAddr(a), false)
	if want := a + " retire"; len(sink.failovers) != 1 || sink.failovers[0] != want {
		t.Errorf("failovers %v, want [%s]", sink.failovers, want)
	}
}
