package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Markers of the FlowSpec section in docs/benchmarks.md: it sits after the
// forwarding section (and its comparison), so that a FlowSpec-only run
// replaces only it.
const (
	fsMarkBegin = "<!-- flowspec-bench:begin -->"
	fsMarkEnd   = "<!-- flowspec-bench:end -->"
)

// The issue 12 goals the section checks.
const (
	fsGoalRules = 100  // rule count of the drop goal
	fsGoalRatio = 10.0 // xrouter ÷ nftables at fsGoalRules
	fsGoalLoss  = 0.05 // forwarding loss with fsGoalRules non-matching rules
)

// fwdScenarios are the forwarding section's scenarios; fsScenarioList the
// FlowSpec section's.
func (res *Results) fwdScenarios() []*Scenario {
	var out []*Scenario
	for _, sc := range res.Scenarios {
		if sc.Rules == 0 {
			out = append(out, sc)
		}
	}
	return out
}

func (res *Results) fsScenarioList() []*Scenario {
	var out []*Scenario
	for _, sc := range res.Scenarios {
		if sc.Rules > 0 {
			out = append(out, sc)
		}
	}
	return out
}

// lossOf is, per round, 1 - Mpps(with rules) / Mpps(without).
func (res *Results) lossOf(scenario string) spread {
	r := res.Mpps(scenario, ModeFSXrouter)
	x := res.Mpps(scenario, ModeXrouter)
	if r == nil || x == nil {
		return spreadOf(nil)
	}
	ls := make([]float64, len(r))
	for i := range r {
		ls[i] = 1 - r[i]/x[i]
	}
	return spreadOf(ls)
}

// addedNs is, per round, 1000/Mpps(num) - 1000/Mpps(den): the time per
// packet num takes beyond den on the one core.
func (res *Results) addedNs(scenario, num, den string) spread {
	a, b := res.Mpps(scenario, num), res.Mpps(scenario, den)
	if a == nil || b == nil {
		return spreadOf(nil)
	}
	ds := make([]float64, len(a))
	for i := range a {
		ds[i] = 1000/a[i] - 1000/b[i]
	}
	return spreadOf(ds)
}

// verdict says whether the per-round values s meet a goal (ok tells for
// one value): met or missed when every round agrees, else inconclusive at
// this noise, with what the median says.
func verdict(s spread, ok func(float64) bool) string {
	switch {
	case s.N == 0:
		return "not measured"
	case ok(s.Min) && ok(s.Max):
		return "met"
	case !ok(s.Min) && !ok(s.Max):
		return "missed"
	case ok(s.Median):
		return "inconclusive at this noise (rounds on both sides; the median meets it)"
	}
	return "inconclusive at this noise (rounds on both sides; the median misses it)"
}

// best is the highest rate over the rounds: the round least disturbed by
// other work on a shared machine.
func (res *Results) best(scenario, mode string) float64 {
	return spreadOf(res.Mpps(scenario, mode)).Max
}

