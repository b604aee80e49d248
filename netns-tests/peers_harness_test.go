package netnstests

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Helpers for tests against real BGP peers: BIRD 2 and FRR's bgpd, each in
// its own namespace, peering with `xrouter run` over veth (BIRD refuses
// neighbours in 127/8, and a namespace per peer is what a router sees).

// peerProc is a peer daemon started by a test (testbed.Daemon), in the
// foreground, so that its PID is the daemon's own (`ip netns exec` execs
// the command).
type peerProc struct {
	name string
	*testbed.Daemon
}

// startPeerProc starts args inside ns; it is killed by PID and reaped when
// the test ends (if still running), and its output is shown if the test
// failed.
func startPeerProc(t *testing.T, name string, ns *testbed.Netns, args ...string) *peerProc {
	t.Helper()
	d, err := testbed.StartDaemon(t, exec.Command("ip", append([]string{"netns", "exec", ns.Name()}, args...)...))
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	return &peerProc{name: name, Daemon: d}
}

func (p *peerProc) pid() int { return p.Pid() }

func (p *peerProc) running() bool { return p.Running() }

// kill sends SIGKILL by PID and waits until the process is reaped.
func (p *peerProc) kill(t *testing.T) {
	t.Helper()
	p.Kill()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) not reaped 10 s after SIGKILL", p.name, p.pid())
	}
}

// birdPeer is BIRD 2 running in a namespace.
type birdPeer struct {
	*peerProc
	sock string
}

func startBIRD(t *testing.T, ns *testbed.Netns, conf string) *birdPeer {
	t.Helper()
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package bird2; make test installs it)", tool)
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "bird.ctl")
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &birdPeer{sock: sock, peerProc: startPeerProc(t, "bird", ns, "bird", "-f", "-c", confPath, "-s", sock)}
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil || !b.running() }) || !b.running() {
		t.Fatalf("bird did not open its control socket %s; log:\n%s", sock, b.Log.String())
	}
	return b
}

func (b *birdPeer) birdc(args ...string) string {
	out, _ := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out)
}

// established reports whether BIRD's protocol proto is in BGP state
// Established (`birdc show protocols PROTO`).
func (b *birdPeer) established(proto string) bool {
	return strings.Contains(b.birdc("show", "protocols", proto), "Established")
}

// frrPeer is FRR's bgpd running alone (no zebra: -Z, and -n so it never
// touches the kernel FIB) in a namespace, with its own vty socket directory
// and PID file so that several run side by side.
type frrPeer struct {
	*peerProc
	dir string // vty socket directory, also holds the config and PID file
}

// frrBgpd is where Debian installs the daemon.
const frrBgpd = "/usr/lib/frr/bgpd"

func startFRR(t *testing.T, ns *testbed.Netns, conf string) *frrPeer {
	t.Helper()
	if _, err := os.Stat(frrBgpd); err != nil {
		t.Skipf("needs %s (Debian package frr; make test installs it)", frrBgpd)
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skip("needs vtysh (Debian package frr)")
	}
	dir := t.TempDir()
	confPath := filepath.Join(dir, "bgpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// -S: as root, bgpd alone runs without changing user (with zebra both
	// would have to run as frr). -P 0: no TCP vty; vtysh talks to the unix
	// socket in dir. -p 179 is the default BGP port, in ns.
	f := &frrPeer{dir: dir, peerProc: startPeerProc(t, "frr bgpd", ns, frrBgpd,
		"-f", confPath, "-Z", "-S", "-n", "-P", "0",
		"--vty_socket", dir, "-i", filepath.Join(dir, "bgpd.pid"), "--log", "stdout")}
	// bgpd keeps a crash-log buffer in /var/tmp/frr/bgpd.PID (not
	// configurable) and removes it only on a clean exit: remove it after
	// the kill. Registered after startPeerProc's cleanup, so it runs first
	// and kills by itself.
	t.Cleanup(func() {
		f.kill(t)
		if err := os.RemoveAll(fmt.Sprintf("/var/tmp/frr/bgpd.%d", f.pid())); err != nil {
			t.Errorf("removing bgpd's crash-log buffer: %v", err)
		}
	})
	sock := filepath.Join(dir, "bgpd.vty")
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil || !f.running() }) || !f.running() {
		t.Fatalf("bgpd did not open its vty socket %s; log:\n%s", sock, f.Log.String())
	}
	return f
}

