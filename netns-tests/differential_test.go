package netnstests

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestDifferentialPrivileged drives one random stream through kernel
// forwarding and through xrouter side by side and compares, byte for byte,
// what each router emits. Two routers with the same addresses, MACs, routes
// and sysctls sit between one sender and one receiver:
//
//	      sk ⇄ rin [Rk: kernel forwarding] rout ⇄ dk
//	S  <                                           >  D
//	      sx ⇄ rin [Rx: xrouter]           rout ⇄ dx
//
// Every frame is sent to both. What arrives at D (forwarded packets, ICMP
// errors for far sources) and back at S (ICMP errors, replies) must be the
// same on both sides; only the IPv4 ID and header checksum of packets the
// routers originate (TTL 64, which the stream never sends) are ignored:
// each namespace has its own ID generator.
// Between rounds the routers' state changes the same way on both.
//
// XR_DIFF_FRAMES sets the frames per round (default 300) and XR_DIFF_SEED
// the seed (default: the time; it is logged, so a failure can be rerun).
func TestDifferentialPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	perRound := envInt(t, "XR_DIFF_FRAMES", 300)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("XR_DIFF_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("XR_DIFF_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with XR_DIFF_SEED=%d), %d frames per round", seed, seed, perRound)

	d := newDiffTopo(t)
	gen := newFrameGen(seed, 0)
	var fast uint64
	for _, r := range diffRounds {
		if r.apply != nil {
			for _, rt := range []*testbed.Netns{d.rk, d.rx} {
				r.apply(t, rt)
			}
			// Route and neighbour changes reach xrouter through the
			// kernel's events at once; sysctls through the next resync.
			time.Sleep(r.settle)
		}
		fast += d.round(t, r.name, gen, perRound)
	}
	// A comparison is only worth something if the fast path took part.
	// Some rounds rightly leave everything to the kernel (tc on a port);
	// over the whole test, a good share of the stream must be XDP's.
	if total := uint64(perRound * len(diffRounds)); fast < total/8 {
		t.Errorf("xrouter forwarded only %d of %d frames in XDP: the comparison hardly tested the fast path", fast, total)
	}
}

// diffRound is one state of the routers; apply runs on both.
type diffRound struct {
	name   string
	apply  func(t *testing.T, rt *testbed.Netns)
	settle time.Duration
}

var diffRounds = []diffRound{
	{name: "baseline"},
	{
		name: "policy rule to another table and next hop",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "route", "add", "198.18.64.0/18", "via", "10.210.2.3", "table", "100")
			rt.IP(t, "-6", "route", "add", "2001:db8:18:4000::/50", "via", "fd00:210:2::3", "table", "100")
			rt.IP(t, "rule", "add", "to", "198.18.64.0/18", "table", "100", "pref", "100")
			rt.IP(t, "-6", "rule", "add", "to", "2001:db8:18:4000::/50", "table", "100", "pref", "100")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "next hop changes its MAC",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "neigh", "replace", "10.210.2.2", "lladdr", dfMACD2.String(), "dev", "rout", "nud", "permanent")
			rt.IP(t, "neigh", "replace", "fd00:210:2::2", "lladdr", dfMACD2.String(), "dev", "rout", "nud", "permanent")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "routes become blackhole, unreachable, prohibit",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "route", "replace", "blackhole", "198.18.0.0/18")
			rt.IP(t, "route", "replace", "unreachable", "198.18.128.0/18")
			rt.IP(t, "route", "replace", "prohibit", "198.18.192.0/18")
			rt.IP(t, "-6", "route", "replace", "blackhole", "2001:db8:18::/50")
			rt.IP(t, "-6", "route", "replace", "prohibit", "2001:db8:18:c000::/50")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "multipath routes, hash policy 0",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "route", "add", "198.18.32.0/19", "nexthop", "via", "10.210.2.2", "nexthop", "via", "10.210.2.3")
			rt.IP(t, "-6", "route", "add", "2001:db8:18:2000::/51", "nexthop", "via", "fd00:210:2::2", "nexthop", "via", "fd00:210:2::3")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "multipath routes, hash policy 1 (L4)",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1")
			rt.Sysctl(t, "net.ipv6.fib_multipath_hash_policy", "1")
		},
		settle: 1500 * time.Millisecond,
	},
	{
		name: "route with an mtu",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "route", "add", "198.19.0.0/16", "via", "10.210.2.2", "mtu", "1400")
			rt.IP(t, "-6", "route", "add", "2001:db8:19::/48", "via", "fd00:210:2::2", "mtu", "1400")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "local route for a far prefix",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.IP(t, "route", "add", "local", "198.19.7.0/24", "dev", "rout", "table", "local")
			rt.IP(t, "-6", "route", "add", "local", "2001:db8:19:7::/64", "dev", "rout", "table", "local")
		},
		settle: 500 * time.Millisecond,
	},
	{
		name: "multipath routes, hash policy 2 (inner headers)",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "2")
			rt.Sysctl(t, "net.ipv6.fib_multipath_hash_policy", "2")
		},
		settle: 2500 * time.Millisecond,
	},
	{
		name: "tc: a qdisc on the egress, a filter on the ingress",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Run(t, "tc", "qdisc", "add", "dev", "rout", "root", "handle", "1:", "pfifo", "limit", "10000")
			// A filter that drops what goes to the far host.
			addTCFilter(t, rt, "rin", tcAction{Drop4: dfDst4, Drop6: dfDst6})
		},
		settle: 1000 * time.Millisecond,
	},
	{
		name: "tc removed again",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Run(t, "tc", "qdisc", "del", "dev", "rout", "root")
			rt.Run(t, "tc", "qdisc", "del", "dev", "rin", "clsact")
		},
		settle: 1000 * time.Millisecond,
	},
	{
		name: "nftables forward rule drops the far host",
		apply: func(t *testing.T, rt *testbed.Netns) {
			addFirewallFor(t, rt, dfDst4, dfDst6)
		},
		settle: 1000 * time.Millisecond,
	},
	{
		name: "nftables rule removed again",
		apply: func(t *testing.T, rt *testbed.Netns) {
			nft(t, rt, func(c *nftables.Conn) { c.DelTable(fwTable) })
		},
		settle: 1000 * time.Millisecond,
	},
	{
		name: "rp_filter strict on the ingress",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Sysctl(t, "net.ipv4.conf.all.rp_filter", "1")
			rt.Sysctl(t, "net.ipv4.conf.rin.rp_filter", "1")
		},
		settle: 1500 * time.Millisecond,
	},
	{
		name: "IPv6 disabled on the ingress",
		apply: func(t *testing.T, rt *testbed.Netns) {
			rt.Sysctl(t, "net.ipv6.conf.rin.disable_ipv6", "1")
		},
		settle: 1500 * time.Millisecond,
	},
}

