package netnstests

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// grBGP is lineBGP with graceful restart on.
var grBGP = lineBGP(`  graceful_restart:
    enabled: true
    restart_time: 30s
    deferral_time: 5s
`)

// TestGracefulRestartKill9Privileged is the restarting role: a UDP stream
// runs to a BGP-learned prefix while the daemon is killed with SIGKILL and
// started again with the same config and pin directory. The stream is
// delivered, the kernel route is never deleted (ip monitor shows no
// Deleted line for it: reconciled, not flushed and re-added), BIRD keeps
// our network through the restart (graceful restart, helper side) and
// the session comes back. Then the same across SIGTERM and start.
func TestGracefulRestartKill9Privileged(t *testing.T) {
	tp := newTopo(t)
	tp.Dst.IP(t, "addr", "add", "10.99.5.1/32", "dev", "lo")
	bird := startBIRD(t, tp.Dst, birdConfDst([]string{"10.99.5.0/24"}, 20))
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, grBGP)
	d := startDaemon(t, tp.Router, cfgPath)

	if !waitFor(20*time.Second, func() bool { return hasBGPRoute(t, tp.Router, "10.99.5.0/24") }) {
		t.Fatalf("10.99.5.0/24 not installed within 20 s; bird:\n%s", bird.birdc("show", "protocols", "all", "xr"))
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(bird.routesOf("xr"), "10.201.1.0/24") }) {
		t.Fatalf("BIRD did not learn 10.201.1.0/24:\n%s", bird.birdc("show", "route"))
	}
	if out := bird.birdc("show", "protocols", "all", "xr"); !strings.Contains(out, "graceful restart") && !strings.Contains(out, "Graceful restart") {
		t.Logf("BIRD protocol details (graceful restart capability not shown?):\n%s", out)
	}
	before, _ := bgpRoute(t, tp.Router, "10.99.5.0/24")
	mon := watchRoutes(t, tp.Router)

	r := listenUDP(t, tp.Dst, "10.99.5.1")
	s := newUDPSender(t, tp.Src, "udp4")
	warmUp(t, tp.Src, "10.99.5.1")
	const stream = 8000 // 1 ms apart: about 8 s, across the kill and the restart
	errc := make(chan error, 1)
	go func() { errc <- s.send("10.99.5.1", 1, stream, time.Millisecond) }()
	if !waitFor(5*time.Second, func() bool { return r.count(1) >= 500 }) {
		t.Fatalf("stream did not start: %d datagrams arrived", r.count(1))
	}

	if err := d.signal(t, syscall.SIGKILL); err == nil {
		t.Fatal("xrouter run exited cleanly after SIGKILL?")
	}
	killedAt := r.count(1)
	// BIRD noticed (the kernel closed our TCP session) and keeps our
	// network as stale instead of withdrawing it.
	if !waitFor(10*time.Second, func() bool { up, _ := bird.sessionUp("xr"); return !up }) {
		t.Fatalf("BIRD still shows the session up 10 s after kill -9:\n%s", bird.birdc("show", "protocols", "xr"))
	}
	if got := bird.routesOf("xr"); !strings.Contains(got, "10.201.1.0/24") {
		t.Errorf("BIRD dropped 10.201.1.0/24 while we restart (graceful restart should keep it):\n%s", got)
	}
	if !hasBGPRoute(t, tp.Router, "10.99.5.0/24") {
		t.Error("kernel route 10.99.5.0/24 gone while the daemon is down")
	}

	d2 := startDaemon(t, tp.Router, cfgPath)
	restartedAt := r.count(1)
	d2.waitLog(t, "restarting=true", 5*time.Second)
	if !waitFor(20*time.Second, func() bool { up, _ := bird.sessionUp("xr"); return up }) {
		t.Fatalf("session not re-established within 20 s:\n%s", bird.birdc("show", "protocols", "all", "xr"))
	}
	// End-of-RIB from BIRD ends the stale phase: the route stays, confirmed.
	d2.waitLog(t, "End-of-RIB from every neighbour", 15*time.Second)

	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Every datagram was sent; wait for the tail.
	waitFor(3*time.Second, func() bool { return r.count(1) >= stream })
	got := r.count(1)
	t.Logf("killed after %d datagrams, restarted after %d; %d of %d arrived", killedAt, restartedAt, got, stream)
	if got*100 < stream*99 {
		t.Errorf("%d of %d datagrams arrived across kill -9 and restart, want >= 99%%", got, stream)
	}

	after, ok := bgpRoute(t, tp.Router, "10.99.5.0/24")
	if !ok {
		t.Fatalf("10.99.5.0/24 gone after the restart; monitor:\n%s", strings.Join(mon.lines("10.99.5.0/24"), "\n"))
	}
	for _, l := range mon.lines("10.99.5.0/24") {
		if strings.HasPrefix(l, "Deleted") {
			t.Errorf("route was deleted during the restart (want reconciled, not flushed and re-added): %q\nbefore: %s\nafter: %s", l, before, after)
		}
	}
	// BIRD has our network from the new session (no longer stale).
	if !waitFor(10*time.Second, func() bool {
		out := bird.birdc("show", "route", "protocol", "xr", "all")
		return strings.Contains(out, "10.201.1.0/24") && !strings.Contains(out, "stale")
	}) {
		t.Errorf("BIRD does not have a fresh 10.201.1.0/24 after the restart:\n%s", bird.birdc("show", "route", "protocol", "xr", "all"))
	}
	ps := readPeers(t, cfgPath)
	if p := ps["10.201.2.2"]; p.State != "established" || p.Installed != 1 {
		t.Errorf("xrouter peers after the restart: %+v", p)
	}

	// A planned restart (SIGTERM, then start) is graceful too: the
	// sessions close without a NOTIFICATION, BIRD keeps our network.
	if err := d2.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xrouter run after SIGTERM: %v", err)
	}
	if !strings.Contains(d2.Log.String(), "without NOTIFICATION (graceful restart)") {
		t.Errorf("SIGTERM did not leave the sessions for graceful restart:\n%s", d2.Log.String())
	}
	if !waitFor(10*time.Second, func() bool { up, _ := bird.sessionUp("xr"); return !up }) {
		t.Fatalf("BIRD still shows the session up 10 s after SIGTERM")
	}
	if got := bird.routesOf("xr"); !strings.Contains(got, "10.201.1.0/24") {
		t.Errorf("BIRD dropped 10.201.1.0/24 after our SIGTERM (graceful restart should keep it):\n%s", got)
	}
	startDaemon(t, tp.Router, cfgPath)
	if !waitFor(20*time.Second, func() bool { up, _ := bird.sessionUp("xr"); return up }) {
		t.Fatalf("session not re-established within 20 s after SIGTERM and start")
	}
	for _, l := range mon.lines("10.99.5.0/24") {
		if strings.HasPrefix(l, "Deleted") {
			t.Errorf("route deleted across SIGTERM and start: %q", l)
		}
	}
	if !hasBGPRoute(t, tp.Router, "10.99.5.0/24") {
		t.Error("10.99.5.0/24 gone after SIGTERM and start")
	}
}

