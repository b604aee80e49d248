package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/loadgen"
	"github.com/xrouter/xrouter/internal/testbed"
)

// Options says what to run.
type Options struct {
	// XR is the xrouter binary that runs on the router (`xrouter run`).
	XR string
	// Rounds is how many times every (scenario, mode) is measured; modes
	// are interleaved within each round.
	Rounds int
	// Duration of one measurement, and of the warm-up before it.
	Duration, Warmup time.Duration
	// Table is the full table's size; Sweep are the smaller sizes the table
	// grows through (Mpps against table size), in increasing order.
	Table int
	Sweep []int
	// Active is the number of active destinations of the table scenarios.
	Active int
	// Quick leaves out the 1500-byte scenarios (smoke mode).
	Quick bool
	// CPU is the CPU the generator thread, and with it the router's and the
	// sink's NAPI processing, runs on.
	CPU int
	// Progress receives one line per measurement.
	Progress io.Writer
	// Baseline, if set, is a second xrouter binary (built from another
	// commit) measured as one more mode, ModeBaseline, with the xrouter
	// mode's config (its own pin directory) in every scenario xrouter runs
	// in; BaselineName labels it in the report.
	Baseline, BaselineName string
	// FlowSpec are the rule counts of the FlowSpec attack-drop scenarios
	// (fs-drop-N: xrouter's XDP classifier against nftables in the
	// forward hook); FlowSpecFwd the rule count of the forwarding
	// scenario with rules the traffic does not match (fs-fwd-N, xrouter
	// without and with them); 0 or empty: none.
	FlowSpec    []int
	FlowSpecFwd int
	// NoForwarding leaves out the forwarding scenarios: only the FlowSpec
	// ones run.
	NoForwarding bool
}

// DefaultOptions is `make bench`: 5 rounds, 0.7 s per measurement, 1M
// routes.
func DefaultOptions(xr string) Options {
	return Options{
		XR: xr, Rounds: 5, Duration: 700 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Table: 1_000_000, Sweep: []int{10_000, 100_000}, Active: 20_000,
		CPU: runtime.NumCPU() - 1, Progress: os.Stdout,
		FlowSpec: []int{1, 100, 10_000}, FlowSpecFwd: 100,
	}
}

// The router's modes.
const (
	ModeKernel   = "kernel"
	ModeXrouter  = "xrouter"
	ModeNoCache  = "xrouter-nocache"
	ModeRedirect = "redirect"
	ModeDrop     = "drop"
	// ModeBaseline is Options.Baseline, the xrouter mode's config run by
	// another build.
	ModeBaseline = "baseline"
)

// DefaultBaselineName labels the baseline mode when Options.BaselineName is
// empty.
const DefaultBaselineName = "xrouter (baseline)"

// runModes is every mode a run measures, in report order: AllModes, with
// the baseline right after xrouter when there is one.
func runModes(o Options) []string {
	if o.Baseline == "" {
		return AllModes
	}
	var out []string
	for _, m := range AllModes {
		out = append(out, m)
		if m == ModeXrouter {
			out = append(out, ModeBaseline)
		}
	}
	return out
}

// AllModes in report order.
var AllModes = []string{ModeKernel, ModeXrouter, ModeNoCache, ModeRedirect, ModeDrop}

// lookupModes are the modes whose cost depends on the routing table.
var lookupModes = []string{ModeKernel, ModeXrouter, ModeNoCache}

var modeLabel = map[string]string{
	ModeKernel:   "kernel forwarding",
	ModeXrouter:  "xrouter",
	ModeNoCache:  "xrouter, cache off",
	ModeRedirect: "bare redirect",
	ModeDrop:     "bare drop",
}

// Scenario is one kind of traffic against one routing table.
type Scenario struct {
	Name     string
	Desc     string
	Routes   int // table prefixes installed besides the fixed routes (0: none)
	FrameLen int
	traffic  loadgen.Traffic
	// SizeSweep marks the scenarios of the Mpps-against-table-size plot;
	// Size is the table size it stands for.
	SizeSweep bool
	Size      int
	// Rules is the FlowSpec rule count the scenario runs under (0: none);
	// Drop marks an attack scenario, whose frames the router drops: they
	// are counted at the router (xrouter's flowspec_drop, the nftables
	// rule's counter), and the sinks should see none.
	Rules int
	Drop  bool
	modes []string
}

