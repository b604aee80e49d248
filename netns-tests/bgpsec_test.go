package netnstests

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// BGP session protection against BIRD 2: TCP-MD5 passwords, eBGP
// multihop and GTSM (ttl_security). The router listens on port 179 here
// (unlike bgpHead), so the peer's connection attempts reach it.

// secBirdConf is BIRD in one session "xr" with the router (AS 65001 at
// rtr) from local (AS as), announcing 10.99.N.0/24 routes given as
// statics, with extra lines inside the protocol (password, multihop,
// ttl security).
func secBirdConf(local string, as int, rtr string, statics []string, extra string) string {
	var st strings.Builder
	st.WriteString("protocol static st { ipv4;")
	for _, r := range statics {
		fmt.Fprintf(&st, " route %s blackhole;", r)
	}
	st.WriteString(" }\n")
	return fmt.Sprintf(`router id %s;
protocol device {}
%s
protocol bgp xr {
	local %s as %d;
	neighbor %s as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
%s
	ipv4 { import all; export where proto = "st"; };
}
`, local, st.String(), local, as, rtr, extra)
}

// secRouterBGP is the router's bgp section with one neighbour (addr, AS
// as) whose routes in 10.99.0.0/16 it installs; neighbourExtra is
// appended to the neighbour verbatim (6-space indented keys).
func secRouterBGP(addr string, as int, neighbourExtra string) string {
	return fmt.Sprintf(`bgp:
  as: 65001
  router_id: 10.201.2.1
  grpc_address: ""
  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 32}]
  neighbors:
    - address: %s
      peer_as: %d
      families: [ipv4-unicast]
      hold_time: 9s
      import: from-peer
%s`, addr, as, neighbourExtra)
}

// farHost adds a namespace two hops from the router: router ⇄ dst ⇄ far,
// far at 10.203.0.2/24 behind the dst host (10.203.0.1), which forwards.
// The router reaches 10.203.0.0/24 through a static route via dst.
func farHost(t *testing.T, tp *topo) *testbed.Netns {
	t.Helper()
	far := testbed.NewNetns(t, prefix+"far-")
	testbed.Veth(t, tp.Dst, "d-far", far, "far0")
	tp.Dst.AddAddr(t, "d-far", netip.MustParsePrefix("10.203.0.1/24"))
	far.AddAddr(t, "far0", netip.MustParsePrefix("10.203.0.2/24"))
	far.IP(t, "-4", "route", "add", "default", "via", "10.203.0.1")
	tp.Dst.EnableForwarding(t)
	tp.Router.IP(t, "-4", "route", "add", "10.203.0.0/24", "via", dst4)
	return far
}

// peerRowOf reads `xrouter peers --json` and returns the neighbour addr.
func peerRowOf(t *testing.T, cfgPath, addr string) peerRow {
	t.Helper()
	return readPeers(t, cfgPath)[addr]
}

// expectEstablished waits for the session and the route (proto bgp in
// the router's FIB).
func expectEstablished(t *testing.T, tp *topo, bird *birdPeer, cfgPath, peer, route string) {
	t.Helper()
	if !waitFor(30*time.Second, func() bool { return hasBGPRoute(t, tp.Router, route) }) {
		t.Fatalf("%s not installed within 30 s; xrouter peers: %+v; BIRD:\n%s", route, readPeers(t, cfgPath), bird.birdc("show", "protocols", "all", "xr"))
	}
	if p := peerRowOf(t, cfgPath, peer); p.State != "established" || p.Hint != "" {
		t.Fatalf("xrouter peers: %+v, want %s established without a hint", p, peer)
	}
}

// expectNotEstablished watches the session for d: it must not come up
// and no route may be installed; with birdToo, BIRD's side must not
// reach Established either.
func expectNotEstablished(t *testing.T, tp *topo, bird *birdPeer, cfgPath, peer, route string, d time.Duration, birdToo bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p := peerRowOf(t, cfgPath, peer); p.State == "established" || (birdToo && bird.established("xr")) {
			t.Fatalf("session with %s established: %+v", peer, p)
		}
		if hasBGPRoute(t, tp.Router, route) {
			t.Fatalf("%s installed", route)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestBGPMD5PasswordPrivileged: with the same TCP-MD5 password on both
// sides the session with BIRD comes up and its route is installed, also
// when only BIRD dials (the key must be on xrouter's listener); with
// different passwords it never comes up, the kernel's TCPMD5Failure
// counter in the router's namespace grows, and xrouter says why: a log
// line and the hint in `xrouter peers`.
func TestBGPMD5PasswordPrivileged(t *testing.T) {
	for _, tc := range []struct {
		name, routerPW, birdPW string
		passive, up            bool
	}{
		{"same password", "s3cret-md5", "s3cret-md5", false, true},
		// Only BIRD dials: the password must be on xrouter's listener.
		{"same password, xrouter passive", "s3cret-md5", "s3cret-md5", true, true},
		{"wrong password", "s3cret-md5", "other-md5", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			bird := startBIRD(t, tp.Dst, secBirdConf(dst4, 65002, rtrDst4, []string{"10.99.5.0/24"}, fmt.Sprintf("\tpassword %q;", tc.birdPW)))
			extra := fmt.Sprintf("      password: %q\n", tc.routerPW)
			if tc.passive {
				extra += "      passive: true\n"
			}
			cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, secRouterBGP(dst4, 65002, extra))
			before, _ := netstatCounter(t, tp.Router, "TCPMD5Failure")
			d := startDaemon(t, tp.Router, cfgPath)
			if tc.up {
				expectEstablished(t, tp, bird, cfgPath, dst4, "10.99.5.0/24")
				return
			}
			expectNotEstablished(t, tp, bird, cfgPath, dst4, "10.99.5.0/24", 15*time.Second, true)
			after, ok := netstatCounter(t, tp.Router, "TCPMD5Failure")
			if !ok || after <= before {
				t.Fatalf("TcpExt TCPMD5Failure in the router's namespace: %d -> %d, want growth", before, after)
			}
			d.waitLog(t, "neighbor 10.201.2.2: TCP-MD5 signature failures from the peer (wrong password on one side?)", 10*time.Second)
			if n := strings.Count(d.Log.String(), "TCP-MD5 signature failures"); n != 1 {
				t.Errorf("the TCP-MD5 warning was logged %d times, want once", n)
			}
			if p := peerRowOf(t, cfgPath, dst4); !strings.Contains(p.Hint, "wrong password") {
				t.Errorf("xrouter peers --json: %+v, want a hint about the password", p)
			}
			stdout, stderr, err := xr("peers", "-c", cfgPath)
			if err != nil || !strings.Contains(stdout, "wrong password on one side?") {
				t.Errorf("xrouter peers: %v %s\n%s", err, stderr, stdout)
			}
		})
	}
}

