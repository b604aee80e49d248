package dataplane

// The router every BPF test runs against: a testbed.Line plus extra router
// ports for the cases that need a different egress or ingress, fixed MACs so
// that frames can be written as constants, permanent neighbours, and routes
// for every FIB result the program distinguishes.

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/xrouter/xrouter/internal/testbed"
)

// XDP verdicts as BPF_PROG_RUN returns them.
const (
	xdpAborted  = 0
	xdpPass     = 2
	xdpRedirect = 4
)

// Router interfaces of the test environment.
const (
	devSrc  = testbed.LineRouterSrcDev // ingress of most cases
	devDst  = testbed.LineRouterDstDev // egress of most cases
	devMTU  = "r-mtu"                  // egress with MTU 1280
	devNoDM = "r-nodm"                 // a port, but not in the devmap
	devOff  = "r-off"                  // a port with forwarding off
	devUnk  = "r-unk"                  // in the devmap, not in the ports map
)

const smallMTU = 1280

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	mustAddr = netip.MustParseAddr

	// Router ports, by name, and the host behind each.
	routerMAC = map[string]net.HardwareAddr{
		devSrc:  mustMAC("02:00:00:00:01:01"),
		devDst:  mustMAC("02:00:00:00:02:01"),
		devMTU:  mustMAC("02:00:00:00:03:01"),
		devNoDM: mustMAC("02:00:00:00:04:01"),
		devOff:  mustMAC("02:00:00:00:05:01"),
		devUnk:  mustMAC("02:00:00:00:06:01"),
	}
	peerMAC = map[string]net.HardwareAddr{
		devSrc:  mustMAC("02:00:00:00:01:02"),
		devDst:  mustMAC("02:00:00:00:02:02"),
		devMTU:  mustMAC("02:00:00:00:03:02"),
		devNoDM: mustMAC("02:00:00:00:04:02"),
		devOff:  mustMAC("02:00:00:00:05:02"),
		devUnk:  mustMAC("02:00:00:00:06:02"),
	}
	otherHostMAC = mustMAC("02:00:00:00:99:99")
	broadcastMAC = mustMAC("ff:ff:ff:ff:ff:ff")

	srcHost4 = mustAddr("10.201.1.2")    // behind r-src, as in testbed.Line
	srcHost6 = mustAddr("fd00:201:1::2") //
	dstHost4 = mustAddr("10.201.2.2")    // behind r-dst
	dstHost6 = mustAddr("fd00:201:2::2") //

	// Destinations and what the router's FIB does with them.
	remote4      = mustAddr("10.99.1.1") // via dstHost: forwarded out of r-dst
	remote6      = mustAddr("fd00:99::1")
	small4       = mustAddr("10.98.1.1") // via r-mtu
	small6       = mustAddr("fd00:98::1")
	noDevmap4    = mustAddr("10.97.1.1") // via r-nodm
	noDevmap6    = mustAddr("fd00:97::1")
	hairpin4     = mustAddr("10.96.1.1") // via srcHost, back out of r-src
	hairpin6     = mustAddr("fd00:96::1")
	noNeigh4     = mustAddr("10.95.1.1") // via 10.201.2.3, which has no neighbour entry
	noNeigh6     = mustAddr("fd00:95::1")
	blackhole4   = mustAddr("10.66.1.1")
	blackhole6   = mustAddr("fd00:66:1::1")
	unreachable4 = mustAddr("10.66.2.1")
	unreachable6 = mustAddr("fd00:66:2::1")
	prohibit4    = mustAddr("10.66.3.1")
	prohibit6    = mustAddr("fd00:66:3::1")
	routeMTU4    = mustAddr("10.94.1.1") // via dstHost, a route with mtu 1400
	routeMTU6    = mustAddr("fd00:94::1")
	noRoute4     = mustAddr("10.200.0.1")
	noRoute6     = mustAddr("fd00:200::1")
	routerOwn4   = mustAddr("10.201.2.1") // r-dst's address
	routerOwn6   = mustAddr("fd00:201:2::1")
)

// fwdEnv is a loaded forwarding program and the router namespace whose FIB
// it looks up.
type fwdEnv struct {
	router  *testbed.Netns
	dp      *Dataplane
	pinDir  string
	ifindex map[string]int
	// pinCPU runs every packet on CPU 0, so that per-CPU state (the
	// next-hop cache's copies, its hit-ratio window) is one.
	pinCPU bool
}

