package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// The failover benchmark (make bench-failover): an edge router with two
// upstreams that send the same table, A with shorter AS paths than B.
//
//	upstream A ns ── up0 ⇄ upa ─┐
//	                             receiver ns ── srca ⇄ src0 ── source ns
//	upstream B ns ── up0 ⇄ upb ─┘
//
// Each upstream runs a feeder (bgpfeed_test.go: IPv4 and IPv6 over one
// eBGP session, hold time offered 9 s) and a sink (an AF_PACKET tap on
// up0). The receiver is xrouter, BIRD 2 or FRR (bgpd + zebra) in turn, on
// the same feeds. The source sends one UDP probe per round (every 100 ms)
// to one address in each of 1000 sampled prefixes; the sinks record which
// upstream each probe reached. Events, in order, each after the receiver
// has gone idle:
//
//   - kill -9 of A's feeder: every sample must move to B;
//   - A's feeder started again: every sample back to A;
//   - A's link cut: every packet in and out of A's up0 dropped (tc in A's
//     namespace; carrier stays up, so only the hold timer notices); arrivals
//     at A count as lost while it lasts;
//   - the cut removed: back to A.
//
// Measured per receiver: seconds from the first session up until both
// tables are in the kernel and both feeders' data is acknowledged, peak RSS
// and CPU by then, and per event the seconds until every sample arrived
// via the right upstream (and stayed so), with the probes lost meanwhile.
const (
	fbA4, fbRA4, fbA6, fbRA6  = "10.211.1.1", "10.211.1.2", "fd00:211:1::1", "fd00:211:1::2"
	fbB4, fbRB4, fbB6, fbRB6  = "10.211.2.1", "10.211.2.2", "fd00:211:2::1", "fd00:211:2::2"
	fbS4, fbRS4, fbS6, fbRS6  = "10.211.3.1", "10.211.3.2", "fd00:211:3::1", "fd00:211:3::2"
	fbASA, fbASB, fbRecvAS    = 65101, 65102, 65201
	fbUpDev, fbSrcDev         = "up0", "src0"
	fbRADev, fbRBDev, fbRSDev = "upa", "upb", "srca"
)

// failOpts configures one run.
type failOpts struct {
	N4, N6    int
	Samples   int
	Hold      uint16 // offered by the feeders
	Receivers []string
	Feeds     []string // diverse, packed
	Cut       bool     // also the link-cut events
	Interval  time.Duration
	// Check, when set, runs after the load and after each event with the
	// upstream every prefix must use (the smoke test's RIB/FIB check).
	Check func(t *testing.T, ft *failTopo, rcv failReceiver, want uint8)
}

type failResult struct {
	Receiver, Feed string
	N4, N6         int
	Load           time.Duration
	PeakRSS        uint64
	CPULoad        float64
	CPUTotal       float64
	Flaps          int // feeder sessions that dropped during the load
	Phases         []phase
}

// failTopo is the namespaces of one receiver's run.
type failTopo struct {
	a, b, src, rcv *testbed.Netns
	dir            string
}

func newFailTopo(t *testing.T) *failTopo {
	t.Helper()
	ft := &failTopo{
		a: testbed.NewNetns(t, prefix+"fa-"), b: testbed.NewNetns(t, prefix+"fb-"),
		src: testbed.NewNetns(t, prefix+"fs-"), rcv: testbed.NewNetns(t, prefix+"fr-"),
		dir: t.TempDir(),
	}
	for _, l := range []struct {
		ns         *testbed.Netns
		dev, rdev  string
		h4, r4     string
		h6, r6     string
		attachSink bool
	}{
		{ft.a, fbUpDev, fbRADev, fbA4, fbRA4, fbA6, fbRA6, true},
		{ft.b, fbUpDev, fbRBDev, fbB4, fbRB4, fbB6, fbRB6, true},
		{ft.src, fbSrcDev, fbRSDev, fbS4, fbRS4, fbS6, fbRS6, false},
	} {
		testbed.Veth(t, l.ns, l.dev, ft.rcv, l.rdev)
		l.ns.AddAddr(t, l.dev, netip.MustParsePrefix(l.h4+"/24"))
		l.ns.AddAddr(t, l.dev, netip.MustParsePrefix(l.h6+"/64"))
		ft.rcv.AddAddr(t, l.rdev, netip.MustParsePrefix(l.r4+"/24"))
		ft.rcv.AddAddr(t, l.rdev, netip.MustParsePrefix(l.r6+"/64"))
		if l.attachSink {
			attachSink(t, l.ns, l.dev)
		}
	}
	setTxChecksum(t, ft.src, fbSrcDev, false)
	ft.src.IP(t, "route", "add", "default", "via", fbRS4)
	ft.src.IP(t, "-6", "route", "add", "default", "via", fbRS6)
	ft.rcv.EnableForwarding(t)
	return ft
}

