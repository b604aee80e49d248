package bgp

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// refNexthop is the decoding this package did before reading the wire
// format itself: unmarshal every attribute, take the first next-hop one.
func refNexthop(p *api.Path) (netip.Addr, bool) {
	for _, a := range p.Pattrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		var s string
		switch attr := m.(type) {
		case *api.NextHopAttribute:
			s = attr.NextHop
		case *api.MpReachNLRIAttribute:
			if len(attr.NextHops) > 0 {
				s = attr.NextHops[0]
			}
		default:
			continue
		}
		nh, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, false
		}
		nh = nh.Unmap()
		return nh, !nh.IsUnspecified() && !nh.IsLinkLocalUnicast()
	}
	return netip.Addr{}, false
}

// A path as GoBGP builds it: origin, AS path and communities around the
// next hop; the decoder finds the next hop among them and agrees with
// unmarshalling every attribute.
func TestPathNexthopAmongAttributes(t *testing.T) {
	origin := mustAny(t, &api.OriginAttribute{Origin: 0})
	aspath := mustAny(t, &api.AsPathAttribute{Segments: []*api.AsSegment{{Type: 2, Numbers: []uint32{65002, 65010}}}})
	comm := mustAny(t, &api.CommunitiesAttribute{Communities: []uint32{65002<<16 | 7}})
	med := mustAny(t, &api.MultiExitDiscAttribute{Med: 20})
	nlri := mustAny(t, &api.IPAddressPrefix{Prefix: "2001:db8::", PrefixLen: 32})
	garbage := &anypb.Any{TypeUrl: "type.googleapis.com/" + string(nameNextHop), Value: []byte{0x0a, 0x7f}} // truncated
	cases := []struct {
		name   string
		pattrs []*anypb.Any
		want   string // "" = error
	}{
		{"ipv4", []*anypb.Any{origin, aspath, mustAny(t, &api.NextHopAttribute{NextHop: "10.77.0.2"}), med, comm}, "10.77.0.2"},
		{"ipv6 global first", []*anypb.Any{origin, mustAny(t, &api.MpReachNLRIAttribute{
			Family: familyAPI(FamilyIPv6Unicast), NextHops: []string{"2001:db8:ff::2", "fe80::1"}, Nlris: []*anypb.Any{nlri},
		}), aspath}, "2001:db8:ff::2"},
		{"v4-mapped", []*anypb.Any{mustAny(t, &api.NextHopAttribute{NextHop: "::ffff:10.1.2.3"})}, "10.1.2.3"},
		{"malformed attribute skipped", []*anypb.Any{garbage, mustAny(t, &api.NextHopAttribute{NextHop: "10.0.0.9"})}, "10.0.0.9"},
		{"link-local only", []*anypb.Any{mustAny(t, &api.MpReachNLRIAttribute{NextHops: []string{"fe80::1"}})}, ""},
		{"unspecified", []*anypb.Any{mustAny(t, &api.NextHopAttribute{NextHop: "0.0.0.0"})}, ""},
		{"empty", []*anypb.Any{mustAny(t, &api.NextHopAttribute{})}, ""},
		{"no next hops", []*anypb.Any{mustAny(t, &api.MpReachNLRIAttribute{})}, ""},
		{"not an address", []*anypb.Any{mustAny(t, &api.NextHopAttribute{NextHop: "10.0.0.256"})}, ""},
		{"none", []*anypb.Any{origin, aspath}, ""},
	}
	for _, c := range cases {
		p := &api.Path{Pattrs: c.pattrs}
		got, err := pathNexthop(p)
		ref, refOK := refNexthop(p)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: next hop %s, want an error", c.name, got)
			}
			if refOK {
				t.Errorf("%s: old decoding accepted %s", c.name, ref)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(c.want) {
			t.Errorf("%s: next hop %s, %v; want %s", c.name, got, err, c.want)
		}
		if !refOK || ref != got {
			t.Errorf("%s: old decoding gives %s, new %s", c.name, ref, got)
		}
	}
}

func TestPathPrefix(t *testing.T) {
	for _, c := range []struct {
		prefix string
		bits   uint32
		want   string // "" = error
	}{
		{"198.51.100.0", 24, "198.51.100.0/24"},
		{"198.51.100.7", 24, "198.51.100.0/24"}, // masked
		{"0.0.0.0", 0, "0.0.0.0/0"},
		{"2001:db8:77::", 48, "2001:db8:77::/48"},
		{"::ffff:10.0.0.0", 8, "10.0.0.0/8"},
		{"10.0.0.0", 33, ""},
		{"2001:db8::", 129, ""},
		{"10.0.0.0", 1 << 20, ""},
		{"", 0, ""},
		{"010.0.0.0", 8, ""},
	} {
		p := &api.Path{Nlri: mustAny(t, &api.IPAddressPrefix{Prefix: c.prefix, PrefixLen: c.bits})}
		got, err := pathPrefix(p)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s/%d: prefix %s, want an error", c.prefix, c.bits, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(c.want) {
			t.Errorf("%s/%d: %s, %v; want %s", c.prefix, c.bits, got, err, c.want)
		}
	}
	other := &api.Path{Nlri: mustAny(t, &api.LabeledVPNIPAddressPrefix{Prefix: "10.0.0.0", PrefixLen: 8})}
	if _, err := pathPrefix(other); err == nil {
		t.Error("a VPN prefix was read as a unicast one")
	}
	if _, err := pathPrefix(&api.Path{Nlri: &anypb.Any{TypeUrl: "type.googleapis.com/" + string(nameIPAddressPrefix), Value: []byte{0x12, 0x09, '1'}}}); err == nil {
		t.Error("a truncated NLRI was accepted")
	}
}

