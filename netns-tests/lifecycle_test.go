package netnstests

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestHotPlugPrivileged: with interface_pattern, a veth added to the router
// while the daemon runs gets XDP within seconds and forwards to a third
// namespace; deleting it while a UDP stream crosses the other path leaves
// the daemon running and the stream intact.
func TestHotPlugPrivileged(t *testing.T) {
	tp := newTopo(t)
	d := startDaemon(t, tp.Router, writeConfig(t, cfg{Pattern: "r-*", Pin: tp.Pin}))
	if got := strings.Join(readStatus(t, tp.Router, tp.Pin).attachedNames(), ","); got != "r-dst,r-src" {
		t.Fatalf("status at start: attached %q, want r-dst,r-src", got)
	}

	third := addBranch(t, tp)
	const new4, new6 = branch4, branch6

	start := time.Now()
	ok := waitFor(10*time.Second, func() bool {
		if !xdpOn(t, tp.Router, branchDev) {
			return false
		}
		for _, i := range readStatus(t, tp.Router, tp.Pin).Interfaces {
			if i.Name == branchDev && i.Mode == "native" && i.Egress {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("%s: no XDP / not in status as native egress 10 s after it appeared; status: %+v", branchDev, readStatus(t, tp.Router, tp.Pin))
	}
	t.Logf("%s attached and in status as egress %v after it was set up", branchDev, time.Since(start).Round(time.Millisecond))

	warmUp(t, tp.Src, new4, new6)
	const udp, pings = 200, 20
	g := measure(t, tp, func() {
		for _, c := range []struct {
			family, dst string
			id          uint32
		}{{"udp4", new4, 1}, {"udp6", new6, 2}} {
			sendUDP(t, newUDPSender(t, tp.Src, c.family), listenUDP(t, third, c.dst), c.dst, c.id, udp, time.Millisecond)
		}
		pingOK(t, tp.Src, new4, pings)
		pingOK(t, tp.Src, new6, pings)
	})
	if want, dd := uint64(2*udp+4*pings), g.stats; dd["forwarded"] != want || g.kernel4 != 0 || g.kernel6 != 0 {
		t.Errorf("to the hot-plugged namespace: forwarded +%d (want %d), kernel forwarded +%d/+%d (want 0); stats growth %v", dd["forwarded"], want, g.kernel4, g.kernel6, dd)
	}

	// Delete an interface while a stream crosses the other path.
	warmUp(t, tp.Src, dst4)
	r := listenUDP(t, tp.Dst, dst4)
	s := newUDPSender(t, tp.Src, "udp4")
	base := readStats(t, tp.Pin)
	const stream = 1000
	errc := make(chan error, 1)
	go func() { errc <- s.send(dst4, 10, stream, time.Millisecond) }()
	if !waitFor(5*time.Second, func() bool { return r.count(10) >= stream/4 }) {
		t.Fatalf("stream did not start: %d datagrams arrived", r.count(10))
	}
	tp.Router.IP(t, "link", "del", branchDev)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r.waitCount(t, 10, stream, 10*time.Second)
	if !d.running() {
		t.Fatalf("xrouter run exited (%v) after an interface was deleted", d.Err())
	}
	if dd := readStats(t, tp.Pin).sub(base); dd["forwarded"] != stream {
		t.Errorf("during the deletion: forwarded +%d, want %d; stats growth %v", dd["forwarded"], stream, dd)
	}
	if !waitFor(10*time.Second, func() bool {
		return strings.Join(readStatus(t, tp.Router, tp.Pin).attachedNames(), ",") == "r-dst,r-src"
	}) {
		t.Errorf("status after deleting the branch: attached %q, want r-dst,r-src", readStatus(t, tp.Router, tp.Pin).attachedNames())
	}
	d.waitLog(t, `msg="interface removed" interface=`+branchDev, 5*time.Second)
	pingOK(t, tp.Src, dst6, 10)
	if !d.running() {
		t.Fatalf("xrouter run exited: %v", d.Err())
	}
}

// Addresses of the branch addBranch hot-plugs.
const (
	branchDev, branchPeerDev = "r-new", "t0"
	branch4, branch6         = "10.201.3.2", "fd00:201:3::2"
)

// addBranch hot-plugs a veth r-new into the router, leading to a new
// namespace (t0: 10.201.3.2/24, fd00:201:3::2/64, default routes via the
// router's 10.201.3.1 and fd00:201:3::1), set up like the line's end hosts.
func addBranch(t *testing.T, tp *topo) *testbed.Netns {
	t.Helper()
	third := testbed.NewNetns(t, prefix+"t")
	testbed.Veth(t, tp.Router, branchDev, third, branchPeerDev)
	attachSink(t, third, branchPeerDev)
	setTxChecksum(t, third, branchPeerDev, false)
	tp.Router.AddAddr(t, branchDev, netip.MustParsePrefix("10.201.3.1/24"))
	tp.Router.AddAddr(t, branchDev, netip.MustParsePrefix("fd00:201:3::1/64"))
	third.AddAddr(t, branchPeerDev, netip.MustParsePrefix(branch4+"/24"))
	third.AddAddr(t, branchPeerDev, netip.MustParsePrefix(branch6+"/64"))
	third.IP(t, "-4", "route", "add", "default", "via", "10.201.3.1")
	third.IP(t, "-6", "route", "add", "default", "via", "fd00:201:3::1")
	return third
}

// TestKill9KeepsForwardingPrivileged: kill -9 in the middle of a UDP stream
// loses nothing, since the XDP links and maps are pinned; a restart with the
// same config adopts them without a gap and the counters keep counting.
func TestKill9KeepsForwardingPrivileged(t *testing.T) {
	tp := newTopo(t)
	cfgPath := tp.defaultConfig(t)
	d := startDaemon(t, tp.Router, cfgPath)
	r := listenUDP(t, tp.Dst, dst4)
	s := newUDPSender(t, tp.Src, "udp4")
	warmUp(t, tp.Src, dst4)
	base := readStats(t, tp.Pin)
	k4, _ := kernelForwarded(t, tp.Router)

	const stream = 3000 // over about 3 s
	errc := make(chan error, 1)
	go func() { errc <- s.send(dst4, 1, stream, time.Millisecond) }()
	if !waitFor(5*time.Second, func() bool { return r.count(1) >= 700 }) {
		t.Fatalf("stream did not start: %d datagrams arrived", r.count(1))
	}
	err := d.signal(t, syscall.SIGKILL)
	if ws, ok := exitStatus(err); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("xrouter run after kill -9: %v, want killed by SIGKILL", err)
	}
	killedAt := r.count(1)
	for _, dev := range []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev} {
		if !xdpOn(t, tp.Router, dev) {
			t.Errorf("after kill -9: ip link shows no XDP program on %s", dev)
		}
	}
	atKill := readStats(t, tp.Pin)["forwarded"]
	if !waitFor(5*time.Second, func() bool { return readStats(t, tp.Pin)["forwarded"] >= atKill+200 }) {
		t.Errorf("forwarded counter stuck at %d after kill -9", readStats(t, tp.Pin)["forwarded"])
	}
	t.Logf("killed after %d datagrams; forwarded counter %d at the kill", killedAt, atKill-base["forwarded"])

	d2 := startDaemon(t, tp.Router, cfgPath)
	restartedAt := r.count(1)
	for _, dev := range []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev} {
		d2.waitLog(t, `msg="interface adopted" interface=`+dev, 5*time.Second)
	}
	if strings.Contains(d2.Log.String(), `msg="interface attached"`) {
		t.Errorf("restarted daemon attached anew instead of adopting:\n%s", d2.Log.String())
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r.waitCount(t, 1, stream, 10*time.Second)
	t.Logf("restarted after %d datagrams; all %d arrived", restartedAt, stream)
	dd := readStats(t, tp.Pin).sub(base)
	k4b, _ := kernelForwarded(t, tp.Router)
	if dd["forwarded"] != stream || k4b != k4 {
		t.Errorf("across kill and restart: forwarded +%d (want %d), kernel ForwDatagrams +%d (want 0); stats growth %v", dd["forwarded"], stream, k4b-k4, dd)
	}

	// The restarted daemon's program counts into the same pinned counters.
	before := readStats(t, tp.Pin)["forwarded"]
	sendUDP(t, s, r, dst4, 2, 500, 200*time.Microsecond)
	if got := readStats(t, tp.Pin)["forwarded"]; got != before+500 {
		t.Errorf("after the restart: forwarded %d, want %d", got, before+500)
	}
	st := readStatus(t, tp.Router, tp.Pin)
	if got := strings.Join(st.attachedNames(), ","); got != "r-dst,r-src" || len(st.Warnings) != 0 {
		t.Errorf("status after the restart: attached %q, warnings %q", got, st.Warnings)
	}
}

// TestBadConfigPrivileged: `config check` and `run` reject a bad config with
// a non-zero exit and a one-line error naming the key and the file, and
// nothing is attached or pinned.
func TestBadConfigPrivileged(t *testing.T) {
	tp := newTopo(t)
	pin := filepath.Join(tp.Pin, "bad") // must never be created
	for _, c := range []struct {
		name, yaml, key string
	}{
		{"unknown interface", "dataplane:\n  interfaces: [r-src, nosuch0]\n  pin_path: PIN\n", `"dataplane.interfaces"`},
		{"unknown mode", "dataplane:\n  interfaces: [r-src, r-dst]\n  mode: turbo\n  pin_path: PIN\n", `"dataplane.mode"`},
		{"malformed bool", "dataplane:\n  interfaces: [r-src, r-dst]\n  detach_on_exit: \"maybe\"\n  pin_path: PIN\n", `"dataplane.detach_on_exit"`},
		{"malformed mode", "dataplane:\n  interfaces: [r-src, r-dst]\n  mode: [1, 2]\n  pin_path: PIN\n", `"dataplane.mode"`},
		{"unknown key", "dataplane:\n  interfaces: [r-src, r-dst]\n  pin_path: PIN\n  bogus_key: 1\n", `"dataplane.bogus_key"`},
		{"unknown section", "dataplane:\n  interfaces: [r-src, r-dst]\n  pin_path: PIN\nlogging:\n  level: debug\n", `"logging.level"`},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			file := writeFile(t, "bad.yaml", strings.ReplaceAll(c.yaml, "PIN", pin))
			checkRejected(t, tp, file, pin, c.key, true)
		})
	}
	if entries, _ := os.ReadDir(tp.Pin); len(entries) != 0 {
		t.Errorf("%s not empty after the rejected configs: %v", tp.Pin, entries)
	}
}