// failReceiver is a started receiver.
type failReceiver struct {
	name string
	pids []int
	grpc string  // xrouter: GoBGP's API (unix:///…)
	d    *daemon // xrouter
}

func failOptsFromEnv(t *testing.T) failOpts {
	o := failOpts{N4: 1000000, Samples: 1000, Hold: 9, Receivers: []string{"xrouter", "bird", "frr"},
		Feeds: []string{"diverse", "packed"}, Cut: true, Interval: 100 * time.Millisecond}
	num := func(key string, lo, hi int, dst *int) {
		if s := os.Getenv(key); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < lo || v > hi {
				t.Fatalf("%s=%q: want a count from %d to %d", key, s, lo, hi)
			}
			*dst = v
		}
	}
	num("XROUTER_FAILBENCH_PREFIXES", 1, 4000000, &o.N4)
	o.N6 = o.N4 / 5
	num("XROUTER_FAILBENCH_PREFIXES6", 0, 1000000, &o.N6)
	num("XROUTER_FAILBENCH_SAMPLES", 1, 10000, &o.Samples)
	hold := int(o.Hold)
	num("XROUTER_FAILBENCH_HOLD", 3, 240, &hold)
	o.Hold = uint16(hold)
	if s := os.Getenv("XROUTER_FAILBENCH_RECEIVERS"); s != "" {
		o.Receivers = strings.Split(s, ",")
	}
	if s := os.Getenv("XROUTER_FAILBENCH_FEEDS"); s != "" {
		o.Feeds = strings.Split(s, ",")
	}
	for _, f := range o.Feeds {
		if f != "diverse" && f != "packed" {
			t.Fatalf("XROUTER_FAILBENCH_FEEDS: unknown feed %q (want diverse, packed)", f)
		}
	}
	return o
}

// TestFailoverBenchPrivileged is `make bench-failover`; it runs only when
// XROUTER_FAILBENCH_PREFIXES is set (the smoke test below is the part of
// `make test`).
//
// Environment:
//
//	XROUTER_FAILBENCH_PREFIXES   IPv4 prefixes per upstream (make: 1000000)
//	XROUTER_FAILBENCH_PREFIXES6  IPv6 prefixes (default: a fifth of that)
//	XROUTER_FAILBENCH_RECEIVERS  subset of xrouter,bird,frr
//	XROUTER_FAILBENCH_FEEDS      subset of diverse,packed
//	XROUTER_FAILBENCH_SAMPLES    sampled prefixes (default 1000)
//	XROUTER_FAILBENCH_HOLD       hold time the feeders offer (default 9 s)
//	XROUTER_FAILBENCH_DOC        markdown file to write the results into
//	XROUTER_FAILBENCH_IMG        directory for the plots (default: img/ next to the doc)
//	XROUTER_FAILBENCH_PROFILE    file name prefix for xrouter's profiles: the heap
//	                             with both tables loaded (<prefix>-<feed>-heap.pprof)
//	                             and the CPU from each event on (<prefix>-<feed>-<phase>-cpu.pprof)
func TestFailoverBenchPrivileged(t *testing.T) {
	if os.Getenv("XROUTER_FAILBENCH_PREFIXES") == "" {
		t.Skip("set XROUTER_FAILBENCH_PREFIXES (make bench-failover)")
	}
	testbed.RequireRoot(t)
	o := failOptsFromEnv(t)
	t.Logf("failover bench: %d IPv4 + %d IPv6 prefixes per upstream, feeds %v, receivers %v, %d samples, hold %d s",
		o.N4, o.N6, o.Feeds, o.Receivers, o.Samples, o.Hold)
	results := runFailBench(t, o)
	table := failTable(results)
	t.Logf("results:\n%s", table)
	if doc := os.Getenv("XROUTER_FAILBENCH_DOC"); doc != "" && !t.Failed() {
		img := os.Getenv("XROUTER_FAILBENCH_IMG")
		if img == "" {
			img = filepath.Join(filepath.Dir(doc), "img")
		}
		if err := writeFailDoc(doc, img, o, results); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", doc)
	}
}

