package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Markers of the forwarding section in docs/benchmarks.md; the FIB
// benchmark owns the other pair.
const (
	markBegin    = "<!-- forwarding:begin -->"
	markEnd      = "<!-- forwarding:end -->"
	fibMarkBegin = "<!-- fib:begin -->"
	fibMarkEnd   = "<!-- fib:end -->"
)

// Mpps returns a mode's per-round rates in a scenario (NaN where missing).
func (res *Results) Mpps(scenario, mode string) []float64 {
	ss := res.Samples[scenario][mode]
	if ss == nil {
		return nil
	}
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = math.NaN()
		if s != nil {
			out[i] = s.Mpps
		}
	}
	return out
}

// spread is a median with its min–max range over the values that exist.
type spread struct {
	Median, Min, Max float64
	N                int
}

func spreadOf(vs []float64) spread {
	var ok []float64
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			ok = append(ok, v)
		}
	}
	if len(ok) == 0 {
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(ok)
	m := ok[len(ok)/2]
	if len(ok)%2 == 0 {
		m = (ok[len(ok)/2-1] + ok[len(ok)/2]) / 2
	}
	return spread{Median: m, Min: ok[0], Max: ok[len(ok)-1], N: len(ok)}
}

// ratio is the median (and range) of the per-round ratios num/den: each
// round's two rates were measured minutes apart at most, under the same
// conditions, so noise that shifts a whole round cancels.
func (res *Results) ratio(scenario, num, den string) spread {
	a, b := res.Mpps(scenario, num), res.Mpps(scenario, den)
	if a == nil || b == nil {
		return spreadOf(nil)
	}
	rs := make([]float64, len(a))
	for i := range a {
		rs[i] = a[i] / b[i]
	}
	return spreadOf(rs)
}

// costRatio is, per round, costNs(num) ÷ costNs(den): how many times the
// router's own work per packet in mode num is that in mode den. A round in
// which den's cost is not positive (noise) has no ratio.
func (res *Results) costRatio(scenario, num, den string) spread {
	a, b, d := res.Mpps(scenario, num), res.Mpps(scenario, den), res.Mpps(scenario, ModeDrop)
	if a == nil || b == nil || d == nil {
		return spreadOf(nil)
	}
	rs := make([]float64, len(a))
	for i := range a {
		ca, cb := 1000/a[i]-1000/d[i], 1000/b[i]-1000/d[i]
		rs[i] = math.NaN()
		if cb > 0 {
			rs[i] = ca / cb
		}
	}
	return spreadOf(rs)
}

// costNs is, per round, the nanoseconds per packet a mode takes beyond
// the bare drop: 1000/Mpps(mode) - 1000/Mpps(drop).
func (res *Results) costNs(scenario, mode string) spread {
	a, d := res.Mpps(scenario, mode), res.Mpps(scenario, ModeDrop)
	if a == nil || d == nil {
		return spreadOf(nil)
	}
	cs := make([]float64, len(a))
	for i := range a {
		cs[i] = 1000/a[i] - 1000/d[i]
	}
	return spreadOf(cs)
}

func fmtSpread(s spread, unit string) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f%s (%.2f–%.2f)", s.Median, unit, s.Min, s.Max)
}

var ratios = []struct{ num, den, label string }{
	{ModeXrouter, ModeKernel, "xrouter ÷ kernel"},
	{ModeNoCache, ModeKernel, "cache off ÷ kernel"},
	{ModeXrouter, ModeNoCache, "xrouter ÷ cache off"},
	{ModeXrouter, ModeRedirect, "xrouter ÷ bare redirect"},
}

