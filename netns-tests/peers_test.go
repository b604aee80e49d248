package netnstests

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Prefixes the peers of TestPeersBIRDAndFRRPrivileged announce, and an
// address inside each that lives on the announcing host's loopback.
//
//	BIRD (AS 65002, the line's dst host):  10.99.1/24 fd00:99:1::/48 (plain)
//	                                       10.99.3/24 fd00:99:3::/48 (withdrawn later)
//	                                       10.99.4/24 fd00:99:4::/48 (operator routes too)
//	FRR  (AS 65003, its own host "frr"):   10.99.2/24 fd00:99:2::/48 (plain)
//	both:                                  10.99.7/24 fd00:99:7::/48 (ECMP)
const birdConf = `router id 10.201.2.2;
protocol device {}
protocol static base4 { ipv4; route 10.99.1.0/24 blackhole; route 10.99.7.0/24 blackhole; }
protocol static base6 { ipv6; route fd00:99:1::/48 blackhole; route fd00:99:7::/48 blackhole; }
protocol static wd4 { ipv4; route 10.99.3.0/24 blackhole; route 10.99.4.0/24 blackhole; }
protocol static wd6 { ipv6; route fd00:99:3::/48 blackhole; route fd00:99:4::/48 blackhole; }
# ORIGIN IGP like FRR's network statements, so that the paths tie (ECMP).
filter out4 { if proto = "base4" || proto = "wd4" then { bgp_origin = ORIGIN_IGP; accept; } reject; }
filter out6 { if proto = "base6" || proto = "wd6" then { bgp_origin = ORIGIN_IGP; accept; } reject; }
protocol bgp xr4 {
	local 10.201.2.2 as 65002;
	neighbor 10.201.2.1 as 65001;
	hold time 3; keepalive time 1; connect retry time 1;
	ipv4 { import all; export filter out4; };
}
protocol bgp xr6 {
	local fd00:201:2::2 as 65002;
	neighbor fd00:201:2::1 as 65001;
	hold time 3; keepalive time 1; connect retry time 1;
	ipv6 { import all; export filter out6; };
}
`

// frrConf: FRR announces only what the outbound route-maps permit, so that
// it never echoes xrouter's own network back.
const frrConf = `frr defaults traditional
hostname xrnt-frr
log stdout informational
ip prefix-list OUT4 seq 5 permit 10.99.2.0/24
ip prefix-list OUT4 seq 10 permit 10.99.7.0/24
ipv6 prefix-list OUT6 seq 5 permit fd00:99:2::/48
ipv6 prefix-list OUT6 seq 10 permit fd00:99:7::/48
route-map OUT4 permit 10
 match ip address prefix-list OUT4
exit
route-map OUT6 permit 10
 match ipv6 address prefix-list OUT6
exit
route-map IN permit 10
exit
router bgp 65003
 bgp router-id 10.201.3.2
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.201.3.1 remote-as 65001
 neighbor 10.201.3.1 timers 1 3
 neighbor 10.201.3.1 timers connect 1
 neighbor fd00:201:3::1 remote-as 65001
 neighbor fd00:201:3::1 timers 1 3
 neighbor fd00:201:3::1 timers connect 1
 address-family ipv4 unicast
  network 10.99.2.0/24
  network 10.99.7.0/24
  neighbor 10.201.3.1 activate
  neighbor 10.201.3.1 route-map IN in
  neighbor 10.201.3.1 route-map OUT4 out
 exit-address-family
 address-family ipv6 unicast
  network fd00:99:2::/48
  network fd00:99:7::/48
  neighbor fd00:201:3::1 activate
  neighbor fd00:201:3::1 route-map IN in
  neighbor fd00:201:3::1 route-map OUT6 out
 exit-address-family
`

// Neighbours that are configured but exist nowhere: the router's namespace
// has no route to the first; the second is on FRR's link, where nobody
// answers ARP for it.
const (
	unreachableNeighbor = "198.51.100.7"
	silentNeighbor      = "10.201.3.99"
)