func runFailBench(t *testing.T, o failOpts) []failResult {
	var results []failResult
	for _, feed := range o.Feeds {
		for _, rcv := range o.Receivers {
			var res failResult
			if t.Run(feed+"/"+rcv, func(t *testing.T) { res = runFailReceiver(t, o, rcv, feed) }) {
				results = append(results, res)
			}
		}
	}
	return results
}

// feeder is one upstream's speaker process.
type feeder struct {
	*peerProc
	cfg feedConfig
}

func startFeeder(t *testing.T, ns *testbed.Netns, name string, c feedConfig) *feeder {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	return &feeder{peerProc: startPeerProc(t, name, ns, "env", feedEnv+"="+string(b), exe), cfg: c}
}

// event is the time of the first feeder event named ev at or after since,
// or the zero time.
func (f *feeder) event(ev string, since time.Time) time.Time {
	for _, l := range strings.Split(f.Log.String(), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 3 || fs[0] != "XRFEED" || fs[1] != ev {
			continue
		}
		ns, _ := strconv.ParseInt(fs[2], 10, 64)
		if at := time.Unix(0, ns); !at.Before(since) {
			return at
		}
	}
	return time.Time{}
}

// count is how many events named ev the feeder reported.
func (f *feeder) count(ev string) int {
	return strings.Count(f.Log.String(), "XRFEED "+ev+" ")
}

func (f *feeder) waitEvent(t *testing.T, ev string, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	if !waitFor(timeout, func() bool { at = f.event(ev, since); return !at.IsZero() || !f.running() }) || at.IsZero() {
		t.Fatalf("%s: no %q within %s (running %v); log:\n%s", f.name, ev, timeout, f.running(), tail(f.Log.String(), 2000))
	}
	return at
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func feedConfigs(o failOpts, feed string) (a, b feedConfig) {
	a = feedConfig{Local: fbA4, NextHop6: fbA6, Peer: fbRA4, AS: fbASA, RouterID: fbA4, Hold: o.Hold,
		N4: o.N4, N6: o.N6, Packed: feed == "packed"}
	b = a
	b.Local, b.NextHop6, b.Peer, b.AS, b.RouterID, b.Prepend = fbB4, fbB6, fbRB4, fbASB, fbB4, 1
	return a, b
}

// rt6Routes is fib6_rt_entries of the namespace (/proc/net/rt6_stats).
func rt6Routes(t *testing.T, ns *testbed.Netns) int {
	t.Helper()
	var b []byte
	if err := ns.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/rt6_stats")
		return err
	}); err != nil {
		t.Fatalf("netns %s: reading rt6_stats: %v", ns.Name(), err)
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		t.Fatalf("rt6_stats: %q", b)
	}
	v, _ := strconv.ParseInt(f[3], 16, 64)
	return int(v)
}

func cpuOf(t *testing.T, pids []int) float64 {
	var s float64
	for _, p := range pids {
		s += cpuSeconds(t, p)
	}
	return s
}

// waitIdle waits until the receiver used less than 5% of a CPU over 2 s
// (its work after an event done), at most timeout.
func waitIdle(t *testing.T, pids []int, timeout time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < timeout {
		c0 := cpuOf(t, pids)
		time.Sleep(2 * time.Second)
		if cpuOf(t, pids)-c0 < 0.1 {
			return time.Since(start)
		}
	}
	t.Logf("receiver still busy %s after the event", timeout)
	return timeout
}