// Markdown renders the forwarding section (without the markers).
func (res *Results) Markdown(command string, development bool) string {
	o := res.Opts
	scs := res.fwdScenarios()
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Forwarding throughput\n\n")
	if development {
		w("> **Development run** on a machine shared with other jobs: the absolute numbers are noisy. Rerun `make bench` on a quiet machine for numbers to quote.\n\n")
	}
	w("- Machine: %s\n", res.Machine)
	w("- Date: %s (UTC), %d rounds, %.1f min in all\n", res.Started.Format("2006-01-02 15:04"), o.Rounds, res.Elapsed.Minutes())
	w("- Load average (1, 5, 15 min) at the start: %s; at the end: %s\n", res.LoadAvg[0], res.LoadAvg[1])
	w("- Command: `%s`\n\n", command)

	w("### Method\n\n")
	w(`Three network namespaces in a row, source ⇄ router ⇄ sink, joined by veth pairs (plus %d more router ⇄ sink links for the ECMP route).
The generator is an XDP program (bpf/gen.c) run with BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, batches of 64; a raw bpf(2) call rather than cilium/ebpf's Program.Run, which restarts an interrupted run, so that a signal to the thread ends it)
from a thread that entered the source namespace and is pinned to CPU %d with sched_setaffinity. It writes every header of every frame
(the kernel recycles frame pages without re-initialising them) and sends it with XDP_TX out of the source veth into the router.
The veth NAPI polls that this triggers — the router's ingress, then the sink's — run in softirq on the same CPU: generator, router
and sink share one core, so a mode's rate is the whole pipeline's, and what the router costs shows as what is left for it.
The benchmark's other threads (reading counters) and child processes (the daemon, ip) are kept off that CPU.
Every measurement checks the single-CPU claim: the share of the counted frames processed on CPU %d (per-CPU counters of the sink, of xrouter's
stats map and of the bare programs) was at least %.1f%% in this run.

- **Frames**: Ethernet + IPv4/IPv6 + UDP; "64" and "1500" are the frame length as XDP sees it, from the Ethernet header to the end of
  the payload (a real wire would add a 4-byte FCS, preamble and gap; veth has none of them). IPv4 UDP checksum 0; IPv6 UDP checksum not
  valid (nothing on the path verifies it). TTL / hop limit 64; the sink checks that forwarded frames arrive with 63.
- **Mpps** is frames counted per second: at the sink (bpf/sink.c in drop mode on every sink interface) for the forwarding modes, and
  at the router's ingress (the bare drop program's counter) for the drop mode. Frames the router passes to the kernel's slow path
  (TTL 1) and frames lost on the way are not counted. The counters are read from the other CPU at the start and the end of a
  measurement window while one long generator run is going on, so the run's own set-up and tear-down (a page pool, tens of ms) are
  outside the window. veth hands frames over by reference, so the frame size changes little here; on a NIC it would.
- **Modes** (router side), measured in the same run, interleaved: each round runs every mode once, in an order rotated by one per round,
  and every scenario inside each mode; %.1f s warm-up and %.1f s measurement per scenario.
  - *kernel*: Linux forwarding, no XDP on the router. A veth only receives frames sent to it with XDP_TX when its NAPI ring is on
    (XDP attached or GRO enabled), so this mode turns GRO on on the router's ingress veth (the ETHTOOL_SGRO ioctl, as `+"`ethtool -K r-src gro on`"+`) and off afterwards. GRO does
    not merge these UDP frames (no local socket), so each is forwarded on its own.
  - *xrouter*: the real daemon, `+"`xrouter run -c FILE`"+` started with nsenter in the router namespace, native XDP on all router
    interfaces, its default configuration (next-hop cache on); measured once the daemon has logged `+"`next-hop cache enabled`"+` (the
    cache's invalidator has read the kernel's tables: about a second after start with 1M routes); stopped with SIGTERM
    (detach_on_exit) after each round.
  - *xrouter, cache off*: the same with `+"`dataplane.cache.enabled: false`"+`.
  - *bare redirect*: bpf/bare.c — rewrite both MACs to fixed values and redirect through a devmap to one fixed egress; no parsing,
    lookup or TTL. The upper bound of any XDP forwarder on this harness.
  - *bare drop*: bpf/bare.c — count and drop at the router's ingress. The ceiling of the harness itself.
- **Rerun**: `+"`make bench`"+` (about 5 minutes on 2 cores for these scenarios; the FlowSpec ones, in their own section, add about 2); `+"`make bench BENCH_FLAGS=\"-rounds 7 -duration 1s\"`"+` for more and longer
  rounds, `+"`-table N`"+` for another table size. Ctrl-C stops it and removes everything it created.
- **Statistics**: every cell is the median over the rounds with the min–max range; a ratio is the median (range) of the ratios taken
  round by round, never a ratio of medians.
- **Routes**: static neighbours on the sink links. One-route scenarios use 198.18.0.0/16 (IPv4) and 2001:db8:100::/48 (IPv6), one
  destination address, 256 flows (UDP source ports); besides that route the router's table holds only its connected subnets and the
  other one-route scenarios' routes. The ECMP route has 4 next hops on 4 sink links, 1024 flows, and the router uses
  the L4 multipath hash (fib_multipath_hash_policy=1). Table scenarios add a synthetic IPv4 table (fixed seed) with this prefix-length
  mix: %s; routes via 4 next hops in turn. "%d active destinations" are random addresses in random prefixes of the installed table,
  picked at random per frame; "uniformly random" are one random address in every prefix of the table, picked at random per frame.
  The table grows by appending (ip -batch): %s.

`, ecmpLinks, o.CPU, o.CPU, 100*res.minCPUShare(), o.Warmup.Seconds(), o.Duration.Seconds(), mixText(), o.Active, strings.Join(res.RouteRate, "; "))

	if res.DaemonConfig != "" {
		w("The *xrouter* mode's config file (*cache off* adds `cache: {enabled: false}` under `dataplane`):\n\n```yaml\n%s```\n\n", res.DaemonConfig)
	}
	for m, why := range res.Skipped {
		w("Mode *%s* was skipped: %s\n\n", modeLabel[m], why)
	}

	w("### Mpps by scenario\n\n![Mpps per mode by scenario](img/bench-modes.png)\n\n")
	w("| scenario |")
	for _, m := range AllModes {
		w(" %s |", modeLabel[m])
	}
	for _, r := range ratios {
		w(" %s |", r.label)
	}
	w("\n|---|")
	for range len(AllModes) + len(ratios) {
		w("---|")
	}
	w("\n")
	for _, sc := range scs {
		w("| %s |", sc.Name)
		for _, m := range AllModes {
			w(" %s |", fmtSpread(spreadOf(res.Mpps(sc.Name, m)), ""))
		}
		for _, r := range ratios {
			w(" %s |", fmtSpread(res.ratio(sc.Name, r.num, r.den), "×"))
		}
		w("\n")
	}
	w("\nScenarios:\n\n")
	for _, sc := range scs {
		w("- `%s`: %s; %d-byte frames.\n", sc.Name, sc.Desc, sc.FrameLen)
	}

	w("\n### Nanoseconds per packet above the harness\n\n")
	w("On one core, 1000 ÷ Mpps is the time the whole pipeline spends per packet. Taking away the bare drop's time (generator, one veth hop, drop) leaves what the router mode, the second veth hop and the sink cost per counted packet (in `slow10` that includes the slow-path frames' share); round by round, median (range). Noise can make a small difference negative.\n\n| scenario |")
	costModes := []string{ModeKernel, ModeXrouter, ModeNoCache, ModeRedirect}
	for _, m := range costModes {
		w(" %s |", modeLabel[m])
	}
	w("\n|---|")
	for range costModes {
		w("---|")
	}
	w("\n")
	for _, sc := range scs {
		if res.Mpps(sc.Name, ModeDrop) == nil {
			continue
		}
		w("| %s |", sc.Name)
		for _, m := range costModes {
			c := res.costNs(sc.Name, m)
			if c.N == 0 {
				w(" — |")
				continue
			}
			w(" %.0f (%.0f–%.0f) |", c.Median, c.Min, c.Max)
		}
		w("\n")
	}

	w("\n### Mpps against table size\n\n![Mpps against table size](img/bench-table-size.png)\n\n")
	w("IPv4, 64-byte frames, %d active destinations.\n\n| routes |", o.Active)
	for _, m := range lookupModes {
		w(" %s |", modeLabel[m])
	}
	w(" xrouter ÷ kernel |\n|---|---|---|---|---|\n")
	for _, sc := range scs {
		if !sc.SizeSweep {
			continue
		}
		w("| %d (`%s`) |", sc.Size, sc.Name)
		for _, m := range lookupModes {
			w(" %s |", fmtSpread(spreadOf(res.Mpps(sc.Name, m)), ""))
		}
		w(" %s |\n", fmtSpread(res.ratio(sc.Name, ModeXrouter, ModeKernel), "×"))
	}

	w("\n### ECMP: share per next hop\n\nFrames per sink link, summed over the rounds (`ecmp4`, 1024 flows):\n\n| mode | next hop 1 | next hop 2 | next hop 3 | next hop 4 |\n|---|---|---|---|---|\n")
	for _, m := range lookupModes {
		per := res.sumPerSink("ecmp4", m)
		if per == nil {
			continue
		}
		var total uint64
		for _, v := range per {
			total += v
		}
		w("| %s |", modeLabel[m])
		for _, v := range per {
			w(" %.1f%% |", 100*float64(v)/float64(max(total, 1)))
		}
		w("\n")
	}

	w("\n### Counters cross-checked\n\nExact totals over whole generator runs (warm-up included, read while no traffic flowed), summed over the rounds. *sink* is what the sinks counted, *TTL ok* how many of those arrived with TTL/hop limit 63 (forwarded exactly once), *xrouter forwarded* and *ttl_exceeded* are xrouter's own counters (pinned stats map), *TTL-1 sent* the generator's slow-path frames. *generated* equal to *sink* (plus the TTL-1 frames) means nothing was lost on the way: on one CPU the generator only runs again once the router's and the sink's softirq work for its last batch is done.\n\n")
	w("| scenario | mode | generated | sink | TTL ok | xrouter forwarded | sink ÷ forwarded | TTL-1 sent | ttl_exceeded |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scs {
		for _, m := range lookupModes {
			t := res.totals(sc.Name, m)
			if t.n == 0 {
				continue
			}
			fwd, div, slow, ttl := "—", "—", "—", "—"
			if t.hasXR {
				fwd = fmt.Sprint(t.xrFwd)
				div = fmt.Sprintf("%.4f", float64(t.counted)/float64(max(t.xrFwd, 1)))
				if t.slow > 0 {
					ttl = fmt.Sprint(t.xrTTL)
				}
			}
			if t.slow > 0 {
				slow = fmt.Sprint(t.slow)
			}
			w("| %s | %s | %d | %d | %d | %s | %s | %s | %s |\n", sc.Name, modeLabel[m], t.gen, t.counted, t.ttlOK, fwd, div, slow, ttl)
		}
	}

	w("\n<details><summary>Every measurement (Mpps per round)</summary>\n\n| scenario | mode |")
	for i := range o.Rounds {
		w(" round %d |", i+1)
	}
	w("\n|---|---|")
	for range o.Rounds {
		w("---|")
	}
	w("\n")
	for _, sc := range scs {
		for _, m := range AllModes {
			vs := res.Mpps(sc.Name, m)
			if vs == nil {
				continue
			}
			w("| %s | %s |", sc.Name, modeLabel[m])
			for _, v := range vs {
				w(" %.2f |", v)
			}
			w("\n")
		}
	}
	w("\n</details>\n")
	return b.String()
}

