package bgp

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// Operator bytes as they come off the wire: end-of-list 0x80, and the
// value length in 0x30, which the conversion must ignore.
const (
	eol  = 0x80
	len2 = 0x10
)

func item(op uint32, v uint64) *api.FlowSpecComponentItem {
	return &api.FlowSpecComponentItem{Op: op, Value: v}
}

func comp(typ uint32, items ...*api.FlowSpecComponentItem) *api.FlowSpecComponent {
	return &api.FlowSpecComponent{Type: typ, Items: items}
}

// fsTestPath builds a FlowSpec path as GoBGP's watcher hands it over.
func fsTestPath(t *testing.T, family, neighbor string, comps []proto.Message, comms ...proto.Message) *api.Path {
	t.Helper()
	nlri := &api.FlowSpecNLRI{}
	for _, c := range comps {
		nlri.Rules = append(nlri.Rules, mustAny(t, c))
	}
	p := &api.Path{Family: familyAPI(family), NeighborIp: neighbor, Nlri: mustAny(t, nlri)}
	p.Pattrs = append(p.Pattrs, mustAny(t, &api.OriginAttribute{Origin: 0}))
	if len(comms) > 0 {
		ec := &api.ExtendedCommunitiesAttribute{}
		for _, c := range comms {
			ec.Communities = append(ec.Communities, mustAny(t, c))
		}
		p.Pattrs = append(p.Pattrs, mustAny(t, ec))
	}
	return p
}

func TestDecodeFlowSpecIPv4AllComponents(t *testing.T) {
	p := fsTestPath(t, FamilyIPv4FlowSpec, "10.77.0.2", []proto.Message{
		&api.FlowSpecIPPrefix{Type: fsDstPrefix, Prefix: "198.51.100.0", PrefixLen: 24},
		&api.FlowSpecIPPrefix{Type: fsSrcPrefix, Prefix: "203.0.113.7", PrefixLen: 32},
		comp(fsProto, item(opEQ, 6), item(eol|opEQ, 17)),
		comp(fsPort, item(eol|opEQ|len2, 53)),
		comp(fsDstPort, item(opGT|opEQ|len2, 1000), item(eol|opAnd|opLT|opEQ|len2, 2000)),
		comp(fsSrcPort, item(eol|opLT|opGT, 123)),
		comp(fsICMPType, item(eol|opEQ, 8)),
		comp(fsICMPCode, item(eol|opEQ, 0)),
		comp(fsTCPFlags, item(opM, 0x02), item(eol|opAnd|opNot, 0x10)),
		comp(fsPktLen, item(eol|opGT|len2, 1400)),
		comp(fsDSCP, item(eol|opEQ, 46)),
		comp(fsFragment, item(eol|opM, 0x02)),
	}, &api.TrafficRateExtended{Asn: 65002, Rate: 0},
		&api.TwoOctetAsSpecificExtended{IsTransitive: true, SubType: 2, Asn: 65002, LocalAdmin: 7}) // a route target: no action
	got, err := decodeFlowSpec(p)
	if err != nil || got.err != nil {
		t.Fatalf("decode: %v, rule error %v", err, got.err)
	}
	want := flowspec.Rule{
		Source: "peer 10.77.0.2",
		Match: flowspec.Match{
			Family:   flowspec.IPv4,
			Dst:      netip.MustParsePrefix("198.51.100.0/24"),
			Src:      netip.MustParsePrefix("203.0.113.7/32"),
			Proto:    []flowspec.NumOp{{EQ: true, Value: 6}, {EQ: true, Value: 17}},
			Port:     []flowspec.NumOp{{EQ: true, Value: 53}},
			DstPort:  []flowspec.NumOp{{GT: true, EQ: true, Value: 1000}, {And: true, LT: true, EQ: true, Value: 2000}},
			SrcPort:  []flowspec.NumOp{{LT: true, GT: true, Value: 123}},
			ICMPType: []flowspec.NumOp{{EQ: true, Value: 8}},
			ICMPCode: []flowspec.NumOp{{EQ: true, Value: 0}},
			TCPFlags: []flowspec.BitOp{{Match: true, Value: 0x02}, {And: true, Not: true, Value: 0x10}},
			PktLen:   []flowspec.NumOp{{GT: true, Value: 1400}},
			DSCP:     []flowspec.NumOp{{EQ: true, Value: 46}},
			Fragment: []flowspec.BitOp{{Match: true, Value: 0x02}},
		},
		Action: flowspec.Action{RateLimited: true, Rate: 0},
	}
	if !reflect.DeepEqual(got.rule, want) {
		t.Errorf("rule\n got %+v\nwant %+v", got.rule, want)
	}
	if got.peer != netip.MustParseAddr("10.77.0.2") || got.family != FamilyIPv4FlowSpec || got.withdraw {
		t.Errorf("path %+v", got)
	}
	const text = "dst 198.51.100.0/24 src 203.0.113.7/32 proto =6 =17 port =53 dport >=1000&<=2000 sport !=123 icmp-type =8 icmp-code =0 tcp-flags =0x02&!0x10 length >1400 dscp =46 fragment =0x02"
	if got.nlri != text {
		t.Errorf("nlri text\n got %s\nwant %s", got.nlri, text)
	}

	// The withdrawal of the same NLRI has the same identity.
	p.IsWithdraw, p.Pattrs = true, nil
	w, err := decodeFlowSpec(p)
	if err != nil || !w.withdraw || w.key != got.key {
		t.Errorf("withdrawal: %v, withdraw %v, key %q want %q", err, w.withdraw, w.key, got.key)
	}
}