// Sample is one measurement. Mpps is measured over the window of Seconds;
// the counts are exact totals over the whole generator run (warm-up and
// window), read while no traffic flowed, for the cross-checks.
type Sample struct {
	Round     int
	Mpps      float64
	Seconds   float64
	Generated uint64 // frames the generator wrote
	Slow      uint64 // ... of which TTL 1
	Counted   uint64 // frames counted: at the sinks, or at the router's ingress for drop
	TTLOK     uint64 // sink frames with the forwarded TTL
	PerSink   []uint64
	// XRForwarded and XRTTL are xrouter's own counters (forwarded,
	// ttl_exceeded) over the measurement, read from its pinned stats map.
	XRForwarded, XRTTL uint64
	HasXR              bool
	// CPUShare is the share of the counted frames processed on Options.CPU.
	CPUShare float64
}

// Results holds every sample: Samples[scenario][mode][round], nil when
// the mode was not measured in that scenario.
type Results struct {
	Opts      Options
	Scenarios []*Scenario
	Samples   map[string]map[string][]*Sample
	Skipped   map[string]string // mode -> why it was skipped
	RouteRate []string          // route installation notes
	Machine   string
	// DaemonConfig is the xrouter mode's config file (pin path shortened);
	// BaselineConfig the baseline mode's, if there is one.
	DaemonConfig, BaselineConfig string
	// LoadAvg is /proc/loadavg's first three fields at the start and the
	// end: how busy the machine was besides the benchmark.
	LoadAvg [2]string
	// FlowSpec describes the rule set of each FlowSpec phase, by rule
	// count.
	FlowSpec map[int]FlowSpecSet
	Started  time.Time
	Elapsed  time.Duration
}

// runner holds the live state of one benchmark run.
type runner struct {
	t     testing.TB
	o     Options
	tp    *topo
	gen   *loadgen.Generator
	th    *genThread
	res   *Results
	table []netip.Prefix
	// installed is how many table prefixes are in the router's FIB.
	installed int
	// basePin is the baseline daemon's pin directory: its own, since an
	// older build's pinned maps may not fit today's object.
	basePin string
	// fs is the FlowSpec rule set of the phase under way (nil: none).
	fs *fsSet
}