// routerBGP is the router's bgp section: one session per peer and family
// (IPv4 unicast over IPv4, IPv6 unicast over IPv6), 3 s hold time, multipath.
var routerBGP = bgpHead + `  multipath: true
  networks: [10.201.1.0/24, "fd00:201:1::/64"]
  prefix_lists:
    - name: from-peers
      entries: [{prefix: 10.99.0.0/16, le: 32}, {prefix: "fd00:99::/32", le: 128}]
    - name: ours
      entries: [{prefix: 10.201.1.0/24}, {prefix: "fd00:201:1::/64"}]
  neighbors:
    - {address: 10.201.2.2, peer_as: 65002, families: [ipv4-unicast], hold_time: 3s, import: from-peers, export: ours}
    - {address: "fd00:201:2::2", peer_as: 65002, families: [ipv6-unicast], hold_time: 3s, import: from-peers, export: ours}
    - {address: 10.201.3.2, peer_as: 65003, families: [ipv4-unicast], hold_time: 3s, import: from-peers, export: ours}
    - {address: "fd00:201:3::2", peer_as: 65003, families: [ipv6-unicast], hold_time: 3s, import: from-peers, export: ours}
    - {address: ` + unreachableNeighbor + `, peer_as: 65099, families: [ipv4-unicast], hold_time: 3s, import: from-peers, export: ours}
    - {address: ` + silentNeighbor + `, peer_as: 65098, families: [ipv4-unicast], hold_time: 3s, import: from-peers, export: ours}
`

