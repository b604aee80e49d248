package netnstests

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/loadgen"
	"github.com/xrouter/xrouter/internal/testbed"
)

// prefix names everything these tests create: namespaces, pin directories.
const prefix = "xrnt-"

// Addresses of a testbed.Line, as strings for command lines.
var (
	src4    = "10.201.1.2"
	dst4    = "10.201.2.2"
	rtrSrc4 = "10.201.1.1"
	rtrDst4 = "10.201.2.1"
	src6    = "fd00:201:1::2"
	dst6    = "fd00:201:2::2"
	rtrSrc6 = "fd00:201:1::1"
	rtrDst6 = "fd00:201:2::1"
)

// topo is a testbed.Line whose end hosts can receive redirected frames, plus
// a pin directory for the router.
type topo struct {
	*testbed.Line
	Pin     string        // the router's dataplane.pin_path
	DstSink *loadgen.Sink // the sink on the destination host's veth
}

// newTopo builds src ⇄ router ⇄ dst with forwarding on in the router and the
// sink program on both end hosts' veths. The pin directory is detached
// (`xrouter detach`) and removed when the test ends, after any daemon the
// test started is stopped.
func newTopo(t *testing.T) *topo {
	t.Helper()
	testbed.RequireRoot(t)
	l := testbed.NewLine(t, prefix)
	attachSink(t, l.Src, testbed.LineSrcDev)
	dstSink := attachSink(t, l.Dst, testbed.LineDstDev)
	setTxChecksum(t, l.Src, testbed.LineSrcDev, false)
	setTxChecksum(t, l.Dst, testbed.LineDstDev, false)
	pin := testbed.PinDir(t, prefix)
	t.Cleanup(func() {
		// Runs after the daemons' cleanups (registered later), before
		// PinDir's removal (which removes whatever detach leaves) and the
		// namespaces' deletion. Whether detach works is asserted by
		// TestDetachOnExitPrivileged, not by every test.
		if _, stderr, err := xr("detach", "--pin-path", pin); err != nil {
			t.Logf("cleanup: xrouter detach --pin-path %s: %v: %s", pin, err, strings.TrimSpace(stderr))
		}
	})
	return &topo{Line: l, Pin: pin, DstSink: dstSink}
}

// attachSink gives an end host's veth an XDP program (the counting sink,
// passing every frame) so that frames redirected into its peer are
// delivered (see DESIGN.md). It stays attached until the test ends.
func attachSink(t *testing.T, ns *testbed.Netns, dev string) *loadgen.Sink {
	t.Helper()
	return loadgen.SinkOn(t, ns, dev, 63, false)
}

// setTxChecksum turns an end host's transmit checksum offload on or off
// (`ethtool -K DEV tx off`, done with the ioctl since ethtool is not
// installed).
//
// With it on (the veth default), the host's UDP and TCP packets carry only
// the pseudo-header sum plus CHECKSUM_PARTIAL in the skb. Kernel forwarding
// keeps that metadata to the receiver; XDP on the router's veth turns the
// skb into a bare frame and loses it, so the packet arrives with a wrong
// checksum and is dropped there (Udp InCsumErrors). Real NICs never deliver
// such packets; veth hosts must send full checksums. See
// TestVethPeerChecksumOffloadPrivileged.
func setTxChecksum(t *testing.T, ns *testbed.Netns, dev string, on bool) {
	t.Helper()
	if err := ns.SetEthtool(dev, testbed.EthtoolSTxCsum, on); err != nil {
		t.Fatalf("setting tx checksum offload: %v", err)
	}
}

// cfg describes a router config file; writeConfig renders it as YAML.
type cfg struct {
	Interfaces   []string
	Pattern      string
	Mode         string
	Pin          string
	DetachOnExit bool
	Extra        string // appended verbatim under dataplane:
}

func writeConfig(t *testing.T, c cfg) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("dataplane:\n")
	if len(c.Interfaces) > 0 {
		fmt.Fprintf(&b, "  interfaces: [%s]\n", strings.Join(c.Interfaces, ", "))
	}
	if c.Pattern != "" {
		fmt.Fprintf(&b, "  interface_pattern: %q\n", c.Pattern)
	}
	mode := c.Mode
	if mode == "" {
		mode = "native"
	}
	fmt.Fprintf(&b, "  mode: %s\n", mode)
	fmt.Fprintf(&b, "  pin_path: %s\n", c.Pin)
	fmt.Fprintf(&b, "  detach_on_exit: %v\n", c.DetachOnExit)
	b.WriteString("  manage_forwarding: true\n")
	b.WriteString(c.Extra)
	b.WriteString("log:\n  level: debug\n  format: text\n")
	return writeFile(t, "xrouter.yaml", b.String())
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// defaultConfig is the line router's config: both interfaces, native mode.
func (tp *topo) defaultConfig(t *testing.T) string {
	return writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
	})
}