// Run runs the benchmark. Everything it creates is removed when t ends;
// cancelling ctx (Ctrl-C) stops the measurement under way and returns.
func Run(ctx context.Context, t testing.TB, o Options) (*Results, error) {
	t.Helper()
	testbed.RequireRoot(t)
	if err := lookPath("nsenter", "ip"); err != nil {
		return nil, err
	}
	if o.CPU < 0 || o.CPU >= runtime.NumCPU() {
		return nil, fmt.Errorf("CPU %d: this machine has CPUs 0..%d", o.CPU, runtime.NumCPU()-1)
	}
	r := &runner{t: t, o: o, res: &Results{
		Opts: o, Samples: map[string]map[string][]*Sample{}, Skipped: map[string]string{},
		Machine: machine(), Started: time.Now().UTC(),
	}}
	r.res.LoadAvg[0] = loadAvg()
	r.progress("building topology (source ⇄ router ⇄ sink, %d ECMP links) and a %d-prefix table", ecmpLinks+1, o.Table)
	r.tp = buildTopo(t)
	if o.Baseline != "" {
		if r.o.BaselineName == "" {
			r.o.BaselineName = DefaultBaselineName
			r.res.Opts.BaselineName = DefaultBaselineName
		}
		r.basePin = testbed.PinDir(t, nsPrefix)
	}
	r.table = makeTable(o.Table)

	var err error
	if r.gen, err = loadgen.LoadGenerator(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { r.gen.Close() })
	if r.th, err = startGenThread(r.tp.Src, o.CPU); err != nil {
		return nil, err
	}
	t.Cleanup(r.th.stop)
	if runtime.NumCPU() > 1 {
		restore, err := r.th.keepOthersOff(o.CPU)
		if err != nil {
			return nil, fmt.Errorf("moving the benchmark's other threads off CPU %d: %w", o.CPU, err)
		}
		t.Cleanup(restore)
	}

	why, err := r.checkModes()
	if err != nil {
		return nil, err
	}
	if path, err := r.daemonConfig(ModeXrouter); err == nil {
		b, _ := os.ReadFile(path)
		r.res.DaemonConfig = strings.ReplaceAll(string(b), r.tp.pin, filepath.Join(testbed.BPFFS, nsPrefix+"RANDOM"))
	}
	if path, err := r.daemonConfig(ModeBaseline); err == nil && r.o.Baseline != "" {
		b, _ := os.ReadFile(path)
		r.res.BaselineConfig = strings.ReplaceAll(string(b), r.basePin, filepath.Join(testbed.BPFFS, nsPrefix+"RANDOM2"))
	}
	if why != "" {
		r.res.Skipped[ModeNoCache] = why
		r.progress("mode %s skipped: %s", ModeNoCache, why)
	}

	r.res.Scenarios = r.scenarios()
	r.res.FlowSpec = map[int]FlowSpecSet{}
	// Phases: runs of scenarios with the same table size (the table only
	// grows) and FlowSpec rule count, in scenario order.
	scs := r.res.Scenarios
	for len(scs) > 0 {
		n := 1
		for n < len(scs) && scs[n].Routes == scs[0].Routes && scs[n].Rules == scs[0].Rules {
			n++
		}
		if err := r.growTable(scs[0].Routes); err != nil {
			return nil, err
		}
		r.fs = nil
		if k := scs[0].Rules; k > 0 {
			if r.fs, err = makeFSRules(k); err != nil {
				return nil, err
			}
			r.res.FlowSpec[k] = FlowSpecSet{Rules: k, AttackPos: r.fs.attackPos, VictimRules: r.fs.victimRules}
			r.progress("FlowSpec phase: %d rules; the attack's rule is #%d in FlowSpec order, %d rules name the victim", k, r.fs.attackPos, r.fs.victimRules)
		}
		if err := r.phase(ctx, scs[:n]); err != nil {
			return nil, err
		}
		scs = scs[n:]
	}
	r.res.Elapsed = time.Since(r.res.Started)
	r.res.LoadAvg[1] = loadAvg()
	return r.res, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func (r *runner) progress(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// scenarios lists the scenarios in phase order (table size ascending).
func (r *runner) scenarios() []*Scenario {
	tp := r.tp
	base4 := loadgen.Traffic{
		DstMAC: tp.RouterSrc.MAC, SrcMAC: tp.SrcPort.MAC,
		Src: tp.SrcPort.Addr4.Addr(), Flows: 256, SportBase: 10000, Dport: 9, TTL: 64,
	}
	base6 := base4
	base6.Src = tp.SrcPort.Addr6.Addr()
	one4 := []netip.Addr{oneRoute4.Addr().Next()}
	one6 := []netip.Addr{oneRoute6.Addr().Next()}

	with := func(b loadgen.Traffic, f func(*loadgen.Traffic)) loadgen.Traffic { f(&b); return b }
	var out []*Scenario
	if r.o.NoForwarding {
		return r.fsScenarios(base4)
	}
	add := func(sc *Scenario) {
		if sc.modes == nil {
			sc.modes = AllModes
		}
		// The baseline runs wherever today's xrouter does.
		if r.o.Baseline != "" && slices.Contains(sc.modes, ModeXrouter) {
			sc.modes = slices.Concat(sc.modes, []string{ModeBaseline})
		}
		out = append(out, sc)
	}
	add(&Scenario{Name: "v4-64", Desc: "IPv4, one route, 1 destination, 256 flows", FrameLen: 64,
		traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = one4 })})
	if !r.o.Quick {
		add(&Scenario{Name: "v4-1500", Desc: "IPv4, one route, 1 destination, 256 flows", FrameLen: 1500,
			traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = one4 })})
	}
	add(&Scenario{Name: "v6-64", Desc: "IPv6, one route, 1 destination, 256 flows", FrameLen: 64,
		traffic: with(base6, func(t *loadgen.Traffic) { t.Dsts = one6 })})
	if !r.o.Quick {
		add(&Scenario{Name: "v6-1500", Desc: "IPv6, one route, 1 destination, 256 flows", FrameLen: 1500,
			traffic: with(base6, func(t *loadgen.Traffic) { t.Dsts = one6 })})
	}
	add(&Scenario{Name: "ecmp4", Desc: "IPv4, one route with 4 ECMP next hops, 1 destination, 1024 flows", FrameLen: 64,
		traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = []netip.Addr{ecmpRoute.Addr().Next()}; t.Flows = 1024 })})
	add(&Scenario{Name: "slow10", Desc: "IPv4, one route, every 10th frame TTL 1 (slow path)", FrameLen: 64,
		traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = one4; t.SlowEvery = 10 })})
	add(&Scenario{Name: "size-1", Desc: fmt.Sprintf("IPv4, one route, %d random destinations in it", r.o.Active), FrameLen: 64,
		SizeSweep: true, Size: 1,
		traffic: with(base4, func(t *loadgen.Traffic) {
			t.Dsts = activeDsts([]netip.Prefix{oneRoute4}, r.o.Active, 1)
			t.Random = true
		})})
	// The FlowSpec scenarios run while the table is empty.
	out = append(out, r.fsScenarios(base4)...)
	for _, n := range r.o.Sweep {
		add(&Scenario{Name: "size-" + count(n), Desc: fmt.Sprintf("IPv4, %s routes, %d active destinations", count(n), r.o.Active),
			FrameLen: 64, Routes: n, SizeSweep: true, Size: n, modes: lookupModes,
			traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = activeDsts(r.table[:n], r.o.Active, 2); t.Random = true })})
	}
	n := r.o.Table
	add(&Scenario{Name: "full-" + count(r.o.Active), Desc: fmt.Sprintf("IPv4, %s routes, %d active destinations", count(n), r.o.Active),
		FrameLen: 64, Routes: n, SizeSweep: true, Size: n,
		traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = activeDsts(r.table, r.o.Active, 3); t.Random = true })})
	add(&Scenario{Name: "full-random", Desc: fmt.Sprintf("IPv4, %s routes, uniformly random destinations (one per prefix, picked at random)", count(n)),
		FrameLen: 64, Routes: n,
		traffic: with(base4, func(t *loadgen.Traffic) { t.Dsts = onePerPrefix(r.table, 4); t.Random = true })})
	return out
}

