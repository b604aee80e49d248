package netnstests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// The control-plane benchmark: a BIRD 2 feeder announces N IPv4 prefixes
// over one eBGP session to one receiver at a time (xrouter, BIRD 2 with
// `protocol kernel`, FRR bgpd+zebra), each in its own namespace. For each
// it measures the seconds from session establishment to the last route in
// the receiver's kernel FIB, peak RSS, CPU seconds, and the seconds to
// remove every route after the feeder is killed (kill -9).
//
// Without XROUTER_FIBBENCH_PREFIXES it is a smoke test (10,000 prefixes),
// part of `make test`: it asserts only that every receiver got all prefixes
// into its kernel FIB and removed them again. `make bench-fib` runs it with
// 1,000,000 and writes docs/benchmarks.md.
//
// Environment:
//
//	XROUTER_FIBBENCH_PREFIXES  prefixes to feed (default 10000)
//	XROUTER_FIBBENCH_RECEIVERS comma-separated subset of xrouter,
//	                           xrouter-tuned, bird, frr (default: all;
//	                           xrouter-tuned only from 100,000 prefixes)
//	XROUTER_FIBBENCH_DOC       markdown file to write the table into
//	XROUTER_FIBBENCH_PROFILE   file name prefix for xrouter's profiles
//	                           (CPU during the load and the removal, heap
//	                           after the load; via debug.pprof)
//	XROUTER_FIBBENCH_XROUTER   extra YAML for xrouter's config (top level)
const (
	benchFeedAddr = "10.210.0.1"
	benchRecvAddr = "10.210.0.2"
	benchFeedAS   = 65100
	benchRecvAS   = 65201
	benchFeedDev  = "feed0"
	benchRecvDev  = "recv0"
	benchPprof    = "127.0.0.1:6061"
)

// benchResult is one receiver's row.
type benchResult struct {
	Receiver string
	Prefixes int
	Load     time.Duration // session up → last route in the kernel
	PeakRSS  uint64        // bytes, VmHWM (summed over the receiver's processes)
	CPU      float64       // user+system seconds at the moment all routes were in
	Removal  time.Duration // feeder killed → every route gone
}

func TestFIBBenchPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package bird2; make test installs it)", tool)
		}
	}
	n := 10000
	if s := os.Getenv("XROUTER_FIBBENCH_PREFIXES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 || v > 4000000 {
			t.Fatalf("XROUTER_FIBBENCH_PREFIXES=%q: want a count from 1 to 4000000", s)
		}
		n = v
	}
	receivers := []string{"xrouter", "bird", "frr"}
	if n >= 100000 {
		// Full-table runs also show the effect of the runtime settings.
		receivers = []string{"xrouter", "xrouter-tuned", "bird", "frr"}
	}
	if s := os.Getenv("XROUTER_FIBBENCH_RECEIVERS"); s != "" {
		receivers = strings.Split(s, ",")
	}
	routesFile := filepath.Join(t.TempDir(), "routes.conf")
	if err := writeBenchRoutes(routesFile, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("fib bench: %d prefixes, receivers %s", n, strings.Join(receivers, ", "))

	var results []benchResult
	for _, rcv := range receivers {
		var res benchResult
		ok := t.Run(rcv, func(t *testing.T) {
			res = runBenchReceiver(t, rcv, n, routesFile)
		})
		if ok {
			results = append(results, res)
		}
	}
	table := benchTable(results)
	t.Logf("results:\n%s", table)
	if doc := os.Getenv("XROUTER_FIBBENCH_DOC"); doc != "" && !t.Failed() {
		if err := writeBenchDoc(doc, n, table); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", doc)
	}
}

