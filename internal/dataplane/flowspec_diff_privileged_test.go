package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// fsRefPkt is a test packet as the reference matcher sees it.
type fsRefPkt struct {
	fam          flowspec.Family
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	icmpType     uint8
	dscp         uint8
	size         int // IP packet length
}

func (p fsRefPkt) frame() []byte {
	var l4 []byte
	switch p.proto {
	case protoUDP:
		l4 = udp(p.sport, p.dport, payload(p.size-p.ipLen()-8))
	case protoTCP:
		l4 = tcp(p.sport, p.dport, payload(p.size-p.ipLen()-20))
	default:
		l4 = icmp(p.icmpType, 0, payload(p.size-p.ipLen()-4))
	}
	if p.fam == flowspec.IPv4 {
		return frame4(ip4(to4(p.dst), func(h *ipv4Hdr) { h.Src, h.Proto, h.TOS = p.src, p.proto, p.dscp<<2 }), l4)
	}
	return frame6(ip6(to6(p.dst), func(h *ipv6Hdr) { h.Src, h.Next, h.TC = p.src, p.proto, p.dscp<<2 }), l4)
}

func (p fsRefPkt) ipLen() int {
	if p.fam == flowspec.IPv4 {
		return ipv4Len
	}
	return ipv6Len
}

// fsRefMatches is RFC 8955 matching written plainly, one component after
// the other, for the packets fsRefPkt makes (no fragments, no TCP flags).
func fsRefMatches(m *flowspec.Match, p fsRefPkt) bool {
	in := func(ops []flowspec.NumOp, max, v uint64) bool {
		for _, r := range flowspec.Ranges(ops, max) {
			if v >= r.Lo && v <= r.Hi {
				return true
			}
		}
		return false
	}
	ports := p.proto == protoUDP || p.proto == protoTCP
	icmpProto := uint8(protoICMP)
	if p.fam == flowspec.IPv6 {
		icmpProto = protoICMPv6
	}
	switch {
	case m.Dst.IsValid() && !m.Dst.Contains(p.dst),
		m.Src.IsValid() && !m.Src.Contains(p.src),
		len(m.Proto) > 0 && !in(m.Proto, 255, uint64(p.proto)),
		len(m.Port) > 0 && !(ports && (in(m.Port, 65535, uint64(p.sport)) || in(m.Port, 65535, uint64(p.dport)))),
		len(m.DstPort) > 0 && !(ports && in(m.DstPort, 65535, uint64(p.dport))),
		len(m.SrcPort) > 0 && !(ports && in(m.SrcPort, 65535, uint64(p.sport))),
		len(m.ICMPType) > 0 && !(p.proto == icmpProto && in(m.ICMPType, 255, uint64(p.icmpType))),
		len(m.PktLen) > 0 && !in(m.PktLen, 65535, uint64(p.size)),
		len(m.DSCP) > 0 && !in(m.DSCP, 63, uint64(p.dscp)):
		return false
	}
	return true
}

// fsCounts is every installed rule's packet count, by family and match.
func fsCounts(t *testing.T, e *fwdEnv) map[string]uint64 {
	t.Helper()
	st, err := e.dp.FlowspecStats()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, s := range st {
		m[fmt.Sprint(s.Rule.Match.Family, " ", s.Rule.Match.String())] = s.Packets
	}
	return m
}