func newFwdEnv(t testing.TB) *fwdEnv {
	t.Helper()
	testbed.RequireRoot(t)
	line := testbed.NewLine(t, "xrdp-")
	r := line.Router
	e := &fwdEnv{router: r, ifindex: map[string]int{}}

	line.Src.SetMAC(t, testbed.LineSrcDev, peerMAC[devSrc])
	line.Dst.SetMAC(t, testbed.LineDstDev, peerMAC[devDst])
	// Extra ports' far ends live in Dst; they only need to exist and be up
	// so that the router's end has a carrier.
	for i, dev := range []string{devMTU, devNoDM, devOff, devUnk} {
		peer := []string{"mtu0", "nodm0", "off0", "unk0"}[i]
		testbed.Veth(t, r, dev, line.Dst, peer)
		line.Dst.SetMAC(t, peer, peerMAC[dev])
		n := byte(3 + i)
		r.AddAddr(t, dev, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 202, n, 1}), 24))
		r.AddAddr(t, dev, netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 2: 0x02, 3: 0x02, 5: n, 15: 1}), 64))
	}
	line.Dst.SetMTU(t, "mtu0", smallMTU)
	r.SetMTU(t, devMTU, smallMTU)
	for dev, mac := range routerMAC {
		r.SetMAC(t, dev, mac)
		e.ifindex[dev] = r.Link(t, dev).Index
	}
	r.EnableForwarding(t)
	r.SetForwarding(t, devOff, false)

	neigh := map[string][]netip.Addr{
		devSrc:  {srcHost4, srcHost6},
		devDst:  {dstHost4, dstHost6},
		devMTU:  {mustAddr("10.202.3.2"), mustAddr("fd00:202:3::2")},
		devNoDM: {mustAddr("10.202.4.2"), mustAddr("fd00:202:4::2")},
	}
	for dev, addrs := range neigh {
		for _, addr := range addrs {
			r.AddNeigh(t, dev, addr, peerMAC[dev])
		}
	}
	for _, rt := range [][]string{
		{"10.99.0.0/16", "via", dstHost4.String()},
		{"fd00:99::/48", "via", dstHost6.String()},
		{"10.98.0.0/16", "via", "10.202.3.2"},
		{"fd00:98::/48", "via", "fd00:202:3::2"},
		{"10.97.0.0/16", "via", "10.202.4.2"},
		{"fd00:97::/48", "via", "fd00:202:4::2"},
		{"10.96.0.0/16", "via", srcHost4.String()},
		{"fd00:96::/48", "via", srcHost6.String()},
		{"10.95.0.0/16", "via", "10.201.2.3"},
		{"fd00:95::/48", "via", "fd00:201:2::3"},
		{"blackhole", "10.66.1.0/24"},
		{"blackhole", "fd00:66:1::/48"},
		{"unreachable", "10.66.2.0/24"},
		{"unreachable", "fd00:66:2::/48"},
		{"prohibit", "10.66.3.0/24"},
		{"prohibit", "fd00:66:3::/48"},
		{"10.94.0.0/16", "via", dstHost4.String(), "mtu", "1400"},
		{"fd00:94::/48", "via", dstHost6.String(), "mtu", "1400"},
	} {
		r.IP(t, append([]string{"route", "add"}, rt...)...)
	}

	e.pinDir = testbed.PinDir(t, "xrdp-")
	dp, err := Load(e.pinDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	e.dp = dp
	e.setFlags(t, PortFlags{})
	// As the daemon does (internal/nhcache): the routes with an mtu, and
	// the sysctls' defaults (ip_forward_use_pmtu 0, min_pmtu 552).
	e.setFIB(t, FIBConfig{IgnorePMTU4: true, MinPMTU4: 552})
	// As the daemon does (internal/devmap): every local IPv4 address.
	var local []netip.Addr
	for _, dev := range []string{devSrc, devDst, devMTU, devNoDM, devOff, devUnk} {
		for _, a := range r.Addrs(t, dev) {
			if a.Addr().Is4() {
				local = append(local, a.Addr())
			}
		}
	}
	if err := dp.SetLocal4(local); err != nil {
		t.Fatal(err)
	}
	// The devmap resolves ifindexes in the caller's namespace.
	err = r.Do(func() error {
		for _, dev := range []string{devSrc, devDst, devMTU, devOff, devUnk} {
			if err := dp.SetEgress(e.ifindex[dev]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// routeMTUBounds is what internal/nhcache computes from the environment's
// routes with an mtu.
var routeMTUBounds = map[netip.Prefix]uint32{
	netip.MustParsePrefix("10.94.0.0/16"): routeMTU,
	netip.MustParsePrefix("fd00:94::/48"): routeMTU,
}

const routeMTU = 1400

func (e *fwdEnv) setFIB(t testing.TB, c FIBConfig) {
	t.Helper()
	if err := e.dp.SetFIB(c, routeMTUBounds); err != nil {
		t.Fatal(err)
	}
}

// setFlags registers the ports with the sysctl-derived flags the daemon
// would compute (internal/devmap reads them from /proc/sys).
func (e *fwdEnv) setFlags(t testing.TB, flags PortFlags) {
	t.Helper()
	for _, dev := range []string{devSrc, devDst, devMTU, devNoDM, devOff} {
		if err := e.dp.SetPort(e.ifindex[dev], routerMAC[dev], flags); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs the program once on frame as if it arrived on the router's
// interface dev, from a thread inside the router namespace. It returns the
// verdict and the frame as the program left it.
func (e *fwdEnv) run(dev string, frame []byte) (uint32, []byte, error) {
	if _, ok := e.ifindex[dev]; !ok {
		return 0, nil, errors.New("unknown device " + dev)
	}
	do := e.router.Do
	if e.pinCPU {
		do = e.onCPU0
	}
	var ret uint32
	var out []byte
	err := do(func() error {
		var err error
		ret, out, err = e.runHere(dev, frame, 1)
		return err
	})
	return ret, out, err
}

func (e *fwdEnv) stats(t testing.TB) Stats {
	t.Helper()
	s, err := e.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// delta returns the counters that moved between two snapshots.
func delta(before, after Stats) map[Outcome]Counter {
	d := map[Outcome]Counter{}
	for o := range before {
		if before[o] != after[o] {
			d[Outcome(o)] = Counter{after[o].Packets - before[o].Packets, after[o].Bytes - before[o].Bytes}
		}
	}
	return d
}