func TestDecodeFlowSpecIPv6(t *testing.T) {
	p := fsTestPath(t, FamilyIPv6FlowSpec, "2001:db8:ff::2", []proto.Message{
		&api.FlowSpecIPPrefix{Type: fsDstPrefix, Prefix: "2001:db8:1::", PrefixLen: 48},
		comp(fsProto, item(eol|opEQ, 58)),
		comp(fsICMPType, item(eol|opEQ, 128)),
		comp(fsFlowLabel, item(eol|opEQ|0x20, 0x12345)),
	}, &api.TrafficRateExtended{Rate: 12500.5}, &api.TrafficRemarkExtended{Dscp: 10})
	got, err := decodeFlowSpec(p)
	if err != nil || got.err != nil {
		t.Fatalf("decode: %v, rule error %v", err, got.err)
	}
	m := got.rule.Match
	if m.Family != flowspec.IPv6 || m.Dst != netip.MustParsePrefix("2001:db8:1::/48") || m.DstOffset != 0 ||
		!reflect.DeepEqual(m.FlowLabel, []flowspec.NumOp{{EQ: true, Value: 0x12345}}) ||
		!reflect.DeepEqual(m.Proto, []flowspec.NumOp{{EQ: true, Value: 58}}) {
		t.Errorf("match %+v", m)
	}
	if a := got.rule.Action; a != (flowspec.Action{RateLimited: true, Rate: 12500.5, MarkDSCP: true, DSCP: 10}) {
		t.Errorf("action %+v", a)
	}
}

