package netnstests

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestUDPAndPingCrossRouterPrivileged: with the daemon running, UDP and ICMP
// echo of both families cross the router in both directions, and status
// shows both interfaces attached natively, as redirect targets, without
// warnings.
func TestUDPAndPingCrossRouterPrivileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.defaultConfig(t))

	st := readStatus(t, tp.Router, tp.Pin)
	if got := strings.Join(st.attachedNames(), ","); got != "r-dst,r-src" {
		t.Errorf("status: attached interfaces %q, want r-dst,r-src", got)
	}
	for _, i := range st.Interfaces {
		if i.Mode != "native" || !i.Egress || !i.Up || i.ProgID == 0 {
			t.Errorf("status: %s: mode %s, egress %v, up %v, prog %d; want native, egress, up, a program", i.Name, i.Mode, i.Egress, i.Up, i.ProgID)
		}
	}
	if len(st.Warnings) != 0 {
		t.Errorf("status: unexpected warnings: %q", st.Warnings)
	}

	const n = 200
	for _, c := range []struct {
		name, family string
		from, to     *testbed.Netns
		dst          string
		id           uint32
	}{
		{"udp4 src->dst", "udp4", tp.Src, tp.Dst, dst4, 1},
		{"udp6 src->dst", "udp6", tp.Src, tp.Dst, dst6, 2},
		{"udp4 dst->src", "udp4", tp.Dst, tp.Src, src4, 3},
		{"udp6 dst->src", "udp6", tp.Dst, tp.Src, src6, 4},
	} {
		r := listenUDP(t, c.to, c.dst)
		s := newUDPSender(t, c.from, c.family)
		sendUDP(t, s, r, c.dst, c.id, n, time.Millisecond)
		t.Logf("%s: %d/%d datagrams arrived", c.name, r.count(c.id), n)
	}
	pingOK(t, tp.Src, dst4, 100)
	pingOK(t, tp.Src, dst6, 100)
	pingOK(t, tp.Dst, src4, 100)
	pingOK(t, tp.Dst, src6, 100)
	t.Logf("stats: %v", readStats(t, tp.Pin))
}

// TestFastPathBypassesKernelPrivileged: once neighbours are resolved, every
// packet crossing the router is forwarded by XDP: xrouter's forwarded
// counter grows by exactly the number of packets sent (UDP datagrams plus
// echo requests and replies), and the kernel's own forwarding counters in
// the router do not move.
//
// Nothing else can be counted as forwarded: the only other frames the
// router receives are ARP (not_ip), neighbour discovery (icmp_special) and
// multicast such as MLD reports and router solicitations (l2_not_for_us).
func TestFastPathBypassesKernelPrivileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	r4, r6 := listenUDP(t, tp.Dst, dst4), listenUDP(t, tp.Dst, dst6)
	s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")

	// The first packet to an unresolved neighbour goes through the kernel
	// (no_neigh); resolve everything before the baseline.
	warmUp(t, tp.Src, dst4, dst6)
	const udp, pings = 200, 50
	g := measure(t, tp, func() {
		sendUDP(t, s4, r4, dst4, 1, udp, time.Millisecond)
		sendUDP(t, s6, r6, dst6, 2, udp, time.Millisecond)
		pingOK(t, tp.Src, dst4, pings)
		pingOK(t, tp.Src, dst6, pings)
	})
	d := g.stats
	t.Logf("stats growth: %v; kernel ForwDatagrams +%d, Ip6OutForwDatagrams +%d", d, g.kernel4, g.kernel6)
	if want := uint64(2*udp + 2*2*pings); d["forwarded"] != want {
		t.Errorf("forwarded grew by %d, want exactly %d (%d UDP datagrams + %d echo requests and replies)", d["forwarded"], want, 2*udp, 2*2*pings)
	}
	if g.kernel4 != 0 {
		t.Errorf("kernel Ip ForwDatagrams grew by %d, want 0: packets took the slow path", g.kernel4)
	}
	if g.kernel6 != 0 {
		t.Errorf("kernel Ip6OutForwDatagrams grew by %d, want 0: packets took the slow path", g.kernel6)
	}
	for _, o := range []string{"no_neigh", "fwd_disabled", "not_in_devmap", "ingress_unknown", "malformed", "lookup_other"} {
		if d[o] != 0 {
			t.Errorf("outcome %s grew by %d, want 0", o, d[o])
		}
	}
}