// writeBenchRoutes writes n static routes for BIRD with a length mix like
// a full table's (about 60% /24, the rest /16 to /23), distinct prefixes
// walking up from 11.0.0.0 in /24 steps, shorter prefixes covering the
// /24s after them as real aggregates do.
func writeBenchRoutes(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	genPrefixes4(n, func(p netip.Prefix) { fmt.Fprintf(w, "route %s blackhole;\n", p) })
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// benchPair is the feeder's and the receiver's namespace, joined by a veth.
type benchPair struct {
	feed, recv *testbed.Netns
}

func newBenchPair(t *testing.T) benchPair {
	t.Helper()
	p := benchPair{feed: testbed.NewNetns(t, prefix+"fd-"), recv: testbed.NewNetns(t, prefix+"rc-")}
	testbed.Veth(t, p.feed, benchFeedDev, p.recv, benchRecvDev)
	p.feed.AddAddr(t, benchFeedDev, netip.MustParsePrefix(benchFeedAddr+"/24"))
	p.recv.AddAddr(t, benchRecvDev, netip.MustParsePrefix(benchRecvAddr+"/24"))
	return p
}

// receiver is a started receiver: the PIDs to measure.
type receiver struct {
	pids []int
}

func runBenchReceiver(t *testing.T, name string, n int, routesFile string) benchResult {
	p := newBenchPair(t)
	base := fibPrefixes(t, p.recv)

	// The feeder first, with its table loaded, passive: the session comes
	// up when the receiver connects. Its keepalive time is 1 s because
	// BIRD 2.0.12, once a receiver reads more slowly than it sends, stops
	// sending until something arrives from the peer or one of its own
	// timers fires: with the default (hold/3 = 30 s; its loop wakes at
	// least every 3 s) a slow receiver lost up to 3 s per stall, ten
	// seconds and more of a full table (seen from xrouter's side: GoBGP
	// idle, waiting on the socket, while the feeder held the rest).
	feeder := startBIRD(t, p.feed, fmt.Sprintf(`router id %s;
protocol device {}
protocol static st {
	ipv4;
include "%s";
}
protocol bgp feed {
	local %s as %d;
	neighbor %s as %d;
	passive on;
	start delay time 1;
	hold time 90;
	keepalive time 1;
	ipv4 { import none; export where proto = "st"; };
}
`, benchFeedAddr, routesFile, benchFeedAddr, benchFeedAS, benchRecvAddr, benchRecvAS))
	t0 := time.Now()
	if !waitFor(5*time.Minute, func() bool {
		if syscall.Kill(feeder.Cmd.Process.Pid, 0) != nil {
			t.Fatalf("feeder bird exited")
		}
		out := feeder.birdc("show", "route", "count")
		return strings.Contains(out, fmt.Sprintf("%d of %d routes", n, n))
	}) {
		t.Fatalf("feeder did not load %d routes: %s", n, feeder.birdc("show", "route", "count"))
	}
	t.Logf("%s: feeder loaded %d prefixes in %.1f s", name, n, time.Since(t0).Seconds())
	// BIRD does not take up a session in its first second (start delay).
	time.Sleep(time.Until(t0.Add(1500 * time.Millisecond)))

	up := watchEstablished(t, p.feed)
	var rcv receiver
	switch name {
	case "xrouter":
		rcv = startBenchXrouter(t, p, "")
	case "xrouter-tuned":
		rcv = startBenchXrouter(t, p, fmt.Sprintf("runtime:\n  memory_limit: %s\n  gc_percent: %d\n", benchMemoryLimit, benchGCPercent))
	case "bird":
		rcv = startBenchBIRD(t, p)
	case "frr":
		rcv = startBenchFRR(t, p)
	default:
		t.Fatalf("unknown receiver %q (want xrouter, xrouter-tuned, bird or frr)", name)
	}
	var est time.Time
	select {
	case est = <-up:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: no session with the feeder within 60 s", name)
	}
	t.Logf("%s: session up", name)
	var profile chan error
	if os.Getenv("XROUTER_FIBBENCH_PROFILE") != "" && strings.HasPrefix(name, "xrouter") {
		profile = make(chan error, 1)
		go func() {
			profile <- fetchProfile(p.recv, profilePath(name, "load"), fmt.Sprintf("profile?seconds=%d", benchProfileSeconds))
		}()
	}

	want := base + n
	loadTimeout := 60*time.Second + time.Duration(n)*300*time.Microsecond
	var all time.Time
	last, lastLog := base, time.Now()
	if !waitFor(loadTimeout, func() bool {
		c := fibPrefixes(t, p.recv)
		if c >= want {
			all = time.Now()
			return true
		}
		if time.Since(lastLog) > 5*time.Second {
			t.Logf("%s: %.0f s: %d of %d routes in the kernel (+%d/s)", name, time.Since(est).Seconds(),
				c-base, n, int(float64(c-last)/time.Since(lastLog).Seconds()))
			last, lastLog = c, time.Now()
		}
		return false
	}) {
		t.Fatalf("%s: %d of %d routes in the kernel after %s", name, fibPrefixes(t, p.recv)-base, n, loadTimeout)
	}
	res := benchResult{Receiver: name, Prefixes: n, Load: all.Sub(est)}
	for _, pid := range rcv.pids {
		res.CPU += cpuSeconds(t, pid)
	}
	t.Logf("%s: all %d routes in the kernel %.1f s after the session came up (%.1f CPU s)", name, n, res.Load.Seconds(), res.CPU)
	if profile != nil {
		// The heap as the load left it, then the CPU profile.
		if err := fetchProfile(p.recv, profilePath(name, "heap"), "heap?gc=1"); err != nil {
			t.Errorf("heap profile: %v", err)
		}
		if err := <-profile; err != nil {
			t.Errorf("CPU profile: %v", err)
		}
	}

	// Kill the feeder: the session drops (TCP closes), every route must go.
	var removalProfile chan error
	if profile != nil {
		removalProfile = make(chan error, 1)
		go func() {
			removalProfile <- fetchProfile(p.recv, profilePath(name, "removal"),
				fmt.Sprintf("profile?seconds=%d", benchProfileSeconds))
		}()
		time.Sleep(100 * time.Millisecond) // the profile starts first
	}
	killed := time.Now()
	if err := syscall.Kill(feeder.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 feeder %d: %v", feeder.Cmd.Process.Pid, err)
	}
	if !waitFor(loadTimeout, func() bool { return fibPrefixes(t, p.recv) <= base }) {
		t.Fatalf("%s: %d routes still in the kernel %s after the feeder died", name, fibPrefixes(t, p.recv)-base, loadTimeout)
	}
	res.Removal = time.Since(killed)
	if removalProfile != nil {
		if err := <-removalProfile; err != nil {
			t.Errorf("CPU profile of the removal: %v", err)
		}
	}
	for _, pid := range rcv.pids {
		res.PeakRSS += peakRSS(t, pid)
	}
	t.Logf("%s: removed in %.1f s; peak RSS %d MiB", name, res.Removal.Seconds(), res.PeakRSS>>20)
	return res
}

// watchEstablished reports when a TCP connection to or from port 179 is
// established in ns (the BGP session follows within one round trip of
// OPEN and KEEPALIVE messages).
func watchEstablished(t *testing.T, ns *testbed.Netns) <-chan time.Time {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			var established bool
			_ = ns.Do(func() error {
				b, err := os.ReadFile("/proc/thread-self/net/tcp")
				if err != nil {
					return err
				}
				for _, l := range strings.Split(string(b), "\n")[1:] {
					f := strings.Fields(l)
					if len(f) > 3 && f[3] == "01" && (strings.HasSuffix(f[1], ":00B3") || strings.HasSuffix(f[2], ":00B3")) {
						established = true
					}
				}
				return nil
			})
			if established {
				up <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return up
}

// fibPrefixes is the number of prefixes in the namespace's main table, from
// /proc/net/fib_triestat read by a thread inside it.
func fibPrefixes(t *testing.T, ns *testbed.Netns) int {
	t.Helper()
	var b []byte
	if err := ns.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/fib_triestat")
		return err
	}); err != nil {
		t.Fatalf("netns %s: reading fib_triestat: %v", ns.Name(), err)
	}
	return mainPrefixes(string(b))
}

