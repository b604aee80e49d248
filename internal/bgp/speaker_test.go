package bgp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeSink records what the speaker asks of the FIB, latest per prefix.
type fakeSink struct {
	mu     sync.Mutex
	routes map[netip.Prefix][]netip.Addr
	calls  int
	swept  int
}

func (f *fakeSink) Set(p netip.Prefix, nh []netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.routes[p] = slices.Clone(nh) // the speaker reuses nh
}

func (f *fakeSink) Delete(p netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	delete(f.routes, p)
}

func (f *fakeSink) Sweep() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.swept++
}

func testConfig() Config {
	return Config{
		AS: 65001, RouterID: "10.77.0.1", ListenPort: -1,
		PrefixLists: []PrefixList{{Name: "in", Entries: []PrefixEntry{
			{Prefix: "198.51.100.0/24"}, {Prefix: "10.0.0.0/8", GE: 16, LE: 24}, {Prefix: "2001:db8::/32", LE: 48},
		}}},
		Neighbors: []Neighbor{
			{Address: "10.77.0.2", PeerAS: 65002, Families: []string{FamilyIPv4Unicast}, Import: "in"},
			{Address: "2001:db8:ff::2", PeerAS: 65002, Families: []string{FamilyIPv6Unicast}},
			{Address: "10.77.0.9", PeerAS: 65001, Families: []string{FamilyIPv4Unicast, FamilyIPv6Unicast}},
		},
	}
}