type totals struct {
	n                                       int
	gen, counted, ttlOK, slow, xrFwd, xrTTL uint64
	hasXR                                   bool
}

func (res *Results) totals(scenario, mode string) totals {
	var t totals
	for _, s := range res.Samples[scenario][mode] {
		if s == nil {
			continue
		}
		t.n++
		t.gen += s.Generated
		t.counted += s.Counted
		t.ttlOK += s.TTLOK
		t.slow += s.Slow
		t.xrFwd += s.XRForwarded
		t.xrTTL += s.XRTTL
		t.hasXR = t.hasXR || s.HasXR
	}
	return t
}

func (res *Results) sumPerSink(scenario, mode string) []uint64 {
	var sum []uint64
	for _, s := range res.Samples[scenario][mode] {
		if s != nil {
			sum = addVec(sum, s.PerSink)
		}
	}
	return sum
}

func (res *Results) minCPUShare() float64 {
	m := 1.0
	for _, byMode := range res.Samples {
		for _, ss := range byMode {
			for _, s := range ss {
				if s != nil {
					m = min(m, s.CPUShare)
				}
			}
		}
	}
	return m
}

// WriteDocs replaces the forwarding section of docsFile (creating the file
// with both sections' markers if needed) and writes the plots into imgDir.
//
// The FlowSpec section (its own markers, and its plot) is written too when
// the run had FlowSpec scenarios; a run with only those writes only it.
func (res *Results) WriteDocs(docsFile, imgDir, command string, development bool) error {
	if len(res.fwdScenarios()) > 0 {
		if err := res.writeForwardingDocs(docsFile, imgDir, command, development); err != nil {
			return err
		}
	}
	if len(res.fsScenarioList()) > 0 {
		return res.writeFlowSpecDocs(docsFile, imgDir, command, development)
	}
	return nil
}