// diffTopo is the two routers and their sender and receiver.
type diffTopo struct {
	s, rk, rx, d   *testbed.Netns
	sk, sx, dk, dx int // ifindexes in S and D
	pin            string
}

func newDiffTopo(t *testing.T) *diffTopo {
	t.Helper()
	// ICMP errors for unreachable and prohibit routes (ip_error) have a
	// token bucket of their own, 1 per second with a burst of 5, counted in
	// jiffies per source. Its knob is global, not per namespace, so it is
	// set to 0 (no limit) for the test and put back after: otherwise a
	// jiffy tick between the frame's copy to one router and to the other
	// gives one of them a token the other lacks.
	setHostSysctl(t, "/proc/sys/net/ipv4/route/error_cost", "0")
	d := &diffTopo{
		s:  testbed.NewNetns(t, prefix+"dfs"),
		rk: testbed.NewNetns(t, prefix+"dfk"),
		rx: testbed.NewNetns(t, prefix+"dfx"),
		d:  testbed.NewNetns(t, prefix+"dfd"),
	}
	sk, _ := testbed.Veth(t, d.s, "sk", d.rk, "rin")
	sx, _ := testbed.Veth(t, d.s, "sx", d.rx, "rin")
	_, dk := testbed.Veth(t, d.rk, "rout", d.d, "dk")
	_, dx := testbed.Veth(t, d.rx, "rout", d.d, "dx")
	d.sk, d.sx, d.dk, d.dx = sk.Index, sx.Index, dk.Index, dx.Index

	for _, e := range []struct {
		ns  *testbed.Netns
		dev string
		mac net.HardwareAddr
	}{{d.s, "sk", dfMACS}, {d.s, "sx", dfMACS}, {d.d, "dk", dfMACD}, {d.d, "dx", dfMACD}} {
		e.ns.SetMAC(t, e.dev, e.mac)
		// Frames redirected into a veth need a program on its peer; GRO off
		// so that every frame is seen as it left the router.
		attachSink(t, e.ns, e.dev)
		setTxChecksum(t, e.ns, e.dev, false)
		if err := e.ns.SetEthtool(e.dev, testbed.EthtoolSGRO, false); err != nil {
			t.Fatal(err)
		}
		// The sender may send up to the router's ingress MTU.
		if e.dev[0] == 's' {
			e.ns.SetMTU(t, e.dev, 3000)
		}
	}
	for _, rt := range []*testbed.Netns{d.rk, d.rx} {
		rt.SetMAC(t, "rin", dfMACRin)
		rt.SetMAC(t, "rout", dfMACOut)
		rt.SetMTU(t, "rin", 3000)
		rt.EnableForwarding(t)
		for _, kv := range [][2]string{
			// Every ICMP error is sent, so that rate limits, which
			// depend on timing, cannot make the two sides differ.
			{"net.ipv4.icmp_ratelimit", "0"},
			{"net.ipv4.icmp_msgs_per_sec", "1000000"},
			{"net.ipv4.icmp_msgs_burst", "1000000"},
			{"net.ipv6.icmp.ratelimit", "0"},
			// The same multipath hash on both (the seed is random per
			// namespace otherwise).
			{"net.ipv4.fib_multipath_hash_seed", "12345"},
		} {
			rt.Sysctl(t, kv[0], kv[1])
		}
		rt.IP(t, "addr", "add", "10.210.1.1/24", "dev", "rin")
		rt.IP(t, "addr", "add", "10.210.2.1/24", "dev", "rout")
		rt.IP(t, "addr", "add", "fd00:210:1::1/64", "dev", "rin", "nodad")
		rt.IP(t, "addr", "add", "fd00:210:2::1/64", "dev", "rout", "nodad")
		// Fixed neighbours: resolution timing must not differ.
		for _, n := range []struct {
			dev, addr string
			mac       net.HardwareAddr
		}{
			{"rin", "10.210.1.2", dfMACS}, {"rin", "fd00:210:1::2", dfMACS},
			{"rout", "10.210.2.2", dfMACD}, {"rout", "fd00:210:2::2", dfMACD},
			{"rout", "10.210.2.3", dfMACD2}, {"rout", "fd00:210:2::3", dfMACD2},
		} {
			rt.AddNeigh(t, n.dev, netip.MustParseAddr(n.addr), n.mac)
		}
		rt.IP(t, "route", "add", "198.18.0.0/15", "via", "10.210.2.2")
		rt.IP(t, "-6", "route", "add", "2001:db8:18::/47", "via", "fd00:210:2::2")
		rt.IP(t, "route", "add", "blackhole", "198.51.100.0/26")
		rt.IP(t, "route", "add", "unreachable", "198.51.100.64/26")
		rt.IP(t, "route", "add", "prohibit", "198.51.100.128/26")
		rt.IP(t, "-6", "route", "add", "blackhole", "2001:db8:51::/64")
		rt.IP(t, "-6", "route", "add", "unreachable", "2001:db8:51:1::/64")
		rt.IP(t, "-6", "route", "add", "prohibit", "2001:db8:51:2::/64")
	}
	d.pin = testbed.PinDir(t, prefix)
	t.Cleanup(func() {
		if _, stderr, err := xr("detach", "--pin-path", d.pin); err != nil {
			t.Logf("cleanup: xrouter detach --pin-path %s: %v: %s", d.pin, err, strings.TrimSpace(stderr))
		}
	})
	startDaemon(t, d.rx, writeConfig(t, cfg{Interfaces: []string{"rin", "rout"}, Pin: d.pin}))
	return d
}