// vtysh runs one vtysh command against this bgpd.
func (f *frrPeer) vtysh(cmd string) string {
	out, _ := exec.Command("vtysh", "--vty_socket", f.dir, "-c", cmd).CombinedOutput()
	return string(out)
}

// neighborState is FRR's state of a neighbour in `show bgp summary json`
// for afi ("ipv4Unicast", "ipv6Unicast"); "" if absent.
func (f *frrPeer) neighborState(afi, neighbor string) string {
	var sum map[string]struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := json.Unmarshal([]byte(f.vtysh("show bgp summary json")), &sum); err != nil {
		return ""
	}
	return sum[afi].Peers[neighbor].State
}

// hasRoute reports whether FRR's BGP table for family ("ipv4", "ipv6")
// holds prefix (`show bgp FAMILY unicast json`).
func (f *frrPeer) hasRoute(family, prefix string) bool {
	var tbl struct {
		Routes map[string]json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal([]byte(f.vtysh("show bgp "+family+" unicast json")), &tbl); err != nil {
		return false
	}
	_, ok := tbl.Routes[prefix]
	return ok
}

// peerHost is a namespace with its own link to the router:
// host (HostDev) ⇄ (RouterDev) router, on 10.201.N.0/24 and fd00:201:N::/64,
// the router at .1/::1, the host at .2/::2 with default routes via the
// router. Like the line's end hosts, its veth runs the sink program (so
// redirected frames arrive) and sends full checksums.
type peerHost struct {
	NS                 *testbed.Netns
	HostDev, RouterDev string
	Addr4, Addr6       string // the host's
	Rtr4, Rtr6         string // the router's, on this link
}

func addPeerHost(t *testing.T, tp *topo, n int, name string) *peerHost {
	t.Helper()
	h := &peerHost{
		NS:        testbed.NewNetns(t, prefix+name+"-"),
		HostDev:   name + "0",
		RouterDev: "r-" + name,
		Addr4:     fmt.Sprintf("10.201.%d.2", n),
		Addr6:     fmt.Sprintf("fd00:201:%d::2", n),
		Rtr4:      fmt.Sprintf("10.201.%d.1", n),
		Rtr6:      fmt.Sprintf("fd00:201:%d::1", n),
	}
	testbed.Veth(t, tp.Router, h.RouterDev, h.NS, h.HostDev)
	tp.Router.AddAddr(t, h.RouterDev, netip.MustParsePrefix(h.Rtr4+"/24"))
	tp.Router.AddAddr(t, h.RouterDev, netip.MustParsePrefix(h.Rtr6+"/64"))
	h.NS.AddAddr(t, h.HostDev, netip.MustParsePrefix(h.Addr4+"/24"))
	h.NS.AddAddr(t, h.HostDev, netip.MustParsePrefix(h.Addr6+"/64"))
	h.NS.IP(t, "-4", "route", "add", "default", "via", h.Rtr4)
	h.NS.IP(t, "-6", "route", "add", "default", "via", h.Rtr6)
	attachSink(t, h.NS, h.HostDev)
	setTxChecksum(t, h.NS, h.HostDev, false)
	return h
}

// addLoopback gives a host addresses on lo: the destinations inside the
// prefixes its BGP speaker announces.
func addLoopback(t *testing.T, ns *testbed.Netns, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		p := netip.PrefixFrom(netip.MustParseAddr(a), netip.MustParseAddr(a).BitLen())
		ns.AddAddr(t, "lo", p)
	}
}

// lineRouterIfaces are the line router's two interfaces.
var lineRouterIfaces = []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev}

// routerConfigText renders a complete router config: the dataplane on
// ifaces with the topology's pin directory, the local API on sock, debug
// logs, and bgpYAML (a top-level "bgp:" section, verbatim).
func routerConfigText(tp *topo, ifaces []string, sock, bgpYAML string) string {
	return fmt.Sprintf(`dataplane:
  interfaces: [%s]
  mode: native
  pin_path: %s
  manage_forwarding: true
log:
  level: debug
  format: text
api:
  socket: %s
%s`, strings.Join(ifaces, ", "), tp.Pin, sock, bgpYAML)
}

