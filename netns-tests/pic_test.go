package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestPICPrivileged is fast failover (fib.pic, on by default) with real
// peers: the failover bench's topology, upstream A sending 5000 IPv4 and
// 1000 IPv6 prefixes, upstream B (longer AS paths) only the first 3000
// and 600 of them. So A is best everywhere; the overlap has B as backup
// and the rest (only A offers it) has none. Then:
//
//   - the overlap's routes sit on a protected nexthop object, the rest on
//     another (plain) one;
//   - kill -9 of A's speaker: xrouter repoints the protected object (its
//     log says so) and probes to the overlap arrive at B's sink; probes to
//     prefixes only A offered never arrive at B, at any time; once
//     converged, the kernel table equals GoBGP's RIB (the overlap via B,
//     the rest gone from both);
//   - A back: everything via A again, the overlap protected again.
func TestPICPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	const nA4, nA6, nB4, nB6 = 5000, 1000, 3000, 600
	ft := newFailTopo(t)
	rcv := startFailXrouter(t, ft)
	var p4, p6 []netip.Prefix
	genPrefixes4(nA4, func(p netip.Prefix) { p4 = append(p4, p) })
	genPrefixes6(nA6, func(p netip.Prefix) { p6 = append(p6, p) })
	overlap := append(append([]netip.Prefix{}, p4[:nB4]...), p6[:nB6]...)
	onlyA := append(append([]netip.Prefix{}, p4[nB4:]...), p6[nB6:]...)

	// 100 samples of each kind: overlap first, then only-A. The tables
	// have aggregates covering the prefixes after them: an only-A sample
	// must not be inside an overlap prefix (B's route for that one would
	// rightly take it).
	var uncovered []netip.Prefix
	for _, p := range onlyA {
		covered := false
		for _, q := range overlap {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				covered = true
				break
			}
		}
		if !covered {
			uncovered = append(uncovered, p)
		}
	}
	var dsts []netip.Addr
	var ovIdx, aIdx []int
	for _, g := range []struct {
		set []netip.Prefix
		idx *[]int
	}{{overlap, &ovIdx}, {uncovered, &aIdx}} {
		for i := range 100 {
			*g.idx = append(*g.idx, len(dsts))
			dsts = append(dsts, g.set[i*len(g.set)/100].Addr().Next())
		}
	}
	pr := newProber(dsts, 100*time.Millisecond)
	pr.sink(t, ft.a, fbUpDev, viaA)
	pr.sink(t, ft.b, fbUpDev, viaB)

	ca, cb := feedConfigs(failOpts{N4: nA4, N6: nA6, Hold: 9}, "diverse")
	cb.N4, cb.N6 = nB4, nB6
	start := time.Now()
	fa := startFeeder(t, ft.a, "feeder-A", ca)
	fb := startFeeder(t, ft.b, "feeder-B", cb)
	fa.waitEvent(t, "drained", start, 90*time.Second)
	fb.waitEvent(t, "drained", start, 90*time.Second)

	expect := func(what string, via map[netip.Prefix]string, gone []netip.Prefix) {
		t.Helper()
		var problems []string
		if !waitFor(60*time.Second, func() bool {
			problems = picProblems(t, ft, rcv, via, gone)
			return len(problems) == 0
		}) {
			if len(problems) > 10 {
				problems = append(problems[:10], fmt.Sprintf("… %d in all", len(problems)))
			}
			t.Fatalf("%s: kernel or GoBGP RIB wrong:\n%v", what, problems)
		}
	}
	allVia := map[netip.Prefix]string{}
	for _, p := range append(append([]netip.Prefix{}, overlap...), onlyA...) {
		allVia[p] = fbA4
	}
	expect("after the load", allVia, nil)

	// The overlap shares a protected object, distinct from the only-A
	// routes' object.
	checkObjects := func(what string) {
		t.Helper()
		ids := kernelNHIDs(t, ft.rcv)
		ov4, a4 := ids[p4[0]], ids[p4[nB4]]
		if ov4 == 0 || a4 == 0 || ov4 == a4 {
			t.Fatalf("%s: overlap route %s on nexthop object %d, only-A route %s on %d: want two distinct objects", what, p4[0], ov4, p4[nB4], a4)
		}
		for _, p := range p4[:nB4] {
			if ids[p] != ov4 {
				t.Fatalf("%s: overlap route %s on nexthop object %d, %s on %d: want one shared object", what, p, ids[p], p4[0], ov4)
			}
		}
	}
	checkObjects("after the load")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pr.run(t, ctx, ft.src)
	if !waitFor(30*time.Second, func() bool { return pr.stable(time.Now().Add(-time.Hour), 2*time.Second, viaA) }) {
		t.Fatalf("samples do not all forward via A after the load: %s", pr.analyse("load", time.Now().Add(-3*time.Second), time.Now(), viaA))
	}

	// kill -9 of A's speaker.
	killed := time.Now()
	if err := syscall.Kill(fa.pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 feeder A: %v", err)
	}
	fa.kill(t)
	rcv.d.waitLog(t, "fast failover: protected nexthop objects repointed to their backup", 30*time.Second)
	if !waitFor(60*time.Second, func() bool { return pr.subsetVia(killed, ovIdx, viaB) }) {
		t.Fatalf("probes to the overlap do not arrive via B after the kill: %s", pr.analyse("kill", killed, time.Now(), viaB))
	}
	t.Logf("probes to the overlap all via B from %.2f s after the kill (not a speed assertion)", pr.firstVia(killed, ovIdx, viaB).Seconds())
	viaBOnly := map[netip.Prefix]string{}
	for _, p := range overlap {
		viaBOnly[p] = fbB4
	}
	expect("after the kill", viaBOnly, onlyA)

	// A back.
	back := time.Now()
	fa2 := startFeeder(t, ft.a, "feeder-A2", ca)
	fa2.waitEvent(t, "drained", back, 90*time.Second)
	expect("after A's return", allVia, nil)
	checkObjects("after A's return")
	if !waitFor(60*time.Second, func() bool { return pr.stable(back, 2*time.Second, viaA) }) {
		t.Fatalf("samples do not all forward via A after A's return: %s", pr.analyse("return", back, time.Now(), viaA))
	}
	time.Sleep(time.Second) // the last probes' arrivals
	stop()
	if n := pr.arrivals(aIdx, viaB); n > 0 {
		t.Errorf("%d probes to prefixes only A offered arrived at B's sink", n)
	}
}