// mainPrefixes reads the Main table's "Prefixes:" count from fib_triestat.
func mainPrefixes(s string) int {
	inMain := false
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, " ") && strings.HasSuffix(strings.TrimSpace(l), ":") {
			inMain = strings.TrimSpace(l) == "Main:"
			continue
		}
		if f := strings.Fields(l); inMain && len(f) == 2 && f[0] == "Prefixes:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// cpuSeconds is utime+stime of a process (from /proc/PID/stat).
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading CPU time of %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// peakRSS is VmHWM of a process in bytes.
func peakRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading peak RSS of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// The runtime settings of the xrouter-tuned receiver: collect rarely
// (gc_percent) until the heap nears the limit (memory_limit).
const (
	benchMemoryLimit = "1700MiB"
	benchGCPercent   = 300
)

func startBenchXrouter(t *testing.T, p benchPair, extra string) receiver {
	pin := testbed.PinDir(t, prefix)
	t.Cleanup(func() {
		if _, stderr, err := xr("detach", "--pin-path", pin); err != nil {
			t.Logf("cleanup: xrouter detach --pin-path %s: %v: %s", pin, err, strings.TrimSpace(stderr))
		}
	})
	debug := pprofSection("XROUTER_FIBBENCH_PROFILE")
	conf := fmt.Sprintf(`dataplane:
  interfaces: [%s]
  mode: native
  pin_path: %s
  detach_on_exit: true
api:
  socket: ""
log:
  level: info
bgp:
  as: %d
  router_id: %s
  listen_port: -1
  grpc_address: ""
  prefix_lists:
    - name: all
      entries: [{prefix: 0.0.0.0/0, le: 32}]
  neighbors:
    - address: %s
      peer_as: %d
      families: [ipv4-unicast]
      hold_time: 90s
      import: all
%s%s%s`, benchRecvDev, pin, benchRecvAS, benchRecvAddr, benchFeedAddr, benchFeedAS, debug, extra, os.Getenv("XROUTER_FIBBENCH_XROUTER"))
	d := startDaemon(t, p.recv, writeFile(t, "xrouter.yaml", conf))
	return receiver{pids: []int{d.Cmd.Process.Pid}}
}