// parseIPv4 only takes what netip.ParseAddr takes, with the same value.
func TestParseAddrAgreesWithNetip(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0", "255.255.255.255", "10.77.0.2", "1.2.3.4", "256.1.1.1", "1.2.3", "1.2.3.4.", "1.2.3.4.5",
		"01.2.3.4", "1.2.3.04", "1..3.4", ".1.2.3", "1.2.3.4 ", "1000.1.1.1", "1.2.3.-4", "", "::1", "fe80::1%eth0",
		"2001:db8::1", "::ffff:1.2.3.4", "1.2.3.4a", "0.00.0.0",
	} {
		want, werr := netip.ParseAddr(s)
		got, err := parseAddr([]byte(s))
		if (err == nil) != (werr == nil) || got != want {
			t.Errorf("parseAddr(%q) = %v, %v; netip says %v, %v", s, got, err, want, werr)
		}
	}
}

type nopSink struct{ sets, deletes int }

func (n *nopSink) Set(netip.Prefix, []netip.Addr) { n.sets++ }
func (n *nopSink) Delete(netip.Prefix)            { n.deletes++ }
func (n *nopSink) Sweep()                         {}

// The watcher callback handles GoBGP's one-destination events without
// allocating: it runs once per best path of a full table.
func TestOnEventAllocations(t *testing.T) {
	sink := &nopSink{}
	s, err := New(testConfig(), sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	add := event(path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", false))
	del := event(path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", true))
	ecmp := event(path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", false), path(t, "198.51.100.0/24", "10.77.0.6", "10.77.0.6", false))
	allocs := testing.AllocsPerRun(1000, func() {
		s.onEvent(add)
		s.onEvent(ecmp)
		s.onEvent(del)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per three events, want none", allocs)
	}
	if sink.sets == 0 || sink.deletes == 0 {
		t.Errorf("sink saw %d sets and %d deletes", sink.sets, sink.deletes)
	}
}

// BenchmarkOnEvent is one best path as GoBGP's watcher hands it over for
// a full table: origin, AS path, next hop, MED, communities.
func BenchmarkOnEvent(b *testing.B) {
	s, err := New(testConfig(), &nopSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	p := &api.Path{
		Nlri: mustAny(b, &api.IPAddressPrefix{Prefix: "198.51.100.0", PrefixLen: 24}),
		Pattrs: []*anypb.Any{
			mustAny(b, &api.OriginAttribute{Origin: 0}),
			mustAny(b, &api.AsPathAttribute{Segments: []*api.AsSegment{{Type: 2, Numbers: []uint32{65002, 65010, 65020}}}}),
			mustAny(b, &api.NextHopAttribute{NextHop: "10.77.0.2"}),
			mustAny(b, &api.MultiExitDiscAttribute{Med: 20}),
			mustAny(b, &api.CommunitiesAttribute{Communities: []uint32{65002<<16 | 7}}),
		},
		NeighborIp: "10.77.0.2", Family: familyAPI(FamilyIPv4Unicast),
	}
	ev := event(p)
	b.ReportAllocs()
	for b.Loop() {
		s.onEvent(ev)
	}
}

// An event for several prefixes (the initial dump) is grouped by prefix,
// wherever each prefix's paths appear in it.
func TestOnEventGroupsByPrefix(t *testing.T) {
	s, sink := newTestSpeaker(t)
	a, b := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("10.1.0.0/16")
	s.onEvent(event(
		path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", false),
		path(t, "10.1.0.0/16", "10.77.0.2", "10.77.0.2", false),
		path(t, "198.51.100.0/24", "10.77.0.6", "10.77.0.6", false),
	))
	if got := sink.routes[a]; len(got) != 2 || got[0] != netip.MustParseAddr("10.77.0.2") || got[1] != netip.MustParseAddr("10.77.0.6") {
		t.Errorf("%s via %v, want both next hops", a, got)
	}
	if got := sink.routes[b]; len(got) != 1 {
		t.Errorf("%s via %v, want one next hop", b, got)
	}
	if sink.calls != 2 {
		t.Errorf("%d sink calls, want one per prefix", sink.calls)
	}
}