// xr runs an xrouter operator command and returns its stdout and stderr.
func xr(args ...string) (string, string, error) {
	return xrTimeout(30*time.Second, args...)
}

// daemon is one `xrouter run` child process (testbed.Daemon) whose
// helpers fail the test.
type daemon struct{ *testbed.Daemon }

// startDaemon starts `xrouter run -c cfgPath --netns NS` and waits until it
// logs "xrouter running". It is killed (SIGKILL, by PID) and reaped when the
// test ends if it still runs; its log is shown if the test failed.
func startDaemon(t *testing.T, ns *testbed.Netns, cfgPath string) *daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(xrBin, "run", "-c", cfgPath, "--netns", ns.Name()))
}

// startDaemonCmd is startDaemon for a command line of the caller's (a
// daemon started through nsenter and setpriv, say).
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	td, err := testbed.StartDaemon(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{td}
	d.waitLog(t, "xrouter running", 20*time.Second)
	return d
}

func (d *daemon) running() bool { return d.Running() }

// isClosed reports, without blocking, whether ch is closed (a process
// reaped, a connection's reader gone).
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitLog polls the daemon's log for a substring; it fails the test if the
// daemon exits or the timeout passes first.
func (d *daemon) waitLog(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	if err := d.WaitLog(substr, timeout); err != nil {
		t.Fatal(err)
	}
}

// signal sends sig by PID and waits for the process to exit, returning
// Wait's error; it fails the test if the process still runs after 15 s.
func (d *daemon) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	err := d.Signal(sig, 15*time.Second)
	if errors.Is(err, testbed.ErrStillRunning) {
		t.Fatal(err)
	}
	return err
}

// stats reads `xrouter stats --json --interval 0 --pin-path P`: packets per
// outcome name.
type stats map[string]uint64