// fsScenarios are the FlowSpec scenarios: the attack under every rule
// count, and legitimate traffic (to the attacked host, on a port no rule
// names) forwarded with FlowSpecFwd rules and without.
func (r *runner) fsScenarios(base4 loadgen.Traffic) []*Scenario {
	var out []*Scenario
	counts := slices.Clone(r.o.FlowSpec)
	if r.o.FlowSpecFwd > 0 && !slices.Contains(counts, r.o.FlowSpecFwd) {
		counts = append(counts, r.o.FlowSpecFwd)
	}
	slices.Sort(counts)
	for _, n := range counts {
		if slices.Contains(r.o.FlowSpec, n) {
			t := base4
			t.Src, t.SrcBits = fsSpoof, fsSpoofBits
			t.Dsts, t.Dport = []netip.Addr{fsVictim}, fsAttackPort
			out = append(out, &Scenario{Name: "fs-drop-" + count(n), FrameLen: 64, Rules: n, Drop: true, modes: fsDropModes,
				Desc: fmt.Sprintf("UDP flood to %s port %d from spoofed sources (%s/%d), %s FlowSpec rules, the flood matching one (drop)",
					fsVictim, fsAttackPort, fsSpoof, 32-fsSpoofBits, count(n)),
				traffic: t})
		}
		if n == r.o.FlowSpecFwd {
			// To a host no rule names (the classifier's lookup misses),
			// and to the attacked host (every rule naming it is tried).
			t := base4
			t.Dsts, t.Dport = []netip.Addr{oneRoute4.Addr().Next()}, fsLegitPort
			out = append(out, &Scenario{Name: "fs-fwd-" + count(n), FrameLen: 64, Rules: n, modes: []string{ModeXrouter, ModeFSXrouter},
				Desc: fmt.Sprintf("IPv4 forwarded to %s port %d, 256 flows, with 0 and with %s FlowSpec rules, none naming its destination",
					t.Dsts[0], fsLegitPort, count(n)),
				traffic: t})
			t.Dsts = []netip.Addr{fsVictim}
			out = append(out, &Scenario{Name: "fs-fwd-victim-" + count(n), FrameLen: 64, Rules: n, modes: []string{ModeXrouter, ModeFSXrouter},
				Desc: fmt.Sprintf("IPv4 forwarded to the attacked host %s on port %d, 256 flows, with 0 and with %s FlowSpec rules, %d of them naming its address (tried in turn, none matching)",
					fsVictim, fsLegitPort, count(n), min(n, 1+len(fsVictimRules))),
				traffic: t})
		}
	}
	return out
}

// count formats a table size: 1, 500, 10k, 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func (r *runner) growTable(size int) error {
	if size <= r.installed {
		return nil
	}
	r.progress("installing routes %d → %d with ip -batch ...", r.installed, size)
	d, err := r.tp.installRoutes(r.table, r.installed, size)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d → %d routes: %.1f s (%.0fk routes/s)", r.installed, size, d.Seconds(), float64(size-r.installed)/d.Seconds()/1000)
	r.res.RouteRate = append(r.res.RouteRate, note)
	r.progress("installed %s", note)
	r.installed = size
	return nil
}

