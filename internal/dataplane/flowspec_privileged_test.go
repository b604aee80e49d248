package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xrouter/xrouter/internal/flowspec"
)

const xdpDrop = 1

// fs4 and fs6 are rules of the family with the given match and action.
func fs4(m flowspec.Match, a flowspec.Action) flowspec.Rule {
	m.Family = flowspec.IPv4
	return flowspec.Rule{Match: m, Action: a, Source: "test"}
}

func fs6(m flowspec.Match, a flowspec.Action) flowspec.Rule {
	m.Family = flowspec.IPv6
	return flowspec.Rule{Match: m, Action: a, Source: "test"}
}

func eq(v uint64) []flowspec.NumOp { return []flowspec.NumOp{{EQ: true, Value: v}} }

func between(lo, hi uint64) []flowspec.NumOp {
	return []flowspec.NumOp{{GT: true, EQ: true, Value: lo}, {And: true, LT: true, EQ: true, Value: hi}}
}

var (
	fsDrop = flowspec.Action{RateLimited: true}
	fsMark = func(d uint8) flowspec.Action { return flowspec.Action{MarkDSCP: true, DSCP: d} }
)

// setRules installs rules in classifier order.
func (e *fwdEnv) setRules(t *testing.T, rules ...flowspec.Rule) {
	t.Helper()
	flowspec.Sort(rules)
	if err := e.dp.SetFlowspec(rules); err != nil {
		t.Fatal(err)
	}
}

// fsCheck runs frame and checks the verdict, the one outcome counted and
// the output frame (want; nil: the input unchanged).
func (e *fwdEnv) fsCheck(t *testing.T, name string, frame []byte, o Outcome, want []byte) {
	t.Helper()
	verdict := map[Outcome]uint32{Forwarded: xdpRedirect, FlowspecDrop: xdpDrop, FlowspecRate: xdpDrop}[o]
	if verdict == 0 {
		verdict = xdpPass
	}
	if want == nil {
		want = frame
		if o == Forwarded {
			want = forwarded(frame, peerMAC[devDst], routerMAC[devDst])
		}
	}
	before := e.stats(t)
	v, out, err := e.run(devSrc, frame)
	if err != nil {
		t.Fatalf("%s: BPF_PROG_RUN: %v", name, err)
	}
	got := delta(before, e.stats(t))
	if v != verdict {
		t.Errorf("%s: verdict %d, want %d", name, v, verdict)
	}
	wantDelta := map[Outcome]Counter{o: {Packets: 1, Bytes: uint64(len(frame))}}
	if fmt.Sprint(got) != fmt.Sprint(wantDelta) {
		t.Errorf("%s: counters moved %v, want %v", name, named(got), named(wantDelta))
	}
	if !bytes.Equal(out, want) {
		t.Errorf("%s: output frame differs\n got %x\nwant %x", name, out, want)
	}
}

func (e *fwdEnv) ruleStats(t *testing.T) map[string]FlowspecRuleStats {
	t.Helper()
	st, err := e.dp.FlowspecStats()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]FlowspecRuleStats{}
	for _, s := range st {
		m[s.Rule.Match.String()] = s
	}
	return m
}

var (
	victim4 = netip.MustParsePrefix("10.99.1.0/24") // remote4 is in it
	victim6 = netip.MustParsePrefix("fd00:99::/64")
)

func TestFlowspecMatchPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	udp4 := func(sport, dport uint16) []byte { return frame4(ip4(to4(remote4)), udp(sport, dport, payload(18))) }
	e.setRules(t,
		fs4(flowspec.Match{Dst: victim4, Proto: eq(17), DstPort: append(eq(53), between(1024, 2048)...)}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, Proto: eq(6), TCPFlags: []flowspec.BitOp{{Match: true, Value: 0x02}, {And: true, Not: true, Value: 0x10}}}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, ICMPType: eq(8)}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, Fragment: []flowspec.BitOp{{Value: 0x02}}}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, Port: eq(7777)}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, PktLen: between(1000, 1100)}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, DSCP: eq(46)}, fsDrop),
		fs6(flowspec.Match{Dst: victim6, Src: netip.MustParsePrefix("fd00:201:1::/48"), Proto: eq(17), DstPort: eq(53)}, fsDrop),
		fs6(flowspec.Match{Dst: victim6, ICMPType: eq(128)}, fsDrop),
	)
	e.fsCheck(t, "udp 53", udp4(40000, 53), FlowspecDrop, nil)
	e.fsCheck(t, "udp 54", udp4(40000, 54), Forwarded, nil)
	e.fsCheck(t, "udp 1024 (range start)", udp4(40000, 1024), FlowspecDrop, nil)
	e.fsCheck(t, "udp 2048 (range end)", udp4(40000, 2048), FlowspecDrop, nil)
	e.fsCheck(t, "udp 2049", udp4(40000, 2049), Forwarded, nil)
	e.fsCheck(t, "udp 1023", udp4(40000, 1023), Forwarded, nil)
	e.fsCheck(t, "port either: source 7777", udp4(7777, 80), FlowspecDrop, nil)
	e.fsCheck(t, "port either: destination 7777", udp4(80, 7777), FlowspecDrop, nil)
	e.fsCheck(t, "udp 53 to another /24", frame4(ip4(to4(mustAddr("10.99.2.1"))), udp(40000, 53, payload(18))), Forwarded, nil)
	syn := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.Proto = protoTCP }), tcp(40000, 80, nil))
	e.fsCheck(t, "tcp syn", syn, FlowspecDrop, nil)
	synack := mutate(syn, func(b []byte) { b[ethLen+ipv4Len+13] = 0x12 })
	e.fsCheck(t, "tcp syn+ack", synack, Forwarded, nil)
	echo := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.Proto = protoICMP }), icmp(8, 0, echoBody()))
	e.fsCheck(t, "icmp echo request", echo, FlowspecDrop, nil)
	reply := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.Proto = protoICMP }), icmp(0, 0, echoBody()))
	e.fsCheck(t, "icmp echo reply", reply, Forwarded, nil)
	first := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.FragOff = 0x2000 }), udp(40000, 80, payload(18)))
	e.fsCheck(t, "first fragment", first, FlowspecDrop, nil)
	// A later fragment has no ports: the port rule cannot match it, but
	// the fragment rule does.
	later := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.FragOff = 0x0010 }), payload(26))
	e.fsCheck(t, "last fragment", later, FlowspecDrop, nil)
	toPort80 := func(b []byte) { b[ethLen+ipv4Len+3] = 80 }
	e.fsCheck(t, "length 1050", mutate(udp4Sized(remote4, 1050), toPort80), FlowspecDrop, nil)
	e.fsCheck(t, "length 1101", mutate(udp4Sized(remote4, 1101), toPort80), Forwarded, nil)
	ef := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.TOS = 46 << 2 }), udp(40000, 80, payload(18)))
	e.fsCheck(t, "dscp 46", ef, FlowspecDrop, nil)
	e.fsCheck(t, "ipv6 udp 53 from the source prefix", udp6To(remote6), FlowspecDrop, nil)
	other := frame6(ip6(to6(remote6), func(h *ipv6Hdr) { h.Src = mustAddr("fd00:202:3::2") }), udp(40000, 53, payload(18)))
	e.fsCheck(t, "ipv6 udp 53 from elsewhere", other, Forwarded, nil)
	ping6 := frame6(ip6(to6(remote6), func(h *ipv6Hdr) { h.Next = protoICMPv6 }), icmp(128, 0, echoBody()))
	e.fsCheck(t, "icmpv6 echo request", ping6, FlowspecDrop, nil)

	st := e.ruleStats(t)
	udpRule := fs4(flowspec.Match{Dst: victim4, Proto: eq(17), DstPort: append(eq(53), between(1024, 2048)...)}, fsDrop)
	if s := st[udpRule.Match.String()]; s.Packets != 3 || s.Bytes != 3*uint64(len(udp4(1, 53))) {
		t.Errorf("udp rule counted %d packets, %d bytes; want 3, %d", s.Packets, s.Bytes, 3*len(udp4(1, 53)))
	}
}

// TestFlowspecOrderAndMarkPrivileged: the more specific destination is tried
// first (RFC 8955 §5.1); marking rewrites the DSCP with the checksum the
// kernel would write and the packet is forwarded.
func TestFlowspecOrderAndMarkPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.setRules(t,
		fs4(flowspec.Match{Dst: netip.MustParsePrefix("10.99.0.0/16")}, fsDrop),
		fs4(flowspec.Match{Dst: victim4, DstPort: eq(53)}, fsMark(10)),
		fs6(flowspec.Match{Dst: netip.MustParsePrefix("fd00:99::/32")}, fsDrop),
		fs6(flowspec.Match{Dst: victim6, DstPort: eq(53)}, fsMark(10)),
	)
	in := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.TOS = 0x01 }), udp(40000, 53, payload(18)))
	marked := frame4(ip4(to4(remote4), func(h *ipv4Hdr) { h.TOS = 10<<2 | 0x01 }), udp(40000, 53, payload(18)))
	e.fsCheck(t, "marked", in, Forwarded, forwarded(marked, peerMAC[devDst], routerMAC[devDst]))
	e.fsCheck(t, "port 54 falls to the /16 drop", frame4(ip4(to4(remote4)), udp(1, 54, payload(18))), FlowspecDrop, nil)
	in6 := frame6(ip6(to6(remote6), func(h *ipv6Hdr) { h.TC = 0x02; h.Flow = 0x12345 }), udp(40000, 53, payload(18)))
	marked6 := frame6(ip6(to6(remote6), func(h *ipv6Hdr) { h.TC = 10<<2 | 0x02; h.Flow = 0x12345 }), udp(40000, 53, payload(18)))
	e.fsCheck(t, "marked ipv6", in6, Forwarded, forwarded(marked6, peerMAC[devDst], routerMAC[devDst]))
	e.fsCheck(t, "ipv6 port 54 falls to the /32 drop", frame6(ip6(to6(remote6)), udp(1, 54, payload(18))), FlowspecDrop, nil)

	// Withdrawing everything restores forwarding at once.
	e.setRules(t)
	e.fsCheck(t, "no rules", udp4To(remote4), Forwarded, nil)
}