// round sends n frames of the stream to both routers, compares what comes
// out of them, and returns how many xrouter forwarded in XDP.
func (d *diffTopo) round(t *testing.T, name string, gen *frameGen, n int) uint64 {
	t.Helper()
	capS := openPktSock(t, d.s)
	capD := openPktSock(t, d.d)
	defer capS.close()
	defer capD.close()
	send := openPktSock(t, d.s)
	defer send.close()

	before := readStats(t, d.pin)
	frames := make(map[uint32]genFrame, n)
	for i := range n {
		f := gen.next()
		frames[f.tag] = f
		for _, ifi := range []int{d.sk, d.sx} {
			if err := send.send(ifi, f.bytes); err != nil {
				t.Fatalf("round %q: sending frame %d (%s): %v", name, f.tag, f.desc, err)
			}
		}
		// veth with XDP takes frames through a 256-slot ring: pace.
		if i%16 == 15 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	var diffs []string
	for _, c := range []struct {
		what     string
		cap      *pktSock
		kif, xif int
	}{{"at the receiver", capD, d.dk, d.dx}, {"back at the sender", capS, d.sk, d.sx}} {
		got := c.cap.drain(t)
		k, x := normalized(got[c.kif]), normalized(got[c.xif])
		diffs = append(diffs, compareFrames(c.what, k, x, frames)...)
	}
	grew := readStats(t, d.pin).sub(before)
	t.Logf("round %q: %d frames, %d differences; xrouter: %s", name, n, len(diffs), grew)
	if len(diffs) > 0 {
		const show = 20
		more := ""
		if len(diffs) > show {
			more = fmt.Sprintf("\n... and %d more", len(diffs)-show)
			diffs = diffs[:show]
		}
		t.Errorf("round %q: kernel forwarding and xrouter emitted different frames:\n%s%s", name, strings.Join(diffs, "\n"), more)
	}
	return grew["forwarded"]
}

// pktSock is an AF_PACKET socket in a namespace that sees every frame its
// interfaces receive.
type pktSock struct{ fd int }

func openPktSock(t *testing.T, ns *testbed.Netns) *pktSock {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	})
	if err != nil {
		t.Fatalf("netns %s: %v", ns.Name(), err)
	}
	return &pktSock{fd: fd}
}

