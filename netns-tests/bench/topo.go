// Package bench is xrouter's forwarding benchmark (`make bench`): it builds
// source ⇄ router ⇄ sink in network namespaces, generates traffic with a
// live-frames XDP generator on the source, and measures, round by round and
// on one CPU, what arrives at the sink with the router in each mode: kernel
// forwarding, the real `xrouter run` daemon (with and without its next-hop
// cache), a bare devmap redirect and a bare drop. The smoke test in
// netns-tests runs the same code in a quick mode.
package bench

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/loadgen"
	"github.com/xrouter/xrouter/internal/testbed"
)

// nsPrefix names the namespaces and pin directories the benchmark creates.
const nsPrefix = "xrbn-"

// ecmpLinks is how many extra router ⇄ sink links carry the ECMP route's
// other next hops.
const ecmpLinks = 3

// Addresses of the topology beyond testbed.Line's.
var (
	// oneRoute4/6 is the single route of the one-route scenarios.
	oneRoute4 = netip.MustParsePrefix("198.18.0.0/16")
	oneRoute6 = netip.MustParsePrefix("2001:db8:100::/48")
	// ecmpRoute is the 4-way ECMP route.
	ecmpRoute = netip.MustParsePrefix("198.19.0.0/16")
	// tableNH are the static next hops on the sink link that the table's
	// routes use, in turn.
	tableNH = []string{"10.201.2.10", "10.201.2.11", "10.201.2.12", "10.201.2.13"}
	nh6     = "fd00:201:2::10"
)

// sinkPort is a sink program on one of the sink namespace's interfaces.
type sinkPort struct {
	dev  string
	sink *loadgen.Sink
}

// topo is the benchmark topology: testbed.Line plus ecmpLinks more links
// from the router to the sink namespace (Line's Dst), with a dropping sink on
// every sink-side interface.
type topo struct {
	*testbed.Line
	ecmpR, ecmpD []testbed.Link // router and sink ends of the extra links
	sinks        []*sinkPort    // [0] on LineDstDev, then one per extra link
	pin          string
	dir          string // config files
}

func buildTopo(t testing.TB) *topo {
	t.Helper()
	tp := &topo{Line: testbed.NewLine(t, nsPrefix), pin: testbed.PinDir(t, nsPrefix), dir: t.TempDir()}
	r, d := tp.Router, tp.Dst
	for i := 1; i <= ecmpLinks; i++ {
		rl, dl := testbed.Veth(t, r, fmt.Sprintf("r-e%d", i), d, fmt.Sprintf("dst-e%d", i))
		r.AddAddr(t, rl.Name, netip.MustParsePrefix(fmt.Sprintf("10.201.%d.1/24", 2+i)))
		d.AddAddr(t, dl.Name, netip.MustParsePrefix(fmt.Sprintf("10.201.%d.2/24", 2+i)))
		tp.ecmpR, tp.ecmpD = append(tp.ecmpR, rl), append(tp.ecmpD, dl)
	}
	// The extra links were created after NewLine turned forwarding on for
	// "all"; "all" also set "default", so they forward too.

	// ECMP flows are told apart by their ports (hash policy 1: L4 hash), in
	// the kernel and in bpf_fib_lookup alike.
	r.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1")
	r.Sysctl(t, "net.ipv6.fib_multipath_hash_policy", "1")

	// Static neighbours, so that nothing depends on ARP/ND during a run.
	r.AddNeigh(t, testbed.LineRouterSrcDev, tp.SrcPort.Addr4.Addr(), tp.SrcPort.MAC)
	r.AddNeigh(t, testbed.LineRouterSrcDev, tp.SrcPort.Addr6.Addr(), tp.SrcPort.MAC)
	r.AddNeigh(t, testbed.LineRouterDstDev, tp.DstPort.Addr4.Addr(), tp.DstPort.MAC)
	for _, nh := range tableNH {
		r.AddNeigh(t, testbed.LineRouterDstDev, netip.MustParseAddr(nh), tp.DstPort.MAC)
	}
	r.AddNeigh(t, testbed.LineRouterDstDev, netip.MustParseAddr(nh6), tp.DstPort.MAC)
	for i := range tp.ecmpR {
		r.AddNeigh(t, tp.ecmpR[i].Name, netip.MustParseAddr(fmt.Sprintf("10.201.%d.2", 3+i)), tp.ecmpD[i].MAC)
	}

	r.IP(t, "route", "add", oneRoute4.String(), "via", tableNH[0])
	// The FlowSpec attack's spoofed sources route back to the source, as
	// at an edge router (reverse-path filtering would pass them).
	r.IP(t, "route", "add", fsSpoofBack.String(), "via", tp.SrcPort.Addr4.Addr().String())
	r.IP(t, "-6", "route", "add", oneRoute6.String(), "via", nh6)
	args := []string{"route", "add", ecmpRoute.String(), "nexthop", "via", tableNH[1], "dev", testbed.LineRouterDstDev}
	for i := range tp.ecmpR {
		args = append(args, "nexthop", "via", fmt.Sprintf("10.201.%d.2", 3+i), "dev", tp.ecmpR[i].Name)
	}
	r.IP(t, args...)

	devs := []testbed.Link{tp.DstPort.Link}
	devs = append(devs, tp.ecmpD...)
	for _, l := range devs {
		sp := &sinkPort{dev: l.Name, sink: loadgen.SinkOn(t, d, l.Name, 63, true)}
		tp.sinks = append(tp.sinks, sp)
	}
	return tp
}

