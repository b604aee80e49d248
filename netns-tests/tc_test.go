package netnstests

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// tcAction is what the test's tc program does on an interface's ingress:
// drop IP packets to one destination and set a mark on the others.
type tcAction struct {
	// Drop4 and Drop6: IPv4 packets to Drop4 and IPv6 packets whose
	// destination ends in Drop6's last four bytes are dropped (TC_ACT_SHOT).
	Drop4, Drop6 netip.Addr
	// Mark is set on every other IPv4 and IPv6 packet (0: none).
	Mark uint32
}

// tcProgram builds a direct-action cls_bpf program for a (what an
// operator's tc filter with `action drop` / `action skbedit mark` would
// do; this kernel has neither action, so the filter is a BPF program).
func tcProgram(t *testing.T, a tcAction) *ebpf.Program {
	t.Helper()
	const (
		skbMark     = 8  // offsetof(struct __sk_buff, mark)
		skbProtocol = 16 // offsetof(struct __sk_buff, protocol)
		tcActOK     = 0
		tcActShot   = 2
	)
	word := func(a netip.Addr) int32 {
		b := a.AsSlice()
		b = b[len(b)-4:]
		// The 4 bytes as a little-endian load of them reads them.
		return int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R0, asm.R6, skbProtocol, asm.Word),
		asm.Mov.Imm(asm.R2, 14+16), // IPv4 destination
		asm.Mov.Imm(asm.R7, word(a.Drop4)),
		asm.JEq.Imm(asm.R0, 0x0008, "load"), // htons(ETH_P_IP)
		asm.Mov.Imm(asm.R2, 14+24+12),       // last word of the IPv6 destination
		asm.Mov.Imm(asm.R7, word(a.Drop6)),
		asm.JEq.Imm(asm.R0, 0xdd86, "load"), // htons(ETH_P_IPV6)
		asm.Ja.Label("pass"),
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("load"),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 4),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R0, asm.R10, -8, asm.Word),
		asm.JNE.Reg(asm.R0, asm.R7, "mark"),
		asm.Mov.Imm(asm.R0, tcActShot),
		asm.Return(),
		asm.Mov.Imm(asm.R0, int32(a.Mark)).WithSymbol("mark"),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.StoreMem(asm.R6, skbMark, asm.R0, asm.Word),
		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("pass"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("loading the tc program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// addTCFilter adds a clsact qdisc to dev in ns and the program as a
// direct-action bpf filter on its ingress, as
// `tc qdisc add dev DEV clsact; tc filter add dev DEV ingress bpf da ...`.
func addTCFilter(t *testing.T, ns *testbed.Netns, dev string, a tcAction) {
	t.Helper()
	prog := tcProgram(t, a)
	ns.Run(t, "tc", "qdisc", "add", "dev", dev, "clsact")
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		return netlink.FilterAdd(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
				Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd: prog.FD(), Name: "xrnt-tc", DirectAction: true,
		})
	})
	if err != nil {
		t.Fatalf("netns %s: adding the tc filter on %s: %v", ns.Name(), dev, err)
	}
	t.Logf("tc filter show dev %s ingress: %s", dev, strings.TrimSpace(ns.Run(t, "tc", "filter", "show", "dev", dev, "ingress")))
}