func newTestSpeaker(t *testing.T) (*Speaker, *fakeSink) {
	t.Helper()
	sink := &fakeSink{routes: map[netip.Prefix][]netip.Addr{}}
	s, err := New(testConfig(), sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, sink
}

// startTestSpeaker starts a speaker for cfg with a discarding sink, stopped
// at the end of the test; ctx bounds the test's calls to it.
func startTestSpeaker(t *testing.T, cfg Config) (*Speaker, context.Context) {
	t.Helper()
	sp, err := New(cfg, &fakeSink{routes: map[netip.Prefix][]netip.Addr{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Stop)
	return sp, ctx
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	bad := Config{
		RouterID:    "not-an-ip",
		ListenPort:  70000,
		Networks:    []string{"192.0.2.1/24", "nonsense"},
		PrefixLists: []PrefixList{{Name: "x", Entries: []PrefixEntry{{Prefix: "10.0.0.0/8", GE: 4}}}},
		Neighbors: []Neighbor{
			{Address: "10.0.0.300", Families: []string{"ipv4-multicast"}, Import: "missing"},
			{Address: "10.0.0.1", PeerAS: 1},
		},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"bgp.as: required", "bgp.router_id", "bgp.listen_port", "host bits set (did you mean 192.0.2.0/24?)",
		`"nonsense" is not a prefix`, "length range 4-32", "bgp.neighbors[0].address", "bgp.neighbors[0].peer_as",
		`unknown family "ipv4-multicast"`, `no prefix list named "missing"`, "bgp.neighbors[1].families: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := testConfig()
	c.ListenPort = 0
	d := c.withDefaults()
	if d.ListenPort != 179 || d.Neighbors[0].HoldTime != DefaultHoldTime || d.Neighbors[0].KeepaliveInterval != DefaultHoldTime/3 {
		t.Errorf("defaults: port %d hold %s keepalive %s", d.ListenPort, d.Neighbors[0].HoldTime, d.Neighbors[0].KeepaliveInterval)
	}
	c.ListenPort = -1
	if c.withDefaults().ListenPort != -1 {
		t.Error("listen_port -1 (no listener) was overridden")
	}
}

// TestPoliciesRFC8212 checks the statements each neighbour ends with: an
// eBGP neighbour without a list rejects, an iBGP one accepts, a list
// accepts its matches and rejects the rest.
func TestPoliciesRFC8212(t *testing.T) {
	p := buildPolicies(testConfig())
	type verdict struct {
		prefixSet string
		action    api.RouteAction
	}
	byNeighbour := func(pol *api.Policy) map[string][]verdict {
		m := map[string][]verdict{}
		for _, st := range pol.Statements {
			n := st.Conditions.NeighborSet.Name
			v := verdict{action: st.Actions.RouteAction}
			if st.Conditions.PrefixSet != nil {
				v.prefixSet = st.Conditions.PrefixSet.Name
			}
			m[n] = append(m[n], v)
		}
		return m
	}
	imp, exp := byNeighbour(p.imp), byNeighbour(p.export)
	want := map[string][]verdict{
		"nb-10.77.0.2":      {{"pl-in-v4", api.RouteAction_ACCEPT}, {"pl-in-v6", api.RouteAction_ACCEPT}, {"", api.RouteAction_REJECT}},
		"nb-2001:db8:ff::2": {{"", api.RouteAction_REJECT}},
		"nb-10.77.0.9":      {{"", api.RouteAction_ACCEPT}},
	}
	for n, w := range want {
		if !slices.Equal(imp[n], w) {
			t.Errorf("import statements of %s = %v, want %v", n, imp[n], w)
		}
	}
	for _, n := range []string{"nb-10.77.0.2", "nb-2001:db8:ff::2"} {
		if !slices.Equal(exp[n], []verdict{{"", api.RouteAction_REJECT}}) {
			t.Errorf("eBGP %s without export list: %v, want reject all (RFC 8212)", n, exp[n])
		}
	}
	for _, ds := range p.sets {
		if ds.Name == "pl-in-v4" {
			var got []string
			for _, px := range ds.Prefixes {
				got = append(got, fmt.Sprintf("%s %d-%d", px.IpPrefix, px.MaskLengthMin, px.MaskLengthMax))
			}
			if !slices.Equal(got, []string{"198.51.100.0/24 24-24", "10.0.0.0/8 16-24"}) {
				t.Errorf("prefix set pl-in-v4 = %v", got)
			}
		}
	}
}

// path builds an api.Path as GoBGP's watcher sends it.
func path(t *testing.T, prefix, nexthop, neighbor string, withdraw bool) *api.Path {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		t.Fatal(err)
	}
	var nh *anypb.Any
	if p.Addr().Is4() {
		nh, err = anypb.New(&api.NextHopAttribute{NextHop: nexthop})
	} else {
		nh, err = anypb.New(&api.MpReachNLRIAttribute{NextHops: []string{nexthop, "fe80::1"}, Nlris: []*anypb.Any{nlri}})
	}
	if err != nil {
		t.Fatal(err)
	}
	return &api.Path{Nlri: nlri, Pattrs: []*anypb.Any{nh}, NeighborIp: neighbor, IsWithdraw: withdraw, Family: familyAPI(FamilyIPv4Unicast)}
}

func event(paths ...*api.Path) *api.WatchEventResponse {
	return &api.WatchEventResponse{Event: &api.WatchEventResponse_Table{Table: &api.WatchEventResponse_TableEvent{Paths: paths}}}
}

func TestEventsToSink(t *testing.T) {
	s, sink := newTestSpeaker(t)
	a := netip.MustParsePrefix("198.51.100.0/24")
	v6 := netip.MustParsePrefix("2001:db8:77::/48")
	ours := netip.MustParsePrefix("192.0.2.0/24")

	// Initial dump: a learned IPv4 and IPv6 path, and our own network
	// (no source address), which must not be installed.
	s.onEvent(event(
		path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", false),
		path(t, "2001:db8:77::/48", "2001:db8:ff::2", "2001:db8:ff::2", false),
		path(t, "192.0.2.0/24", "0.0.0.0", "<nil>", false),
	))
	want := map[netip.Prefix][]netip.Addr{
		a:  {netip.MustParseAddr("10.77.0.2")},
		v6: {netip.MustParseAddr("2001:db8:ff::2")}, // the global next hop, not the link-local one
	}
	if len(sink.routes) != 2 || !slices.Equal(sink.routes[a], want[a]) || !slices.Equal(sink.routes[v6], want[v6]) {
		t.Errorf("after initial dump sink holds %v, want %v", sink.routes, want)
	}
	if _, ok := sink.routes[ours]; ok {
		t.Error("our own network was handed to the FIB")
	}

	// Multipath: the event lists the new equal-cost set of the destination.
	s.onEvent(event(
		path(t, "198.51.100.0/24", "10.77.0.2", "10.77.0.2", false),
		path(t, "198.51.100.0/24", "10.77.0.6", "10.77.0.6", false),
	))
	if got := sink.routes[a]; len(got) != 2 {
		t.Errorf("ECMP set = %v, want two next hops", got)
	}

	// Our own path becomes best for a prefix learned before: the learned
	// route must go, not stay pointing at the peer.
	s.onEvent(event(path(t, "198.51.100.0/24", "0.0.0.0", "<nil>", false)))
	if _, ok := sink.routes[a]; ok {
		t.Error("learned route kept although our own path is best")
	}

	// Withdrawal.
	s.onEvent(event(path(t, "2001:db8:77::/48", "2001:db8:ff::2", "2001:db8:ff::2", true)))
	if len(sink.routes) != 0 {
		t.Errorf("after withdrawals sink holds %v", sink.routes)
	}

	// A path whose next hop GoBGP marks invalid installs nothing.
	p := path(t, "203.0.113.0/24", "10.77.0.2", "10.77.0.2", false)
	p.IsNexthopInvalid = true
	s.onEvent(event(p))
	if len(sink.routes) != 0 {
		t.Errorf("path with invalid next hop installed: %v", sink.routes)
	}
}

func TestEndOfRIBSweepsOnce(t *testing.T) {
	s, sink := newTestSpeaker(t)
	eor := func(neighbor string, f string) *api.WatchEventResponse {
		return event(&api.Path{NeighborIp: neighbor, Family: familyAPI(f)})
	}
	// testConfig has four (neighbour, family) pairs.
	s.onEvent(eor("10.77.0.2", FamilyIPv4Unicast))
	s.onEvent(eor("2001:db8:ff::2", FamilyIPv6Unicast))
	s.onEvent(eor("10.77.0.9", FamilyIPv4Unicast))
	if sink.swept != 0 {
		t.Fatal("swept before every neighbour sent End-of-RIB")
	}
	s.onEvent(eor("10.77.0.9", FamilyIPv6Unicast))
	s.onEvent(eor("10.77.0.2", FamilyIPv4Unicast)) // after a session reset
	if sink.swept != 1 {
		t.Errorf("swept %d times, want once", sink.swept)
	}
	if sink.calls != 0 {
		t.Errorf("End-of-RIB markers reached the FIB as routes (%d calls)", sink.calls)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}, &fakeSink{}, nil); err == nil || !strings.Contains(err.Error(), "bgp config") {
		t.Errorf("New with empty config: err = %v", err)
	}
}