// TestPeersBIRDAndFRRPrivileged runs `xrouter run` against BIRD 2 and FRR's
// bgpd, each on its own link, IPv4 and IPv6 unicast, with multipath, plus a
// configured neighbour that does not exist. On one topology, in order:
// sessions, install and fast-path forwarding, announcement to the peers,
// ECMP over both peers, an operator's routes left alone, withdrawal to the
// slow path, and finally the peers failing: bgpd killed with SIGKILL (and
// started again: the routes and ECMP come back), then BIRD's link down
// (noticed at hold-time expiry; ECMP traffic moves to FRR alone).
func TestPeersBIRDAndFRRPrivileged(t *testing.T) {
	tp := newTopo(t)
	frrHost := addPeerHost(t, tp, 3, "frr")
	// Spread flows over ECMP next hops by their ports (L4 hash): an
	// operator's choice that bpf_fib_lookup follows like the kernel.
	tp.Router.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1")
	tp.Router.Sysctl(t, "net.ipv6.fib_multipath_hash_policy", "1")
	// Count every ICMP error the router sends (no rate limit).
	tp.Router.Sysctl(t, "net.ipv4.icmp_ratelimit", "0")
	tp.Router.Sysctl(t, "net.ipv6.icmp.ratelimit", "0")
	addLoopback(t, tp.Dst, "10.99.1.1", "fd00:99:1::1", "10.99.3.1", "fd00:99:3::1", "10.99.7.1", "fd00:99:7::1")
	addLoopback(t, frrHost.NS, "10.99.2.1", "fd00:99:2::1", "10.99.7.1", "fd00:99:7::1")
	// An operator's static route for a prefix BIRD also announces, there
	// before the daemon starts (metric 0, better than xrouter's 20).
	tp.Router.IP(t, "route", "add", "10.99.4.0/24", "via", src4, "proto", "static")

	// Peers first, so that xrouter's first dial finds them.
	bird := startBIRD(t, tp.Dst, birdConf)
	frr := startFRR(t, frrHost.NS, frrConf)
	cfgPath, _ := writeRouterConfig(t, tp, []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev, frrHost.RouterDev}, routerBGP)
	d := startDaemon(t, tp.Router, cfgPath)

	bird4, bird6, frr4, frr6 := dst4, dst6, frrHost.Addr4, frrHost.Addr6
	established := []string{bird4, bird6, frr4, frr6}

	t.Run("sessions", func(t *testing.T) {
		var peers map[string]peerRow
		if !waitFor(20*time.Second, func() bool {
			peers = readPeers(t, cfgPath)
			for _, a := range established {
				if peers[a].State != "established" {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("not every session established within 20 s: %+v", peers)
		}
		// Each peer sends 4 (BIRD) or 2 (FRR) prefixes per family; all
		// pass the import list. Installed counts routes by next hop: the
		// ECMP prefix counts for both.
		want := map[string]uint64{bird4: 4, bird6: 4, frr4: 2, frr6: 2}
		if !waitFor(15*time.Second, func() bool {
			peers = readPeers(t, cfgPath)
			for a, n := range want {
				if peers[a].Received != n || peers[a].Accepted != n || peers[a].Installed != int(n) {
					return false
				}
			}
			return true
		}) {
			t.Errorf("xrouter peers: want received = accepted = installed = %v, got %+v", want, peers)
		}
		for _, a := range []string{unreachableNeighbor, silentNeighbor} {
			if u := peers[a]; u.State == "established" || u.Address == "" {
				t.Errorf("xrouter peers: missing neighbour %s: %+v, want listed and not established", a, u)
			}
		}
		// The peers' own view.
		for _, p := range []string{"xr4", "xr6"} {
			if !waitFor(10*time.Second, func() bool { return bird.established(p) }) {
				t.Errorf("BIRD protocol %s not Established:\n%s", p, bird.birdc("show", "protocols", "all", p))
			}
		}
		for _, c := range []struct{ afi, nb string }{{"ipv4Unicast", frrHost.Rtr4}, {"ipv6Unicast", frrHost.Rtr6}} {
			if !waitFor(10*time.Second, func() bool { return frr.neighborState(c.afi, c.nb) == "Established" }) {
				t.Errorf("FRR neighbour %s (%s) state %q, want Established:\n%s", c.nb, c.afi, frr.neighborState(c.afi, c.nb), frr.vtysh("show bgp summary"))
			}
		}
		// The daemon says clearly, at a level an operator sees by default,
		// what is wrong with the missing neighbours.
		for _, c := range []struct{ addr, why string }{
			{unreachableNeighbor, "network is unreachable"},
			{silentNeighbor, "no route to host"},
		} {
			var line string
			if !waitFor(10*time.Second, func() bool {
				for _, l := range strings.Split(d.Log.String(), "\n") {
					if strings.Contains(l, "level=WARN") && strings.Contains(l, c.addr) && strings.Contains(l, c.why) {
						line = l
						return true
					}
				}
				return false
			}) {
				t.Errorf("daemon logged no warning naming the missing neighbour %s and why (%s)", c.addr, c.why)
				continue
			}
			t.Logf("log line for the missing neighbour: %s", line)
		}
	})

	t.Run("install", func(t *testing.T) {
		for _, c := range []struct {
			prefix string
			gws    []string
		}{
			{"10.99.1.0/24", []string{bird4}},
			{"fd00:99:1::/48", []string{bird6}},
			{"10.99.2.0/24", []string{frr4}},
			{"fd00:99:2::/48", []string{frr6}},
			{"10.99.3.0/24", []string{bird4}},
			{"fd00:99:3::/48", []string{bird6}},
		} {
			r := waitBGPRoute(t, tp.Router, c.prefix, 15*time.Second, c.gws...)
			if r.Metric != 20 {
				t.Errorf("%s: metric %d, want 20", r, r.Metric)
			}
		}
		if out, _ := tp.Router.IPExec("route", "show", unreachableNeighbor); strings.TrimSpace(out) != "" {
			t.Errorf("a route to the unreachable neighbour appeared: %s", out)
		}
	})

	t.Run("forward", func(t *testing.T) {
		warmUp(t, tp.Src, "10.99.1.1", "fd00:99:1::1", "10.99.2.1", "fd00:99:2::1")
		const n = 50
		for _, dst := range []string{"10.99.1.1", "fd00:99:1::1", "10.99.2.1", "fd00:99:2::1"} {
			g := measure(t, tp, func() { pingOK(t, tp.Src, dst, n) })
			if g.stats["forwarded"] < 2*n || g.kernel4+g.kernel6 != 0 {
				t.Errorf("ping %s ×%d: forwarded +%d (want >= %d, requests and replies), kernel forwarded +%d/+%d (want 0); %s",
					dst, n, g.stats["forwarded"], 2*n, g.kernel4, g.kernel6, g.stats)
			}
		}
		// UDP one way: exactly the datagrams sent cross the fast path.
		for _, c := range []struct {
			host     *testbed.Netns
			dst      string
			family   string
			streamID uint32
		}{{tp.Dst, "10.99.1.1", "udp4", 1}, {tp.Dst, "fd00:99:1::1", "udp6", 2}, {frrHost.NS, "10.99.2.1", "udp4", 3}, {frrHost.NS, "fd00:99:2::1", "udp6", 4}} {
			rcv := listenUDP(t, c.host, c.dst)
			snd := newUDPSender(t, tp.Src, c.family)
			g := measure(t, tp, func() { sendUDP(t, snd, rcv, c.dst, c.streamID, n, 0) })
			if g.stats["forwarded"] != n || g.kernel4+g.kernel6 != 0 {
				t.Errorf("UDP to %s ×%d: forwarded +%d, kernel +%d/+%d; want +%d and 0 (%s)", c.dst, n, g.stats["forwarded"], g.kernel4, g.kernel6, n, g.stats)
			}
		}
	})

	t.Run("announce", func(t *testing.T) {
		for _, c := range []struct{ proto, prefix string }{{"xr4", "10.201.1.0/24"}, {"xr6", "fd00:201:1::/64"}} {
			if !waitFor(15*time.Second, func() bool {
				return strings.Contains(bird.birdc("show", "route", "protocol", c.proto), c.prefix)
			}) {
				t.Errorf("BIRD did not learn %s over %s:\n%s", c.prefix, c.proto, bird.birdc("show", "route", "all"))
			}
		}
		for _, c := range []struct{ family, prefix string }{{"ipv4", "10.201.1.0/24"}, {"ipv6", "fd00:201:1::/64"}} {
			if !waitFor(15*time.Second, func() bool { return frr.hasRoute(c.family, c.prefix) }) {
				t.Errorf("FRR did not learn %s:\n%s", c.prefix, frr.vtysh("show bgp "+c.family+" unicast"))
			}
		}
		// Nothing else: xrouter's export list holds only its networks.
		if out := bird.birdc("show", "route", "protocol", "xr4"); strings.Contains(out, "10.99.2.0/24") {
			t.Errorf("xrouter sent FRR's route to BIRD:\n%s", out)
		}
	})

	t.Run("ecmp", func(t *testing.T) {
		for _, c := range []struct {
			prefix, dst, family string
			gws                 []string
		}{
			{"10.99.7.0/24", "10.99.7.1", "udp4", []string{bird4, frr4}},
			{"fd00:99:7::/48", "fd00:99:7::1", "udp6", []string{bird6, frr6}},
		} {
			t.Run(c.family, func(t *testing.T) {
				ecmpSpread(t, tp, frrHost, c.prefix, c.dst, c.family, c.gws)
				if got := xrouterNextHops(t, cfgPath, tp.Router, c.prefix); !slices.Equal(got, c.gws) {
					t.Errorf("xrouter routes %s: next hops %v, want %v", c.prefix, got, c.gws)
				}
			})
		}
	})

	t.Run("operator_route", func(t *testing.T) {
		// The v6 one arrives while xrouter's route is installed, with a
		// worse metric than xrouter's.
		waitBGPRoute(t, tp.Router, "fd00:99:4::/48", 15*time.Second, bird6)
		tp.Router.IP(t, "-6", "route", "add", "fd00:99:4::/48", "via", src6, "proto", "static", "metric", "100")
		waitBGPRoute(t, tp.Router, "10.99.4.0/24", 15*time.Second, bird4)
		checkOperatorRoutes(t, tp.Router)
	})

	t.Run("withdraw", func(t *testing.T) {
		warmUp(t, tp.Src, "10.99.3.1", "fd00:99:3::1")
		for _, proto := range []string{"wd4", "wd6"} {
			if out := bird.birdc("disable", proto); !strings.Contains(out, "disabled") {
				t.Fatalf("birdc disable %s: %s", proto, out)
			}
		}
		for _, p := range []string{"10.99.3.0/24", "fd00:99:3::/48", "10.99.4.0/24", "fd00:99:4::/48"} {
			waitBGPRoute(t, tp.Router, p, 15*time.Second)
		}
		// The operator's routes are still there, untouched.
		checkOperatorRoutes(t, tp.Router)

		// Traffic to the withdrawn prefixes goes to the kernel, which has
		// no route and says so to the sender.
		for _, c := range []struct{ dst, want string }{
			{"10.99.3.1", "Destination Net Unreachable"},
			{"fd00:99:3::1", "Destination unreachable: No route"},
		} {
			unreach := icmpOutDestUnreachs(t, tp.Router)
			var r pingResult
			g := measure(t, tp, func() {
				args := []string{"-c", "3", "-i", "0.2", "-W", "1", c.dst}
				if strings.Contains(c.dst, ":") {
					args = append([]string{"-6"}, args...)
				}
				r = ping(t, tp.Src, args...)
			})
			if r.Received != 0 || !strings.Contains(r.Out, c.want) {
				t.Errorf("ping %s after the withdrawal: %d replies, want none and %q:\n%s", c.dst, r.Received, c.want, r.Out)
			}
			if g.stats["not_fwded"] < 3 || g.stats["forwarded"] != 0 {
				t.Errorf("ping %s after the withdrawal: not_fwded +%d forwarded +%d, want >= 3 and 0 (%s)", c.dst, g.stats["not_fwded"], g.stats["forwarded"], g.stats)
			}
			if got := icmpOutDestUnreachs(t, tp.Router) - unreach; got < 3 {
				t.Errorf("router sent %d ICMP destination unreachable for %s, want >= 3", got, c.dst)
			}
		}
		// Other routes are unaffected.
		pingOK(t, tp.Src, "10.99.1.1", 5)
	})

	t.Run("peer_killed", func(t *testing.T) {
		// kill -9 bgpd: its kernel closes the TCP session, so xrouter
		// drops FRR's routes without waiting for the hold time.
		frr.kill(t)
		start := time.Now()
		for _, p := range []string{"10.99.2.0/24", "fd00:99:2::/48"} {
			waitBGPRoute(t, tp.Router, p, 3*time.Second+5*time.Second)
		}
		waitBGPRoute(t, tp.Router, "10.99.7.0/24", 5*time.Second, bird4)
		waitBGPRoute(t, tp.Router, "fd00:99:7::/48", 5*time.Second, bird6)
		t.Logf("FRR's routes removed %s after kill -9", time.Since(start).Round(10*time.Millisecond))
		peers := readPeers(t, cfgPath)
		if peers[frr4].State == "established" || peers[frr6].State == "established" || peers[bird4].State != "established" {
			t.Errorf("after kill -9 of bgpd: %+v", peers)
		}
	})

	// bgpd comes back (started here: it must live until the test ends, not
	// the subtest): xrouter reconnects (its connect retry is 5 s) and the
	// routes, ECMP included, return.
	frr = startFRR(t, frrHost.NS, frrConf)
	t.Run("peer_back", func(t *testing.T) {
		for _, c := range []struct {
			prefix string
			gws    []string
		}{
			{"10.99.2.0/24", []string{frr4}},
			{"fd00:99:2::/48", []string{frr6}},
			{"10.99.7.0/24", []string{bird4, frr4}},
			{"fd00:99:7::/48", []string{bird6, frr6}},
		} {
			waitBGPRoute(t, tp.Router, c.prefix, 20*time.Second, c.gws...)
		}
	})

	t.Run("link_down", func(t *testing.T) {
		// Link down on BIRD's side: no FIN, no RST, nothing. BGP
		// notices only when the hold time (3 s) expires. The kernel acts
		// at once: the carrier is gone, so it deletes the nexthop object
		// of BIRD's next hop with the routes on it, and takes it out of
		// the ECMP group, whose routes keep FRR's next hop only (with
		// fib.nexthop_objects off, the routes would stay, marked
		// linkdown, until the hold time expires).
		tp.Dst.IP(t, "link", "set", "dev", testbed.LineDstDev, "down")
		start := time.Now()
		var gone time.Duration
		if !waitFor(3*time.Second+6*time.Second, func() bool {
			_, ok1 := bgpRoute(t, tp.Router, "10.99.1.0/24")
			_, ok2 := bgpRoute(t, tp.Router, "fd00:99:1::/48")
			r3, _ := bgpRoute(t, tp.Router, "10.99.7.0/24")
			r4, _ := bgpRoute(t, tp.Router, "fd00:99:7::/48")
			gone = time.Since(start)
			return !ok1 && !ok2 && slices.Equal(r3.gateways(), []string{frr4}) && slices.Equal(r4.gateways(), []string{frr6})
		}) {
			t.Fatalf("BIRD's routes and next hops still installed 9 s after its link went down:\n%s", tp.Router.IP(t, "route", "show", "proto", "bgp"))
		}
		t.Logf("BIRD's routes removed %s after link down (hold time 3 s)", gone.Round(10*time.Millisecond))
		// Every flow to the ECMP prefix now takes the remaining next hop.
		rcv := listenUDP(t, frrHost.NS, "10.99.7.1")
		const flows, per = 8, 10
		g := measure(t, tp, func() {
			for i := range flows {
				s := newUDPSender(t, tp.Src, "udp4")
				sendUDP(t, s, rcv, "10.99.7.1", uint32(200+i), per, 0)
			}
		})
		if g.stats["forwarded"] != flows*per || g.kernel4 != 0 {
			t.Errorf("UDP to 10.99.7.1 after BIRD's link went down: forwarded +%d, kernel +%d; want +%d and 0 (%s)", g.stats["forwarded"], g.kernel4, flows*per, g.stats)
		}
		// The sessions end at hold-time expiry; the routes stay as they
		// are.
		if !waitFor(3*time.Second+6*time.Second, func() bool { return strings.Contains(d.Log.String(), "hold timer expired") }) {
			t.Errorf("daemon log does not mention the hold timer expiring 9 s after link down")
		}
		waitFor(2*time.Second, func() bool {
			p := readPeers(t, cfgPath)
			return p[bird4].State != "established" && p[bird6].State != "established"
		})
		for _, c := range []struct {
			prefix string
			gws    []string
		}{{"10.99.7.0/24", []string{frr4}}, {"fd00:99:7::/48", []string{frr6}}} {
			if r, _ := bgpRoute(t, tp.Router, c.prefix); !slices.Equal(r.gateways(), c.gws) {
				t.Errorf("%s after BIRD's sessions ended: %s, want via %v", c.prefix, r, c.gws)
			}
		}
		peers := readPeers(t, cfgPath)
		if peers[bird4].State == "established" || peers[bird6].State == "established" || peers[frr4].State != "established" {
			t.Errorf("after BIRD's link went down: %+v", peers)
		}
		checkOperatorRoutes(t, tp.Router)
	})

	t.Run("veth_deleted", func(t *testing.T) {
		// FRR's veth disappears: the kernel drops the routes through it at
		// once; the session ends at hold-time expiry, and xrouter must not
		// put the routes back in between or after.
		frrHost.NS.IP(t, "link", "del", "dev", frrHost.HostDev)
		start := time.Now()
		for _, p := range []string{"10.99.2.0/24", "fd00:99:2::/48", "10.99.7.0/24", "fd00:99:7::/48"} {
			waitBGPRoute(t, tp.Router, p, 2*time.Second)
		}
		if !waitFor(3*time.Second+6*time.Second, func() bool {
			p := readPeers(t, cfgPath)
			return p[frr4].State != "established" && p[frr6].State != "established"
		}) {
			t.Fatalf("FRR's sessions still established 9 s after its veth was deleted: %+v", readPeers(t, cfgPath))
		}
		t.Logf("FRR's sessions down %s after its veth was deleted", time.Since(start).Round(10*time.Millisecond))
		if !waitFor(5*time.Second, func() bool { return len(xrouterNextHops(t, cfgPath, tp.Router, "10.99.2.0/24")) == 0 }) {
			t.Errorf("xrouter routes still lists 10.99.2.0/24 after the session ended")
		}
		time.Sleep(time.Second)
		if out := tp.Router.IP(t, "route", "show", "proto", "bgp"); strings.TrimSpace(out) != "" {
			t.Errorf("routes of proto bgp after both peers went away:\n%s", out)
		}
		if out := tp.Router.IP(t, "-6", "route", "show", "proto", "bgp"); strings.TrimSpace(out) != "" {
			t.Errorf("IPv6 routes of proto bgp after both peers went away:\n%s", out)
		}
		checkOperatorRoutes(t, tp.Router)
		if st := readStatus(t, tp.Router, tp.Pin); !slices.Equal(st.attachedNames(), []string{testbed.LineRouterDstDev, testbed.LineRouterSrcDev}) {
			t.Errorf("attached after the veth was deleted: %v, want r-dst and r-src", st.attachedNames())
		}
	})

	if !d.running() {
		t.Error("daemon exited")
	}
	// Peers failing is routine for a router: nothing of it is an error of
	// the daemon's own.
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("daemon logged an error: %s", l)
		}
	}
}