// phase measures scenarios (all against the same table) for every round,
// the modes interleaved: each round runs every mode once, in an order
// rotated by one per round, and every scenario inside each mode.
func (r *runner) phase(ctx context.Context, scs []*Scenario) error {
	modes := map[string]bool{}
	for _, sc := range scs {
		for _, m := range sc.modes {
			modes[m] = true
		}
	}
	var order []string
	for _, m := range slices.Concat(runModes(r.o), FlowSpecModes, []string{ModeDrop}) {
		if modes[m] && r.res.Skipped[m] == "" && !slices.Contains(order, m) {
			order = append(order, m)
		}
	}
	for round := 0; round < r.o.Rounds; round++ {
		for i := range order {
			m := order[(i+round)%len(order)]
			if err := r.runMode(ctx, m, round, scs); err != nil {
				return err
			}
		}
	}
	return nil
}

// active is a router mode set up for measuring.
type active struct {
	name  string
	stop  func() error
	count func() (uint64, []uint64, error) // frames counted, and per CPU
	// drop counts the frames the router dropped, for the attack
	// scenarios (Scenario.Drop).
	drop func() (uint64, []uint64, error)
	pin  string // xrouter's pin directory, if it runs
}

func (r *runner) runMode(ctx context.Context, mode string, round int, scs []*Scenario) error {
	a, err := r.startMode(mode)
	if err != nil {
		return fmt.Errorf("mode %s: %w", mode, err)
	}
	// Let a freshly started daemon finish its start-up work (interface
	// scan, sysctls, first resync) before the first measurement.
	time.Sleep(settle)
	var merr error
	for _, sc := range scs {
		if !slices.Contains(sc.modes, mode) {
			continue
		}
		var s *Sample
		for attempt := 1; ; attempt++ {
			s, merr = r.measure(ctx, sc, a)
			if !errors.Is(merr, errGenStopped) || attempt == 3 {
				break
			}
			r.progress("[round %d/%d] %s %s: %v; measuring again", round+1, r.o.Rounds, sc.Name, mode, merr)
		}
		if merr != nil {
			merr = fmt.Errorf("round %d, %s, mode %s: %w", round+1, sc.Name, mode, merr)
			break
		}
		s.Round = round
		r.record(sc, mode, s)
		line := fmt.Sprintf("[round %d/%d] %s %s: %.2f Mpps", round+1, r.o.Rounds, sc.Name, mode, s.Mpps)
		if sc.Drop {
			line += fmt.Sprintf(" dropped (generated %d, dropped %d, sink %d)", s.Generated, s.Counted, sum(s.PerSink))
		} else if s.HasXR {
			line += fmt.Sprintf(" (sink %d, xrouter forwarded %d", s.Counted, s.XRForwarded)
			if s.Slow > 0 {
				line += fmt.Sprintf(", ttl_exceeded %d of %d TTL-1 frames", s.XRTTL, s.Slow)
			}
			line += ")"
		}
		if s.CPUShare < 0.99 {
			line += fmt.Sprintf(" WARNING: only %.1f%% counted on CPU %d", 100*s.CPUShare, r.o.CPU)
		}
		r.progress("%s", line)
	}
	if err := a.stop(); err != nil && merr == nil {
		merr = fmt.Errorf("stopping mode %s: %w", mode, err)
	}
	return merr
}

func (r *runner) record(sc *Scenario, mode string, s *Sample) {
	byMode := r.res.Samples[sc.Name]
	if byMode == nil {
		byMode = map[string][]*Sample{}
		r.res.Samples[sc.Name] = byMode
	}
	if byMode[mode] == nil {
		byMode[mode] = make([]*Sample, r.o.Rounds)
	}
	byMode[mode][s.Round] = s
}

// countAtSinks is the frames the sinks saw, summed, and per CPU.
func (r *runner) countAtSinks() (uint64, []uint64, error) {
	ip, _, _, err := r.tp.sinkCounts()
	if err != nil {
		return 0, nil, err
	}
	per, err := r.tp.sinkPerCPU()
	return ip, per, err
}