// TestFlowspecSwapKeepsCountersPrivileged: replacing the rule set keeps the
// counters of rules that stay, starts new ones from zero.
func TestFlowspecSwapKeepsCountersPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	a := fs4(flowspec.Match{Dst: victim4, DstPort: eq(53)}, fsDrop)
	b := fs4(flowspec.Match{Dst: victim4, DstPort: eq(54)}, fsDrop)
	e.setRules(t, a)
	e.fsCheck(t, "a drops", udp4To(remote4), FlowspecDrop, nil)
	e.setRules(t, a, b)
	e.fsCheck(t, "a still drops", udp4To(remote4), FlowspecDrop, nil)
	st := e.ruleStats(t)
	if st[a.Match.String()].Packets != 2 || st[b.Match.String()].Packets != 0 {
		t.Errorf("counters a %d, b %d; want 2, 0", st[a.Match.String()].Packets, st[b.Match.String()].Packets)
	}
	e.setRules(t, b)
	e.fsCheck(t, "a gone", udp4To(remote4), Forwarded, nil)
	e.setRules(t, b, a)
	if st := e.ruleStats(t); st[a.Match.String()].Packets != 0 {
		t.Errorf("re-added rule starts at %d packets, want 0", st[a.Match.String()].Packets)
	}
}

// TestFlowspecRatePrivileged: back-to-back packets from an idle bucket: the
// bucket's depth passes (FlowspecBurst), the rest is dropped as
// flowspec_rate. The runs take milliseconds, in which a rate of 1000 B/s
// adds a few bytes at most.
func TestFlowspecRatePrivileged(t *testing.T) {
	e := newFwdEnv(t)
	const rate = 1000
	r := fs4(flowspec.Match{Dst: victim4, Proto: eq(17)}, flowspec.Action{RateLimited: true, Rate: rate})
	e.setRules(t, r)
	in := udp4Sized(remote4, 200)
	passed, dropped := 0, 0
	for range 200 {
		v, _, err := e.run(devSrc, in)
		if err != nil {
			t.Fatal(err)
		}
		switch v {
		case xdpRedirect:
			passed++
		case xdpDrop:
			dropped++
		default:
			t.Fatalf("verdict %d", v)
		}
	}
	want := int(FlowspecBurst(rate)) / len(in)
	if passed < want || passed > want+1 {
		t.Errorf("%d packets of %d bytes passed, want %d (+1)", passed, len(in), want)
	}
	st := e.ruleStats(t)[r.Match.String()]
	if st.Packets != 200 || st.Over != uint64(dropped) {
		t.Errorf("rule counted %d packets, %d over; want 200, %d", st.Packets, st.Over, dropped)
	}
	if s := e.stats(t); s[FlowspecRate].Packets != uint64(dropped) {
		t.Errorf("flowspec_rate %d, want %d", s[FlowspecRate].Packets, dropped)
	}
}

// TestFlowspecRejectsPrivileged: a set with a rule the classifier cannot
// match is not applied at all.
func TestFlowspecRejectsPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	good := fs4(flowspec.Match{Dst: victim4, DstPort: eq(53)}, fsDrop)
	e.setRules(t, good)
	bad := fs6(flowspec.Match{Dst: victim6, DstOffset: 8}, fsDrop)
	if err := e.dp.SetFlowspec([]flowspec.Rule{fs4(flowspec.Match{Dst: victim4}, flowspec.Action{}), bad}); err == nil {
		t.Fatal("a rule with a prefix offset was accepted")
	}
	e.fsCheck(t, "old set still in place", udp4To(remote4), FlowspecDrop, nil)
}