func (res *Results) writeForwardingDocs(docsFile, imgDir, command string, development bool) error {
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	if err := res.plotModes(filepath.Join(imgDir, "bench-modes.png")); err != nil {
		return fmt.Errorf("plotting modes: %w", err)
	}
	if err := res.plotSizes(filepath.Join(imgDir, "bench-table-size.png")); err != nil {
		return fmt.Errorf("plotting table sizes: %w", err)
	}
	old, err := os.ReadFile(docsFile)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n\nEvery number here comes from a command in this repository; each section names its command.\n\n" +
			markBegin + "\n" + markEnd + "\n\n" + fibMarkBegin + "\n" + fibMarkEnd + "\n")
	} else if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, markBegin), strings.Index(s, markEnd)
	if i < 0 && j < 0 {
		// A file started by the FIB benchmark: our section goes first.
		pair := markBegin + "\n" + markEnd + "\n\n"
		if k := strings.Index(s, fibMarkBegin); k >= 0 {
			s = s[:k] + pair + s[k:]
		} else {
			s += "\n" + pair
		}
		i, j = strings.Index(s, markBegin), strings.Index(s, markEnd)
	}
	if i < 0 || j < i {
		return fmt.Errorf("%s: markers %s … %s not found in order", docsFile, markBegin, markEnd)
	}
	s = s[:i+len(markBegin)] + "\n" + res.Markdown(command, development) + s[j:]
	return os.WriteFile(docsFile, []byte(s), 0o644)
}