// writeRouterConfig writes routerConfigText with the API on a socket of
// its own. It returns the file and the API socket (to render the same
// config again for a reload).
func writeRouterConfig(t *testing.T, tp *topo, ifaces []string, bgpYAML string) (cfgPath, sock string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "xr.sock")
	return writeFile(t, "xrouter.yaml", routerConfigText(tp, ifaces, sock, bgpYAML)), sock
}

// peerRow is one neighbour of `xrouter peers --json`.
type peerRow struct {
	Address       string `json:"address"`
	PeerAS        uint32 `json:"peer_as"`
	State         string `json:"state"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Received      uint64 `json:"received"`
	Accepted      uint64 `json:"accepted"`
	Installed     int    `json:"installed"`
	GR            bool   `json:"graceful_restart"`
	Restarting    bool   `json:"peer_restarting"`
	HeldDown      string `json:"held_down"`
	Hint          string `json:"hint"`
}

// readPeers runs `xrouter peers --json -c CFG` and returns the neighbours by
// address.
func readPeers(t *testing.T, cfgPath string) map[string]peerRow {
	t.Helper()
	stdout, stderr, err := xr("peers", "--json", "-c", cfgPath)
	if err != nil {
		t.Fatalf("xrouter peers --json: %v: %s", err, stderr)
	}
	var rows []peerRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("parsing xrouter peers --json: %v\n%s", err, stdout)
	}
	out := map[string]peerRow{}
	for _, r := range rows {
		out[r.Address] = r
	}
	return out
}

// kroute is one kernel route as `ip -j route show` prints it.
type kroute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Metric   int    `json:"metric"`
	Nexthops []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	} `json:"nexthops"`
}

// gateways lists the route's gateways, sorted (one, or each of a multipath
// route's next hops).
func (r kroute) gateways() []string {
	var gws []string
	if r.Gateway != "" {
		gws = append(gws, r.Gateway)
	}
	for _, nh := range r.Nexthops {
		gws = append(gws, nh.Gateway)
	}
	slices.Sort(gws)
	return gws
}

func (r kroute) String() string {
	return fmt.Sprintf("%s via %v proto %s metric %d", r.Dst, r.gateways(), r.Protocol, r.Metric)
}

// kernelRoutes lists the main table's routes for exactly prefix in ns, of
// every protocol.
func kernelRoutes(t *testing.T, ns *testbed.Netns, prefix string) []kroute {
	t.Helper()
	fam := "-4"
	if strings.Contains(prefix, ":") {
		fam = "-6"
	}
	out := ns.IP(t, "-j", fam, "route", "show", "table", "main")
	var all, rs []kroute
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("parsing ip -j %s route show: %v: %s", fam, err, out)
	}
	for _, r := range all {
		if r.Dst == prefix {
			rs = append(rs, r)
		}
	}
	return rs
}

// bgpRoute returns xrouter's route for prefix (protocol bgp), if any.
func bgpRoute(t *testing.T, ns *testbed.Netns, prefix string) (kroute, bool) {
	t.Helper()
	for _, r := range kernelRoutes(t, ns, prefix) {
		if r.Protocol == "bgp" {
			return r, true
		}
	}
	return kroute{}, false
}

// hasBGPRoute reports whether xrouter's route for prefix is installed.
func hasBGPRoute(t *testing.T, ns *testbed.Netns, prefix string) bool {
	t.Helper()
	_, ok := bgpRoute(t, ns, prefix)
	return ok
}

// waitBGPRoute waits until xrouter's route for prefix exists with exactly
// the gateways gws (none: until it is gone) and returns it.
func waitBGPRoute(t *testing.T, ns *testbed.Netns, prefix string, timeout time.Duration, gws ...string) kroute {
	t.Helper()
	slices.Sort(gws)
	var last kroute
	var ok bool
	if waitFor(timeout, func() bool {
		last, ok = bgpRoute(t, ns, prefix)
		if len(gws) == 0 {
			return !ok
		}
		return ok && slices.Equal(last.gateways(), gws)
	}) {
		return last
	}
	if len(gws) == 0 {
		t.Fatalf("%s still installed %s later: %s", prefix, timeout, last)
	}
	t.Fatalf("%s not installed via %v within %s (last: present %v, %s); all routes:\n%s",
		prefix, gws, timeout, ok, last, ns.IP(t, "route", "show", "table", "all"))
	return last
}