func runFailReceiver(t *testing.T, o failOpts, name, feed string) failResult {
	ft := newFailTopo(t)
	base4, base6 := fibPrefixes(t, ft.rcv), rt6Routes(t, ft.rcv)
	var rcv failReceiver
	switch name {
	case "xrouter":
		rcv = startFailXrouter(t, ft)
	case "bird":
		rcv = startFailBIRD(t, ft)
	case "frr":
		rcv = startFailFRR(t, ft)
	default:
		t.Fatalf("unknown receiver %q (want xrouter, bird or frr)", name)
	}
	rcv.name = name
	// The receivers' own extra routes (none expected) join the baseline
	// once they run.
	time.Sleep(500 * time.Millisecond)
	base4, base6 = max(base4, fibPrefixes(t, ft.rcv)), max(base6, rt6Routes(t, ft.rcv))

	dsts, _ := sampleDests(o.N4, o.N6, o.Samples)
	pr := newProber(dsts, o.Interval)
	pr.sink(t, ft.a, fbUpDev, viaA)
	pr.sink(t, ft.b, fbUpDev, viaB)

	ca, cb := feedConfigs(o, feed)
	start := time.Now()
	fa := startFeeder(t, ft.a, "feeder-A", ca)
	fb := startFeeder(t, ft.b, "feeder-B", cb)
	estA := fa.waitEvent(t, "established", start, 60*time.Second)
	estB := fb.waitEvent(t, "established", start, 60*time.Second)
	est := estA
	if estB.Before(est) {
		est = estB
	}
	t.Logf("%s/%s: sessions up (A %.1f s, B %.1f s after start)", feed, name, estA.Sub(start).Seconds(), estB.Sub(start).Seconds())

	budget := 60*time.Second + time.Duration(o.N4+o.N6)*time.Millisecond
	var inKernel time.Time
	lastLog := time.Now()
	if !waitFor(budget, func() bool {
		c4, c6 := fibPrefixes(t, ft.rcv)-base4, rt6Routes(t, ft.rcv)-base6
		if c4 >= o.N4 && c6 >= o.N6 {
			inKernel = time.Now()
			return true
		}
		if time.Since(lastLog) > 5*time.Second {
			t.Logf("%s/%s: %.0f s: %d of %d IPv4, %d of %d IPv6 routes in the kernel", feed, name,
				time.Since(est).Seconds(), c4, o.N4, c6, o.N6)
			lastLog = time.Now()
		}
		return false
	}) {
		t.Fatalf("%s/%s: %d of %d IPv4 and %d of %d IPv6 routes in the kernel after %s", feed, name,
			fibPrefixes(t, ft.rcv)-base4, o.N4, rt6Routes(t, ft.rcv)-base6, o.N6, budget)
	}
	da := fa.waitEvent(t, "drained", start, budget)
	db := fb.waitEvent(t, "drained", start, budget)
	loaded := inKernel
	for _, d := range []time.Time{da, db} {
		if d.After(loaded) {
			loaded = d
		}
	}
	res := failResult{Receiver: name, Feed: feed, N4: o.N4, N6: o.N6, Load: loaded.Sub(est), CPULoad: cpuOf(t, rcv.pids)}
	// A session that dropped during the load (the receiver missed its own
	// keepalives, say) is a result too: counted, shown in the table.
	res.Flaps = fa.count("down") + fb.count("down")
	if res.Flaps > 0 {
		t.Logf("%s/%s: WARNING: %d session drops during the load; feeder logs:\n%s\n%s", feed, name, res.Flaps,
			tail(fa.Log.String(), 1000), tail(fb.Log.String(), 1000))
	}
	for _, p := range rcv.pids {
		res.PeakRSS += peakRSS(t, p)
	}
	t.Logf("%s/%s: both tables loaded %.1f s after the first session came up (kernel %.1f s); peak RSS %d MiB, %.1f CPU s",
		feed, name, res.Load.Seconds(), inKernel.Sub(est).Seconds(), res.PeakRSS>>20, res.CPULoad)
	idle := budget
	t.Logf("%s/%s: idle %.1f s later", feed, name, waitIdle(t, rcv.pids, idle).Seconds())
	if prof := os.Getenv("XROUTER_FAILBENCH_PROFILE"); prof != "" && name == "xrouter" {
		path := fmt.Sprintf("%s-%s-heap.pprof", prof, feed)
		if err := fetchProfile(ft.rcv, path, "heap?gc=1"); err != nil {
			t.Errorf("heap profile: %v", err)
		} else {
			t.Logf("%s/%s: heap profile with both tables in %s", feed, name, path)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pr.run(t, ctx, ft.src)
	if !waitFor(30*time.Second, func() bool { return pr.stable(time.Now().Add(-time.Hour), 2*time.Second, viaA) }) {
		t.Fatalf("%s/%s: the sampled prefixes do not all forward via A after the load: %s", feed, name, pr.analyse("load", time.Now().Add(-3*time.Second), time.Now(), viaA))
	}
	if o.Check != nil {
		o.Check(t, ft, rcv, viaA)
	}

	phaseBudget := 60*time.Second + time.Duration(o.N4+o.N6)*600*time.Microsecond
	prof := ""
	if p := os.Getenv("XROUTER_FAILBENCH_PROFILE"); p != "" && rcv.name == "xrouter" {
		prof = fmt.Sprintf("%s-%s", p, feed)
	}
	run := func(name string, want uint8, event func() time.Time) phase {
		var cpu chan error
		if prof != "" {
			// The CPU profile starts just before the event.
			cpu = make(chan error, 1)
			path := fmt.Sprintf("%s-%s-cpu.pprof", prof, name)
			go func() {
				cpu <- fetchProfile(ft.rcv, path, fmt.Sprintf("profile?seconds=%d", benchProfileSeconds))
			}()
			time.Sleep(100 * time.Millisecond)
			defer func() {
				if err := <-cpu; err != nil {
					t.Errorf("%s: CPU profile: %v", name, err)
				}
			}()
		}
		ev := event()
		ok := waitFor(phaseBudget, func() bool { return pr.stable(ev, 2*time.Second, want) })
		ph := pr.analyse(name, ev, time.Now(), want)
		if !ok {
			ph.OK = false
			t.Errorf("%s/%s: %s: the samples did not all move within %s", feed, rcv.name, name, phaseBudget)
		}
		t.Logf("%s/%s: %s", feed, rcv.name, ph)
		res.Phases = append(res.Phases, ph)
		t.Logf("%s/%s: idle %.1f s later", feed, rcv.name, waitIdle(t, rcv.pids, phaseBudget).Seconds())
		if o.Check != nil {
			o.Check(t, ft, rcv, want)
		}
		return ph
	}

	// 1. kill -9 of A's speaker.
	run("kill", viaB, func() time.Time {
		at := time.Now()
		if err := syscall.Kill(fa.pid(), syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 feeder A: %v", err)
		}
		return at
	})
	fa.kill(t)
	// 2. A's speaker back.
	var fa2 *feeder
	run("kill-return", viaA, func() time.Time {
		at := time.Now()
		fa2 = startFeeder(t, ft.a, "feeder-A2", ca)
		return at
	})
	fixSessionUp(&res.Phases[len(res.Phases)-1], fa2)
	fa2.waitEvent(t, "drained", time.Time{}, phaseBudget)

	if o.Cut {
		// 3. A's link cut: the hold timer must notice.
		var cut *tcCut
		run("cut", viaB, func() time.Time {
			pr.setCut(true)
			at := time.Now()
			cut = cutLink(t, ft.a, fbUpDev)
			return at
		})
		// 4. The cut removed.
		var uncutAt time.Time
		run("cut-return", viaA, func() time.Time {
			uncutAt = time.Now()
			cut.remove(t)
			pr.setCut(false)
			return uncutAt
		})
		fixSessionUp(&res.Phases[len(res.Phases)-1], fa2)
	}
	res.CPUTotal = cpuOf(t, rcv.pids)
	return res
}

// fixSessionUp sets a return phase's SessionUp: from its event to the
// feeder's first session after it.
func fixSessionUp(ph *phase, f *feeder) {
	if up := f.event("established", ph.Event); !up.IsZero() {
		ph.SessionUp = up.Sub(ph.Event)
	}
}

// tcCut drops every packet in and out of an interface (tc clsact with a
// drop program on ingress and egress).
type tcCut struct {
	ns  *testbed.Netns
	dev string
}

func cutLink(t *testing.T, ns *testbed.Netns, dev string) *tcCut {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 2), // TC_ACT_SHOT
		asm.Return(),
	}})
	if err != nil {
		t.Fatalf("loading the drop program: %v", err)
	}
	defer prog.Close() // the filters hold it
	ns.Run(t, "tc", "qdisc", "add", "dev", dev, "clsact")
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			if err := netlink.FilterAdd(&netlink.BpfFilter{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: parent,
					Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
				Fd: prog.FD(), Name: "xrnt-cut", DirectAction: true,
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("netns %s: cutting %s: %v", ns.Name(), dev, err)
	}
	return &tcCut{ns: ns, dev: dev}
}