func readStats(t *testing.T, pin string) stats {
	t.Helper()
	out, stderr, err := xr("stats", "--json", "--interval", "0", "--pin-path", pin)
	if err != nil {
		t.Fatalf("xrouter stats --pin-path %s: %v: %s", pin, err, stderr)
	}
	var doc struct {
		Forwarded uint64 `json:"forwarded"`
		Outcomes  []struct {
			Outcome string `json:"outcome"`
			Packets uint64 `json:"packets"`
		} `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parsing xrouter stats --json: %v\n%s", err, out)
	}
	s := stats{}
	for _, o := range doc.Outcomes {
		s[o.Outcome] = o.Packets
	}
	if s["forwarded"] != doc.Forwarded {
		t.Fatalf("xrouter stats --json: forwarded %d but the forwarded outcome says %d", doc.Forwarded, s["forwarded"])
	}
	return s
}

// sub returns the per-outcome growth from an earlier reading.
func (s stats) sub(before stats) stats {
	d := stats{}
	for k, v := range s {
		d[k] = v - before[k]
	}
	return d
}

// String lists the outcomes that are not zero.
func (s stats) String() string {
	var parts []string
	for k, v := range s {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	if len(parts) == 0 {
		return "(all zero)"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// statusReport is `xrouter status --json`.
type statusReport struct {
	PinPath    string        `json:"pin_path"`
	Interfaces []statusIface `json:"interfaces"`
	Notes      []string      `json:"notes"`
	Warnings   []string      `json:"warnings"`
}

// statusIface is one interface of `xrouter status --json`.
type statusIface struct {
	Name     string `json:"name"`
	Index    int    `json:"ifindex"`
	Mode     string `json:"mode"`
	ProgID   uint32 `json:"prog_id"`
	Up       bool   `json:"up"`
	Egress   bool   `json:"egress"`
	VethPeer string `json:"veth_peer"`
	TC       struct {
		Ingress []string `json:"ingress"`
		Egress  []string `json:"egress"`
	} `json:"tc"`
	NoXDPXmit bool     `json:"no_xdp_xmit"`
	Notes     []string `json:"notes"`
	Warnings  []string `json:"warnings"`
}

func readStatus(t *testing.T, ns *testbed.Netns, pin string) statusReport {
	t.Helper()
	out, stderr, err := xr("status", "--json", "--netns", ns.Name(), "--pin-path", pin)
	if err != nil {
		t.Fatalf("xrouter status --netns %s --pin-path %s: %v: %s", ns.Name(), pin, err, stderr)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("parsing xrouter status --json: %v\n%s", err, out)
	}
	return r
}

// attachedNames lists the interfaces status reports as attached (an XDP
// mode other than none).
func (r statusReport) attachedNames() []string {
	var out []string
	for _, i := range r.Interfaces {
		if i.Mode != "none" {
			out = append(out, i.Name)
		}
	}
	sort.Strings(out)
	return out
}

// xdpOn reports whether dev (which must exist) in ns has an XDP program.
func xdpOn(t *testing.T, ns *testbed.Netns, dev string) bool {
	t.Helper()
	ns.Link(t, dev)
	return slices.Contains(xdpLinks(t, ns), dev)
}

// xdpLinks lists the interfaces in ns that have an XDP program attached.
func xdpLinks(t *testing.T, ns *testbed.Netns) []string {
	t.Helper()
	names, err := ns.XDPLinks()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// growth is what a stretch of traffic moved: xrouter's counters, and the
// kernel's own forwarding counters in the router namespace.
type growth struct {
	stats            stats
	kernel4, kernel6 uint64 // Ip ForwDatagrams, Ip6OutForwDatagrams
}

// measure runs traffic and returns what it moved.
func measure(t *testing.T, tp *topo, traffic func()) growth {
	t.Helper()
	base := readStats(t, tp.Pin)
	k4, k6 := kernelForwarded(t, tp.Router)
	traffic()
	k4b, k6b := kernelForwarded(t, tp.Router)
	return growth{stats: readStats(t, tp.Pin).sub(base), kernel4: k4b - k4, kernel6: k6b - k6}
}

// checkRejected runs `config check` and `run` with the bad config file in
// the router's namespace and checks what the operator sees: a non-zero
// exit, one line on stderr naming the file and key, nothing on stdout
// (when quiet), and nothing attached or pinned at pin.
func checkRejected(t *testing.T, tp *topo, file, pin, key string, quiet bool) {
	t.Helper()
	for _, cmd := range [][]string{
		{"config", "check", "-c", file, "--netns", tp.Router.Name()},
		{"run", "-c", file, "--netns", tp.Router.Name()},
	} {
		stdout, stderr, err := xrTimeout(10*time.Second, cmd...)
		line := strings.TrimSpace(stderr)
		name := strings.Join(cmd[:len(cmd)-4], " ")
		if exitCode(err) <= 0 {
			t.Errorf("xrouter %s: exit %v, want a non-zero exit status; stdout %q stderr %q", name, err, stdout, stderr)
			continue
		}
		if countLines(stderr) != 1 || !strings.Contains(line, file) || !strings.Contains(line, key) {
			t.Errorf("xrouter %s: stderr %q; want one line naming %s and %s", name, stderr, key, file)
		}
		if quiet && strings.TrimSpace(stdout) != "" {
			t.Errorf("xrouter %s: unexpected stdout %q", name, stdout)
		}
		t.Logf("xrouter %s: %s", name, line)
	}
	if got := xdpLinks(t, tp.Router); len(got) != 0 {
		t.Errorf("XDP attached to %v after a rejected config", got)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin path %s exists after a rejected config (%v)", pin, err)
	}
}

// kernelForwarded reads the router namespace's own forwarding counters:
// Ip ForwDatagrams (/proc/net/snmp) and Ip6OutForwDatagrams
// (/proc/net/snmp6). Packets the fast path forwards never reach them.
func kernelForwarded(t *testing.T, ns *testbed.Netns) (v4, v6 uint64) {
	t.Helper()
	v4, ok4 := snmpCounter(t, ns, "Ip", "ForwDatagrams")
	v6, ok6 := snmp6Counter(t, ns, "Ip6OutForwDatagrams")
	if !ok4 || !ok6 {
		t.Fatalf("netns %s: ForwDatagrams / Ip6OutForwDatagrams not found", ns.Name())
	}
	return v4, v6
}

// snmpCounter reads counter key of group ("Ip", "Icmp", "Udp", ...) from
// the namespace's /proc/net/snmp: the group's first line names the
// counters, its second holds the values.
func snmpCounter(t *testing.T, ns *testbed.Netns, group, key string) (uint64, bool) {
	t.Helper()
	var keys []string
	for _, line := range strings.Split(ns.Run(t, "cat", "/proc/net/snmp"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if keys == nil {
			keys = f
			continue
		}
		for i, k := range keys {
			if k == key && i < len(f) {
				return mustUint(t, f[i]), true
			}
		}
		return 0, false
	}
	return 0, false
}

// snmp6Counter reads counter key from the namespace's /proc/net/snmp6
// (one "name value" per line).
func snmp6Counter(t *testing.T, ns *testbed.Netns, key string) (uint64, bool) {
	t.Helper()
	for _, line := range strings.Split(ns.Run(t, "cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			return mustUint(t, f[1]), true
		}
	}
	return 0, false
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("parsing counter %q: %v", s, err)
	}
	return v
}

// pingResult is what ping(8) printed.
type pingResult struct {
	Sent, Received int
	Out            string
	Err            error
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// ping runs ping(8) in ns and parses its summary; a ping without replies is
// not an error here, callers check what they expect.
func ping(t *testing.T, ns *testbed.Netns, args ...string) pingResult {
	t.Helper()
	out, err := ns.Exec(append([]string{"ping"}, args...)...)
	r := pingResult{Out: out, Err: err}
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s in %s: no summary (%v):\n%s", strings.Join(args, " "), ns.Name(), err, out)
	}
	r.Sent, _ = strconv.Atoi(m[1])
	r.Received, _ = strconv.Atoi(m[2])
	return r
}

// pingOK pings count times at a short interval and requires every reply.
func pingOK(t *testing.T, ns *testbed.Netns, dst string, count int) {
	t.Helper()
	args := []string{"-c", strconv.Itoa(count), "-i", "0.005", "-W", "2", "-q", dst}
	if strings.Contains(dst, ":") {
		args = append([]string{"-6"}, args...)
	}
	r := ping(t, ns, args...)
	if r.Sent != count || r.Received != count {
		t.Fatalf("ping %s from %s: %d sent, %d received, want %d/%d:\n%s", dst, ns.Name(), r.Sent, r.Received, count, count, r.Out)
	}
}

// warmUp resolves every neighbour on the paths src ⇄ dst (both directions,
// both families) with a few pings, so that what follows takes the fast path
// from its first packet.
func warmUp(t *testing.T, from *testbed.Netns, dsts ...string) {
	t.Helper()
	for _, d := range dsts {
		pingOK(t, from, d, 3)
	}
}

// UDP traffic. Every datagram carries a stream id and a sequence number so
// that receivers count each one once and ignore anything else.

const udpPort = 40000

type udpReceiver struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seen map[uint64]bool
	// got counts distinct datagrams per stream id.
	got map[uint32]int
}

// listenUDP opens a UDP socket inside ns; it keeps receiving (from any
// goroutine) until the test ends.
func listenUDP(t *testing.T, ns *testbed.Netns, addr string) *udpReceiver {
	t.Helper()
	ap := netip.AddrPortFrom(netip.MustParseAddr(addr), udpPort)
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: listening on %s: %v", ns.Name(), ap, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	r := &udpReceiver{conn: conn, seen: map[uint64]bool{}, got: map[uint32]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if n < 12 || string(buf[:4]) != "xrnt" {
				continue
			}
			id, seq := binary.BigEndian.Uint32(buf[4:]), binary.BigEndian.Uint32(buf[8:])
			key := uint64(id)<<32 | uint64(seq)
			r.mu.Lock()
			if !r.seen[key] {
				r.seen[key] = true
				r.got[id]++
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return r
}

func (r *udpReceiver) count(id uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// waitCount waits until want datagrams of stream id arrived and fails the
// test if they do not within timeout.
func (r *udpReceiver) waitCount(t *testing.T, id uint32, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.count(id)
		if got == want {
			return
		}
		if got > want {
			t.Fatalf("UDP stream %d: %d datagrams arrived, only %d were sent", id, got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP stream %d: %d of %d datagrams arrived within %s", id, got, want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// udpSender is an unconnected UDP socket opened inside a namespace (so ICMP
// errors never surface as write errors).
type udpSender struct {
	conn *net.UDPConn
}

func newUDPSender(t *testing.T, ns *testbed.Netns, family string) *udpSender {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP(family, nil)
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: UDP socket: %v", ns.Name(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpSender{conn: conn}
}

// send sends n datagrams of stream id to dst:udpPort, paced at interval
// (0: as fast as the socket takes them). It is safe to call from any
// goroutine; it returns the first write error.
func (s *udpSender) send(dst string, id uint32, n int, interval time.Duration) error {
	to := netip.AddrPortFrom(netip.MustParseAddr(dst), udpPort)
	buf := make([]byte, 64)
	copy(buf, "xrnt")
	binary.BigEndian.PutUint32(buf[4:], id)
	start := time.Now()
	for i := 0; i < n; i++ {
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				time.Sleep(wait)
			}
		}
		binary.BigEndian.PutUint32(buf[8:], uint32(i))
		if _, err := s.conn.WriteToUDPAddrPort(buf, to); err != nil {
			return fmt.Errorf("datagram %d of stream %d to %s: %w", i, id, to, err)
		}
	}
	return nil
}

// sendUDP sends n datagrams from src to the receiver and waits for all of
// them.
func sendUDP(t *testing.T, s *udpSender, r *udpReceiver, dst string, id uint32, n int, interval time.Duration) {
	t.Helper()
	if err := s.send(dst, id, n, interval); err != nil {
		t.Fatal(err)
	}
	r.waitCount(t, id, n, 10*time.Second)
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode is the exit status of a finished command, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// countLines counts non-empty lines.
func countLines(s string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n
}