// ownConfig is writeConfig without the control socket, so that the test
// does not depend on /run/xrouter/xrouter.sock being free on the host.
func ownConfig(t *testing.T, c cfg) string {
	t.Helper()
	path := writeConfig(t, c)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("api:\n  socket: \"\"\n"); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitLogCount waits until substr appears n times in the daemon's log.
func (d *daemon) waitLogCount(t *testing.T, substr string, n int, timeout time.Duration) {
	t.Helper()
	if !waitFor(timeout, func() bool { return strings.Count(d.Log.String(), substr) >= n }) {
		t.Fatalf("xrouter run did not log %q %d times within %s; log:\n%s", substr, n, timeout, d.Log.String())
	}
}

// rxPackets reads an interface's received-packets counter.
func rxPackets(t *testing.T, ns *testbed.Netns, dev string) uint64 {
	t.Helper()
	var links []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	out := ns.IP(t, "-s", "-j", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parsing ip -s -j link show dev %s: %v: %s", dev, err, out)
	}
	return links[0].Stats.RX.Packets
}

// qdiscSent reads the packets a qdisc of kind on dev has sent.
func qdiscSent(t *testing.T, ns *testbed.Netns, dev, kind string) uint64 {
	t.Helper()
	var qs []struct {
		Kind    string `json:"kind"`
		Packets uint64 `json:"packets"`
	}
	out := ns.Run(t, "tc", "-s", "-j", "qdisc", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		t.Fatalf("parsing tc -s -j qdisc show dev %s: %v: %s", dev, err, out)
	}
	for _, q := range qs {
		if q.Kind == kind {
			return q.Packets
		}
	}
	t.Fatalf("no %s qdisc on %s: %s", kind, dev, out)
	return 0
}

// ifaceStatus finds one interface in status.
func (r statusReport) iface(t *testing.T, name string) statusIface {
	t.Helper()
	for _, i := range r.Interfaces {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("status has no interface %s", name)
	return statusIface{}
}

// TestTCIngressFilterPrivileged: a tc filter on an ingress port (here one
// that drops the traffic to one destination) has exactly the effect with
// xrouter running as without it, also when added or removed while the
// daemon runs: the port's packets go to the kernel (outcome tc_ingress),
// status says so, the daemon logs it once per change. Fails without the tc
// support: XDP forwards before tc ingress runs, so the dropped traffic
// arrives.
func TestTCIngressFilterPrivileged(t *testing.T) {
	tp := newTopo(t)
	drop4, drop6 := "10.201.2.3", "fd00:201:2::3"
	tp.Dst.IP(t, "addr", "add", drop4+"/24", "dev", testbed.LineDstDev)
	tp.Dst.IP(t, "addr", "add", drop6+"/64", "dev", testbed.LineDstDev, "nodad")
	keep := map[string]*udpReceiver{dst4: listenUDP(t, tp.Dst, dst4), dst6: listenUDP(t, tp.Dst, dst6)}
	dropped := map[string]*udpReceiver{drop4: listenUDP(t, tp.Dst, drop4), drop6: listenUDP(t, tp.Dst, drop6)}
	s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")
	filter := tcAction{Drop4: netip.MustParseAddr(drop4), Drop6: netip.MustParseAddr(drop6)}
	warmUp(t, tp.Src, dst4, dst6, drop4, drop6)

	const n = 100
	id := uint32(0)
	// run sends n datagrams to each of the four addresses and checks that
	// the kept ones all arrive and, with filtered, none of the others.
	run := func(phase string, filtered bool) {
		t.Helper()
		for _, d := range []string{dst4, dst6, drop4, drop6} {
			id++
			s := s4
			if strings.Contains(d, ":") {
				s = s6
			}
			if r, ok := keep[d]; ok {
				sendUDP(t, s, r, d, id, n, 0)
				continue
			}
			if !filtered {
				sendUDP(t, s, dropped[d], d, id, n, 0)
				continue
			}
			if err := s.send(d, id, n, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if got := dropped[d].count(id); got != 0 {
				t.Errorf("%s: %d of %d datagrams to %s arrived past the tc filter that drops them", phase, got, n, d)
			}
		}
	}

	// Without xrouter: the kernel's behaviour, the reference.
	addTCFilter(t, tp.Router, testbed.LineRouterSrcDev, filter)
	run("kernel alone", true)

	d := startDaemon(t, tp.Router, ownConfig(t, cfg{Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev}, Pin: tp.Pin}))
	d.waitLog(t, "tc on interface: packets arriving here go to the kernel", 5*time.Second)
	st := readStatus(t, tp.Router, tp.Pin)
	src := st.iface(t, testbed.LineRouterSrcDev)
	if len(src.TC.Ingress) != 1 || !strings.Contains(src.TC.Ingress[0], "bpf") || len(src.TC.Egress) != 0 {
		t.Errorf("status: %s tc = %+v, want one bpf ingress filter and nothing on egress", src.Name, src.TC)
	}
	if len(src.Notes) != 1 || !strings.Contains(src.Notes[0], "tc_ingress") || !src.Egress {
		t.Errorf("status: %s notes %q, egress %v; want one note naming tc_ingress, still a redirect target", src.Name, src.Notes, src.Egress)
	}
	if dst := st.iface(t, testbed.LineRouterDstDev); len(dst.TC.Ingress)+len(dst.TC.Egress) != 0 || len(dst.Notes) != 0 {
		t.Errorf("status: %s tc = %+v, notes %q; want none", dst.Name, dst.TC, dst.Notes)
	}
	g := measure(t, tp, func() { run("xrouter, filter at start", true) })
	t.Logf("filter at start: %v, kernel forwarded %d/%d", g.stats, g.kernel4, g.kernel6)
	if g.stats["tc_ingress"] < 4*n || g.stats["forwarded"] != 0 {
		t.Errorf("counters moved %v; want tc_ingress >= %d and nothing forwarded by XDP", g.stats, 4*n)
	}
	if g.kernel4 < n || g.kernel6 < n {
		t.Errorf("kernel forwarded %d IPv4 and %d IPv6 packets, want >= %d each", g.kernel4, g.kernel6, n)
	}

	// Removed while the daemon runs: the fast path takes over.
	tp.Router.Run(t, "tc", "qdisc", "del", "dev", testbed.LineRouterSrcDev, "clsact")
	d.waitLog(t, "nothing the fast path would skip", 5*time.Second)
	g = measure(t, tp, func() { run("xrouter, filter removed", false) })
	if g.stats["forwarded"] < 4*n || g.stats["tc_ingress"] != 0 {
		t.Errorf("after removing the filter, counters moved %v; want forwarded >= %d, no tc_ingress", g.stats, 4*n)
	}

	// Added while the daemon runs: within about a second, the kernel again.
	addTCFilter(t, tp.Router, testbed.LineRouterSrcDev, filter)
	d.waitLogCount(t, "tc on interface: packets arriving here go to the kernel", 2, 5*time.Second)
	g = measure(t, tp, func() { run("xrouter, filter added", true) })
	if g.stats["tc_ingress"] < 4*n || g.stats["forwarded"] != 0 {
		t.Errorf("after adding the filter, counters moved %v; want tc_ingress >= %d, nothing forwarded", g.stats, 4*n)
	}
	// The other direction has no tc: still the fast path.
	r := listenUDP(t, tp.Src, src4)
	s := newUDPSender(t, tp.Dst, "udp4")
	warmUp(t, tp.Dst, src4)
	g = measure(t, tp, func() { sendUDP(t, s, r, src4, 99, n, 0) })
	if g.stats["forwarded"] != n {
		t.Errorf("dst->src (no tc on %s): counters moved %v, want forwarded = %d", testbed.LineRouterDstDev, g.stats, n)
	}
}

// TestTCEgressQdiscPrivileged: a shaping qdisc (tbf) the operator puts on
// an egress port must see the traffic routed out of it. The port leaves the
// devmap, the traffic goes to the kernel (outcome tc_egress) and through
// the qdisc, and comes back to the fast path when the qdisc is removed.
// Fails without the tc support: XDP redirects past the qdisc, whose
// counters do not move.
func TestTCEgressQdiscPrivileged(t *testing.T) {
	tp := newTopo(t)
	r4, r6 := listenUDP(t, tp.Dst, dst4), listenUDP(t, tp.Dst, dst6)
	s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")
	dev := testbed.LineRouterDstDev
	// Fast enough that nothing here is shaped away.
	tp.Router.Run(t, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "1gbit", "burst", "1mb", "latency", "100ms")
	d := startDaemon(t, tp.Router, ownConfig(t, cfg{Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev}, Pin: tp.Pin}))
	d.waitLog(t, "tc on interface: packets routed out of it go to the kernel", 5*time.Second)
	warmUp(t, tp.Src, dst4, dst6)

	st := readStatus(t, tp.Router, tp.Pin)
	di := st.iface(t, dev)
	if di.Egress || len(di.TC.Egress) != 1 || !strings.Contains(di.TC.Egress[0], "qdisc tbf") {
		t.Errorf("status: %s egress %v, tc %+v; want no redirect target, the tbf qdisc named", dev, di.Egress, di.TC)
	}
	if len(di.Notes) != 1 || !strings.Contains(di.Notes[0], "tc_egress") {
		t.Errorf("status: %s notes %q, want one naming tc_egress", dev, di.Notes)
	}
	if len(di.Warnings) != 0 {
		t.Errorf("status: %s warnings %q, want none", dev, di.Warnings)
	}

	const n = 200
	sent := qdiscSent(t, tp.Router, dev, "tbf")
	g := measure(t, tp, func() {
		sendUDP(t, s4, r4, dst4, 1, n, 0)
		sendUDP(t, s6, r6, dst6, 2, n, 0)
	})
	through := qdiscSent(t, tp.Router, dev, "tbf") - sent
	t.Logf("with tbf: %v, kernel forwarded %d/%d, tbf sent %d", g.stats, g.kernel4, g.kernel6, through)
	if g.stats["tc_egress"] != 2*n || g.stats["forwarded"] != 0 {
		t.Errorf("counters moved %v; want tc_egress = %d, nothing forwarded by XDP", g.stats, 2*n)
	}
	if through < 2*n {
		t.Errorf("the tbf qdisc on %s sent %d packets, want >= %d: traffic bypassed it", dev, through, 2*n)
	}

	tp.Router.Run(t, "tc", "qdisc", "del", "dev", dev, "root")
	d.waitLog(t, "nothing the fast path would skip", 5*time.Second)
	if !waitFor(5*time.Second, func() bool { return readStatus(t, tp.Router, tp.Pin).iface(t, dev).Egress }) {
		t.Fatalf("%s not a redirect target again after the qdisc was removed", dev)
	}
	g = measure(t, tp, func() { sendUDP(t, s4, r4, dst4, 3, n, 0) })
	if g.stats["forwarded"] != n || g.stats["tc_egress"] != 0 {
		t.Errorf("without the qdisc, counters moved %v; want forwarded = %d", g.stats, n)
	}
}

// TestFwmarkRuleWithTCMarkPrivileged: an `ip rule fwmark` alone changes
// nothing for forwarded traffic (no mark is set: 0 in the kernel and in
// bpf_fib_lookup alike), so the fast path keeps it. Once a tc filter on the
// ingress port sets the mark (as `action skbedit mark 1` would), the
// packets must follow the rule's table: they go to the kernel and leave by
// the other interface. Fails without the tc support: XDP looks them up
// unmarked and sends them out of the main table's interface.
func TestFwmarkRuleWithTCMarkPrivileged(t *testing.T) {
	tp := newTopo(t)
	// A second path to the Dst host: r-alt ⇄ alt0.
	testbed.Veth(t, tp.Router, "r-alt", tp.Dst, "alt0")
	tp.Router.IP(t, "addr", "add", "10.201.3.1/24", "dev", "r-alt")
	tp.Router.IP(t, "addr", "add", "fd00:201:3::1/64", "dev", "r-alt", "nodad")
	tp.Dst.IP(t, "addr", "add", "10.201.3.2/24", "dev", "alt0")
	tp.Dst.IP(t, "addr", "add", "fd00:201:3::2/64", "dev", "alt0", "nodad")
	attachSink(t, tp.Dst, "alt0")
	setTxChecksum(t, tp.Dst, "alt0", false)
	tp.Router.Sysctl(t, "net.ipv4.conf.r-alt.forwarding", "1")
	tp.Router.Sysctl(t, "net.ipv6.conf.r-alt.forwarding", "1")
	for _, c := range [][]string{
		{"route", "add", dst4 + "/32", "via", "10.201.3.2", "dev", "r-alt", "table", "100"},
		{"-6", "route", "add", dst6 + "/128", "via", "fd00:201:3::2", "dev", "r-alt", "table", "100"},
		{"rule", "add", "fwmark", "1", "lookup", "100", "pref", "100"},
		{"-6", "rule", "add", "fwmark", "1", "lookup", "100", "pref", "100"},
	} {
		tp.Router.IP(t, c...)
	}
	d := startDaemon(t, tp.Router, ownConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev, "r-alt"}, Pin: tp.Pin,
	}))
	r4, r6 := listenUDP(t, tp.Dst, dst4), listenUDP(t, tp.Dst, dst6)
	s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")
	warmUp(t, tp.Src, dst4, dst6)
	// Resolve the alternative path's neighbours too.
	pingOK(t, tp.Router, "10.201.3.2", 2)
	pingOK(t, tp.Router, "fd00:201:3::2", 2)

	const n = 100
	traffic := func(id uint32) (viaMain, viaAlt uint64, g growth) {
		t.Helper()
		m0, a0 := rxPackets(t, tp.Dst, testbed.LineDstDev), rxPackets(t, tp.Dst, "alt0")
		g = measure(t, tp, func() {
			sendUDP(t, s4, r4, dst4, id, n, 0)
			sendUDP(t, s6, r6, dst6, id+1, n, 0)
		})
		return rxPackets(t, tp.Dst, testbed.LineDstDev) - m0, rxPackets(t, tp.Dst, "alt0") - a0, g
	}

	// The rule alone: nothing sets a mark, the main table applies, and
	// the fast path forwards.
	m, a, g := traffic(1)
	t.Logf("fwmark rule, no mark: %d via %s, %d via alt0; %v", m, testbed.LineDstDev, a, g.stats)
	if m < 2*n || a >= n || g.stats["forwarded"] != 2*n {
		t.Errorf("fwmark rule without a mark: %d packets via %s, %d via alt0, counters %v; want all via %s, forwarded = %d", m, testbed.LineDstDev, a, g.stats, testbed.LineDstDev, 2*n)
	}

	// tc marks what arrives on r-src: the rule now applies.
	addTCFilter(t, tp.Router, testbed.LineRouterSrcDev, tcAction{Drop4: netip.MustParseAddr("0.0.0.0"), Drop6: netip.MustParseAddr("::"), Mark: 1})
	d.waitLog(t, "tc on interface: packets arriving here go to the kernel", 5*time.Second)
	m, a, g = traffic(3)
	t.Logf("fwmark rule, tc sets mark 1: %d via %s, %d via alt0; %v", m, testbed.LineDstDev, a, g.stats)
	if a < 2*n || m >= n || g.stats["tc_ingress"] < 2*n {
		t.Errorf("tc sets mark 1: %d packets via %s, %d via alt0, counters %v; want all via alt0 (table 100), tc_ingress >= %d", m, testbed.LineDstDev, a, g.stats, 2*n)
	}
}