// TestGracefulRestartHelperPrivileged is the helper role: BIRD (graceful
// restart on) is killed with SIGKILL. Its route stays in our kernel while
// it restarts; when it comes back within its restart time the route was
// never deleted; when it does not, the route goes once the restart time
// BIRD advertised has passed.
func TestGracefulRestartHelperPrivileged(t *testing.T) {
	tp := newTopo(t)
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, grBGP)
	bird := startBIRD(t, tp.Dst, birdConfDst([]string{"10.99.5.0/24"}, 20))
	d := startDaemon(t, tp.Router, cfgPath)
	if !waitFor(20*time.Second, func() bool { return hasBGPRoute(t, tp.Router, "10.99.5.0/24") }) {
		t.Fatalf("10.99.5.0/24 not installed within 20 s; bird:\n%s", bird.birdc("show", "protocols", "all", "xr"))
	}
	mon := watchRoutes(t, tp.Router)

	// 1. BIRD dies and comes back within its restart time (20 s).
	_ = bird.Cmd.Process.Kill()
	d.waitLog(t, "peer graceful restart", 10*time.Second)
	time.Sleep(time.Second)
	if !hasBGPRoute(t, tp.Router, "10.99.5.0/24") {
		t.Fatal("route removed right after the GR-capable peer died")
	}
	if p := readPeers(t, cfgPath)["10.201.2.2"]; !p.GR || !p.Restarting || p.Installed != 1 {
		t.Errorf("xrouter peers while BIRD restarts: %+v, want graceful_restart and peer_restarting with the route installed", p)
	}
	if out, _, _ := xr("peers", "-c", cfgPath); !strings.Contains(out, "peer restarting, routes kept") {
		t.Errorf("xrouter peers does not say the peer is restarting:\n%s", out)
	}
	// The second BIRD advertises a short restart time for part 2.
	bird2 := startBIRD(t, tp.Dst, birdConfDst([]string{"10.99.5.0/24"}, 4))
	if !waitFor(20*time.Second, func() bool { up, _ := bird2.sessionUp("xr"); return up }) {
		t.Fatalf("session with the restarted BIRD not established within 20 s:\n%s", bird2.birdc("show", "protocols", "all", "xr"))
	}
	if !waitFor(5*time.Second, func() bool { return readPeers(t, cfgPath)["10.201.2.2"].Installed == 1 }) {
		t.Errorf("after BIRD came back: peers %+v", readPeers(t, cfgPath))
	}
	for _, l := range mon.lines("10.99.5.0/24") {
		if strings.HasPrefix(l, "Deleted") {
			t.Errorf("route deleted while the peer restarted: %q", l)
		}
	}

	// 2. BIRD dies and stays away: the route stays for its restart time
	// (4 s), then goes.
	_ = bird2.Cmd.Process.Kill()
	died := time.Now()
	if !waitFor(10*time.Second, func() bool { return readPeers(t, cfgPath)["10.201.2.2"].State != "established" }) {
		t.Fatal("session still established 10 s after BIRD was killed")
	}
	time.Sleep(time.Until(died.Add(2 * time.Second)))
	if !hasBGPRoute(t, tp.Router, "10.99.5.0/24") {
		t.Errorf("route gone %s after the peer died, before its 4 s restart time", time.Since(died).Round(100*time.Millisecond))
	}
	if !waitFor(15*time.Second, func() bool { return !hasBGPRoute(t, tp.Router, "10.99.5.0/24") }) {
		t.Fatalf("route still installed %s after the peer died (restart time 4 s)", time.Since(died).Round(time.Second))
	}
	gone := time.Since(died)
	t.Logf("route removed %s after the peer died (restart time 4 s)", gone.Round(100*time.Millisecond))
	if gone < 3*time.Second {
		t.Errorf("route removed after %s, before the restart time", gone)
	}
	if !d.running() {
		t.Error("daemon exited")
	}
}