// TestTTLExceededPrivileged: TTL 1 / hop limit 1 packets go to the kernel,
// which answers with Time Exceeded from the router's address; TTL 2 still
// crosses.
func TestTTLExceededPrivileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	warmUp(t, tp.Src, dst4, dst6)

	for _, c := range []struct {
		family, dst, want string
	}{
		{"-4", dst4, "From " + rtrSrc4 + " icmp_seq=1 Time to live exceeded"},
		{"-6", dst6, "From " + rtrSrc6 + " icmp_seq=1 Time exceeded: Hop limit"},
	} {
		base := readStats(t, tp.Pin)
		const count = 3
		r := ping(t, tp.Src, c.family, "-c", "3", "-i", "0.2", "-W", "1", "-t", "1", c.dst)
		d := readStats(t, tp.Pin).sub(base)
		if r.Received != 0 || !strings.Contains(r.Out, c.want) {
			t.Errorf("ping %s -t 1 %s: %d replies, want 0 and %q:\n%s", c.family, c.dst, r.Received, c.want, r.Out)
		}
		if d["ttl_exceeded"] != count {
			t.Errorf("ping %s -t 1: ttl_exceeded grew by %d, want %d (stats growth: %v)", c.family, d["ttl_exceeded"], count, d)
		}
		if d["forwarded"] != 0 {
			t.Errorf("ping %s -t 1: forwarded grew by %d, want 0", c.family, d["forwarded"])
		}

		// One more hop left: forwarded by the fast path, which decrements it.
		base = readStats(t, tp.Pin)
		r = ping(t, tp.Src, c.family, "-c", "3", "-i", "0.05", "-W", "2", "-t", "2", c.dst)
		d = readStats(t, tp.Pin).sub(base)
		if r.Received != 3 {
			t.Errorf("ping %s -t 2 %s: %d of 3 replies:\n%s", c.family, c.dst, r.Received, r.Out)
		}
		if d["forwarded"] != 6 || d["ttl_exceeded"] != 0 {
			t.Errorf("ping %s -t 2: forwarded +%d, ttl_exceeded +%d; want +6 and +0", c.family, d["forwarded"], d["ttl_exceeded"])
		}
	}
}

// TestFragNeededPrivileged: with the router→dst link at MTU 1280, packets of
// exactly 1280 bytes take the fast path; without DF a larger one goes to the
// kernel, which fragments it, and the ping is answered; one byte over with
// DF (IPv4) or any IPv6 packet one byte over gets Frag needed / Packet too
// big from the router's address, counted as frag_needed.
func TestFragNeededPrivileged(t *testing.T) {
	tp := newTopo(t)
	tp.Router.SetMTU(t, testbed.LineRouterDstDev, 1280)
	tp.Dst.SetMTU(t, testbed.LineDstDev, 1280)
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	warmUp(t, tp.Src, dst4, dst6)

	// 1280-byte packets: 20 + 8 + 1252 and 40 + 8 + 1232.
	base := readStats(t, tp.Pin)
	for _, args := range [][]string{
		{"-4", "-M", "do", "-s", "1252", dst4},
		{"-6", "-M", "do", "-s", "1232", dst6},
	} {
		r := ping(t, tp.Src, append([]string{"-c", "3", "-i", "0.05", "-W", "2"}, args...)...)
		if r.Received != 3 {
			t.Errorf("ping %s (1280-byte packets): %d of 3 replies:\n%s", strings.Join(args, " "), r.Received, r.Out)
		}
	}
	d := readStats(t, tp.Pin).sub(base)
	if d["forwarded"] != 12 || d["frag_needed"] != 0 {
		t.Errorf("1280-byte packets: forwarded +%d, frag_needed +%d; want +12 and +0 (stats growth: %v)", d["forwarded"], d["frag_needed"], d)
	}

	// Without DF the router's kernel fragments: the request goes to the
	// kernel as frag_needed; dst (also at MTU 1280) answers in two
	// fragments, which the fast path leaves to the kernel as well.
	base = readStats(t, tp.Pin)
	r := ping(t, tp.Src, "-4", "-c", "1", "-W", "2", "-M", "dont", "-s", "1400", dst4)
	d = readStats(t, tp.Pin).sub(base)
	if r.Received != 1 {
		t.Errorf("ping -M dont -s 1400 %s: %d replies, want 1:\n%s", dst4, r.Received, r.Out)
	}
	if d["frag_needed"] != 1 || d["fragment"] != 2 || d["forwarded"] != 0 {
		t.Errorf("ping -M dont -s 1400: frag_needed +%d, fragment +%d, forwarded +%d; want +1, +2, +0 (stats growth: %v)", d["frag_needed"], d["fragment"], d["forwarded"], d)
	}

	// 1281-byte packets with DF. The source caches the reported MTU, so
	// only the first ping of each family reaches the router.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-4", "-M", "do", "-s", "1253", dst4}, "From " + rtrSrc4 + " icmp_seq=1 Frag needed and DF set (mtu = 1280)"},
		{[]string{"-6", "-M", "do", "-s", "1233", dst6}, "From " + rtrSrc6 + " icmp_seq=1 Packet too big: mtu=1280"},
	} {
		base := readStats(t, tp.Pin)
		r := ping(t, tp.Src, append([]string{"-c", "1", "-W", "1"}, c.args...)...)
		d := readStats(t, tp.Pin).sub(base)
		if r.Received != 0 || !strings.Contains(r.Out, c.want) {
			t.Errorf("ping %s: %d replies, want 0 and %q:\n%s", strings.Join(c.args, " "), r.Received, c.want, r.Out)
		}
		if d["frag_needed"] != 1 || d["forwarded"] != 0 {
			t.Errorf("ping %s: frag_needed +%d, forwarded +%d; want +1 and +0 (stats growth: %v)", strings.Join(c.args, " "), d["frag_needed"], d["forwarded"], d)
		}
	}
}