// checkOperatorRoutes asserts the operator's routes of
// TestPeersBIRDAndFRRPrivileged are exactly as the operator made them.
func checkOperatorRoutes(t *testing.T, ns *testbed.Netns) {
	t.Helper()
	for _, c := range []struct {
		prefix, gw string
		metric     int
	}{{"10.99.4.0/24", src4, 0}, {"fd00:99:4::/48", src6, 100}} {
		var found []string
		ok := false
		for _, r := range kernelRoutes(t, ns, c.prefix) {
			found = append(found, r.String())
			if r.Protocol == "static" && r.Metric == c.metric && slices.Equal(r.gateways(), []string{c.gw}) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("operator route %s via %s proto static metric %d missing or changed; routes for it: %v", c.prefix, c.gw, c.metric, found)
		}
	}
}

// ecmpSpread checks that prefix is one kernel route with both peers as next
// hops, and that UDP flows with different source ports reach both peers
// over the fast path, each flow on one path only.
func ecmpSpread(t *testing.T, tp *topo, frrHost *peerHost, prefix, dst, family string, gws []string) {
	r := waitBGPRoute(t, tp.Router, prefix, 15*time.Second, gws...)
	if n := len(kernelRoutes(t, tp.Router, prefix)); n != 1 {
		t.Errorf("%d kernel routes for %s, want one multipath route", n, prefix)
	}
	if r.Metric != 20 || len(r.Nexthops) != 2 {
		t.Errorf("%s: want metric 20 and two next hops", r)
	}
	// Resolve the router's neighbours on both links first.
	warm := []string{dst4, frrHost.Addr4}
	if family == "udp6" {
		warm = []string{dst6, frrHost.Addr6}
	}
	warmUp(t, tp.Src, warm...)

	rcvBIRD := listenUDP(t, tp.Dst, dst)
	rcvFRR := listenUDP(t, frrHost.NS, dst)
	const flows, per = 32, 20
	senders := make([]*udpSender, flows) // one socket each: 32 source ports
	for i := range senders {
		senders[i] = newUDPSender(t, tp.Src, family)
	}
	g := measure(t, tp, func() {
		var wg sync.WaitGroup
		errs := make(chan error, flows)
		for i, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.send(dst, uint32(100+i), per, 0)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		waitFor(5*time.Second, func() bool {
			total := 0
			for i := range flows {
				total += rcvBIRD.count(uint32(100+i)) + rcvFRR.count(uint32(100+i))
			}
			return total == flows*per
		})
	})
	atBIRD, atFRR, split := 0, 0, 0
	for i := range flows {
		b, f := rcvBIRD.count(uint32(100+i)), rcvFRR.count(uint32(100+i))
		if b+f != per {
			t.Errorf("flow %d: %d of %d datagrams arrived", i, b+f, per)
		}
		if b > 0 && f > 0 {
			split++
		}
		if b > 0 {
			atBIRD++
		}
		if f > 0 {
			atFRR++
		}
	}
	t.Logf("%s: %d flows at BIRD's host, %d at FRR's; fast path %s, kernel forwarded +%d/+%d", prefix, atBIRD, atFRR, g.stats, g.kernel4, g.kernel6)
	if atBIRD == 0 || atFRR == 0 {
		t.Errorf("%d flows: %d reached BIRD's host, %d FRR's; want both next hops used", flows, atBIRD, atFRR)
	}
	if split != 0 {
		t.Errorf("%d flows were split across both next hops; want each flow on one path", split)
	}
	if g.stats["forwarded"] != flows*per || g.kernel4+g.kernel6 != 0 {
		t.Errorf("forwarded +%d, kernel +%d/+%d; want +%d and 0 (%s)", g.stats["forwarded"], g.kernel4, g.kernel6, flows*per, g.stats)
	}
}

