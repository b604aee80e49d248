package netnstests

import (
	"strings"
	"testing"
	"time"
)

// TestBGPDaemonWithBIRDPrivileged runs the real daemon with a BGP section
// against BIRD 2 on the dst host: BIRD's prefix lands in the router's kernel
// FIB as proto bgp, traffic to it crosses the fast path, xrouter's network
// reaches BIRD, `xrouter peers` and `xrouter routes` report it, and a
// withdrawal removes the route and sends the traffic to the slow path.
func TestBGPDaemonWithBIRDPrivileged(t *testing.T) {
	tp := newTopo(t)
	// The announced destination lives on the dst host.
	tp.Dst.IP(t, "addr", "add", "10.99.5.1/32", "dev", "lo")
	bird := startBIRD(t, tp.Dst, birdConfDst([]string{"10.99.5.0/24"}, 0))
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, lineBGP(""))
	d := startDaemon(t, tp.Router, cfgPath)

	if !waitFor(30*time.Second, func() bool {
		r, ok := bgpRoute(t, tp.Router, "10.99.5.0/24")
		return ok && r.Metric == 20
	}) {
		out, _ := tp.Router.IPExec("route", "show")
		t.Fatalf("10.99.5.0/24 not installed as proto bgp metric 20 within 30 s; routes:\n%s\nbirdc:\n%s", out, bird.birdc("show", "protocols", "all", "xr"))
	}

	// xrouter peers / routes, as an operator reads them.
	peers := readPeers(t, cfgPath)
	if len(peers) != 1 {
		t.Fatalf("xrouter peers --json: %+v, want one neighbour", peers)
	}
	if p := peers["10.201.2.2"]; p.Address != "10.201.2.2" || !strings.EqualFold(p.State, "established") || p.Installed != 1 {
		t.Errorf("peers = %+v, want 10.201.2.2 established with 1 installed route", peers)
	}
	stdout, stderr, err := xr("routes", "10.99.5.0/24", "-c", cfgPath, "--netns", tp.Router.Name())
	if err != nil || !strings.Contains(stdout, "10.99.5.0/24") || !strings.Contains(stdout, "10.201.2.2") {
		t.Errorf("xrouter routes 10.99.5.0/24: %v %s\n%s", err, stderr, stdout)
	}

	// Our network reached BIRD.
	if !waitFor(15*time.Second, func() bool {
		return strings.Contains(bird.birdc("show", "route", "protocol", "xr"), "10.201.1.0/24")
	}) {
		t.Errorf("BIRD did not learn 10.201.1.0/24:\n%s", bird.birdc("show", "route"))
	}

	// Traffic to the learned prefix takes the fast path.
	warmUp(t, tp.Src, "10.99.5.1")
	before := readStats(t, tp.Pin)
	pingOK(t, tp.Src, "10.99.5.1", 50)
	got := readStats(t, tp.Pin).sub(before)
	if got["forwarded"] < 100 {
		t.Errorf("forwarded grew by %d for 50 echo requests and 50 replies, want >= 100 (%s)", got["forwarded"], got)
	}

	// Withdrawal: the route goes, the traffic goes to the kernel.
	if out := bird.birdc("disable", "st"); !strings.Contains(out, "disabled") {
		t.Fatalf("birdc disable st: %s", out)
	}
	if !waitFor(15*time.Second, func() bool { return !hasBGPRoute(t, tp.Router, "10.99.5.0/24") }) {
		t.Fatal("10.99.5.0/24 still installed 15 s after the withdrawal")
	}
	before = readStats(t, tp.Pin)
	r := ping(t, tp.Src, "-c", "3", "-i", "0.2", "-W", "1", "10.99.5.1")
	if r.Received != 0 {
		t.Errorf("ping after withdrawal: %d replies, want none:\n%s", r.Received, r.Out)
	}
	got = readStats(t, tp.Pin).sub(before)
	if got["not_fwded"] < 3 || got["forwarded"] != 0 {
		t.Errorf("after withdrawal: not_fwded +%d forwarded +%d, want +3 and +0 (%s)", got["not_fwded"], got["forwarded"], got)
	}
	if !d.running() {
		t.Error("daemon exited")
	}
}