func fmtX(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// FlowSpecMarkdown renders the FlowSpec section (without the markers).
func (res *Results) FlowSpecMarkdown(command string, development bool) string {
	o := res.Opts
	scs := res.fsScenarioList()
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## FlowSpec: attack drop and forwarding with rules\n\n")
	if development {
		w("> **Development run** on a machine shared with other jobs (see the load average): the absolute numbers are noisy; the ratios, taken round by round between modes measured seconds apart, are what to quote. Rerun the command on a quiet machine.\n\n")
	}
	w("- Machine: %s\n", res.Machine)
	w("- Date: %s (UTC), %d rounds, %.1f s warm-up and %.1f s measurement per scenario, %.1f min in all (with the rest of the run)\n",
		res.Started.Format("2006-01-02 15:04"), o.Rounds, o.Warmup.Seconds(), o.Duration.Seconds(), res.Elapsed.Minutes())
	w("- Load average (1, 5, 15 min) at the start: %s; at the end: %s\n", res.LoadAvg[0], res.LoadAvg[1])
	w("- Command: `%s`\n\n", command)

	w("### Method\n\n")
	w(`The harness of [Forwarding throughput](#forwarding-throughput): source ⇄ router ⇄ sink in network namespaces, the live-frames XDP
generator on CPU %d, and the router's and the sink's softirq work on that same CPU, so a rate is the whole pipeline's on one core.
Modes are interleaved as there: each round runs every mode of a rule count once, in an order rotated by one per round.

- **Attack**: 64-byte UDP frames to %s port %d (inside the one-route scenarios' 198.18.0.0/16), from spoofed sources: the generator
  sets the low %d bits of the source address (%s/%d) from the kernel's PRNG on every frame, over 256 source ports. The router routes
  %s back to the source, as an edge router would (reverse-path filtering would pass them).
- **Rules** (fixed seed; each a destination prefix, a protocol and a destination port, action drop): the attack's (%s/32, udp, port %d);
  up to %d more for the same host (udp 123, 1900, 11211, 389, 19; tcp 80, 443); the rest for other hosts, a /32 or (one in three) a
  whole /24, each in its own /24, half below the victim's address and half above, with ports of common floods. They are ordered as
  xrouter orders them (RFC 8955 §5.1, internal/flowspec.Compare); the *attack's rule* column says where the attack's rule falls, which
  is how many rules a linear chain tries per attack packet.
- **Modes** (router side):
  - *%s*: the daemon as in the forwarding modes, with the rules in `+"`flowspec.rules`"+` (`+"`action: {rate: 0}`"+`), measured once it
    has logged `+"`flowspec rules installed`"+`. XDP classifier: a hashed index of the rule destinations gives the candidate
    list (the rules naming that host), screened by its port sets and the rules' summaries (docs/architecture.md, "FlowSpec classifier").
  - *%s*: kernel forwarding (no XDP; GRO on the router's ingress veth as in the *kernel* mode) with an nftables table
    `+"`ip xrbench_fs`"+`, base chain on the forward hook (filter priority, policy accept), one rule per FlowSpec rule in the same order:
    `+"`ip daddr P ip protocol X th dport N counter drop`"+` (what translating FlowSpec one to one gives). No conntrack.
  - *%s*: the same table with one rule, `+"`ip daddr . ip protocol . th dport @fs counter drop`"+`, over a concatenated
    interval set (`+"`flags interval`"+`, the kernel's pipapo set) holding every rule.
  - The nftables rules are programmed over netlink with github.com/google/nftables (no `+"`nft`"+` binary here), 200 per commit.
- **Mpps dropped** is counted at the router over the measurement window: xrouter's `+"`flowspec_drop`"+` counter (pinned stats map,
  per CPU), or the packets of the named counter `+"`fs_attack`"+` that the attack's nftables rule (or the set rule) counts into.
  The sinks must see none of the attack (the cross-check below). nftables has no per-CPU view, so the single-CPU check covers xrouter only.
- **Forwarding with rules**: the frames of `+"`v4-64`"+` (one source, 256 flows, port %d, which no rule names), to a host no rule
  names (the classifier's LPM lookup misses) and to the attacked host (its candidate list is walked, no rule matching):
  xrouter with no rules against xrouter with the rule set, counted at the sinks. *loss* is 1 − Mpps(with) ÷ Mpps(without),
  *added* 1000 ÷ Mpps(with) − 1000 ÷ Mpps(without), the nanoseconds per packet the rules cost on the one core, both round by round.
- **Rerun**: part of `+"`make bench`"+`; `+"`make bench BENCH_FLAGS=-flowspec-only`"+` runs only these scenarios (about 2 minutes on
  2 cores) and writes only this section; `+"`-flowspec 1,100,10000`"+` sets the rule counts, `+"`-flowspec-fwd 100`"+` the forwarding
  scenario's, `+"`-rounds`"+`/`+"`-duration`"+` as for the rest.

`, o.CPU, fsVictim, fsAttackPort, fsSpoofBits, fsSpoof, 32-fsSpoofBits, fsSpoofBack, fsVictim, fsAttackPort, len(fsVictimRules),
		modeLabel[ModeFSXrouter], modeLabel[ModeNftLinear], modeLabel[ModeNftSet], fsLegitPort)

	var drops []*Scenario
	for _, sc := range scs {
		if sc.Drop {
			drops = append(drops, sc)
		}
	}
	if len(drops) > 0 {
		w("### Attack drop: Mpps dropped at the router\n\n![Mpps dropped against FlowSpec rules](img/bench-flowspec.png)\n\n")
		w("Median (min–max) over the rounds; ratios round by round. *Best rounds* divides each mode's best round (the one least disturbed by other work on the machine) by the other's: a second estimate, less sensitive to a shared machine's noise.\n\n")
		w("| rules | attack's rule (FlowSpec order) | rules naming the victim | %s | %s | %s | xrouter ÷ nftables rules | xrouter ÷ nftables set | best rounds: ÷ rules, ÷ set |\n",
			modeLabel[ModeFSXrouter], modeLabel[ModeNftLinear], modeLabel[ModeNftSet])
		w("|---|---|---|---|---|---|---|---|---|\n")
		for _, sc := range drops {
			fs := res.FlowSpec[sc.Rules]
			x := res.best(sc.Name, ModeFSXrouter)
			w("| %d (`%s`) | #%d | %d | %s | %s | %s | %s | %s | %s, %s |\n", sc.Rules, sc.Name, fs.AttackPos, fs.VictimRules,
				fmtSpread(spreadOf(res.Mpps(sc.Name, ModeFSXrouter)), ""), fmtSpread(spreadOf(res.Mpps(sc.Name, ModeNftLinear)), ""),
				fmtSpread(spreadOf(res.Mpps(sc.Name, ModeNftSet)), ""),
				fmtSpread(res.ratio(sc.Name, ModeFSXrouter, ModeNftLinear), "×"), fmtSpread(res.ratio(sc.Name, ModeFSXrouter, ModeNftSet), "×"),
				fmtX(x/res.best(sc.Name, ModeNftLinear)), fmtX(x/res.best(sc.Name, ModeNftSet)))
		}
		w("\nNanoseconds per attack packet on the core (1000 ÷ Mpps: generator, veth hop and the router's drop together; median, range):\n\n")
		w("| rules | %s | %s | %s |\n|---|---|---|---|\n", modeLabel[ModeFSXrouter], modeLabel[ModeNftLinear], modeLabel[ModeNftSet])
		for _, sc := range drops {
			w("| %d |", sc.Rules)
			for _, m := range FlowSpecModes {
				ns := make([]float64, 0)
				for _, v := range res.Mpps(sc.Name, m) {
					ns = append(ns, 1000/v)
				}
				w(" %s |", fmtNs(spreadOf(ns)))
			}
			w("\n")
		}
		haveBare := false
		for _, sc := range drops {
			haveBare = haveBare || res.Mpps(sc.Name, ModeDrop) != nil
		}
		if haveBare {
			w("\nThe router's own cost per attack packet: the nanoseconds above the bare drop (bpf/bare.c at the router's ingress, interleaved with the others: generator, veth hop and a drop, nothing else), round by round, median (range); the ratio is nftables' cost over xrouter's, round by round:\n\n")
			w("| rules | bare drop (ns, whole pipeline) | %s (ns above) | %s (ns above) | %s (ns above) | nftables rules ÷ xrouter | nftables set ÷ xrouter |\n|---|---|---|---|---|---|---|\n",
				modeLabel[ModeFSXrouter], modeLabel[ModeNftLinear], modeLabel[ModeNftSet])
			for _, sc := range drops {
				var bare []float64
				for _, v := range res.Mpps(sc.Name, ModeDrop) {
					bare = append(bare, 1000/v)
				}
				w("| %d | %s | %s | %s | %s | %s | %s |\n", sc.Rules, fmtNs(spreadOf(bare)),
					fmtNs(res.costNs(sc.Name, ModeFSXrouter)), fmtNs(res.costNs(sc.Name, ModeNftLinear)), fmtNs(res.costNs(sc.Name, ModeNftSet)),
					fmtSpread(res.costRatio(sc.Name, ModeNftLinear, ModeFSXrouter), "×"), fmtSpread(res.costRatio(sc.Name, ModeNftSet, ModeFSXrouter), "×"))
			}
		}
		if sc := res.scenarioNamed("fs-drop-" + count(fsGoalRules)); sc != nil {
			lin, set := res.ratio(sc.Name, ModeFSXrouter, ModeNftLinear), res.ratio(sc.Name, ModeFSXrouter, ModeNftSet)
			goal := func(v float64) bool { return v >= fsGoalRatio }
			x := res.best(sc.Name, ModeFSXrouter)
			w("\nGoal (issue 12): xrouter ≥ %.0f× nftables per core with %d rules. Measured %s against the linear chain (%s; best rounds %s), %s against the set (%s; best rounds %s).",
				fsGoalRatio, fsGoalRules, fmtSpread(lin, "×"), verdict(lin, goal), fmtX(x/res.best(sc.Name, ModeNftLinear)),
				fmtSpread(set, "×"), verdict(set, goal), fmtX(x/res.best(sc.Name, ModeNftSet)))
			w(" The rates are the whole pipeline's on one core: the generator and the veth hop take their share in every mode, which caps xrouter's figure near the bare drop's and so understates the router's own difference.")
			if c := res.costRatio(sc.Name, ModeNftLinear, ModeFSXrouter); c.N > 0 {
				cs := res.costRatio(sc.Name, ModeNftSet, ModeFSXrouter)
				w(" The router's own cost, above the bare drop: nftables takes %s xrouter's with one rule per FlowSpec rule (%s), %s with the set (%s).",
					fmtSpread(c, "×"), verdict(c, goal), fmtSpread(cs, "×"), verdict(cs, goal))
			}
			w("\n")
		}
	}

	var fwds []*Scenario
	for _, sc := range scs {
		if !sc.Drop {
			fwds = append(fwds, sc)
		}
	}
	if len(fwds) > 0 {
		w("\n### Forwarding with rules the traffic does not match\n\n")
		w("| scenario | %s | %s, with the rules | with ÷ without | loss | added ns per packet | loss, best rounds |\n|---|---|---|---|---|---|---|\n",
			modeLabel[ModeXrouter], modeLabel[ModeXrouter])
		for _, sc := range fwds {
			l := res.lossOf(sc.Name)
			w("| %s | %s | %s | %s | %s | %s | %.1f%% |\n", sc.Name,
				fmtSpread(spreadOf(res.Mpps(sc.Name, ModeXrouter)), ""), fmtSpread(spreadOf(res.Mpps(sc.Name, ModeFSXrouter)), ""),
				fmtSpread(res.ratio(sc.Name, ModeFSXrouter, ModeXrouter), "×"), fmtPct(l),
				fmtNs(res.addedNs(sc.Name, ModeFSXrouter, ModeXrouter)),
				100*(1-res.best(sc.Name, ModeFSXrouter)/res.best(sc.Name, ModeXrouter)))
		}
		w("\n")
		for _, sc := range fwds {
			w("- `%s`: %s; %d-byte frames.\n", sc.Name, sc.Desc, sc.FrameLen)
		}
		for _, name := range []string{"fs-fwd-", "fs-fwd-victim-"} {
			if sc := res.scenarioNamed(name + count(fsGoalRules)); sc != nil {
				l := res.lossOf(sc.Name)
				w("\nGoal (issue 12): at most %.0f%% loss per packet with %d rules the traffic does not match. `%s`: measured %s, %s; best rounds %.1f%%.\n",
					100*fsGoalLoss, fsGoalRules, sc.Name, fmtPct(l), verdict(l, func(v float64) bool { return v <= fsGoalLoss }),
					100*(1-res.best(sc.Name, ModeFSXrouter)/res.best(sc.Name, ModeXrouter)))
			}
		}
	}

	w("\n### Counters cross-checked\n\nExact totals over whole generator runs (warm-up included, read while no traffic flowed), summed over the rounds. For the attack, *counted* is the router's drop counter and *sink* what reached the sinks (should be 0); for forwarding, *counted* is the sinks' count and *xrouter forwarded* its own counter.\n\n")
	w("| scenario | mode | generated | counted | sink | xrouter forwarded |\n|---|---|---|---|---|---|\n")
	for _, sc := range scs {
		for _, m := range slices.Concat([]string{ModeXrouter}, FlowSpecModes) {
			t := res.totals(sc.Name, m)
			if t.n == 0 {
				continue
			}
			var sink uint64
			for _, v := range res.sumPerSink(sc.Name, m) {
				sink += v
			}
			fwd := "—"
			if t.hasXR {
				fwd = fmt.Sprint(t.xrFwd)
			}
			w("| %s | %s | %d | %d | %d | %s |\n", sc.Name, modeLabel[m], t.gen, t.counted, sink, fwd)
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
		for _, m := range slices.Concat([]string{ModeXrouter}, FlowSpecModes) {
			vs := res.Mpps(sc.Name, m)
			if vs == nil {
				continue
			}
			w("| %s | %s |", sc.Name, modeLabel[m])
			for _, v := range vs {
				w(" %.3f |", v)
			}
			w("\n")
		}
	}
	w("\n</details>\n")
	return b.String()
}

func fmtPct(s spread) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%% (%.1f to %.1f)", 100*s.Median, 100*s.Min, 100*s.Max)
}

func (res *Results) scenarioNamed(name string) *Scenario {
	for _, sc := range res.Scenarios {
		if sc.Name == name {
			return sc
		}
	}
	return nil
}

// writeFlowSpecDocs replaces the FlowSpec section of docsFile (adding its
// markers after the forwarding sections if missing) and writes its plot.
func (res *Results) writeFlowSpecDocs(docsFile, imgDir, command string, development bool) error {
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	if err := res.plotFlowSpec(filepath.Join(imgDir, "bench-flowspec.png")); err != nil {
		return fmt.Errorf("plotting FlowSpec: %w", err)
	}
	old, err := os.ReadFile(docsFile)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n\nEvery number here comes from a command in this repository; each section names its command.\n")
	} else if err != nil {
		return err
	}
	doc := string(old)
	i, j := strings.Index(doc, fsMarkBegin), strings.Index(doc, fsMarkEnd)
	if i < 0 && j < 0 {
		pair := fsMarkBegin + "\n" + fsMarkEnd
		k := strings.Index(doc, cmpMarkEnd)
		if k >= 0 {
			k += len(cmpMarkEnd)
		} else if k = strings.Index(doc, markEnd); k >= 0 {
			k += len(markEnd)
		}
		switch f := strings.Index(doc, fibMarkBegin); {
		case k >= 0:
			doc = doc[:k] + "\n\n" + pair + doc[k:]
		case f >= 0:
			doc = doc[:f] + pair + "\n\n" + doc[f:]
		default:
			doc = strings.TrimRight(doc, "\n") + "\n\n" + pair + "\n"
		}
		i, j = strings.Index(doc, fsMarkBegin), strings.Index(doc, fsMarkEnd)
	}
	if i < 0 || j < i {
		return fmt.Errorf("%s: markers %s … %s not found in order", docsFile, fsMarkBegin, fsMarkEnd)
	}
	doc = doc[:i+len(fsMarkBegin)] + "\n" + res.FlowSpecMarkdown(command, development) + doc[j:]
	return os.WriteFile(docsFile, []byte(doc), 0o644)
}