// TestBGPMultihopPrivileged: BIRD two hops away (a namespace routing
// between them) with multihop on its side. With bgp.neighbors[].
// multihop_ttl: 2 the session comes up and the route is installed
// (resolved through the middle hop); without it xrouter sends with TTL 1,
// its packets die at the middle hop, and the session never comes up.
func TestBGPMultihopPrivileged(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		up          bool
	}{
		{"multihop_ttl 2", "      multihop_ttl: 2\n", true},
		{"no multihop", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			far := farHost(t, tp)
			bird := startBIRD(t, far, secBirdConf("10.203.0.2", 65003, rtrDst4, []string{"10.99.7.0/24"}, "\tmultihop 2;"))
			cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, secRouterBGP("10.203.0.2", 65003, tc.extra))
			startDaemon(t, tp.Router, cfgPath)
			if tc.up {
				expectEstablished(t, tp, bird, cfgPath, "10.203.0.2", "10.99.7.0/24")
				if r, _ := bgpRoute(t, tp.Router, "10.99.7.0/24"); len(r.gateways()) != 1 || r.gateways()[0] != dst4 {
					t.Errorf("10.99.7.0/24: %s, want it via the middle hop %s", r, dst4)
				}
				return
			}
			expectNotEstablished(t, tp, bird, cfgPath, "10.203.0.2", "10.99.7.0/24", 15*time.Second, true)
		})
	}
}

// TestBGPTTLSecurityPrivileged: GTSM (RFC 5082) with BIRD's "ttl security
// on". A directly connected BIRD comes up with ttl_security enabled (its
// segments arrive with TTL 255). BIRD two hops away (multihop 2, ttl
// security on) sends with TTL 255 too, which arrives as 254: its session
// never comes up on xrouter's side with the default ttl_min 255 (no
// route installed), and comes up with ttl_min 254.
func TestBGPTTLSecurityPrivileged(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		far, up     bool
	}{
		{"direct", "      ttl_security: {enabled: true}\n", false, true},
		{"two hops, ttl_min 255", "      ttl_security: {enabled: true}\n", true, false},
		{"two hops, ttl_min 254", "      ttl_security: {enabled: true, ttl_min: 254}\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			peer, ns, birdExtra := dst4, tp.Dst, "\tttl security on;"
			if tc.far {
				ns = farHost(t, tp)
				peer, birdExtra = "10.203.0.2", "\tttl security on;\n\tmultihop 2;"
			}
			bird := startBIRD(t, ns, secBirdConf(peer, 65002, rtrDst4, []string{"10.99.6.0/24"}, birdExtra))
			cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, secRouterBGP(peer, 65002, tc.extra))
			startDaemon(t, tp.Router, cfgPath)
			if tc.up {
				expectEstablished(t, tp, bird, cfgPath, peer, "10.99.6.0/24")
				return
			}
			// BIRD may see Established for a moment: GoBGP sets
			// IP_MINTTL on a connection it accepted only after the
			// handshake, so BIRD's SYN and OPEN get through, our OPEN
			// and KEEPALIVE reach BIRD, and only BIRD's KEEPALIVEs are
			// dropped. xrouter's side never comes up.
			expectNotEstablished(t, tp, bird, cfgPath, peer, "10.99.6.0/24", 15*time.Second, false)
		})
	}
}

// netstatCounter reads TcpExt counter key from the namespace's
// /proc/net/netstat (a line of names, a line of values).
func netstatCounter(t *testing.T, ns *testbed.Netns, key string) (uint64, bool) {
	t.Helper()
	var names []string
	for _, line := range strings.Split(ns.Run(t, "cat", "/proc/net/netstat"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, k := range names {
			if k == key && i < len(f) {
				return mustUint(t, f[i]), true
			}
		}
	}
	return 0, false
}
