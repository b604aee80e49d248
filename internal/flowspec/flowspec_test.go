package flowspec

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestRanges(t *testing.T) {
	for _, c := range []struct {
		ops  []NumOp
		want string
	}{
		{[]NumOp{{EQ: true, Value: 53}}, "[{53 53}]"},
		{[]NumOp{{EQ: true, Value: 53}, {GT: true, EQ: true, Value: 1024}, {And: true, LT: true, EQ: true, Value: 2048}}, "[{53 53} {1024 2048}]"},
		{[]NumOp{{LT: true, GT: true, Value: 80}}, "[{0 79} {81 65535}]"},
		{[]NumOp{{GT: true, Value: 70000}}, "[]"},
		{[]NumOp{{LT: true, GT: true, EQ: true}}, "[{0 65535}]"},
		// AND binds tighter: =1 OR (>=10 AND <=20).
		{[]NumOp{{EQ: true, Value: 1}, {GT: true, EQ: true, Value: 10}, {And: true, LT: true, EQ: true, Value: 20}}, "[{1 1} {10 20}]"},
	} {
		if got := fmt.Sprint(Ranges(c.ops, 65535)); got != c.want && !(got == "[]" && c.want == "[]") {
			t.Errorf("%v: %s, want %s", c.ops, got, c.want)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	base := Match{Family: IPv6, Dst: netip.MustParsePrefix("2001:db8::/32")}
	for _, c := range []struct {
		m    func(*Match)
		want string
	}{
		{func(m *Match) { m.DstOffset = 8 }, "destination: prefix offset 8"},
		{func(m *Match) { m.FlowLabel = []NumOp{{EQ: true, Value: 5}} }, "flow-label"},
		{func(m *Match) {
			for i := range 5 {
				m.DstPort = append(m.DstPort, NumOp{EQ: true, Value: uint64(10 * i)})
			}
		}, "destination-port: more than 4"},
		{func(m *Match) { m.Src = netip.MustParsePrefix("192.0.2.0/24") }, "source 192.0.2.0/24: not an IPv6 prefix"},
	} {
		m := base
		c.m(&m)
		err := Validate(Rule{Match: m})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
	if err := Validate(Rule{Match: base}); err != nil {
		t.Errorf("plain rule: %v", err)
	}
}

// TestCompareRFC8955 checks the §5.1 order: more specific destination
// first, lower address first for disjoint prefixes, a component the other
// lacks first, lower operator bytes first, more components first.
func TestCompareRFC8955(t *testing.T) {
	p := netip.MustParsePrefix
	r := func(m Match) Rule { m.Family = IPv4; return Rule{Match: m} }
	rules := []Rule{
		r(Match{Proto: []NumOp{{EQ: true, Value: 17}}}),                                                                 // no dst: last
		r(Match{Dst: p("10.0.0.0/8")}),                                                                                  // covers the /24
		r(Match{Dst: p("10.1.1.0/24"), Proto: []NumOp{{EQ: true, Value: 6}}}),                                           // =6 < =17
		r(Match{Dst: p("10.1.1.0/24"), Proto: []NumOp{{EQ: true, Value: 17}}}),                                          //
		r(Match{Dst: p("10.1.1.0/24"), Src: p("192.0.2.0/24")}),                                                         // has type 2: before type 3
		r(Match{Dst: p("9.0.0.0/8")}),                                                                                   // lower address than 10/8
		r(Match{Dst: p("10.1.1.0/24"), Proto: []NumOp{{EQ: true, Value: 17}}, DstPort: []NumOp{{EQ: true, Value: 53}}}), // more components
	}
	Sort(rules)
	var got []string
	for _, x := range rules {
		got = append(got, x.Match.String())
	}
	want := []string{
		"dst 9.0.0.0/8",
		"dst 10.1.1.0/24 src 192.0.2.0/24",
		"dst 10.1.1.0/24 proto =6",
		"dst 10.1.1.0/24 proto =17 dport =53",
		"dst 10.1.1.0/24 proto =17",
		"dst 10.0.0.0/8",
		"proto =17",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order\n got %q\nwant %q", got, want)
	}
}

func TestTableMergesAndRejects(t *testing.T) {
	var applied []Rule
	tb := NewTable(func(r []Rule) error { applied = r; return nil })
	d := netip.MustParsePrefix("203.0.113.0/24")
	ok := Rule{Match: Match{Family: IPv4, Dst: d}, Action: Action{RateLimited: true}}
	bad := Rule{Match: Match{Family: IPv6, FlowLabel: []NumOp{{EQ: true, Value: 1}}}}
	err := tb.Set("peer 192.0.2.1", []Rule{ok, bad})
	if err == nil || !strings.Contains(err.Error(), "flow-label") {
		t.Errorf("error %v, want the flow-label rule named", err)
	}
	if len(applied) != 1 || applied[0].Source != "peer 192.0.2.1" {
		t.Fatalf("applied %+v", applied)
	}
	if err := tb.Set("config", []Rule{{Match: Match{Family: IPv4, Dst: netip.MustParsePrefix("203.0.113.7/32")}}}); err != nil {
		t.Fatal(err)
	}
	if len(applied) != 2 || applied[0].Source != "config" {
		t.Fatalf("applied %+v", applied)
	}
	if err := tb.Set("peer 192.0.2.1", nil); err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Source != "config" {
		t.Fatalf("after withdrawal: %+v", applied)
	}
}

func TestStaticRuleErrorsNameTheKey(t *testing.T) {
	rate := 0.0
	s := Settings{Rules: []StaticRule{
		{Match: StaticMatch{Destination: "203.0.113.0/24", Protocol: []string{"udp"}, DestinationPort: []string{"=53", ">=1024&<=2048"}}, Action: StaticAction{Rate: &rate}},
		{Match: StaticMatch{Destination: "203.0.113.0/24", DestinationPort: []string{"=x"}}},
	}}
	_, err := s.StaticRules()
	if err == nil || !strings.HasPrefix(err.Error(), `key "flowspec.rules[1].match.destination_port": "=x"`) {
		t.Errorf("error %v", err)
	}
	s.Rules = s.Rules[:1]
	rules, err := s.StaticRules()
	if err != nil {
		t.Fatal(err)
	}
	if got := rules[0].Match.String() + " / " + rules[0].Action.String(); got != "dst 203.0.113.0/24 proto =17 dport =53,>=1024&<=2048 / drop" {
		t.Errorf("parsed %s", got)
	}
	s.Rules = []StaticRule{{Match: StaticMatch{Protocol: []string{"udp"}}}}
	if _, err := s.StaticRules(); err == nil || !strings.Contains(err.Error(), "flowspec.rules[0].match.family") {
		t.Errorf("error %v", err)
	}
}