func (r *runner) startMode(mode string) (*active, error) {
	tp := r.tp
	if on, err := tp.Router.XDPLinks(); err != nil || len(on) > 0 {
		return nil, fmt.Errorf("router interfaces still have XDP from the previous mode: %v %v", on, err)
	}
	a := &active{name: mode, stop: func() error { return nil }, count: r.countAtSinks}
	a.drop = func() (uint64, []uint64, error) { return 0, nil, fmt.Errorf("mode %s counts no drops", mode) }
	switch mode {
	case ModeNftLinear, ModeNftSet:
		if r.fs == nil {
			return nil, fmt.Errorf("mode %s outside a FlowSpec phase", mode)
		}
		if err := tp.setGRO(testbed.LineRouterSrcDev, true); err != nil {
			return nil, err
		}
		if err := tp.installNft(r.fs, mode == ModeNftSet); err != nil {
			_ = tp.setGRO(testbed.LineRouterSrcDev, false)
			return nil, fmt.Errorf("installing %d nftables rules: %w", len(r.fs.rules), err)
		}
		a.stop = func() error {
			err := tp.removeNft()
			return errors.Join(err, tp.setGRO(testbed.LineRouterSrcDev, false))
		}
		a.drop = tp.nftAttackCount
	case ModeKernel:
		// Frames sent with XDP_TX into the router's ingress veth are only
		// received when that veth has NAPI on: XDP attached, or GRO.
		if err := tp.setGRO(testbed.LineRouterSrcDev, true); err != nil {
			return nil, err
		}
		a.stop = func() error { return tp.setGRO(testbed.LineRouterSrcDev, false) }
	case ModeXrouter, ModeNoCache, ModeBaseline, ModeFSXrouter:
		if mode == ModeFSXrouter && r.fs == nil {
			return nil, fmt.Errorf("mode %s outside a FlowSpec phase", mode)
		}
		d, err := r.startDaemon(mode)
		if err != nil {
			return nil, err
		}
		a.stop, a.pin = d.Stop, tp.pin
		if mode == ModeBaseline {
			a.pin = r.basePin
		}
		pin := a.pin
		a.drop = func() (uint64, []uint64, error) {
			per, err := loadgen.PinnedPerCPU(filepath.Join(pin, dataplane.StatsMapName), uint32(dataplane.FlowspecDrop))
			return sum(per), per, err
		}
	case ModeRedirect, ModeDrop:
		var b *loadgen.Bare
		err := tp.Router.Do(func() error {
			var err error
			if mode == ModeRedirect {
				b, err = loadgen.AttachRedirect(tp.RouterSrc.Index, tp.RouterDst.Index, tp.DstPort.MAC, tp.RouterDst.MAC)
			} else {
				b, err = loadgen.AttachDrop(tp.RouterSrc.Index)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		a.stop = b.Close
		if mode == ModeDrop {
			a.count = func() (uint64, []uint64, error) {
				per, err := b.Seen()
				return sum(per), per, err
			}
			a.drop = a.count // what it drops is what it saw
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	return a, nil
}

// daemonConfig writes the router's config file for a daemon mode: the
// baseline's is the xrouter mode's with its own pin directory.
func (r *runner) daemonConfig(mode string) (string, error) {
	tp := r.tp
	ifs := []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev}
	for _, l := range tp.ecmpR {
		ifs = append(ifs, l.Name)
	}
	var b strings.Builder
	b.WriteString("dataplane:\n")
	fmt.Fprintf(&b, "  interfaces: [%s]\n", strings.Join(ifs, ", "))
	b.WriteString("  mode: native\n")
	pin, name := tp.pin, "xrouter.yaml"
	if mode == ModeBaseline {
		pin, name = r.basePin, "xrouter-baseline.yaml"
	}
	fmt.Fprintf(&b, "  pin_path: %s\n", pin)
	b.WriteString("  detach_on_exit: true\n")
	b.WriteString("  manage_forwarding: true\n")
	if mode == ModeNoCache {
		b.WriteString("  cache:\n    enabled: false\n")
		name = "xrouter-nocache.yaml"
	}
	b.WriteString("api:\n  socket: \"\"\n")
	b.WriteString("log:\n  level: info\n")
	if mode == ModeFSXrouter && r.fs != nil {
		b.WriteString(r.fs.yaml())
		name = "xrouter-fs.yaml"
	}
	path := filepath.Join(tp.dir, name)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// binary is the xrouter binary a daemon mode runs.
func (r *runner) binary(mode string) string {
	if mode == ModeBaseline {
		return r.o.Baseline
	}
	return r.o.XR
}

// checkConfig runs `xrouter config check -c FILE` in the router's
// namespace (it checks that the interfaces exist) and returns its output.
func (r *runner) checkConfig(mode string) (string, error) {
	path, err := r.daemonConfig(mode)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("nsenter", "--net="+r.tp.Router.Path(), r.binary(mode), "config", "check", "-c", path).CombinedOutput()
	return strings.ReplaceAll(strings.TrimSpace(string(out)), path, "FILE"), err
}

// checkModes checks the daemon's configs before anything runs. The
// default one must pass; the cache-off one needs dataplane.cache.enabled,
// which older builds reject: then that mode is skipped, and why is
// returned. The baseline's must pass too.
func (r *runner) checkModes() (string, error) {
	if out, err := r.checkConfig(ModeXrouter); err != nil {
		return "", fmt.Errorf("xrouter config check -c FILE: %v: %s", err, out)
	}
	if r.o.Baseline != "" {
		if out, err := r.checkConfig(ModeBaseline); err != nil {
			return "", fmt.Errorf("baseline %s config check -c FILE (the xrouter mode's config): %v: %s", r.o.Baseline, err, out)
		}
	}
	if out, err := r.checkConfig(ModeNoCache); err != nil {
		if !strings.Contains(out, "dataplane.cache") {
			return "", fmt.Errorf("xrouter config check -c FILE (cache off): %v: %s", err, out)
		}
		return fmt.Sprintf("this xrouter does not accept dataplane.cache.enabled (`xrouter config check -c FILE`: %s)", out), nil
	}
	return "", nil
}

// startDaemon starts `xrouter run` on the router as deployed: the real
// binary with its own config file, in the router's namespace through
// nsenter (which keeps the host's bpffs mount for the pins, and execs
// xrouter in place, so testbed.Daemon's PID is the daemon's).
func (r *runner) startDaemon(mode string) (*testbed.Daemon, error) {
	cfg, err := r.daemonConfig(mode)
	if err != nil {
		return nil, err
	}
	d, err := testbed.StartDaemon(r.t, exec.Command("nsenter", "--net="+r.tp.Router.Path(), r.binary(mode), "run", "-c", cfg))
	if err != nil {
		return nil, err
	}
	// Measure the daemon in its steady state: with the cache on, that is
	// after the cache's invalidator has read the kernel's tables (with 1M
	// routes, about a second after "running"); until then every packet
	// takes the plain lookup.
	ready := []string{"xrouter running"}
	if mode != ModeNoCache {
		ready = []string{"next-hop cache enabled"}
	}
	if mode == ModeFSXrouter {
		ready = append(ready, "flowspec rules installed")
	}
	for _, r := range ready {
		if err := d.WaitLog(r, 20*time.Second); err != nil {
			d.Kill()
			return nil, err
		}
	}
	return d, nil
}

func sum(vs []uint64) uint64 {
	var n uint64
	for _, v := range vs {
		n += v
	}
	return n
}

// reading is every counter at one moment.
type reading struct {
	counted      uint64
	perCPU       []uint64
	ttlOK        uint64
	perSink      []uint64
	gen, slow    uint64
	xrFwd, xrTTL uint64
	xrFwdCPU     []uint64
}

func (r *runner) read(a *active, count func() (uint64, []uint64, error)) (reading, error) {
	var rd reading
	var err error
	if rd.counted, rd.perCPU, err = count(); err != nil {
		return rd, err
	}
	if _, rd.ttlOK, rd.perSink, err = r.tp.sinkCounts(); err != nil {
		return rd, err
	}
	if rd.gen, rd.slow, err = r.gen.Counts(); err != nil {
		return rd, err
	}
	if a.pin != "" {
		// Two counters by index, not the whole map: an older build's
		// stats map has fewer outcomes (they are only ever appended).
		stats := filepath.Join(a.pin, dataplane.StatsMapName)
		if rd.xrFwdCPU, err = loadgen.PinnedPerCPU(stats, uint32(dataplane.Forwarded)); err != nil {
			return rd, err
		}
		ttl, err := loadgen.PinnedPerCPU(stats, uint32(dataplane.PassTTLExceeded))
		if err != nil {
			return rd, err
		}
		for _, v := range rd.xrFwdCPU {
			rd.xrFwd += v
		}
		for _, v := range ttl {
			rd.xrTTL += v
		}
	}
	return rd, nil
}

// errGenStopped is a generator run that ended before the measurement did:
// a signal meant for the process (SIGCHLD, ...) landed on its thread. The
// measurement is repeated.
var errGenStopped = errors.New("generator run ended early (a stray signal on its thread)")

// settle is the pause between setting up a mode and measuring it.
const settle = 300 * time.Millisecond

// maxRate bounds every generator run: no run sends more than this rate
// could in its planned time plus 5 s, whatever happens to the stop signal.
const maxRate = 50e6

// measure runs the generator once, for warm-up + measurement, and reads
// every counter at the start and the end of the measurement window while it
// runs (from another CPU); then it interrupts the generator. The run's own
// set-up and tear-down (tens of ms) stay outside the window.
func (r *runner) measure(ctx context.Context, sc *Scenario, a *active) (*Sample, error) {
	if err := r.gen.Configure(sc.traffic); err != nil {
		return nil, err
	}
	count := a.count
	if sc.Drop {
		count = a.drop
	}
	// Readings with no traffic at all, before and after the run, for the
	// exact cross-checks; the rate comes from the readings in between.
	q0, err := r.read(a, count)
	if err != nil {
		return nil, err
	}
	ifindex := r.tp.SrcPort.Index
	frames := uint32(min(maxRate*(r.o.Warmup+r.o.Duration+5*time.Second).Seconds(), math.MaxUint32))
	done := make(chan error, 1)
	go func() {
		done <- r.th.do(func() error { return r.gen.Run(ifindex, sc.FrameLen, frames, 64) })
	}()
	finished := false
	stop := func() error {
		if finished {
			return nil
		}
		for {
			if err := loadgen.Interrupt(r.th.tid); err != nil {
				return fmt.Errorf("interrupting the generator: %w", err)
			}
			select {
			case err := <-done:
				finished = true
				return err
			case <-time.After(20 * time.Millisecond):
				// The signal may have come before the thread entered
				// the run; send another.
			}
		}
	}
	defer stop()
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			finished = true
			if err == nil {
				err = errGenStopped
			}
			return err
		case <-time.After(d):
			return nil
		}
	}

	// Warm up until the generator's frames flow (the run's set-up is
	// done), then for Warmup more.
	g0 := q0.gen
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := wait(5 * time.Millisecond); err != nil {
			return nil, err
		}
		g, _, err := r.gen.Counts()
		if err != nil {
			return nil, err
		}
		if g > g0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("generator sent nothing within 5 s")
		}
	}
	if err := wait(r.o.Warmup); err != nil {
		return nil, err
	}
	t1 := time.Now()
	before, err := r.read(a, count)
	if err != nil {
		return nil, err
	}
	if err := wait(r.o.Duration); err != nil {
		return nil, err
	}
	t2 := time.Now()
	after, err := r.read(a, count)
	if err != nil {
		return nil, err
	}
	if err := stop(); err != nil {
		return nil, err
	}
	// Let the last frames' softirq work finish before the final reading.
	time.Sleep(10 * time.Millisecond)
	q1, err := r.read(a, count)
	if err != nil {
		return nil, err
	}
	el := t2.Sub(t1)
	s := &Sample{
		Seconds:   el.Seconds(),
		Mpps:      float64(after.counted-before.counted) / el.Seconds() / 1e6,
		Generated: q1.gen - q0.gen,
		Slow:      q1.slow - q0.slow,
		Counted:   q1.counted - q0.counted,
		TTLOK:     q1.ttlOK - q0.ttlOK,
	}
	for i := range q1.perSink {
		s.PerSink = append(s.PerSink, q1.perSink[i]-q0.perSink[i])
	}
	s.CPUShare = cpuShare(q0.perCPU, q1.perCPU, r.o.CPU)
	if a.pin != "" {
		s.HasXR = true
		s.XRForwarded, s.XRTTL = q1.xrFwd-q0.xrFwd, q1.xrTTL-q0.xrTTL
		s.CPUShare = min(s.CPUShare, cpuShare(q0.xrFwdCPU, q1.xrFwdCPU, r.o.CPU))
	}
	return s, nil
}

// cpuShare is the share of the growth between two per-CPU readings that
// happened on cpu (1 when nothing grew).
func cpuShare(before, after []uint64, cpu int) float64 {
	var total, on uint64
	for i := range after {
		var b uint64
		if i < len(before) {
			b = before[i]
		}
		total += after[i] - b
		if i == cpu {
			on = after[i] - b
		}
	}
	if total == 0 {
		return 1
	}
	return float64(on) / float64(total)
}
