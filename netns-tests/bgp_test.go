package netnstests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
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
	bird := startBIRD(t, tp.Dst, `router id 10.201.2.2;
protocol device {}
protocol static st { ipv4; route 10.99.5.0/24 blackhole; }
protocol bgp xr {
	local 10.201.2.2 as 65002;
	neighbor 10.201.2.1 as 65001;
	hold time 9;
	ipv4 { import all; export where proto = "st"; };
}
`)
	sock := filepath.Join(t.TempDir(), "xr.sock")
	cfgPath := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra: fmt.Sprintf(`api:
  socket: %s
bgp:
  as: 65001
  router_id: 10.201.2.1
  listen_port: -1
  grpc_address: ""
  networks: [10.201.1.0/24]
  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 32}]
    - name: ours
      entries: [{prefix: 10.201.1.0/24}]
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
      hold_time: 9s
      import: from-peer
      export: ours
`, sock),
	})
	// Extra goes under dataplane: in writeConfig; top-level sections must
	// not be indented, so rewrite the file with them at the top level.
	fixTopLevel(t, cfgPath)
	d := startDaemon(t, tp.Router, cfgPath)

	if !waitFor(30*time.Second, func() bool {
		out, _ := tp.Router.IPExec("route", "show", "proto", "bgp")
		return strings.Contains(out, "10.99.5.0/24") && strings.Contains(out, "metric 20")
	}) {
		out, _ := tp.Router.IPExec("route", "show")
		t.Fatalf("10.99.5.0/24 not installed as proto bgp metric 20 within 30 s; routes:\n%s\nbirdc:\n%s", out, bird.birdc("show", "protocols", "all", "xr"))
	}

	// xrouter peers / routes, as an operator reads them.
	stdout, stderr, err := xr("peers", "--json", "-c", cfgPath)
	if err != nil {
		t.Fatalf("xrouter peers: %v: %s", err, stderr)
	}
	var peers []struct {
		Address   string `json:"address"`
		State     string `json:"state"`
		Installed int    `json:"installed"`
	}
	if err := json.Unmarshal([]byte(stdout), &peers); err != nil || len(peers) != 1 {
		t.Fatalf("xrouter peers --json: %v: %s", err, stdout)
	}
	if peers[0].Address != "10.201.2.2" || !strings.EqualFold(peers[0].State, "established") || peers[0].Installed != 1 {
		t.Errorf("peer = %+v, want 10.201.2.2 established with 1 installed route", peers[0])
	}
	stdout, stderr, err = xr("routes", "10.99.5.0/24", "-c", cfgPath, "--netns", tp.Router.Name())
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
	if !waitFor(15*time.Second, func() bool {
		out, _ := tp.Router.IPExec("route", "show", "proto", "bgp")
		return !strings.Contains(out, "10.99.5.0/24")
	}) {
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

// fixTopLevel moves the sections writeConfig appended under "dataplane:"
// (the Extra field) to the top level of the YAML file.
func fixTopLevel(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, sec := range []string{"api:", "bgp:", "fib:"} {
		s = strings.Replace(s, "  "+sec, sec, 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
