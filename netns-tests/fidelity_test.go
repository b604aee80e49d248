package netnstests

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestRouteMTUPrivileged: a route's mtu metric (`ip route ... mtu 1400`),
// which kernel forwarding honours and bpf_fib_lookup ignores. A 1500-byte
// DF packet to a destination under it gets ICMP Fragmentation Needed with
// mtu 1400 (IPv6: Packet Too Big) from the router, exactly as without
// xrouter, counted route_mtu; without DF the router's kernel fragments it
// and the ping is answered; a 1400-byte packet takes the fast path. The
// IPv4 route exists before the daemon starts, the IPv6 one is added while
// it runs (route event). Fails before xrouter honoured route MTUs: the
// 1500-byte packets were forwarded.
func TestRouteMTUPrivileged(t *testing.T) {
	tp := newTopo(t)
	tp.Router.IP(t, "route", "add", dst4+"/32", "dev", testbed.LineRouterDstDev, "mtu", "1400")
	startDaemon(t, tp.Router, tp.ownSocketConfig(t))
	tp.Router.IP(t, "-6", "route", "add", dst6+"/128", "dev", testbed.LineRouterDstDev, "mtu", "1400")
	time.Sleep(300 * time.Millisecond) // the daemon follows the route event
	warmUp(t, tp.Src, dst4, dst6)

	// Without DF: fragmented by the router's kernel, answered.
	// (First: after the DF ping below, the source itself would fragment.)
	base := readStats(t, tp.Pin)
	r := ping(t, tp.Src, "-4", "-c", "1", "-W", "2", "-M", "dont", "-s", "1472", dst4)
	d := readStats(t, tp.Pin).sub(base)
	if r.Received != 1 {
		t.Errorf("ping -M dont -s 1472 %s: %d replies, want 1:\n%s", dst4, r.Received, r.Out)
	}
	if d["route_mtu"] != 1 {
		t.Errorf("ping -M dont -s 1472: route_mtu +%d, want +1 (stats growth: %v)", d["route_mtu"], d)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-4", "-M", "do", "-s", "1472", dst4}, "From " + rtrSrc4 + " icmp_seq=1 Frag needed and DF set (mtu = 1400)"},
		{[]string{"-6", "-M", "do", "-s", "1452", dst6}, "From " + rtrSrc6 + " icmp_seq=1 Packet too big: mtu=1400"},
	} {
		base := readStats(t, tp.Pin)
		r := ping(t, tp.Src, append([]string{"-c", "1", "-W", "1"}, c.args...)...)
		d := readStats(t, tp.Pin).sub(base)
		if r.Received != 0 || !strings.Contains(r.Out, c.want) {
			t.Errorf("ping %s: %d replies, want 0 and %q:\n%s", strings.Join(c.args, " "), r.Received, c.want, r.Out)
		}
		if d["route_mtu"] != 1 || d["forwarded"] != 0 {
			t.Errorf("ping %s: route_mtu +%d, forwarded +%d; want +1 and +0 (stats growth: %v)", strings.Join(c.args, " "), d["route_mtu"], d["forwarded"], d)
		}
	}

	// At the route's mtu: the fast path, both ways.
	base = readStats(t, tp.Pin)
	for _, args := range [][]string{{"-4", "-M", "do", "-s", "1372", dst4}, {"-6", "-M", "do", "-s", "1352", dst6}} {
		r := ping(t, tp.Src, append([]string{"-c", "2", "-i", "0.05", "-W", "2"}, args...)...)
		if r.Received != 2 {
			t.Errorf("ping %s (1400-byte packets): %d of 2 replies:\n%s", strings.Join(args, " "), r.Received, r.Out)
		}
	}
	if d := readStats(t, tp.Pin).sub(base); d["forwarded"] != 8 || d["route_mtu"] != 0 {
		t.Errorf("1400-byte packets: forwarded +%d, route_mtu +%d; want +8 and +0 (stats growth: %v)", d["forwarded"], d["route_mtu"], d)
	}
}

// TestShortL4Privileged: IP packets whose TCP/UDP header is cut short (2
// bytes) and an ICMP packet with no ICMP header at all are forwarded by
// kernel forwarding (it never parses them); the fast path forwards them
// too (counted forwarded, not malformed), and they arrive. Fails before
// xrouter forwarded them: counted malformed.
func TestShortL4Privileged(t *testing.T) {
	tp := newTopo(t)
	startDaemon(t, tp.Router, tp.ownSocketConfig(t))
	warmUp(t, tp.Src, dst4, dst6)

	for _, c := range []struct {
		network, dst string
		body         []byte
	}{
		{"ip4:17", dst4, []byte{0x9c, 0x40}},
		{"ip4:6", dst4, []byte{0x9c, 0x40}},
		// Sent as a bare IP header on an ip4:255 socket. A raw ICMP
		// socket filters out what has no ICMP header, so its arrival is
		// seen in dst's Icmp InMsgs instead.
		{"ip4:1", dst4, nil},
		{"ip6:17", dst6, []byte{0x9c, 0x40}},
	} {
		var rx net.PacketConn
		err := tp.Dst.Do(func() error {
			var err error
			rx, err = net.ListenPacket(c.network, "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		base := readStats(t, tp.Pin)
		icmpBase, _ := snmpCounter(t, tp.Dst, "Icmp", "InMsgs")
		err = tp.Src.Do(func() error {
			network, body := c.network, c.body
			if len(body) == 0 {
				// IPPROTO_RAW: the caller writes the IP header (the
				// kernel fills in length, id and checksum).
				network = "ip4:255"
				body = append([]byte{0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0},
					append(net.ParseIP(src4).To4(), net.ParseIP(c.dst).To4()...)...)
			}
			tx, err := net.ListenPacket(network, "")
			if err != nil {
				return err
			}
			defer tx.Close()
			_, err = tx.WriteTo(body, &net.IPAddr{IP: net.ParseIP(c.dst)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		got := -1
		for {
			n, from, err := rx.ReadFrom(buf)
			if err != nil {
				break
			}
			if from.String() == src4 || from.String() == src6 {
				got = n
				break
			}
		}
		rx.Close()
		if icmp, _ := snmpCounter(t, tp.Dst, "Icmp", "InMsgs"); len(c.body) == 0 && icmp == icmpBase+1 {
			got = 0
		}
		d := readStats(t, tp.Pin).sub(base)
		if got != len(c.body) {
			t.Errorf("%s to %s with %d bytes: received %d bytes (-1: nothing)", c.network, c.dst, len(c.body), got)
		}
		if d["forwarded"] != 1 || d["malformed"] != 0 {
			t.Errorf("%s with %d bytes: forwarded +%d, malformed +%d; want +1 and +0 (stats growth: %v)", c.network, len(c.body), d["forwarded"], d["malformed"], d)
		}
	}
}

// ownSocketConfig is defaultConfig with an API socket of the test's own, so
// that daemons of tests running in parallel elsewhere do not collide.
func (tp *topo) ownSocketConfig(t *testing.T) string {
	return writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra:      "api:\n  socket: " + filepath.Join(t.TempDir(), "api.sock") + "\n",
	})
}