var modeColor = map[string]color.Color{
	ModeKernel:   color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff},
	ModeXrouter:  color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	ModeNoCache:  color.RGBA{R: 0x9e, G: 0xc9, B: 0xe6, A: 0xff},
	ModeRedirect: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	ModeDrop:     color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

func (res *Results) plotModes(file string) error {
	p := plot.New()
	p.Title.Text = "Mpps per mode by scenario (median of rounds, one core)"
	p.Y.Label.Text = "Mpps"
	var names []string
	for _, sc := range res.fwdScenarios() {
		if !sc.SizeSweep || sc.Size == 1 || sc.Size == res.Opts.Table {
			names = append(names, sc.Name)
		}
	}
	var modes []string
	for _, m := range AllModes {
		if res.Skipped[m] == "" {
			modes = append(modes, m)
		}
	}
	width := vg.Points(10)
	for i, m := range modes {
		vals := make(plotter.Values, len(names))
		for k, n := range names {
			v := spreadOf(res.Mpps(n, m)).Median
			if math.IsNaN(v) {
				v = 0
			}
			vals[k] = v
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = modeColor[m]
		bars.Offset = vg.Length(float64(i)-float64(len(modes)-1)/2) * width
		p.Add(bars)
		p.Legend.Add(modeLabel[m], bars)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	p.NominalX(names...)
	p.Add(plotter.NewGrid())
	return p.Save(vg.Length(90+70*len(names))*vg.Millimeter/3, 110*vg.Millimeter, file)
}

func (res *Results) plotSizes(file string) error {
	p := plot.New()
	p.Title.Text = "Mpps against table size (IPv4, 64 B, one core; median, min–max)"
	p.X.Label.Text = "routes"
	p.Y.Label.Text = "Mpps"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, sc := range res.fwdScenarios() {
		if sc.SizeSweep {
			ticks = append(ticks, plot.Tick{Value: float64(sc.Size), Label: count(sc.Size)})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	for _, m := range lookupModes {
		if res.Skipped[m] != "" {
			continue
		}
		var xys plotter.XYs
		var errs plotter.YErrors
		for _, sc := range res.fwdScenarios() {
			if !sc.SizeSweep {
				continue
			}
			if v := spreadOf(res.Mpps(sc.Name, m)); v.N > 0 {
				xys = append(xys, plotter.XY{X: float64(sc.Size), Y: v.Median})
				errs = append(errs, struct{ Low, High float64 }{v.Median - v.Min, v.Max - v.Median})
			}
		}
		if len(xys) == 0 {
			continue
		}
		if err := addModeLine(p, m, xys, errs); err != nil {
			return err
		}
	}
	p.Y.Min = 0
	p.Y.Max *= 1.2
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p.Save(160*vg.Millimeter, 100*vg.Millimeter, file)
}

// xyErrors is points with their error bars.
type xyErrors struct {
	plotter.XYs
	plotter.YErrors
}

func (e xyErrors) Len() int { return len(e.XYs) }

// addModeLine draws one mode's medians as a line with points, its min–max
// range over the rounds as whiskers, in the mode's colour, with a legend
// entry.
func addModeLine(p *plot.Plot, m string, xys plotter.XYs, errs plotter.YErrors) error {
	eb, err := plotter.NewYErrorBars(xyErrors{xys, errs})
	if err != nil {
		return err
	}
	eb.Color = modeColor[m]
	p.Add(eb)
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, pts.Color = modeColor[m], modeColor[m]
	l.Width = vg.Points(2)
	p.Add(l, pts)
	p.Legend.Add(modeLabel[m], l, pts)
	return nil
}
