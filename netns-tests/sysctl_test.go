package netnstests

// Source validation and per-interface sysctls with real traffic (issue 9):
// every test first shows what kernel forwarding does, then that the fast
// path gives the same result, with the counters that say why.

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// boundSender is a udpSender whose datagrams leave from addr (an address
// the test gave the source host: a "spoofed" source for the router).
func boundSender(t *testing.T, ns *testbed.Netns, addr string) *udpSender {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: UDP socket on %s: %v", ns.Name(), addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpSender{conn: conn}
}

// expectNone sends n datagrams and checks that none arrives within wait.
func expectNone(t *testing.T, s *udpSender, r *udpReceiver, dst string, id uint32, n int, wait time.Duration, what string) {
	t.Helper()
	if err := s.send(dst, id, n, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	if got := r.count(id); got != 0 {
		t.Fatalf("%s: %d of %d datagrams arrived, want none", what, got, n)
	}
}

const spoofed4 = "10.77.0.2" // the source host's extra address; the router routes 10.77/16 out of r-dst

// spoofTopo gives the source host the address spoofed4, which the router
// routes back out of r-dst: strict reverse-path filtering on r-src rejects
// it, loose accepts it.
func spoofTopo(t *testing.T) *topo {
	tp := newTopo(t)
	tp.Src.IP(t, "addr", "add", spoofed4+"/32", "dev", testbed.LineSrcDev)
	tp.Router.IP(t, "route", "add", "10.77.0.0/16", "via", dst4)
	for _, k := range []string{"all", testbed.LineRouterSrcDev} {
		tp.Router.Sysctl(t, "net.ipv4.conf."+k+".rp_filter", "0")
	}
	return tp
}

// TestRPFilterChangeReachesFastPathPrivileged: rp_filter set to strict
// while xrouter runs applies to the next packets, as in the kernel: the
// kernel announces it (RTM_NEWNETCONF) and the port flags follow at once,
// not at the next periodic resync (30 s by default, which is how long it
// took before).
func TestRPFilterChangeReachesFastPathPrivileged(t *testing.T) {
	tp := spoofTopo(t)
	r := listenUDP(t, tp.Dst, dst4)
	s := boundSender(t, tp.Src, spoofed4)
	warmUp(t, tp.Src, dst4)
	const n = 50
	rpf := "net.ipv4.conf." + testbed.LineRouterSrcDev + ".rp_filter"

	// Kernel forwarding: strict drops the spoofed source, off forwards it.
	tp.Router.Sysctl(t, rpf, "1")
	expectNone(t, s, r, dst4, 1, n, time.Second, "kernel forwarding, rp_filter=1")
	tp.Router.Sysctl(t, rpf, "0")
	sendUDP(t, s, r, dst4, 2, n, time.Millisecond)

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	base := readStats(t, tp.Pin)
	sendUDP(t, s, r, dst4, 3, n, time.Millisecond)
	if d := readStats(t, tp.Pin).sub(base); d["forwarded"] < n {
		t.Fatalf("rp_filter=0: forwarded +%d, want >= %d (%v)", d["forwarded"], n, d)
	}

	// The netconf event, not the 1 s sysctl poll, must bring it.
	tp.Router.Sysctl(t, rpf, "1")
	time.Sleep(250 * time.Millisecond)
	base = readStats(t, tp.Pin)
	expectNone(t, s, r, dst4, 4, n, time.Second, "250 ms after rp_filter=1 with xrouter")
	if d := readStats(t, tp.Pin).sub(base); d["martian"] != n || d["forwarded"] != 0 {
		t.Errorf("rp_filter=1: martian +%d, forwarded +%d, want %d and 0 (%v)", d["martian"], d["forwarded"], n, d)
	}
}

// TestLooseRPFilterWithoutAddressPrivileged: loose rp_filter on an
// interface without IPv4 address drops a source that does not route back
// out of it (__fib_validate_source: no_addr leads to last_resort, which
// rejects under any rp_filter). The fast path forwarded it.
func TestLooseRPFilterWithoutAddressPrivileged(t *testing.T) {
	tp := spoofTopo(t)
	// r-src without address: the connected route stays as a device route,
	// and the source host reaches the router through a fixed neighbour.
	tp.Router.IP(t, "addr", "del", rtrSrc4+"/24", "dev", testbed.LineRouterSrcDev)
	tp.Router.IP(t, "route", "add", "10.201.1.0/24", "dev", testbed.LineRouterSrcDev)
	tp.Src.IP(t, "neigh", "replace", rtrSrc4, "lladdr", tp.Router.Link(t, testbed.LineRouterSrcDev).MAC.String(), "dev", testbed.LineSrcDev, "nud", "permanent")
	pingOK(t, tp.Router, dst4, 3)
	tp.Router.Sysctl(t, "net.ipv4.conf."+testbed.LineRouterSrcDev+".rp_filter", "2")
	r := listenUDP(t, tp.Dst, dst4)
	spoof := boundSender(t, tp.Src, spoofed4)
	plain := boundSender(t, tp.Src, src4)
	const n = 50

	expectNone(t, spoof, r, dst4, 1, n, time.Second, "kernel forwarding, loose, no address, spoofed source")
	sendUDP(t, plain, r, dst4, 2, n, time.Millisecond)

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	base := readStats(t, tp.Pin)
	sendUDP(t, plain, r, dst4, 3, n, time.Millisecond)
	expectNone(t, spoof, r, dst4, 4, n, time.Second, "xrouter, loose, no address, spoofed source")
	d := readStats(t, tp.Pin).sub(base)
	if d["forwarded"] != n || d["martian"] != n {
		t.Errorf("forwarded +%d, martian +%d, want %d each (%v)", d["forwarded"], d["martian"], n, d)
	}
}

// TestCustomLocalRouteSourcePrivileged: once a local route is added by hand
// (ip route add local ...), the kernel validates sources with a reverse
// lookup even with rp_filter off, and a source inside that route is a
// martian; the fast path, which checked only the interface addresses,
// forwarded it. The route is added while xrouter runs: the route event
// turns the full check on.
func TestCustomLocalRouteSourcePrivileged(t *testing.T) {
	tp := spoofTopo(t)
	const src = "10.55.0.2"
	tp.Src.IP(t, "addr", "add", src+"/32", "dev", testbed.LineSrcDev)
	r := listenUDP(t, tp.Dst, dst4)
	s := boundSender(t, tp.Src, src)
	warmUp(t, tp.Src, dst4)
	const n = 50

	// Kernel forwarding: forwarded, then dropped with the local route.
	sendUDP(t, s, r, dst4, 1, n, time.Millisecond)
	tp.Router.IP(t, "route", "add", "local", "10.55.0.0/16", "dev", "lo")
	expectNone(t, s, r, dst4, 2, n, time.Second, "kernel forwarding, source in a local route")
	tp.Router.IP(t, "route", "del", "local", "10.55.0.0/16", "dev", "lo")

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	base := readStats(t, tp.Pin)
	sendUDP(t, s, r, dst4, 3, n, time.Millisecond)
	if d := readStats(t, tp.Pin).sub(base); d["forwarded"] < n {
		t.Fatalf("without the local route: forwarded +%d, want >= %d (%v)", d["forwarded"], n, d)
	}
	tp.Router.IP(t, "route", "add", "local", "10.55.0.0/16", "dev", "lo")
	time.Sleep(250 * time.Millisecond)
	base = readStats(t, tp.Pin)
	expectNone(t, s, r, dst4, 4, n, time.Second, "xrouter, source in a local route")
	if d := readStats(t, tp.Pin).sub(base); d["martian"] != n || d["forwarded"] != 0 {
		t.Errorf("martian +%d, forwarded +%d, want %d and 0 (%v)", d["martian"], d["forwarded"], n, d)
	}
}

// TestIPv6DisabledIngressPrivileged: IPv6 arriving on an interface with
// disable_ipv6 is dropped by the kernel (ip6_rcv_core), even though its
// routes out of other interfaces stay and bpf_fib_lookup finds them; the
// fast path forwarded it. disable_ipv6 sends no netconf event: its address
// events and the sysctl poll bring the flag within about a second.
func TestIPv6DisabledIngressPrivileged(t *testing.T) {
	tp := newTopo(t)
	dis := "net.ipv6.conf." + testbed.LineRouterSrcDev + ".disable_ipv6"
	// The router loses its address on r-src with disable_ipv6: the source
	// host keeps a fixed neighbour for its gateway.
	tp.Src.IP(t, "-6", "neigh", "replace", rtrSrc6, "lladdr", tp.Router.Link(t, testbed.LineRouterSrcDev).MAC.String(), "dev", testbed.LineSrcDev, "nud", "permanent")
	warmUp(t, tp.Src, dst6)
	r := listenUDP(t, tp.Dst, dst6)
	s := newUDPSender(t, tp.Src, "udp6")
	const n = 50

	tp.Router.Sysctl(t, dis, "1")
	expectNone(t, s, r, dst6, 1, n, time.Second, "kernel forwarding, disable_ipv6 on the ingress")
	tp.Router.Sysctl(t, dis, "0")
	sendUDP(t, s, r, dst6, 2, n, time.Millisecond)

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	base := readStats(t, tp.Pin)
	sendUDP(t, s, r, dst6, 3, n, time.Millisecond)
	if d := readStats(t, tp.Pin).sub(base); d["forwarded"] < n {
		t.Fatalf("IPv6 enabled: forwarded +%d, want >= %d (%v)", d["forwarded"], n, d)
	}
	tp.Router.Sysctl(t, dis, "1")
	time.Sleep(1500 * time.Millisecond)
	base = readStats(t, tp.Pin)
	expectNone(t, s, r, dst6, 4, n, time.Second, "xrouter, disable_ipv6 on the ingress")
	// Every IPv6 packet arriving on r-src counts, so the host's own
	// (neighbour discovery to the router's unicast MAC) may add one or two.
	if d := readStats(t, tp.Pin).sub(base); d["ipv6_disabled"] < n || d["forwarded"] != 0 {
		t.Errorf("ipv6_disabled +%d, forwarded +%d, want at least %d and 0 (%v)", d["ipv6_disabled"], d["forwarded"], n, d)
	}
}
