package bench

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Markers of the comparison section (make bench-compare) in
// docs/benchmarks.md. It sits right after the forwarding section, outside
// its markers, so that `make bench` and `make bench-compare` each replace
// only their own part.
const (
	cmpMarkBegin = "<!-- forwarding-compare:begin -->"
	cmpMarkEnd   = "<!-- forwarding-compare:end -->"
)

// Compare describes a run with a baseline, for its report.
type Compare struct {
	// Title is the section's heading (without the ###).
	Title string
	// Command is the command line to record.
	Command string
	// Base is the baseline's commit ("86f9f41 subject"), Head today's
	// build's.
	Base, Head string
}

// delta is, per round, the nanoseconds per packet the xrouter mode takes
// beyond the baseline: 1000/Mpps(xrouter) - 1000/Mpps(baseline). The
// harness's share (what the bare drop measures) is the same for both and
// cancels, so this needs no drop measurement.
func (res *Results) delta(scenario, mode, base string) spread {
	a, b := res.Mpps(scenario, mode), res.Mpps(scenario, base)
	if a == nil || b == nil {
		return spreadOf(nil)
	}
	ds := make([]float64, len(a))
	for i := range a {
		ds[i] = 1000/a[i] - 1000/b[i]
	}
	return spreadOf(ds)
}

// label names a mode in the report.
func (res *Results) label(mode string) string {
	if mode == ModeBaseline {
		if res.Opts.BaselineName != "" {
			return res.Opts.BaselineName
		}
		return DefaultBaselineName
	}
	return modeLabel[mode]
}

func fmtNs(s spread) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

// fmtDelta is a signed ns difference with its range.
func fmtDelta(s spread) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%+.0f (%+.0f to %+.0f)", s.Median, s.Min, s.Max)
}

// CompareMarkdown renders the comparison section (without the markers):
// the xrouter mode against the baseline, from the same run.
func (res *Results) CompareMarkdown(c Compare, development bool) string {
	o := res.Opts
	base := res.label(ModeBaseline)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("### %s\n\n", c.Title)
	if development {
		w("> **Development run** on a machine shared with other jobs: the numbers are noisy. Rerun `make bench-compare` on a quiet machine for numbers to quote.\n\n")
	}
	w("*xrouter* is this tree's build (%s); *%s* is xrouter built from %s. ", c.Head, base, c.Base)
	w("Both run as the *xrouter* mode of [Forwarding throughput](#forwarding-throughput) does (default configuration, next-hop cache on, the same config file but for the pin directory), ")
	w("each with the BPF object embedded in its own binary, interleaved with the other modes in the same rounds of one run (the order rotated by one per round), ")
	w("so a round's two rates were measured under the same load. ")
	w("The columns are per round, median (min–max) over the rounds: *ns per packet above the harness* as in the forwarding section (1000 ÷ Mpps minus the bare drop's); ")
	w("*difference* is 1000 ÷ Mpps(xrouter) − 1000 ÷ Mpps(%s), the time per packet the changes since the baseline add (negative: they save time; the harness's share cancels, so the table-size scenarios without a bare drop have it too); ", base)
	w("*xrouter ÷ %s* is the ratio of the rates.\n\n", base)
	w("- Command: `%s`\n", c.Command)
	w("- Baseline: %s; xrouter: %s\n", c.Base, c.Head)
	w("- Machine: %s\n", res.Machine)
	w("- Date: %s (UTC), %d rounds, %.1f s warm-up and %.1f s measurement per scenario, %.1f min in all\n",
		res.Started.Format("2006-01-02 15:04"), o.Rounds, o.Warmup.Seconds(), o.Duration.Seconds(), res.Elapsed.Minutes())
	w("- Load average (1, 5, 15 min) at the start: %s; at the end: %s\n", res.LoadAvg[0], res.LoadAvg[1])
	w("- Lowest share of counted frames processed on CPU %d: %.1f%%\n\n", o.CPU, 100*res.minCPUShare())
	for m, why := range res.Skipped {
		w("Mode *%s* was skipped: %s\n\n", res.label(m), why)
	}

	w("| scenario | xrouter: ns per packet above the harness | %s: ns | difference (ns per packet) | xrouter Mpps | %s Mpps | xrouter ÷ %s | xrouter ÷ kernel | %s ÷ kernel |\n", base, base, base, base)
	w("|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range res.Scenarios {
		if res.Mpps(sc.Name, ModeBaseline) == nil {
			continue
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sc.Name,
			fmtNs(res.costNs(sc.Name, ModeXrouter)), fmtNs(res.costNs(sc.Name, ModeBaseline)),
			fmtDelta(res.delta(sc.Name, ModeXrouter, ModeBaseline)),
			fmtSpread(spreadOf(res.Mpps(sc.Name, ModeXrouter)), ""), fmtSpread(spreadOf(res.Mpps(sc.Name, ModeBaseline)), ""),
			fmtSpread(res.ratio(sc.Name, ModeXrouter, ModeBaseline), "×"),
			fmtSpread(res.ratio(sc.Name, ModeXrouter, ModeKernel), "×"), fmtSpread(res.ratio(sc.Name, ModeBaseline, ModeKernel), "×"))
	}
	w("\nScenarios as in [Forwarding throughput](#forwarding-throughput):")
	fwd := res.fwdScenarios()
	for i, sc := range fwd {
		sep := ";"
		if i == len(fwd)-1 {
			sep = "."
		}
		w(" `%s`: %s, %d-byte frames%s", sc.Name, sc.Desc, sc.FrameLen, sep)
	}
	w("\n\n")

	w("Counters over whole generator runs, summed over the rounds (as in the forwarding section's cross-check):\n\n")
	w("| scenario | mode | generated | sink | TTL ok | xrouter forwarded | TTL-1 sent | ttl_exceeded |\n|---|---|---|---|---|---|---|---|\n")
	for _, sc := range res.Scenarios {
		for _, m := range []string{ModeXrouter, ModeBaseline} {
			t := res.totals(sc.Name, m)
			if t.n == 0 || res.Mpps(sc.Name, ModeBaseline) == nil {
				continue
			}
			slow, ttl := "—", "—"
			if t.slow > 0 {
				slow, ttl = fmt.Sprint(t.slow), fmt.Sprint(t.xrTTL)
			}
			w("| %s | %s | %d | %d | %d | %d | %s | %s |\n", sc.Name, res.label(m), t.gen, t.counted, t.ttlOK, t.xrFwd, slow, ttl)
		}
	}

	w("\n<details><summary>Every measurement (Mpps per round), and the config file</summary>\n\n| scenario | mode |")
	for i := range o.Rounds {
		w(" round %d |", i+1)
	}
	w("\n|---|---|")
	for range o.Rounds {
		w("---|")
	}
	w("\n")
	for _, sc := range res.Scenarios {
		for _, m := range runModes(o) {
			vs := res.Mpps(sc.Name, m)
			if vs == nil {
				continue
			}
			w("| %s | %s |", sc.Name, res.label(m))
			for _, v := range vs {
				w(" %.2f |", v)
			}
			w("\n")
		}
	}
	if res.BaselineConfig != "" {
		w("\nThe baseline's config file:\n\n```yaml\n%s```\n", res.BaselineConfig)
	}
	w("\n</details>\n")
	return b.String()
}