// plotFlowSpec plots Mpps dropped against the rule count, log-log, one
// line per mode with min–max whiskers.
func (res *Results) plotFlowSpec(file string) error {
	p := plot.New()
	p.Title.Text = "Attack dropped at the router: Mpps against FlowSpec rules (64 B, one core)"
	p.X.Label.Text = "rules"
	p.Y.Label.Text = "Mpps dropped (log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	var ticks []plot.Tick
	lo, hi := math.Inf(1), 0.0
	for _, sc := range res.Scenarios {
		if sc.Drop {
			ticks = append(ticks, plot.Tick{Value: float64(sc.Rules), Label: count(sc.Rules)})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	for _, m := range FlowSpecModes {
		var xys plotter.XYs
		var errs plotter.YErrors
		for _, sc := range res.Scenarios {
			if !sc.Drop {
				continue
			}
			if v := spreadOf(res.Mpps(sc.Name, m)); v.N > 0 && v.Min > 0 {
				xys = append(xys, plotter.XY{X: float64(sc.Rules), Y: v.Median})
				errs = append(errs, struct{ Low, High float64 }{v.Median - v.Min, v.Max - v.Median})
				lo, hi = min(lo, v.Min), max(hi, v.Max)
			}
		}
		if len(xys) == 0 {
			continue
		}
		if err := addModeLine(p, m, xys, errs); err != nil {
			return err
		}
	}
	if hi > 0 {
		// Decades around the data, and room above for the legend.
		p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
		p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi))+0.5)
		var yt []plot.Tick
		for v := p.Y.Min; v <= p.Y.Max*1.01; v *= 10 {
			yt = append(yt, plot.Tick{Value: v, Label: fmt.Sprintf("%g", v)})
		}
		p.Y.Tick.Marker = plot.ConstantTicks(yt)
	}
	if len(ticks) > 0 {
		p.X.Min, p.X.Max = ticks[0].Value/2, ticks[len(ticks)-1].Value*2
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p.Save(160*vg.Millimeter, 100*vg.Millimeter, file)
}
