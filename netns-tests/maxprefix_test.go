package netnstests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMaxPrefixPrivileged: BIRD sends 5 prefixes to a neighbour limited to
// 3. Each action logs a line naming the neighbour and the limit, and the
// daemon stays up: teardown closes the session and keeps it down, restart
// closes it and re-enables it after restart_after, warn keeps the session
// and every route.
func TestMaxPrefixPrivileged(t *testing.T) {
	for _, tc := range []struct {
		action string
		extra  string
	}{
		{"teardown", ""},
		{"restart", "\n        restart_after: 2s"},
		{"warn", ""},
	} {
		t.Run(tc.action, func(t *testing.T) {
			tp := newTopo(t)
			bird := startBIRD(t, tp.Dst, birdConfDst([]string{
				"10.99.1.0/24", "10.99.2.0/24", "10.99.3.0/24", "10.99.4.0/24", "10.99.5.0/24",
			}, 20))
			cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, bgpHead+fmt.Sprintf(`  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 24}]
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
      hold_time: 9s
      import: from-peer
      max_prefixes:
        limit: 3
        action: %s%s
`, tc.action, tc.extra))
			d := startDaemon(t, tp.Router, cfgPath)
			d.waitLog(t, "max-prefix limit exceeded", 20*time.Second)
			line := lastLogLine(d.Log.String(), "max-prefix limit exceeded")
			t.Logf("%s", line)
			for _, want := range []string{"neighbor=10.201.2.2", "limit=3", "action=" + tc.action} {
				if !strings.Contains(line, want) {
					t.Errorf("log line lacks %q: %s", want, line)
				}
			}

			switch tc.action {
			case "teardown":
				if !waitFor(5*time.Second, func() bool { return readPeers(t, cfgPath)["10.201.2.2"].State != "established" }) {
					t.Fatalf("session still established after the limit: %+v", readPeers(t, cfgPath))
				}
				if !strings.Contains(bird.birdc("show", "protocols", "all", "xr"), "Maximum number of prefixes") {
					t.Logf("BIRD does not show the Cease reason:\n%s", bird.birdc("show", "protocols", "all", "xr"))
				}
				// Still down after GoBGP's own idle hold time (5 s) would
				// have reconnected it.
				time.Sleep(7 * time.Second)
				if p := readPeers(t, cfgPath)["10.201.2.2"]; p.State == "established" {
					t.Errorf("torn-down session came back: %+v", p)
				}
				if up, _ := bird.sessionUp("xr"); up {
					t.Errorf("BIRD re-established the torn-down session")
				}
				if n := strings.Count(d.Log.String(), "max-prefix limit exceeded"); n != 1 {
					t.Errorf("limit logged %d times, want once (session held down)", n)
				}
				if p := readPeers(t, cfgPath)["10.201.2.2"]; p.HeldDown != "max-prefix" {
					t.Errorf("xrouter peers: %+v, want held_down max-prefix", p)
				}
			case "restart":
				tripped := time.Now()
				d.waitLog(t, "session re-enabled", 10*time.Second)
				if held := time.Since(tripped); held < 1500*time.Millisecond {
					t.Errorf("re-enabled %s after the trip, restart_after is 2 s", held)
				}
				// Re-enabled, BIRD sends the 5 prefixes again: it trips again.
				if !waitFor(15*time.Second, func() bool { return strings.Count(d.Log.String(), "max-prefix limit exceeded") >= 2 }) {
					t.Errorf("no second trip after the re-enable:\n%s", d.Log.String())
				}
			case "warn":
				time.Sleep(2 * time.Second)
				p := readPeers(t, cfgPath)["10.201.2.2"]
				if p.State != "established" || p.Received != 5 || p.Installed != 5 {
					t.Errorf("warn: peer %+v, want established with 5 received and installed", p)
				}
				if out, _ := tp.Router.IPExec("route", "show", "proto", "bgp"); countLines(out) != 5 {
					t.Errorf("warn: %d kernel routes, want 5:\n%s", countLines(out), out)
				}
				if n := strings.Count(d.Log.String(), "max-prefix limit exceeded"); n != 1 {
					t.Errorf("warn logged %d times, want once", n)
				}
			}
			if !d.running() {
				t.Error("daemon exited")
			}
		})
	}
}