// Rules xrouter cannot apply are kept (so that their withdrawal is
// recognised) with an error naming what is unsupported.
func TestDecodeFlowSpecUnsupported(t *testing.T) {
	dst4 := &api.FlowSpecIPPrefix{Type: fsDstPrefix, Prefix: "198.51.100.0", PrefixLen: 24}
	for _, tc := range []struct {
		name   string
		family string
		comps  []proto.Message
		comms  []proto.Message
		want   string
	}{
		{"redirect vrf", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.RedirectTwoOctetAsSpecificExtended{Asn: 65002, LocalAdmin: 9}}, "unsupported action: redirect to VRF 65002:9"},
		{"redirect vrf ipv4", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.TrafficRateExtended{Rate: 0}, &api.RedirectIPv4AddressSpecificExtended{Address: "192.0.2.1", LocalAdmin: 1}}, "unsupported action: redirect"},
		{"redirect to ip (unknown to GoBGP)", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.UnknownExtended{Type: 0x0800, Value: []byte{0, 0, 0, 0, 0, 0, 0}}}, "unsupported action: extended community type 0x0800"},
		{"sample", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.TrafficActionExtended{Sample: true}}, "unsupported action: traffic-action sample"},
		{"terminal", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.TrafficActionExtended{Terminal: true}}, "terminal"},
		{"conflicting rates", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.TrafficRateExtended{Rate: 0}, &api.TrafficRateExtended{Rate: 100}}, "conflicting traffic-rate"},
		{"negative rate", FamilyIPv4FlowSpec, []proto.Message{dst4}, []proto.Message{&api.TrafficRateExtended{Rate: -1}}, "not a rate"},
		{"mac", FamilyIPv4FlowSpec, []proto.Message{dst4, &api.FlowSpecMAC{Type: 15, Address: "00:11:22:33:44:55"}}, nil, "unsupported component: MAC"},
		{"ether type", FamilyIPv4FlowSpec, []proto.Message{dst4, comp(14, item(eol|opEQ, 0x800))}, nil, "unsupported component: type 14"},
		{"flow label in ipv4", FamilyIPv4FlowSpec, []proto.Message{dst4, comp(fsFlowLabel, item(eol|opEQ, 1))}, nil, "flow-label (type 13) in an IPv4 rule"},
		{"ipv6 offset", FamilyIPv6FlowSpec, []proto.Message{&api.FlowSpecIPPrefix{Type: fsDstPrefix, Prefix: "::1:0:0:0", PrefixLen: 80, Offset: 64}}, nil, "IPv6 prefix offset 64"},
		{"wrong family prefix", FamilyIPv6FlowSpec, []proto.Message{dst4}, nil, "other address family"},
		{"twice", FamilyIPv4FlowSpec, []proto.Message{dst4, comp(fsProto, item(eol|opEQ, 6)), comp(fsProto, item(eol|opEQ, 17))}, nil, "proto given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nb := "10.77.0.2"
			if tc.family == FamilyIPv6FlowSpec {
				nb = "2001:db8:ff::2"
			}
			got, err := decodeFlowSpec(fsTestPath(t, tc.family, nb, tc.comps, tc.comms...))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.err == nil || !strings.Contains(got.err.Error(), tc.want) {
				t.Errorf("rule error %v, want one with %q", got.err, tc.want)
			}
			if got.key == "" || got.nlri == "" {
				t.Errorf("no identity: %+v", got)
			}
		})
	}
}

func TestDecodeFlowSpecNotIdentifiable(t *testing.T) {
	p := fsTestPath(t, FamilyIPv4FlowSpec, "", []proto.Message{comp(fsProto, item(eol|opEQ, 6))})
	if _, err := decodeFlowSpec(p); err == nil {
		t.Error("a path without neighbour decoded")
	}
	p = fsTestPath(t, FamilyIPv4FlowSpec, "10.77.0.2", nil)
	p.Nlri = mustAny(t, &api.IPAddressPrefix{Prefix: "10.0.0.0", PrefixLen: 8})
	if _, err := decodeFlowSpec(p); err == nil {
		t.Error("a unicast NLRI decoded as FlowSpec")
	}
}

func fsConfig() Config {
	c := testConfig()
	c.PrefixLists = append(c.PrefixLists, PrefixList{Name: "fs", Entries: []PrefixEntry{
		{Prefix: "198.51.100.0/24", LE: 32}, {Prefix: "2001:db8::/32", LE: 128},
	}})
	c.Neighbors = []Neighbor{
		{Address: "10.77.0.2", PeerAS: 65002, Families: []string{FamilyIPv4Unicast, FamilyIPv4FlowSpec}, Import: "in",
			FlowSpecImport: FlowSpecImport{PrefixList: "fs", Actions: []string{FlowSpecActionDrop}}},
		{Address: "10.77.0.3", PeerAS: 65003, Families: []string{FamilyIPv4FlowSpec}},
		{Address: "10.77.0.9", PeerAS: 65001, Families: []string{FamilyIPv4Unicast, FamilyIPv4FlowSpec, FamilyIPv6FlowSpec}},
	}
	return c
}