// TestFlowspecDifferentialPrivileged installs random rule sets and checks
// every random packet against a plain reference matcher: the program drops
// it exactly when some rule matches, and the rule whose counter moves is
// the first match in RFC 8955 order. The sets mix what the classifier's
// fast paths treat apart: rules its candidate summaries decide alone and
// rules they cannot, destinations of one length and of many (more than the
// destination index holds), rules with no destination (the index is off),
// lists whose rules all name ports (port sets screen the packet before the
// walk), and nested prefixes.
func TestFlowspecDifferentialPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	pick := func(n int) int { return rng.IntN(n) }

	// Destinations inside the routes the environment forwards.
	dsts := map[flowspec.Family][]netip.Addr{}
	srcs := map[flowspec.Family][]netip.Addr{}
	for i := range 6 {
		dsts[flowspec.IPv4] = append(dsts[flowspec.IPv4], netip.AddrFrom4([4]byte{10, 99, byte(1 + i%2), byte(1 + i)}))
		dsts[flowspec.IPv6] = append(dsts[flowspec.IPv6], netip.MustParseAddr(fmt.Sprintf("fd00:99:0:%d::%d", i%2, 1+i)))
		srcs[flowspec.IPv4] = append(srcs[flowspec.IPv4], netip.AddrFrom4([4]byte{10, 201, 1, byte(2 + i)}))
		srcs[flowspec.IPv6] = append(srcs[flowspec.IPv6], netip.MustParseAddr(fmt.Sprintf("fd00:201:1::%d", 2+i)))
	}
	lens := map[flowspec.Family][]int{flowspec.IPv4: {32, 32, 31, 24, 23, 16}, flowspec.IPv6: {128, 128, 127, 64, 63, 48}}
	manyLens := map[flowspec.Family][]int{flowspec.IPv4: {32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 20, 16}, flowspec.IPv6: {128, 127, 126, 125, 124, 120, 112, 96, 80, 64, 63, 48}}
	ports := []uint16{53, 80, 123, 9, 40000}
	numOps := func(vals []uint16) []flowspec.NumOp {
		switch pick(4) {
		case 0:
			return between(uint64(vals[0])-3, uint64(vals[0])+30)
		case 1: // two ranges: the summary folds them, the rule decides
			return append(eq(uint64(vals[pick(len(vals))])), flowspec.NumOp{EQ: true, Value: uint64(vals[pick(len(vals))])})
		default:
			return eq(uint64(vals[pick(len(vals))]))
		}
	}
	randRule := func(fam flowspec.Family, many, portsOnly bool) flowspec.Rule {
		var m flowspec.Match
		m.Family = fam
		if pick(10) != 0 {
			ls := lens[fam]
			if many {
				ls = manyLens[fam]
			}
			m.Dst, _ = dsts[fam][pick(len(dsts[fam]))].Prefix(ls[pick(len(ls))])
		}
		if pick(4) == 0 {
			ls := map[flowspec.Family][]int{flowspec.IPv4: {32, 30, 24}, flowspec.IPv6: {128, 126, 64}}[fam]
			m.Src, _ = srcs[fam][pick(len(srcs[fam]))].Prefix(ls[pick(3)])
		}
		switch pick(5) {
		case 0:
			m.Proto = eq(protoUDP)
		case 1:
			m.Proto = eq(protoTCP)
		case 2:
			m.Proto = between(protoTCP, protoUDP)
		}
		if pick(5) < 3 {
			m.DstPort = numOps(ports)
		}
		if pick(8) == 0 {
			m.SrcPort = numOps(ports)
		}
		if pick(10) == 0 {
			m.Port = numOps(ports)
		}
		if pick(10) == 0 && len(m.Proto) == 0 && len(m.DstPort)+len(m.SrcPort)+len(m.Port) == 0 {
			m.ICMPType = eq(map[flowspec.Family]uint64{flowspec.IPv4: 8, flowspec.IPv6: 128}[fam])
		}
		if portsOnly && len(m.DstPort)+len(m.SrcPort)+len(m.Port) == 0 {
			// Every rule names ports: the lists keep port sets.
			switch pick(3) {
			case 0:
				m.SrcPort = eq(uint64(ports[pick(len(ports))]))
			case 1:
				m.Port = between(50, 60)
			default:
				m.DstPort = eq(uint64(ports[pick(len(ports))]))
			}
			m.ICMPType = nil
		}
		if pick(8) == 0 {
			m.PktLen = between(60, 100)
		}
		if pick(8) == 0 {
			m.DSCP = eq(uint64([]uint8{0, 46}[pick(2)]))
		}
		return flowspec.Rule{Match: m, Action: fsDrop, Source: "test"}
	}
	randPkt := func(fam flowspec.Family) fsRefPkt {
		p := fsRefPkt{fam: fam, dst: dsts[fam][pick(len(dsts[fam]))], src: srcs[fam][pick(len(srcs[fam]))],
			sport: ports[pick(len(ports))], dport: ports[pick(len(ports))], dscp: []uint8{0, 46}[pick(2)],
			size: []int{80, 90, 200}[pick(3)]}
		switch pick(4) {
		case 0:
			p.proto = protoTCP
		case 1:
			p.proto, p.icmpType = protoICMP, []uint8{8, 0}[pick(2)]
			if fam == flowspec.IPv6 {
				p.proto, p.icmpType = protoICMPv6, []uint8{128, 129}[pick(2)]
			}
		default:
			p.proto = protoUDP
		}
		return p
	}

	const sets, packets = 40, 30
	checked, dropped := 0, 0
	for set := range sets {
		many, portsOnly := set%4 == 3, set%4 == 1
		n := 1 + pick(40)
		var rules []flowspec.Rule
		seen := map[string]bool{}
		for len(rules) < n {
			fam := flowspec.IPv4
			if pick(3) == 0 {
				fam = flowspec.IPv6
			}
			r := randRule(fam, many, portsOnly)
			if flowspec.Validate(r) != nil || seen[r.Match.Key()] {
				continue
			}
			seen[r.Match.Key()] = true
			rules = append(rules, r)
		}
		flowspec.Sort(rules)
		if err := e.dp.SetFlowspec(rules); err != nil {
			t.Fatalf("set %d: %v", set, err)
		}
		for range packets {
			fam := flowspec.IPv4
			if pick(3) == 0 {
				fam = flowspec.IPv6
			}
			p := randPkt(fam)
			want := ""
			for i := range rules {
				if rules[i].Match.Family == fam && fsRefMatches(&rules[i].Match, p) {
					want = fmt.Sprint(fam, " ", rules[i].Match.String())
					break
				}
			}
			before := fsCounts(t, e)
			v, _, err := e.run(devSrc, p.frame())
			if err != nil {
				t.Fatalf("BPF_PROG_RUN: %v", err)
			}
			after := fsCounts(t, e)
			got := ""
			for k, n := range after {
				if n != before[k] {
					if got != "" {
						t.Errorf("set %d, packet %+v: more than one rule counted it", set, p)
					}
					got = k
				}
			}
			if got != want || (v == xdpDrop) != (want != "") {
				t.Errorf("set %d (%d rules), packet %+v: counted by %q, verdict %d; the first match is %q\nrules: %v",
					set, len(rules), p, got, v, want, rules)
			}
			checked++
			if want != "" {
				dropped++
			}
		}
	}
	t.Logf("%d packets checked, %d of them matched a rule", checked, dropped)
	if dropped == 0 || dropped == checked {
		t.Errorf("%d of %d packets matched: the random sets test nothing", dropped, checked)
	}
}