func (c *pktSock) close() { unix.Close(c.fd) }

func (c *pktSock) send(ifindex int, frame []byte) error {
	return unix.Sendto(c.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(unix.ETH_P_ALL)})
}

// drain reads received frames per ifindex until nothing more arrives for
// 300 ms (at most 5 s), skipping what the namespace itself sent.
func (c *pktSock) drain(t *testing.T) map[int][][]byte {
	t.Helper()
	out := map[int][][]byte{}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	quietSince := time.Now()
	for time.Since(quietSince) < 300*time.Millisecond && time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("reading captured frames: %v", err)
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		out[ll.Ifindex] = append(out[ll.Ifindex], bytes.Clone(buf[:n]))
		quietSince = time.Now()
	}
	return out
}

// normalized drops what is not part of forwarding (ARP, neighbour
// discovery, MLD, router solicitations) and zeroes, in packets the router
// originated, the fields that differ between two namespaces by design: the
// IPv4 ID and header checksum, the IPv6 flow label and fragment ID. It
// returns the frames
// sorted.
func normalized(frames [][]byte) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if len(f) < 14 {
			out = append(out, f)
			continue
		}
		if f[0]&1 != 0 {
			continue // multicast and broadcast: ARP, MLD, neighbour discovery
		}
		switch binary.BigEndian.Uint16(f[12:]) {
		case 0x0800:
			if len(f) >= 34 {
				// The stream never sends TTL 65, so TTL 64 is a packet
				// the router made (an ICMP error or reply).
				if f[22] == 64 {
					f[18], f[19], f[24], f[25] = 0, 0, 0, 0
				}
			}
		case 0x86dd:
			if len(f) >= 54 {
				src := netip.AddrFrom16([16]byte(f[22:38]))
				if f[20] == 58 && len(f) >= 55 && f[54] >= 130 && f[54] <= 143 {
					continue // MLD, router and neighbour discovery
				}
				if src.IsLinkLocalUnicast() {
					continue // the routers' own link-local traffic
				}
				if f[21] == 64 {
					f[15] &= 0xf0
					f[16], f[17] = 0, 0
					if f[20] == 44 && len(f) >= 62 { // a fragment: its ID
						clear(f[58:62])
					}
				}
			}
		default:
			continue
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return out
}

// frameTag recovers the stream index from a frame, or from the packet an
// ICMP error quotes (0 if none).
func frameTag(f []byte) uint32 {
	if len(f) < 14 {
		return 0
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(f) < 34 {
			return 0
		}
		hl := int(f[14]&0xf) * 4
		if f[23] == 1 && len(f) >= 14+hl+8+20 && f[14+hl] != 0 && f[14+hl] != 8 {
			return uint32(binary.BigEndian.Uint16(f[14+hl+8+4:]))
		}
		return uint32(binary.BigEndian.Uint16(f[18:]))
	case 0x86dd:
		if len(f) < 54 {
			return 0
		}
		if f[20] == 58 && len(f) >= 54+8+40 && f[54] < 128 {
			return binary.BigEndian.Uint32(f[62:]) & 0xfffff
		}
		return binary.BigEndian.Uint32(f[14:]) & 0xfffff
	}
	return 0
}

// compareFrames reports every frame one side emitted and the other did not.
func compareFrames(what string, k, x [][]byte, sent map[uint32]genFrame) []string {
	var diffs []string
	i, j := 0, 0
	report := func(side string, f []byte) {
		tag := frameTag(f)
		desc := "?"
		if s, ok := sent[tag]; ok {
			desc = s.desc
		}
		diffs = append(diffs, fmt.Sprintf("  %s: only %s: frame %d (%s), %d bytes:\n    %s", what, side, tag, desc, len(f), hex.EncodeToString(f[:min(len(f), 200)])))
	}
	for i < len(k) || j < len(x) {
		switch {
		case j == len(x) || i < len(k) && bytes.Compare(k[i], x[j]) < 0:
			report("kernel forwarding", k[i])
			i++
		case i == len(k) || bytes.Compare(k[i], x[j]) > 0:
			report("xrouter", x[j])
			j++
		default:
			i++
			j++
		}
	}
	return diffs
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, s)
	}
	return v
}

// setHostSysctl writes a sysctl of the initial namespace and restores its
// value when the test ends.
func setHostSysctl(t *testing.T, path, value string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatalf("writing %s=%s: %v", path, value, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Errorf("restoring %s: %v", path, err)
		}
	})
}
