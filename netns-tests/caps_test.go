package netnstests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serviceCaps are the capabilities contrib/systemd/xrouter.service grants
// (setpriv's names) and their bits.
var serviceCaps = []struct {
	name string
	bit  uint
}{
	{"bpf", 39}, {"perfmon", 38}, {"net_admin", 12}, {"net_bind_service", 10},
}

// reducedCapsCmd runs `xrouter run -c cfg` in ns as uid 0 but with only the
// service's capabilities, less drop: nsenter enters the namespace (it keeps
// the host's mounts, so bpffs is there), setpriv cuts the bounding set, so
// the daemon starts with nothing more.
func reducedCapsCmd(t *testing.T, nsName, cfg, drop string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	set := "-all"
	for _, c := range serviceCaps {
		if c.name != drop {
			set += ",+" + c.name
		}
	}
	return exec.Command("nsenter", "--net=/run/netns/"+nsName, "--",
		"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set="+set, "--",
		xrBin, "run", "-c", cfg)
}

// TestReducedCapabilitiesPrivileged runs the daemon as the shipped systemd
// unit does, with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and
// CAP_NET_BIND_SERVICE only: it attaches, peers with BIRD (listening on
// port 179, with its GoBGP API on a Unix socket) and forwards on the fast
// path. Without any one of the four it refuses to start, with an error
// that says what was not permitted.
func TestReducedCapabilitiesPrivileged(t *testing.T) {
	tp := newTopo(t)
	tp.Dst.IP(t, "addr", "add", "10.99.5.1/32", "dev", "lo")
	bird := startBIRD(t, tp.Dst, birdConfDst([]string{"10.99.5.0/24"}, 0))
	api := filepath.Join(t.TempDir(), "gobgp.sock")
	bgpYAML := strings.Replace(lineBGP(""), "  listen_port: -1\n  grpc_address: \"\"\n",
		"  listen_port: 179\n  grpc_address: unix://"+api+"\n", 1)
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, bgpYAML)

	// Each capability is needed: without it, the daemon stops with an error.
	for _, c := range serviceCaps {
		t.Run("without_"+c.name, func(t *testing.T) {
			cmd := reducedCapsCmd(t, tp.Router.Name(), cfgPath, c.name)
			done := make(chan error, 1)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				t.Logf("without CAP_%s: %v: %s", strings.ToUpper(c.name), err, lastLine(out.String()))
				want := "xrouter: missing capabilities: CAP_" + strings.ToUpper(c.name) + " ("
				if err == nil || !strings.Contains(out.String(), want) {
					t.Errorf("without CAP_%s: exit %v, want a failure starting %q; log:\n%s", strings.ToUpper(c.name), err, want, out.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("without CAP_%s the daemon still runs after 30 s; log:\n%s", strings.ToUpper(c.name), out.String())
			}
		})
	}
	if t.Failed() {
		return
	}

	d := startDaemonCmd(t, reducedCapsCmd(t, tp.Router.Name(), cfgPath, ""))
	var want uint64
	for _, c := range serviceCaps {
		want |= 1 << c.bit
	}
	if got := capEff(t, d.Cmd.Process.Pid); got != want {
		t.Fatalf("daemon's CapEff %#x, want %#x (only the service's four)", got, want)
	}
	if !waitFor(30*time.Second, func() bool {
		r, ok := bgpRoute(t, tp.Router, "10.99.5.0/24")
		return ok && r.Metric == 20
	}) {
		t.Fatalf("10.99.5.0/24 not learned from BIRD within 30 s; birdc:\n%s\nlog:\n%s", bird.birdc("show", "protocols", "all", "xr"), d.Log.String())
	}
	fi, err := os.Lstat(api)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("GoBGP API socket %s: %v, mode %v; want mode 0600", api, err, fi)
	}
	warmUp(t, tp.Src, "10.99.5.1")
	before := readStats(t, tp.Pin)
	pingOK(t, tp.Src, "10.99.5.1", 50)
	if got := readStats(t, tp.Pin).sub(before); got["forwarded"] < 100 {
		t.Errorf("forwarded grew by %d for 50 echo requests and 50 replies, want >= 100 (%s)", got["forwarded"], got)
	}
}

// capEff reads a process's effective capability set.
func capEff(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}

// lastLine is the last non-empty line of a log: the daemon's fatal error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