// sinkCounts reads every sink: frames seen and frames with the forwarded
// TTL, summed, and frames seen per sink.
func (tp *topo) sinkCounts() (ip, ttlOK uint64, per []uint64, err error) {
	for _, s := range tp.sinks {
		c, err := s.sink.Counts()
		if err != nil {
			return 0, 0, nil, fmt.Errorf("sink on %s: %w", s.dev, err)
		}
		ip += c.IP
		ttlOK += c.TTLOK
		per = append(per, c.IP)
	}
	return ip, ttlOK, per, nil
}

// sinkPerCPU sums the sinks' frame counters per CPU.
func (tp *topo) sinkPerCPU() ([]uint64, error) {
	var sum []uint64
	for _, s := range tp.sinks {
		per, err := loadgen.PerCPU(s.sink.Program(), 0)
		if err != nil {
			return nil, fmt.Errorf("sink on %s: %w", s.dev, err)
		}
		sum = addVec(sum, per)
	}
	return sum, nil
}

func addVec(a, b []uint64) []uint64 {
	if len(a) < len(b) {
		a = append(a, make([]uint64, len(b)-len(a))...)
	}
	for i, v := range b {
		a[i] += v
	}
	return a
}

// setGRO turns GRO of a router interface on or off (ETHTOOL_SGRO). On a
// veth without XDP, GRO is what enables the NAPI ring that frames sent with
// XDP_TX from the peer land in; without it they are dropped.
func (tp *topo) setGRO(dev string, on bool) error {
	return tp.Router.SetEthtool(dev, testbed.EthtoolSGRO, on)
}

// genThread is an OS thread inside the source namespace, pinned to one CPU,
// on which every BPF_PROG_RUN of the generator happens: the generator's
// ingress_ifindex is resolved in its namespace, and the veth NAPI polls that
// its frames trigger run in softirq on the same CPU.
type genThread struct {
	jobs chan func()
	tid  int // for loadgen.Interrupt
}

func startGenThread(ns *testbed.Netns, cpu int) (*genThread, error) {
	g := &genThread{jobs: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		// Enter never unlocks the thread: it leaves the scheduler's pool
		// with this goroutine, since it stays in the source namespace.
		if err := ns.Enter(); err != nil {
			ready <- err
			return
		}
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			ready <- fmt.Errorf("pinning the generator thread to CPU %d: %w", cpu, err)
			return
		}
		g.tid = unix.Gettid()
		ready <- nil
		for job := range g.jobs {
			job()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return g, nil
}

// keepOthersOff moves every thread of this process except the generator's
// off cpu, so that the benchmark's own work (reading counters, starting
// the daemon) does not share the measured CPU; threads and child processes
// created later inherit the mask of the thread that creates them. The
// returned function gives the threads every CPU back.
func (g *genThread) keepOthersOff(cpu int) (restore func(), err error) {
	var others, all unix.CPUSet
	for i := 0; i < runtime.NumCPU(); i++ {
		all.Set(i)
		if i != cpu {
			others.Set(i)
		}
	}
	if err := setAffinityAll(&others, g.tid); err != nil {
		return nil, err
	}
	// Threads created meanwhile inherited the narrower mask: give every
	// thread all CPUs back, again by listing them.
	return func() { _ = setAffinityAll(&all, 0) }, nil
}

// setAffinityAll sets the CPU mask of every thread of this process except
// skip. Threads that exit meanwhile are not an error.
func setAffinityAll(set *unix.CPUSet, skip int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range tasks {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err != nil || tid == skip {
			continue
		}
		_ = unix.SchedSetaffinity(tid, set)
	}
	return nil
}

func (g *genThread) do(fn func() error) error {
	errc := make(chan error, 1)
	g.jobs <- func() { errc <- fn() }
	return <-errc
}

func (g *genThread) stop() { close(g.jobs) }

// machine describes the host for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = fmt.Sprintf("%s %s %s %s", unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
			unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:]))
	}
	return fmt.Sprintf("%s, %d cores; %s", model, runtime.NumCPU(), kernel)
}

// lookPath fails early with a clear message for tools the benchmark runs.
func lookPath(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("benchmark needs %s in PATH: %w", tool, err)
		}
	}
	return nil
}