func startBenchBIRD(t *testing.T, p benchPair) receiver {
	b := startBIRD(t, p.recv, fmt.Sprintf(`router id %s;
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol bgp feed {
	local %s as %d;
	neighbor %s as %d;
	start delay time 1;
	connect retry time 1;
	hold time 90;
	ipv4 { import all; export none; };
}
`, benchRecvAddr, benchRecvAddr, benchRecvAS, benchFeedAddr, benchFeedAS))
	return receiver{pids: []int{b.Cmd.Process.Pid}}
}

// startBenchFRR starts zebra and bgpd in the receiver namespace.
func startBenchFRR(t *testing.T, p benchPair) receiver {
	return startZebraBgpd(t, p.recv, fmt.Sprintf(`hostname xrnt-bgpd
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 neighbor %s remote-as %d
 neighbor %s timers connect 1
 address-family ipv4 unicast
  neighbor %s route-map deny-all out
 exit-address-family
!
route-map deny-all deny 10
`, benchRecvAS, benchRecvAddr, benchFeedAddr, benchFeedAS, benchFeedAddr, benchFeedAddr))
}

// startZebraBgpd starts zebra and bgpd (with config bgpdConf) in ns. They are
// started as root and drop to user frr themselves (their default -u frr -g
// frr); run with -u root they stop with "not part of vty group". Their
// files live in a directory of their own that user frr may write.
func startZebraBgpd(t *testing.T, ns *testbed.Netns, bgpdConf string) receiver {
	for _, bin := range []string{"/usr/lib/frr/zebra", "/usr/lib/frr/bgpd"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs %s (Debian package frr; make deps installs it)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "xrnt-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var uid, gid int
	if out, err := exec.Command("id", "-u", "frr").Output(); err == nil {
		uid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	} else {
		t.Skip("needs user frr (Debian package frr)")
	}
	if out, err := exec.Command("id", "-g", "frr").Output(); err == nil {
		gid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	zconf := write("zebra.conf", "hostname xrnt-zebra\n")
	bconf := write("bgpd.conf", bgpdConf)
	zserv := filepath.Join(dir, "zserv.api")
	start := func(name string, args ...string) *peerProc {
		bin := "/usr/lib/frr/" + name
		return startPeerProc(t, name, ns, append([]string{bin,
			"-i", filepath.Join(dir, name+".pid"), "-z", zserv, "--vty_socket", dir, "--log", "stdout"}, args...)...)
	}
	// zebra: a netlink receive buffer large enough for a full table's
	// notifications (-s).
	zebra := start("zebra", "-f", zconf, "-s", "90000000")
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(zserv); return err == nil }) {
		t.Fatal("zebra did not open its zserv socket within 10 s")
	}
	bgpd := start("bgpd", "-f", bconf, "-p", "179")
	return receiver{pids: []int{zebra.pid(), bgpd.pid()}}
}

// profilePath is where a profile of receiver name goes: next to
// XROUTER_FIBBENCH_PROFILE (a file name prefix), e.g. bin/fibbench-xrouter-load.pprof.
func profilePath(name, what string) string {
	return fmt.Sprintf("%s-%s-%s.pprof", os.Getenv("XROUTER_FIBBENCH_PROFILE"), name, what)
}