// xrouterNextHops returns the BGP next hops `xrouter routes PREFIX --json`
// shows for prefix, sorted.
func xrouterNextHops(t *testing.T, cfgPath string, ns *testbed.Netns, prefix string) []string {
	t.Helper()
	stdout, stderr, err := xr("routes", prefix, "--json", "-c", cfgPath, "--netns", ns.Name())
	if err != nil {
		t.Fatalf("xrouter routes %s: %v: %s", prefix, err, stderr)
	}
	var doc struct {
		Routes []struct {
			Prefix   string   `json:"prefix"`
			NextHops []string `json:"next_hops"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("parsing xrouter routes --json: %v\n%s", err, stdout)
	}
	for _, r := range doc.Routes {
		if r.Prefix == prefix {
			slices.Sort(r.NextHops)
			return r.NextHops
		}
	}
	return nil
}

// icmpOutDestUnreachs is the router namespace's count of ICMP and ICMPv6
// destination-unreachable messages sent (Icmp OutDestUnreachs,
// Icmp6OutDestUnreachs).
func icmpOutDestUnreachs(t *testing.T, ns *testbed.Netns) uint64 {
	t.Helper()
	v4, _ := snmpCounter(t, ns, "Icmp", "OutDestUnreachs")
	v6, _ := snmp6Counter(t, ns, "Icmp6OutDestUnreachs")
	return v4 + v6
}

// TestBGPBadConfigPrivileged: a malformed prefix or address in the bgp
// section makes `config check` and `run` fail with one line naming the key
// and the file; nothing is attached or pinned.
func TestBGPBadConfigPrivileged(t *testing.T) {
	tp := newTopo(t)
	pin := tp.Pin + "/bad" // must never be created
	const head = "dataplane:\n  interfaces: [r-src, r-dst]\n  pin_path: PIN\napi:\n  socket: \"\"\nbgp:\n  as: 65001\n  router_id: 10.201.2.1\n  listen_port: -1\n  grpc_address: \"\"\n"
	const nb = "  neighbors:\n    - {address: 10.201.2.2, peer_as: 65002, families: [ipv4-unicast], import: l}\n"
	const pl = "  prefix_lists:\n    - {name: l, entries: [{prefix: 10.99.0.0/16, le: 32}]}\n"
	for _, c := range []struct {
		name, yaml, key string
	}{
		{"network out of range", head + "  networks: [10.201.1.0/33]\n" + pl + nb, "bgp.networks"},
		{"network host bits", head + "  networks: [10.201.1.1/24]\n" + pl + nb, "bgp.networks"},
		{"prefix list entry", head + "  prefix_lists:\n    - {name: l, entries: [{prefix: \"10.99.0.0/16x\"}]}\n" + nb, "bgp.prefix_lists[0].entries[0].prefix"},
		{"neighbour address", head + pl + "  neighbors:\n    - {address: 10.201.2.300, peer_as: 65002, families: [ipv4-unicast]}\n", "bgp.neighbors[0].address"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			file := writeFile(t, "bad.yaml", strings.ReplaceAll(c.yaml, "PIN", pin))
			checkRejected(t, tp, file, pin, c.key, false)
			if out := tp.Router.IP(t, "route", "show", "proto", "bgp"); strings.TrimSpace(out) != "" {
				t.Errorf("routes installed after a rejected config: %s", out)
			}
		})
	}
}