func TestFlowSpecImportCheck(t *testing.T) {
	cfg := fsConfig()
	drop := flowspec.Action{RateLimited: true}
	rule := func(dst string, a flowspec.Action) flowspec.Rule {
		r := flowspec.Rule{Action: a}
		if dst != "" {
			r.Match.Dst = netip.MustParsePrefix(dst)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		n    int
		r    flowspec.Rule
		want string // "" accepted
	}{
		{"inside, drop", 0, rule("198.51.100.7/32", drop), ""},
		{"the list's prefix itself", 0, rule("198.51.100.0/24", drop), ""},
		{"shorter than the list", 0, rule("198.51.0.0/16", drop), "does not match"},
		{"outside", 0, rule("192.0.2.0/24", drop), "does not match"},
		{"no destination", 0, rule("", drop), "no destination prefix"},
		{"rate-limit not allowed", 0, rule("198.51.100.7/32", flowspec.Action{RateLimited: true, Rate: 1000}), "action rate-limit not allowed"},
		{"mark not allowed", 0, rule("198.51.100.7/32", flowspec.Action{RateLimited: true, MarkDSCP: true, DSCP: 1}), "action mark not allowed"},
		{"count only", 0, rule("198.51.100.7/32", flowspec.Action{}), ""},
		{"ebgp without flowspec_import", 1, rule("198.51.100.7/32", drop), "RFC 8212"},
		{"ibgp without flowspec_import", 2, rule("", flowspec.Action{RateLimited: true, Rate: 5, MarkDSCP: true}), ""},
	} {
		err := importCheck(cfg, cfg.Neighbors[tc.n], tc.r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: rejected: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// fakeRIB answers ListPath from a list of unicast best paths.
type fakeRIB struct {
	best map[netip.Prefix]*api.Path
}

func (f *fakeRIB) ListPath(_ context.Context, r *api.ListPathRequest, fn func(*api.Destination)) error {
	q := netip.MustParsePrefix(r.Prefixes[0].Prefix)
	for p, path := range f.best {
		var hit bool
		switch r.Prefixes[0].Type {
		case api.TableLookupPrefix_SHORTER:
			hit = p.Bits() <= q.Bits() && p.Contains(q.Addr())
		case api.TableLookupPrefix_LONGER:
			hit = p.Bits() >= q.Bits() && q.Contains(p.Addr())
		}
		if hit && p.Addr().Is4() == (r.Family.Afi == api.Family_AFI_IP) {
			fn(&api.Destination{Prefix: p.String(), Paths: []*api.Path{
				{NeighborIp: "10.77.0.66", SourceAsn: 65066}, // not best
				path,
			}})
		}
	}
	return nil
}

func bestFrom(nb string, as uint32) *api.Path {
	return &api.Path{Best: true, NeighborIp: nb, SourceAsn: as}
}

func TestValidateFlowSpec(t *testing.T) {
	peer := netip.MustParseAddr("10.77.0.2")
	rib := &fakeRIB{best: map[netip.Prefix]*api.Path{
		netip.MustParsePrefix("198.51.100.0/24"):  bestFrom("10.77.0.2", 65002),
		netip.MustParsePrefix("198.51.0.0/16"):    bestFrom("10.77.0.3", 65003),
		netip.MustParsePrefix("203.0.113.0/24"):   bestFrom("10.77.0.2", 65002),
		netip.MustParsePrefix("203.0.113.128/25"): bestFrom("10.77.0.3", 65003),
		netip.MustParsePrefix("192.0.2.0/24"):     {Best: true}, // our own network
	}}
	for _, tc := range []struct {
		dst  string
		want string
	}{
		{"198.51.100.0/24", ""},
		{"198.51.100.64/26", ""},
		{"198.51.101.0/24", "is from 10.77.0.3, not from 10.77.0.2"},
		{"198.51.0.0/16", "is from 10.77.0.3"},
		{"10.0.0.0/8", "no unicast route covers"},
		{"", "no destination prefix"},
		{"203.0.113.0/24", "more specific unicast route 203.0.113.128/25 is from AS 65003"},
		{"203.0.113.0/25", ""},
		{"192.0.2.0/24", "is our own"},
	} {
		var dst netip.Prefix
		if tc.dst != "" {
			dst = netip.MustParsePrefix(tc.dst)
		}
		err := validateFlowSpec(context.Background(), rib, peer, dst)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: invalid: %v", tc.dst, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.dst, err, tc.want)
		}
	}
}

// TestFlowSpecPass drives the worker's pass as the watchers would: rules
// arrive, are judged, are re-validated when the unicast route changes,
// and are withdrawn; each change hands the neighbour's whole set over.
func TestFlowSpecPass(t *testing.T) {
	cfg := fsConfig()
	s, err := New(cfg, &fakeSink{routes: map[netip.Prefix][]netip.Addr{}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rib := &fakeRIB{best: map[netip.Prefix]*api.Path{}}
	s.fs.rib = rib
	sets := map[string][]flowspec.Rule{}
	calls := 0
	s.OnFlowSpec(func(src string, rules []flowspec.Rule) { calls++; sets[src] = rules })
	pass := func(paths ...*api.Path) {
		t.Helper()
		var pending []fsPath
		for _, p := range paths {
			d, err := decodeFlowSpec(p)
			if err != nil {
				t.Fatal(err)
			}
			pending = append(pending, d)
		}
		s.fs.mu.Lock()
		changed, all := s.fs.changed, s.fs.changedAll
		s.fs.changed, s.fs.changedAll = map[netip.Prefix]struct{}{}, false
		s.fs.mu.Unlock()
		s.fsPass(context.Background(), pending, changed, all, false, s.fs.onRules)
	}
	s.fs.validating = true
	dst := &api.FlowSpecIPPrefix{Type: fsDstPrefix, Prefix: "198.51.100.0", PrefixLen: 24}
	good := fsTestPath(t, FamilyIPv4FlowSpec, "10.77.0.2", []proto.Message{dst, comp(fsProto, item(eol|opEQ, 17))}, &api.TrafficRateExtended{})
	redirect := fsTestPath(t, FamilyIPv4FlowSpec, "10.77.0.2", []proto.Message{dst, comp(fsProto, item(eol|opEQ, 6))}, &api.RedirectTwoOctetAsSpecificExtended{Asn: 1, LocalAdmin: 1})
	ebgpNoPolicy := fsTestPath(t, FamilyIPv4FlowSpec, "10.77.0.3", []proto.Message{dst}, &api.TrafficRateExtended{})

	// No unicast route yet: the valid-looking rule fails validation.
	pass(good, redirect, ebgpNoPolicy)
	if calls != 2 || len(sets["peer 10.77.0.2"]) != 0 || len(sets["peer 10.77.0.3"]) != 0 {
		t.Fatalf("before the unicast route: %d calls, sets %+v", calls, sets)
	}
	view := s.FlowSpec()
	if len(view) != 2 || len(view[0].Rules) != 2 || view[0].Rules[0].Accepted || !strings.Contains(view[0].Rules[0].Reason+view[0].Rules[1].Reason, "no unicast route covers") {
		t.Fatalf("view %+v", view)
	}

	// The unicast route from the same neighbour arrives: validated again.
	rib.best[netip.MustParsePrefix("198.51.100.0/24")] = bestFrom("10.77.0.2", 65002)
	s.fs.unicastChanged(netip.MustParsePrefix("198.51.100.0/24"))
	pass()
	want, _ := decodeFlowSpec(good)
	if got := sets["peer 10.77.0.2"]; len(got) != 1 || !reflect.DeepEqual(got[0], want.rule) {
		t.Fatalf("after the unicast route: %+v", got)
	}
	// An unrelated unicast change does not touch the rules.
	before := calls
	s.fs.unicastChanged(netip.MustParsePrefix("192.0.2.0/24"))
	pass()
	if calls != before {
		t.Errorf("unrelated unicast change handed sets over")
	}
	// The best path moves to another neighbour: the rule is invalid now.
	rib.best[netip.MustParsePrefix("198.51.100.0/25")] = bestFrom("10.77.0.3", 65003)
	s.fs.unicastChanged(netip.MustParsePrefix("198.51.100.0/25"))
	pass()
	if got := sets["peer 10.77.0.2"]; len(got) != 0 {
		t.Fatalf("after a more specific route from another AS: %+v", got)
	}
	delete(rib.best, netip.MustParsePrefix("198.51.100.0/25"))
	s.fs.unicastChanged(netip.MustParsePrefix("198.51.100.0/25"))
	pass()
	if got := sets["peer 10.77.0.2"]; len(got) != 1 {
		t.Fatalf("after the more specific went away: %+v", got)
	}

	// Withdrawn: an empty set at once.
	w := proto.Clone(good).(*api.Path)
	w.IsWithdraw, w.Pattrs = true, nil
	pass(w)
	if got, ok := sets["peer 10.77.0.2"]; !ok || len(got) != 0 {
		t.Fatalf("after the withdrawal: %+v", sets)
	}
	view = s.FlowSpec()
	if len(view) != 2 || len(view[0].Rules) != 1 || !strings.Contains(view[0].Rules[0].Reason, "redirect") {
		t.Errorf("view after the withdrawal: %+v", view)
	}
}

// A FlowSpec End-of-RIB counts for its own family, not for unicast: the
// sweep waits for every family of every neighbour. (Before FlowSpec, any
// End-of-RIB of AFI 1 counted as ipv4-unicast.)
func TestEndOfRIBFlowSpecFamilies(t *testing.T) {
	cfg := testConfig()
	cfg.Neighbors = []Neighbor{{Address: "10.77.0.9", PeerAS: 65001, Families: []string{FamilyIPv4Unicast, FamilyIPv4FlowSpec}}}
	sink := &fakeSink{routes: map[netip.Prefix][]netip.Addr{}}
	s, err := New(cfg, sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	eor := func(f string) *api.WatchEventResponse {
		return event(&api.Path{NeighborIp: "10.77.0.9", Family: familyAPI(f)})
	}
	s.onEvent(eor(FamilyIPv4FlowSpec))
	if sink.swept != 0 {
		t.Fatal("a FlowSpec End-of-RIB counted as the unicast one")
	}
	s.onEvent(eor(FamilyIPv4Unicast))
	if sink.swept != 1 {
		t.Errorf("swept %d times after both End-of-RIBs, want once", sink.swept)
	}
}

func TestFlowSpecConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    Neighbor
		want string
	}{
		{"import without a FlowSpec family", Neighbor{Families: []string{FamilyIPv4Unicast}, FlowSpecImport: FlowSpecImport{PrefixList: "in"}}, "need ipv4-flowspec or ipv6-flowspec"},
		{"unknown list", Neighbor{Families: []string{FamilyIPv4FlowSpec}, FlowSpecImport: FlowSpecImport{PrefixList: "nope"}}, `flowspec_import.prefix_list: no prefix list named "nope"`},
		{"actions without list", Neighbor{Families: []string{FamilyIPv4FlowSpec}, FlowSpecImport: FlowSpecImport{Actions: []string{"drop"}}}, "flowspec_import.prefix_list: required with actions"},
		{"unknown action", Neighbor{Families: []string{FamilyIPv6FlowSpec}, FlowSpecImport: FlowSpecImport{PrefixList: "in", Actions: []string{"redirect"}}}, `unknown action "redirect"`},
		{"ok", Neighbor{Families: []string{FamilyIPv4FlowSpec, FamilyIPv6FlowSpec}, FlowSpecImport: FlowSpecImport{PrefixList: "in", Actions: []string{"drop", "mark"}}}, ""},
	} {
		cfg := testConfig()
		tc.n.Address, tc.n.PeerAS = "10.77.0.50", 65050
		cfg.Neighbors = []Neighbor{tc.n}
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}