// picProblems lists what differs from: the kernel routing each prefix of
// via through that upstream (by its IPv4 session address; IPv6 through
// the same upstream's IPv6 address), GoBGP's RIB holding for it exactly
// one best path, from that neighbour; and the prefixes gone in neither.
func picProblems(t *testing.T, ft *failTopo, rcv failReceiver, via map[netip.Prefix]string, gone []netip.Prefix) []string {
	t.Helper()
	fib := kernelGateways(t, ft.rcv)
	rib := gobgpRIB(t, rcv.grpc)
	var problems []string
	for p, nb := range via {
		gw := nb
		if p.Addr().Is6() {
			gw = map[string]string{fbA4: fbA6, fbB4: fbB6}[nb]
		}
		if fib[p] != gw {
			problems = append(problems, fmt.Sprintf("kernel %s via %q, want %s", p, fib[p], gw))
		}
		var best []string
		for _, rp := range rib[p] {
			if rp.best {
				best = append(best, rp.neighbor)
			}
		}
		if len(best) != 1 || best[0] != nb {
			problems = append(problems, fmt.Sprintf("RIB %s: best from %v, want %s", p, best, nb))
		}
	}
	for _, p := range gone {
		if g, ok := fib[p]; ok {
			problems = append(problems, fmt.Sprintf("kernel %s via %q, want no route", p, g))
		}
		if len(rib[p]) > 0 {
			problems = append(problems, fmt.Sprintf("RIB %s: %d paths, want none", p, len(rib[p])))
		}
	}
	return problems
}

// kernelNHIDs maps each route of the main tables to its nexthop object
// (0: none).
func kernelNHIDs(t *testing.T, ns *testbed.Netns) map[netip.Prefix]uint32 {
	t.Helper()
	out := map[netip.Prefix]uint32{}
	for _, fam := range []string{"-4", "-6"} {
		var routes []struct {
			Dst  string `json:"dst"`
			NHID uint32 `json:"nhid"`
		}
		s := ns.IP(t, "-j", fam, "route", "show", "table", "main")
		if err := json.Unmarshal([]byte(s), &routes); err != nil {
			t.Fatalf("ip -j %s route: %v", fam, err)
		}
		for _, r := range routes {
			if p, err := netip.ParsePrefix(r.Dst); err == nil {
				out[p] = r.NHID
			}
		}
	}
	return out
}

// subsetVia reports whether, in the last settled round sent after from,
// every sample of idx arrived via want.
func (p *prober) subsetVia(from time.Time, idx []int, want uint8) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	end := p.settledRoundsLocked()
	if end == 0 || p.sent[end-1].Before(from) {
		return false
	}
	for _, i := range idx {
		if p.got[end-1][i]&want == 0 {
			return false
		}
	}
	return true
}

// arrivals counts the probes to the samples idx that arrived via bit, in
// every round.
func (p *prober) arrivals(idx []int, bit uint8) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, g := range p.got {
		for _, i := range idx {
			if g[i]&bit != 0 {
				n++
			}
		}
	}
	return n
}

// firstVia is the time after from of the first settled round in which
// every sample of idx arrived via want (-1: none).
func (p *prober) firstVia(from time.Time, idx []int, want uint8) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.settledRoundsLocked() {
		if p.sent[r].Before(from) {
			continue
		}
		all := true
		for _, i := range idx {
			all = all && p.got[r][i]&want != 0
		}
		if all {
			return p.sent[r].Sub(from)
		}
	}
	return -1
}