// WriteCompareDocs replaces the comparison section of docsFile, or adds it
// right after the forwarding section (before the FIB section, or at the
// end, when there is none). Nothing else in the file changes.
func (res *Results) WriteCompareDocs(docsFile string, c Compare, development bool) error {
	old, err := os.ReadFile(docsFile)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n\nEvery number here comes from a command in this repository; each section names its command.\n")
	} else if err != nil {
		return err
	}
	s, err := replaceSection(string(old), res.CompareMarkdown(c, development))
	if err != nil {
		return fmt.Errorf("%s: %w", docsFile, err)
	}
	return os.WriteFile(docsFile, []byte(s), 0o644)
}

// replaceSection puts body between the comparison markers in doc, adding
// the markers after the forwarding section if they are missing.
func replaceSection(doc, body string) (string, error) {
	i, j := strings.Index(doc, cmpMarkBegin), strings.Index(doc, cmpMarkEnd)
	if i < 0 && j < 0 {
		pair := cmpMarkBegin + "\n" + cmpMarkEnd
		switch k, f := strings.Index(doc, markEnd), strings.Index(doc, fibMarkBegin); {
		case k >= 0:
			k += len(markEnd)
			doc = doc[:k] + "\n\n" + pair + doc[k:]
		case f >= 0:
			doc = doc[:f] + pair + "\n\n" + doc[f:]
		default:
			doc = strings.TrimRight(doc, "\n") + "\n\n" + pair + "\n"
		}
		i, j = strings.Index(doc, cmpMarkBegin), strings.Index(doc, cmpMarkEnd)
	}
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %s … %s not found in order", cmpMarkBegin, cmpMarkEnd)
	}
	return doc[:i+len(cmpMarkBegin)] + "\n" + body + doc[j:], nil
}