// TestDetachOnExitPrivileged: SIGTERM with detach_on_exit removes the data
// plane (the kernel forwards again); by default the data plane keeps
// forwarding after the daemon exits, until `xrouter detach`.
func TestDetachOnExitPrivileged(t *testing.T) {
	routerDevs := []string{testbed.LineRouterDstDev, testbed.LineRouterSrcDev}

	t.Run("detach_on_exit", func(t *testing.T) {
		tp := newTopo(t)
		d := startDaemon(t, tp.Router, writeConfig(t, cfg{
			Interfaces:   []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
			Pin:          tp.Pin,
			DetachOnExit: true,
		}))
		warmUp(t, tp.Src, dst4, dst6)
		if got := xdpLinks(t, tp.Router); !slices.Equal(got, routerDevs) && !slices.Equal(got, []string{routerDevs[1], routerDevs[0]}) {
			t.Fatalf("XDP on %v while running, want %v", got, routerDevs)
		}
		if err := d.signal(t, syscall.SIGTERM); err != nil {
			t.Fatalf("xrouter run after SIGTERM: %v, want exit status 0", err)
		}
		if !strings.Contains(d.Log.String(), "data plane detached") {
			t.Errorf("log lacks \"data plane detached\":\n%s", d.Log.String())
		}
		checkHandedBack(t, tp, "SIGTERM with detach_on_exit")
	})

	t.Run("default_keeps_forwarding", func(t *testing.T) {
		tp := newTopo(t)
		d := startDaemon(t, tp.Router, tp.defaultConfig(t))
		r4, r6 := listenUDP(t, tp.Dst, dst4), listenUDP(t, tp.Dst, dst6)
		s4, s6 := newUDPSender(t, tp.Src, "udp4"), newUDPSender(t, tp.Src, "udp6")
		warmUp(t, tp.Src, dst4, dst6)
		if err := d.signal(t, syscall.SIGTERM); err != nil {
			t.Fatalf("xrouter run after SIGTERM: %v, want exit status 0", err)
		}
		if !strings.Contains(d.Log.String(), "data plane left forwarding") {
			t.Errorf("log lacks \"data plane left forwarding\":\n%s", d.Log.String())
		}
		for _, dev := range routerDevs {
			if !xdpOn(t, tp.Router, dev) {
				t.Errorf("no XDP on %s after SIGTERM without detach_on_exit", dev)
			}
		}
		const udp, pings = 300, 20
		g := measure(t, tp, func() {
			sendUDP(t, s4, r4, dst4, 1, udp, time.Millisecond)
			sendUDP(t, s6, r6, dst6, 2, udp, time.Millisecond)
			pingOK(t, tp.Src, dst4, pings)
			pingOK(t, tp.Src, dst6, pings)
		})
		if want, dd := uint64(2*udp+4*pings), g.stats; dd["forwarded"] != want || g.kernel4 != 0 || g.kernel6 != 0 {
			t.Errorf("with the daemon gone: forwarded +%d (want %d), kernel forwarded +%d/+%d (want 0); stats growth %v", dd["forwarded"], want, g.kernel4, g.kernel6, dd)
		}

		// `xrouter detach` hands forwarding back to the kernel.
		out, stderr, err := xr("detach", "--pin-path", tp.Pin)
		if err != nil || !strings.Contains(out, "detached 2 interface(s)") {
			t.Errorf("xrouter detach: %v: stdout %q stderr %q", err, out, stderr)
		}
		checkHandedBack(t, tp, "xrouter detach")
	})
}

