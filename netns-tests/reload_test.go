package netnstests

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadBGP is the router's bgp section for the reload test: neighbour A is
// BIRD on the dst host, B is BIRD on the src host. grpc_address is a TCP
// port on loopback in the router's namespace (the default Unix socket
// path would be shared by every router on the host).
func reloadBGP(networks string, withB bool, families string) string {
	s := fmt.Sprintf(`bgp:
  as: 65001
  router_id: 10.201.2.1
  listen_port: -1
  grpc_address: 127.0.0.1:50051
  networks: [%s]
  prefix_lists:
    - name: ours
      entries: [{prefix: 10.77.0.0/16, le: 24}]
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [%s]
      hold_time: 9s
      export: ours
`, networks, families)
	if withB {
		s += `    - address: 10.201.1.2
      peer_as: 65003
      families: [ipv4-unicast]
      hold_time: 9s
`
	}
	return s
}

// sighup sends SIGHUP by PID and waits until the log holds one more line
// containing one of the outcomes; it returns the outcome seen.
func (d *daemon) sighup(t *testing.T, outcomes ...string) string {
	t.Helper()
	count := func() map[string]int {
		log := d.Log.String()
		m := map[string]int{}
		for _, o := range outcomes {
			m[o] = strings.Count(log, o)
		}
		return m
	}
	before := count()
	if err := syscall.Kill(d.Cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatalf("kill -HUP %d: %v", d.Cmd.Process.Pid, err)
	}
	var seen string
	if !waitFor(10*time.Second, func() bool {
		now := count()
		for _, o := range outcomes {
			if now[o] > before[o] {
				seen = o
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no %q in the log 10 s after SIGHUP:\n%s", outcomes, d.Log.String())
	}
	return seen
}

// TestReloadPrivileged: SIGHUP with a config that removes neighbour B and
// adds a network: B's session goes, the network reaches A, and A's session
// is not reset (xrouter's uptime keeps growing, BIRD's since-time is
// unchanged). A broken config, and one changing a key that needs a
// restart, are rejected with a log line naming the key; nothing changes
// and the daemon keeps running.
func TestReloadPrivileged(t *testing.T) {
	tp := newTopo(t)
	birdA := startBIRD(t, tp.Dst, birdConfDst(nil, 0))
	birdB := startBIRD(t, tp.Src, birdSessionConf(src4, 65003, rtrSrc4, nil, 0))
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, reloadBGP("10.77.1.0/24", true, "ipv4-unicast"))
	d := startDaemon(t, tp.Router, cfgPath)

	if !waitFor(20*time.Second, func() bool {
		ps := readPeers(t, cfgPath)
		return ps["10.201.2.2"].State == "established" && ps["10.201.1.2"].State == "established"
	}) {
		t.Fatalf("sessions not established within 20 s: %+v", readPeers(t, cfgPath))
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(birdA.routesOf("xr"), "10.77.1.0/24") }) {
		t.Fatalf("BIRD A did not learn 10.77.1.0/24:\n%s", birdA.birdc("show", "route"))
	}
	checkPeersTable(t, cfgPath, "10.201.1.2", "10.201.2.2")
	if got := grpcNeighbours(t, tp.Router, "127.0.0.1:50051"); !slices.Equal(got, []string{"10.201.1.2", "10.201.2.2"}) {
		t.Errorf("GoBGP gRPC API on 127.0.0.1:50051 lists %v", got)
	}
	time.Sleep(2 * time.Second) // so that a reset shows in the uptime
	_, sinceA := birdA.sessionUp("xr")
	upA := readPeers(t, cfgPath)["10.201.2.2"].UptimeSeconds
	if upA < 1 {
		t.Fatalf("uptime of A is %d s after 2 s established", upA)
	}

	// Remove B, add a network.
	replaceConfig(t, cfgPath, routerConfigText(tp, lineRouterIfaces, sock, reloadBGP("10.77.1.0/24, 10.77.2.0/24", false, "ipv4-unicast")))
	if got := d.sighup(t, "config reloaded", "config reload rejected"); got != "config reloaded" {
		t.Fatalf("reload rejected:\n%s", d.Log.String())
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(birdA.routesOf("xr"), "10.77.2.0/24") }) {
		t.Errorf("BIRD A did not learn the added network 10.77.2.0/24:\n%s", birdA.birdc("show", "route"))
	}
	if !waitFor(10*time.Second, func() bool { up, _ := birdB.sessionUp("xr"); return !up }) {
		t.Errorf("BIRD B still established after its neighbour was removed:\n%s", birdB.birdc("show", "protocols", "xr"))
	}
	if got := grpcNeighbours(t, tp.Router, "127.0.0.1:50051"); !slices.Equal(got, []string{"10.201.2.2"}) {
		t.Errorf("GoBGP gRPC API after the reload lists %v", got)
	}
	ps := readPeers(t, cfgPath)
	if _, ok := ps["10.201.1.2"]; ok || len(ps) != 1 {
		t.Errorf("xrouter peers after removing B: %+v", ps)
	}
	if a := ps["10.201.2.2"]; a.State != "established" || a.UptimeSeconds < upA {
		t.Errorf("A after the reload: %+v, want established with uptime >= %d s (not reset)", a, upA)
	}
	if up, since := birdA.sessionUp("xr"); !up || since != sinceA {
		t.Errorf("BIRD A session: up %v since %q, want up since %q (not reset)", up, since, sinceA)
	}
	upA = ps["10.201.2.2"].UptimeSeconds

	// A broken config: rejected, naming the key; nothing changes.
	replaceConfig(t, cfgPath, routerConfigText(tp, lineRouterIfaces, sock, reloadBGP("10.77.1.0/24", false, "ipv5-unicast")))
	if got := d.sighup(t, "config reloaded", "config reload rejected"); got != "config reload rejected" {
		t.Fatalf("broken config accepted:\n%s", d.Log.String())
	}
	if !strings.Contains(lastLogLine(d.Log.String(), "config reload rejected"), "bgp.neighbors[0].families") {
		t.Errorf("rejection does not name the key: %s", lastLogLine(d.Log.String(), "config reload rejected"))
	}
	// A key that needs a restart: rejected too.
	replaceConfig(t, cfgPath, strings.Replace(routerConfigText(tp, lineRouterIfaces, sock, reloadBGP("10.77.1.0/24", false, "ipv4-unicast")), "as: 65001", "as: 65009", 1))
	if got := d.sighup(t, "config reloaded", "config reload rejected"); got != "config reload rejected" {
		t.Fatalf("bgp.as change accepted:\n%s", d.Log.String())
	}
	if l := lastLogLine(d.Log.String(), "config reload rejected"); !strings.Contains(l, "bgp.as") {
		t.Errorf("rejection does not name bgp.as: %s", l)
	}
	t.Logf("reloaded: %s", lastLogLine(d.Log.String(), "config reloaded"))
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, "config reload rejected") {
			t.Logf("rejected: %s", l)
		}
	}
	time.Sleep(time.Second)
	if !d.running() {
		t.Fatal("daemon exited after a rejected reload")
	}
	if got := birdA.routesOf("xr"); !strings.Contains(got, "10.77.2.0/24") || !strings.Contains(got, "10.77.1.0/24") {
		t.Errorf("after rejected reloads BIRD A has lost a network:\n%s", got)
	}
	if a := readPeers(t, cfgPath)["10.201.2.2"]; a.State != "established" || a.UptimeSeconds < upA {
		t.Errorf("A after rejected reloads: %+v", a)
	}
	if up, since := birdA.sessionUp("xr"); !up || since != sinceA {
		t.Errorf("BIRD A session after rejected reloads: up %v since %q, want since %q", up, since, sinceA)
	}
}

// lastLogLine is the last log line containing substr.
func lastLogLine(log, substr string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

// checkPeersTable reads `xrouter peers` as an operator does: a header with
// every column and one aligned row per neighbour.
func checkPeersTable(t *testing.T, cfgPath string, neighbours ...string) {
	t.Helper()
	stdout, stderr, err := xr("peers", "-c", cfgPath)
	if err != nil {
		t.Fatalf("xrouter peers: %v: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 1+len(neighbours) {
		t.Fatalf("xrouter peers: %d lines, want a header and %d rows:\n%s", len(lines), len(neighbours), stdout)
	}
	cols := []string{"NEIGHBOR", "AS", "STATE", "UPTIME", "RECEIVED", "ACCEPTED", "INSTALLED"}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(cols, " ") {
		t.Errorf("xrouter peers header = %q, want %q", got, cols)
	}
	state := strings.Index(lines[0], "STATE")
	for i, n := range neighbours {
		row := lines[1+i]
		if !strings.HasPrefix(row, n+" ") || len(row) <= state || !strings.HasPrefix(row[state:], "established") {
			t.Errorf("xrouter peers row %d = %q, want %s with state established under STATE:\n%s", i, row, n, stdout)
		}
	}
}