// TestEgressWithoutXDPXmitPrivileged: an egress port that cannot transmit
// XDP frames (a macvlan: no ndo_xdp_xmit, attached in generic mode) must
// not be a redirect target. Traffic routed to it from a native-mode port
// goes to the kernel (outcome no_xdp_xmit) and arrives; status warns. Fails
// without the check: the macvlan is in the devmap, the redirect fails in the
// kernel and every such packet is lost.
func TestEgressWithoutXDPXmitPrivileged(t *testing.T) {
	tp := newTopo(t)
	// The router reaches Dst through a macvlan on r-dst: move r-dst's
	// addresses to it.
	const mv = "r-mv"
	tp.Router.IP(t, "link", "add", mv, "link", testbed.LineRouterDstDev, "type", "macvlan", "mode", "bridge")
	tp.Router.IP(t, "addr", "flush", "dev", testbed.LineRouterDstDev)
	tp.Router.IP(t, "addr", "add", rtrDst4+"/24", "dev", mv)
	tp.Router.IP(t, "addr", "add", rtrDst6+"/64", "dev", mv, "nodad")
	tp.Router.IP(t, "link", "set", mv, "up")
	tp.Router.Sysctl(t, "net.ipv4.conf."+mv+".forwarding", "1")
	tp.Router.Sysctl(t, "net.ipv6.conf."+mv+".forwarding", "1")
	d := startDaemon(t, tp.Router, ownConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, mv}, Mode: "auto", Pin: tp.Pin,
	}))
	d.waitLog(t, "interface cannot transmit XDP frames", 5*time.Second)

	st := readStatus(t, tp.Router, tp.Pin)
	mi := st.iface(t, mv)
	if mi.Mode != "generic" || mi.Egress || !mi.NoXDPXmit {
		t.Errorf("status: %s mode %s, egress %v, no_xdp_xmit %v; want generic, no redirect target, no_xdp_xmit", mv, mi.Mode, mi.Egress, mi.NoXDPXmit)
	}
	if len(mi.Warnings) != 1 || !strings.Contains(mi.Warnings[0], "cannot transmit XDP frames") {
		t.Errorf("status: %s warnings %q, want one saying it cannot transmit XDP frames", mv, mi.Warnings)
	}
	if si := st.iface(t, testbed.LineRouterSrcDev); si.Mode != "native" || !si.Egress || si.NoXDPXmit {
		t.Errorf("status: %s mode %s, egress %v, no_xdp_xmit %v; want native, a redirect target", si.Name, si.Mode, si.Egress, si.NoXDPXmit)
	}

	r4, r6 := listenUDP(t, tp.Dst, dst4), listenUDP(t, tp.Dst, dst6)
	s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")
	warmUp(t, tp.Src, dst4, dst6)
	const n = 200
	g := measure(t, tp, func() {
		sendUDP(t, s4, r4, dst4, 1, n, 0)
		sendUDP(t, s6, r6, dst6, 2, n, 0)
	})
	t.Logf("src->dst via %s: %v, kernel forwarded %d/%d", mv, g.stats, g.kernel4, g.kernel6)
	if g.stats["no_xdp_xmit"] != 2*n || g.stats["forwarded"] != 0 {
		t.Errorf("counters moved %v; want no_xdp_xmit = %d", g.stats, 2*n)
	}
	// The other way, into the native port, the fast path works (generic
	// XDP on the macvlan redirects into r-src).
	rs := listenUDP(t, tp.Src, src4)
	sd := newUDPSender(t, tp.Dst, "udp4")
	warmUp(t, tp.Dst, src4)
	g = measure(t, tp, func() { sendUDP(t, sd, rs, src4, 3, n, 0) })
	if g.stats["forwarded"] != n {
		t.Errorf("dst->src: counters moved %v, want forwarded = %d", g.stats, n)
	}
}