// TestRouterOwnAddressPrivileged: pings to the router's own addresses (near
// and far side, both families) are answered by the router's kernel; the fast
// path passes them as not_fwded and forwards nothing.
func TestRouterOwnAddressPrivileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	warmUp(t, tp.Src, rtrSrc4, rtrSrc6)

	base := readStats(t, tp.Pin)
	const count = 5
	addrs := []string{rtrSrc4, rtrDst4, rtrSrc6, rtrDst6}
	for _, a := range addrs {
		pingOK(t, tp.Src, a, count)
	}
	d := readStats(t, tp.Pin).sub(base)
	t.Logf("stats growth: %v", d)
	if want := uint64(count * len(addrs)); d["not_fwded"] < want {
		t.Errorf("not_fwded grew by %d, want at least %d (one per echo request)", d["not_fwded"], want)
	}
	if d["forwarded"] != 0 {
		t.Errorf("forwarded grew by %d, want 0: nothing crossed the router", d["forwarded"])
	}
}

// TestNoNeighbourPrivileged: with the router's neighbour entry for dst
// flushed, the first packet goes to the kernel (no_neigh), which resolves
// the neighbour and forwards it; every ping is answered and the following
// packets take the fast path.
func TestNoNeighbourPrivileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	warmUp(t, tp.Src, dst4, dst6)

	for _, c := range []struct{ family, dst string }{{"-4", dst4}, {"-6", dst6}} {
		tp.Router.IP(t, c.family, "neigh", "flush", "dev", testbed.LineRouterDstDev)
		if out := tp.Router.IP(t, c.family, "neigh", "show", c.dst, "dev", testbed.LineRouterDstDev); strings.Contains(out, "lladdr") {
			t.Fatalf("neighbour %s still resolved after flush: %s", c.dst, out)
		}
		const count = 5
		var r pingResult
		g := measure(t, tp, func() { r = ping(t, tp.Src, c.family, "-c", "5", "-i", "0.1", "-W", "2", c.dst) })
		d, kernel := g.stats, g.kernel4
		if c.family == "-6" {
			kernel = g.kernel6
		}
		t.Logf("ping %s %s: stats growth %v, kernel forwarded +%d", c.family, c.dst, d, kernel)
		if r.Received != count {
			t.Errorf("ping %s %s: %d of %d replies:\n%s", c.family, c.dst, r.Received, count, r.Out)
		}
		if d["no_neigh"] < 1 {
			t.Errorf("ping %s: no_neigh grew by %d, want at least 1", c.family, d["no_neigh"])
		}
		// Every echo request and reply is either forwarded by XDP or
		// passed for neighbour resolution (and then forwarded by the kernel).
		if d["forwarded"]+d["no_neigh"] != 2*count || d["forwarded"] < 2*count-2 {
			t.Errorf("ping %s: forwarded +%d, no_neigh +%d; want them to add up to %d with at most 2 passed", c.family, d["forwarded"], d["no_neigh"], 2*count)
		}
		if kernel != d["no_neigh"] {
			t.Errorf("ping %s: kernel forwarded %d packets, want exactly the %d passed as no_neigh", c.family, kernel, d["no_neigh"])
		}
		if out := tp.Router.IP(t, c.family, "neigh", "show", c.dst, "dev", testbed.LineRouterDstDev); !strings.Contains(out, "lladdr") {
			t.Errorf("neighbour %s not resolved again: %q", c.dst, out)
		}
	}
}

