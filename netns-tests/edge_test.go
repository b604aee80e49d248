package netnstests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestVethPeerChecksumOffloadPrivileged: an end host on a veth sends UDP with
// transmit checksum offload on (the veth default). Kernel forwarding
// delivers it; through the fast path it must arrive too, or — since XDP
// cannot see the skb's CHECKSUM_PARTIAL state and the router cannot fix the
// peer — `xrouter status` must warn about that peer, as it does about a
// peer without XDP.
func TestVethPeerChecksumOffloadPrivileged(t *testing.T) {
	tp := newTopo(t)
	setTxChecksum(t, tp.Src, testbed.LineSrcDev, true)
	r := listenUDP(t, tp.Dst, dst4)
	s := newUDPSender(t, tp.Src, "udp4")
	warmUp(t, tp.Src, dst4)
	const n = 50

	// Kernel forwarding, before the daemon runs.
	sendUDP(t, s, r, dst4, 1, n, time.Millisecond)

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	base := readStats(t, tp.Pin)
	csum := udpCsumErrors(t, tp.Dst)
	if err := s.send(dst4, 2, n, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(3*time.Second, func() bool { return r.count(2) == n })
	got := r.count(2)
	if got == n {
		return
	}
	d := readStats(t, tp.Pin).sub(base)
	st := readStatus(t, tp.Router, tp.Pin)
	for _, w := range st.Warnings {
		if strings.Contains(strings.ToLower(w), "checksum") {
			t.Logf("%d of %d datagrams arrived; status warns: %s", got, n, w)
			return
		}
	}
	t.Errorf("UDP from a veth host with tx checksum offload on: %d of %d datagrams arrived through the fast path "+
		"(kernel forwarding delivered all %d); forwarded +%d; dst Udp InCsumErrors +%d; "+
		"and `xrouter status` does not warn about it (warnings: %q)",
		got, n, n, d["forwarded"], udpCsumErrors(t, tp.Dst)-csum, st.Warnings)
}

// udpCsumErrors reads Udp InCsumErrors from the namespace's /proc/net/snmp.
func udpCsumErrors(t *testing.T, ns *testbed.Netns) uint64 {
	t.Helper()
	v, ok := snmpCounter(t, ns, "Udp", "InCsumErrors")
	if !ok {
		t.Fatalf("netns %s: Udp InCsumErrors not found", ns.Name())
	}
	return v
}

// TestHotPlugManageForwardingPrivileged: on a router whose forwarding
// sysctls are off, manage_forwarding: true lets xrouter turn them on for the
// interfaces it attaches — at start and, since interface_pattern attaches
// interfaces that appear later, for hot-plugged ones too.
func TestHotPlugManageForwardingPrivileged(t *testing.T) {
	tp := newTopo(t)
	tp.Router.Sysctl(t, "net.ipv4.conf.all.forwarding", "0")
	tp.Router.Sysctl(t, "net.ipv6.conf.all.forwarding", "0")
	d := startDaemon(t, tp.Router, writeConfig(t, cfg{Pattern: "r-*", Pin: tp.Pin})) // manage_forwarding: true
	pingOK(t, tp.Src, dst4, 3)
	pingOK(t, tp.Src, dst6, 3)

	addBranch(t, tp)
	if !waitFor(10*time.Second, func() bool {
		for _, i := range readStatus(t, tp.Router, tp.Pin).Interfaces {
			if i.Name == branchDev && i.Egress {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("%s not attached within 10 s", branchDev)
	}
	var fwd []string
	for _, key := range []string{"net.ipv4.conf." + branchDev + ".forwarding", "net.ipv6.conf." + branchDev + ".forwarding"} {
		fwd = append(fwd, key+"="+strings.TrimSpace(tp.Router.Run(t, "cat", filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))))
	}
	st := readStatus(t, tp.Router, tp.Pin)
	for _, c := range []struct{ family, dst string }{{"-4", branch4}, {"-6", branch6}} {
		r := ping(t, tp.Src, c.family, "-c", "3", "-i", "0.1", "-W", "1", c.dst)
		if r.Received != 3 {
			t.Errorf("ping %s %s via hot-plugged %s: %d of 3 replies; router sysctls %v; status warnings %q; "+
				"daemon logged enabling forwarding on %s: %v",
				c.family, c.dst, branchDev, r.Received, fwd, st.Warnings, branchDev,
				strings.Contains(d.Log.String(), `msg="enabled forwarding (dataplane.manage_forwarding)" interface=`+branchDev))
		}
	}
}

// TestBadConfigIneligibleInterfacePrivileged: an explicitly listed
// interface that exists but cannot forward (lo) is a config error like an
// unknown one: `config check` and `run` reject it, naming the key and the
// file, and nothing is attached or pinned.
func TestBadConfigIneligibleInterfacePrivileged(t *testing.T) {
	tp := newTopo(t)
	pin := filepath.Join(tp.Pin, "bad")
	file := writeFile(t, "lo.yaml", "dataplane:\n  interfaces: [r-src, lo]\n  mode: native\n  pin_path: "+pin+"\n")
	for _, cmd := range [][]string{
		{"config", "check", "-c", file, "--netns", tp.Router.Name()},
		{"run", "-c", file, "--netns", tp.Router.Name()},
	} {
		name := strings.Join(cmd[:len(cmd)-4], " ")
		stdout, stderr, err := xrTimeout(10*time.Second, cmd...)
		line := strings.TrimSpace(stderr)
		if exitCode(err) <= 0 {
			t.Errorf("xrouter %s with interfaces [r-src, lo]: exit %v (stdout %q), want a non-zero exit", name, err, strings.TrimSpace(stdout))
			continue
		}
		if countLines(stderr) != 1 || !strings.Contains(line, file) || !strings.Contains(line, `"dataplane.interfaces"`) {
			t.Errorf("xrouter %s: stderr %q; want one line naming \"dataplane.interfaces\" and %s", name, line, file)
		}
	}
	if got := xdpLinks(t, tp.Router); len(got) != 0 {
		t.Errorf("XDP attached to %v after a rejected config", got)
	}
	if entries, err := os.ReadDir(pin); err == nil {
		t.Errorf("pin path %s created by a rejected config, holding %v", pin, names(entries))
	}
}

// TestAttachFailureLeavesNothingPrivileged: when attaching fails on one
// interface (another XDP program already holds it), `run` fails naming the
// interface, detaches the ones it had attached, and leaves no pins behind.
func TestAttachFailureLeavesNothingPrivileged(t *testing.T) {
	tp := newTopo(t)
	attachSink(t, tp.Router, testbed.LineRouterDstDev)
	pin := filepath.Join(tp.Pin, "busy")
	file := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        pin,
	})
	_, stderr, err := xrTimeout(10*time.Second, "run", "-c", file, "--netns", tp.Router.Name())
	if exitCode(err) <= 0 {
		t.Fatalf("xrouter run with r-dst busy: exit %v, want non-zero", err)
	}
	if !strings.Contains(stderr, `"r-dst"`) {
		t.Errorf("xrouter run: error %q does not name r-dst", strings.TrimSpace(stderr))
	}
	if xdpOn(t, tp.Router, testbed.LineRouterSrcDev) {
		t.Errorf("r-src still has XDP after the failed start")
	}
	if !xdpOn(t, tp.Router, testbed.LineRouterDstDev) {
		t.Errorf("the other program on r-dst was removed")
	}
	if entries, err := os.ReadDir(pin); err == nil {
		t.Errorf("failed start left pin path %s holding %v", pin, names(entries))
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