func (c *tcCut) remove(t *testing.T) {
	t.Helper()
	c.ns.Run(t, "tc", "qdisc", "del", "dev", c.dev, "clsact")
}

func startFailXrouter(t *testing.T, ft *failTopo) failReceiver {
	pin := testbed.PinDir(t, prefix)
	t.Cleanup(func() {
		if _, stderr, err := xr("detach", "--pin-path", pin); err != nil {
			t.Logf("cleanup: xrouter detach --pin-path %s: %v: %s", pin, err, strings.TrimSpace(stderr))
		}
	})
	sock := filepath.Join(ft.dir, "gobgp.sock")
	var nb strings.Builder
	for _, n := range []struct {
		addr string
		as   int
	}{{fbA4, fbASA}, {fbB4, fbASB}} {
		fmt.Fprintf(&nb, `    - address: %s
      peer_as: %d
      families: [ipv4-unicast, ipv6-unicast]
      import: all
`, n.addr, n.as)
	}
	conf := fmt.Sprintf(`dataplane:
  interfaces: [%s, %s, %s]
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
  grpc_address: unix://%s
  prefix_lists:
    - name: all
      entries: [{prefix: 0.0.0.0/0, le: 32}, {prefix: "::/0", le: 128}]
  neighbors:
%s%s%s`, fbRADev, fbRBDev, fbRSDev, pin, fbRecvAS, fbRS4, sock, nb.String(), pprofSection("XROUTER_FAILBENCH_PROFILE"), os.Getenv("XROUTER_FAILBENCH_XROUTER"))
	d := startDaemon(t, ft.rcv, writeFile(t, "xrouter.yaml", conf))
	return failReceiver{pids: []int{d.Cmd.Process.Pid}, grpc: "unix://" + sock, d: d}
}