// TestRouteDeleteReaddPrivileged: a prefix routed behind dst is forwarded by
// the fast path; with the route deleted the packets go to the kernel
// (not_fwded) and the router reports them unreachable; with an unreachable
// route they count as unreachable; re-added, the fast path forwards again.
func TestRouteDeleteReaddPrivileged(t *testing.T) {
	tp := newTopo(t)
	const (
		far4, net4 = "10.201.99.1", "10.201.99.0/24"
		far6, net6 = "fd00:201:99::1", "fd00:201:99::/64"
	)
	tp.Dst.IP(t, "addr", "add", far4+"/32", "dev", "lo")
	const src4b, src6b = "10.201.1.3", "fd00:201:1::3"
	tp.Src.AddAddr(t, testbed.LineSrcDev, netip.MustParsePrefix(src4b+"/24"))
	tp.Src.AddAddr(t, testbed.LineSrcDev, netip.MustParsePrefix(src6b+"/64"))
	tp.Dst.IP(t, "addr", "add", far6+"/128", "dev", "lo", "nodad")
	addRoutes := func() {
		tp.Router.IP(t, "-4", "route", "add", net4, "via", dst4)
		tp.Router.IP(t, "-6", "route", "add", net6, "via", dst6)
	}
	delRoutes := func() {
		tp.Router.IP(t, "-4", "route", "del", net4)
		tp.Router.IP(t, "-6", "route", "del", net6)
	}
	addRoutes()
	startDaemon(t, tp.Router, tp.defaultConfig(t))
	warmUp(t, tp.Src, far4, far6)

	fastPath := func(phase string) {
		t.Helper()
		const count = 10
		g := measure(t, tp, func() {
			pingOK(t, tp.Src, far4, count)
			pingOK(t, tp.Src, far6, count)
		})
		if d := g.stats; d["forwarded"] != 4*count || g.kernel4 != 0 || g.kernel6 != 0 {
			t.Errorf("%s: forwarded +%d (want %d), kernel forwarded +%d/+%d (want 0); stats growth: %v", phase, d["forwarded"], 4*count, g.kernel4, g.kernel6, d)
		}
	}
	// slowPath sends pings that must fail from the source address src (one
	// per family) and checks they went to the kernel as outcome and that the
	// router answered with an ICMP error. The router's kernel rate-limits
	// the errors per source address (ip_error; on this kernel a source that
	// got two errors gets none for many seconds), so every phase uses
	// source addresses of its own.
	slowPath := func(phase, outcome string, srcs, wantText map[string]string) {
		t.Helper()
		base := readStats(t, tp.Pin)
		const count = 3
		for family, dst := range map[string]string{"-4": far4, "-6": far6} {
			r := ping(t, tp.Src, family, "-c", "3", "-i", "0.2", "-W", "1", "-I", srcs[family], dst)
			from := "From " + rtrSrc4 + " icmp_seq=1 "
			if family == "-6" {
				from = "From " + rtrSrc6 + " icmp_seq=1 "
			}
			if r.Received != 0 || !strings.Contains(r.Out, from+wantText[family]) {
				t.Errorf("%s: ping -I %s %s: %d replies, want none and %q:\n%s", phase, srcs[family], dst, r.Received, from+wantText[family], r.Out)
			}
		}
		d := readStats(t, tp.Pin).sub(base)
		t.Logf("%s: stats growth %v", phase, d)
		if d[outcome] != 2*count || d["forwarded"] != 0 {
			t.Errorf("%s: %s +%d, forwarded +%d; want +%d and +0", phase, outcome, d[outcome], d["forwarded"], 2*count)
		}
	}

	fastPath("route present")
	delRoutes()
	slowPath("route deleted", "not_fwded", map[string]string{"-4": src4, "-6": src6}, map[string]string{
		"-4": "Destination Net Unreachable",
		"-6": "Destination unreachable: No route",
	})
	tp.Router.IP(t, "-4", "route", "add", "unreachable", net4)
	tp.Router.IP(t, "-6", "route", "add", "unreachable", net6)
	slowPath("unreachable route", "unreachable", map[string]string{"-4": src4b, "-6": src6b}, map[string]string{
		"-4": "Destination Host Unreachable",
		"-6": "Destination unreachable: No route",
	})
	delRoutes()
	addRoutes()
	fastPath("route re-added")
}