// benchProfileSeconds is the length of xrouter's CPU profile, taken from
// the moment the session is up.
const benchProfileSeconds = 20

// fetchProfile fetches /debug/pprof/WHAT from the daemon's debug.pprof
// listener (inside ns) and writes it to path.
func fetchProfile(ns *testbed.Netns, path, what string) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}, Timeout: (benchProfileSeconds + 30) * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/%s", benchPprof, what))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchTable renders the results as a markdown table.
func benchTable(rs []benchResult) string {
	var b strings.Builder
	b.WriteString("| receiver | prefixes | session up → all in kernel (s) | peak RSS (MiB) | CPU (s) | removal after feeder kill -9 (s) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	names := map[string]string{
		"xrouter":       "xrouter (GoBGP + fib)",
		"xrouter-tuned": fmt.Sprintf("xrouter, `runtime: {memory_limit: %s, gc_percent: %d}`", benchMemoryLimit, benchGCPercent),
		"bird":          "BIRD 2 (protocol kernel)",
		"frr":           "FRR bgpd + zebra",
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %.1f | %d | %.1f | %.1f |\n", names[r.Receiver], r.Prefixes,
			r.Load.Seconds(), r.PeakRSS>>20, r.CPU, r.Removal.Seconds())
	}
	return b.String()
}

// writeBenchDoc writes the table and how it was made into the doc, between
// the fib markers (the file is made with the fib and forwarding marker
// pairs if missing). Inside the fib section, only the part between the
// fib:results markers is regenerated; text after it (the analysis of a
// run) is kept.
func writeBenchDoc(path string, n int, table string) error {
	const (
		begin, end        = "<!-- fib:begin -->", "<!-- fib:end -->"
		resBegin, resEnd  = "<!-- fib:results:begin -->", "<!-- fib:results:end -->"
		forwardingMarkers = "<!-- forwarding:begin -->\n<!-- forwarding:end -->\n"
	)
	old, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n\n" + begin + "\n" + end + "\n\n" + forwardingMarkers)
	} else if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s markers", path, begin, end)
	}
	section := s[i+len(begin) : j]
	results := resBegin + "\n" + benchDocText(n, table) + resEnd
	if ri, rj := strings.Index(section, resBegin), strings.Index(section, resEnd); ri >= 0 && rj > ri {
		section = section[:ri] + results + section[rj+len(resEnd):]
	} else {
		section = "\n" + results + "\n"
	}
	s = s[:i+len(begin)] + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func benchDocText(n int, table string) string {
	kernel, _ := exec.Command("uname", "-r").Output()
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	var mem string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			mem = fmt.Sprintf(", %d GiB RAM", kb>>20)
		}
	}
	bird, _ := exec.Command("bird", "--version").CombinedOutput()
	peers := strings.TrimSpace(string(bird))
	if out, err := exec.Command("/usr/lib/frr/zebra", "--version").Output(); err == nil {
		peers += "; FRR " + strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0], "zebra version ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Control plane: a full table into the kernel FIB\n\n")
	fmt.Fprintf(&b, "%d IPv4 prefixes (about 60%% /24, the rest /16–/23) from a BIRD feeder over one eBGP session, one receiver at a time, each in its own network namespace.\n\n", n)
	b.WriteString(table)
	fmt.Fprintf(&b, "\n- Command: `make bench-fib` (`XROUTER_FIBBENCH_PREFIXES=%d go test -run TestFIBBenchPrivileged -v ./netns-tests/`)\n", n)
	fmt.Fprintf(&b, "- Machine: %s, %d CPUs%s; kernel %s; %s; Go %s\n", cpu, runtime.NumCPU(), mem,
		strings.TrimSpace(string(kernel)), peers, runtime.Version())
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("- Session up: the TCP connection on port 179 established in the feeder's namespace. All in kernel: `Prefixes` of the Main table in the receiver's `/proc/net/fib_triestat` reaches baseline + N (polled). Peak RSS: `VmHWM` (FRR: bgpd + zebra). CPU: utime + stime when all routes were in. Removal: from `kill -9` of the feeder until the count is back to the baseline.\n")
	return b.String()
}