// pprofSection is xrouter's config section that serves pprof on
// benchPprof when the environment variable env (a profile's file name
// prefix) is set, else nothing.
func pprofSection(env string) string {
	if os.Getenv(env) == "" {
		return ""
	}
	return "debug:\n  pprof: " + benchPprof + "\n"
}

func startFailBIRD(t *testing.T, ft *failTopo) failReceiver {
	b := startBIRD(t, ft.rcv, fmt.Sprintf(`router id %s;
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol kernel { ipv6 { import none; export all; }; }
template bgp up {
	local as %d;
	connect retry time 1;
	error wait time 1, 10;
	hold time 90;
	ipv4 { import all; export none; };
	ipv6 { import all; export none; };
}
protocol bgp a from up { neighbor %s as %d; }
protocol bgp b from up { neighbor %s as %d; }
`, fbRS4, fbRecvAS, fbA4, fbASA, fbB4, fbASB))
	return failReceiver{pids: []int{b.pid()}}
}

func startFailFRR(t *testing.T, ft *failTopo) failReceiver {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname xrnt-bgpd\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", fbRecvAS, fbRS4)
	peers := []struct {
		addr string
		as   int
	}{{fbA4, fbASA}, {fbB4, fbASB}}
	for _, p := range peers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", p.addr, p.as, p.addr)
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", af)
		for _, p := range peers {
			fmt.Fprintf(&b, "  neighbor %s activate\n  neighbor %s route-map deny-all out\n", p.addr, p.addr)
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("!\nroute-map deny-all deny 10\n")
	return failReceiver{pids: startZebraBgpd(t, ft.rcv, b.String()).pids}
}