// xrTimeout is xr with a deadline, for commands that must fail fast (a `run`
// that wrongly accepted its config would otherwise run until the deadline).
func xrTimeout(timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, xrBin, args...)
	var stdout, stderr testbed.LockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// exitStatus extracts the wait status of a finished child.
func exitStatus(err error) (syscall.WaitStatus, bool) {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ws, ok
}

// checkHandedBack asserts that the router's data plane is gone after what
// (no XDP, no pins) and that the kernel forwards on its own again.
func checkHandedBack(t *testing.T, tp *topo, what string) {
	t.Helper()
	if got := xdpLinks(t, tp.Router); len(got) != 0 {
		t.Errorf("XDP still on %v after %s", got, what)
	}
	if entries, err := os.ReadDir(tp.Pin); err == nil {
		t.Errorf("pin path %s still there after %s, holding %v", tp.Pin, what, names(entries))
	}
	k4, k6 := kernelForwarded(t, tp.Router)
	pingOK(t, tp.Src, dst4, 10)
	pingOK(t, tp.Src, dst6, 10)
	k4b, k6b := kernelForwarded(t, tp.Router)
	if k4b-k4 != 20 || k6b-k6 != 20 {
		t.Errorf("after %s: kernel forwarded +%d/+%d, want +20/+20", what, k4b-k4, k6b-k6)
	}
}
