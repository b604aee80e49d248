package bench

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in          []float64
		med, lo, hi float64
		n           int
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3},
		{[]float64{4, 1, 2, 3}, 2.5, 1, 4, 4},
		{[]float64{math.NaN(), 5, 1}, 3, 1, 5, 2},
	} {
		s := spreadOf(tc.in)
		if s.Median != tc.med || s.Min != tc.lo || s.Max != tc.hi || s.N != tc.n {
			t.Errorf("spreadOf(%v) = %+v, want median %v range %v–%v n %d", tc.in, s, tc.med, tc.lo, tc.hi, tc.n)
		}
	}
	if s := spreadOf([]float64{math.NaN()}); s.N != 0 || fmtSpread(s, "") != "—" {
		t.Errorf("spreadOf(NaN) = %+v, want empty", s)
	}
}

// The ratio is taken round by round: a round where both modes were slow
// (a noisy neighbour) gives the same ratio as a quiet one.
func TestRatioPerRound(t *testing.T) {
	res := &Results{Samples: map[string]map[string][]*Sample{"s": {
		ModeKernel:  {{Mpps: 1}, {Mpps: 2}, {Mpps: 4}},
		ModeXrouter: {{Mpps: 3}, {Mpps: 6}, {Mpps: 12}},
	}}}
	r := res.ratio("s", ModeXrouter, ModeKernel)
	if r.Median != 3 || r.Min != 3 || r.Max != 3 || r.N != 3 {
		t.Errorf("ratio = %+v, want 3× in every round", r)
	}
	// A missing round on either side drops that round only.
	res.Samples["s"][ModeKernel][1] = nil
	if r := res.ratio("s", ModeXrouter, ModeKernel); r.N != 2 {
		t.Errorf("ratio with a missing round = %+v, want 2 rounds", r)
	}
	res.Samples["s"][ModeDrop] = []*Sample{{Mpps: 10}, {Mpps: 10}, {Mpps: 10}}
	if c := res.costNs("s", ModeXrouter); c.N != 3 || math.Abs(c.Min-(1000.0/12-100)) > 1e-9 || math.Abs(c.Max-(1000.0/3-100)) > 1e-9 {
		t.Errorf("costNs = %+v, want 1000/Mpps - 100 ns per round", c)
	}
	if r := res.ratio("s", ModeNoCache, ModeKernel); r.N != 0 {
		t.Errorf("ratio against an unmeasured mode = %+v, want none", r)
	}
}

// TestMakeTableFull: the 1M-route table never collides with a route of
// the topology's own (installing it with ip -batch would fail on the
// duplicate, as it once did at 100.64.0.0/10).
func TestMakeTableFull(t *testing.T) {
	for _, p := range makeTable(1_000_000) {
		if p.Overlaps(fsSpoofBack) || p.Overlaps(oneRoute4) || p.Overlaps(ecmpRoute) {
			t.Fatalf("table prefix %s overlaps a topology route", p)
		}
	}
}

func TestMakeTable(t *testing.T) {
	const n = 20000
	tab := makeTable(n)
	if len(tab) != n {
		t.Fatalf("%d prefixes, want %d", len(tab), n)
	}
	seen := map[netip.Prefix]bool{}
	bits := map[int]int{}
	for _, p := range tab {
		if seen[p] || p != p.Masked() || !p.Addr().Is4() {
			t.Fatalf("prefix %s duplicate or not a masked IPv4 prefix", p)
		}
		seen[p] = true
		switch first := p.Addr().As4()[0]; {
		case first == 0, first == 10, first == 127, first == 198, first >= 224:
			t.Fatalf("prefix %s is in a range the topology uses or never routes", p)
		}
		bits[p.Bits()]++
	}
	for _, m := range lengthMix {
		if m.bits == 0 {
			continue
		}
		got := float64(bits[m.bits]) / n * 1000
		if math.Abs(got-float64(m.perMill)) > 0.2*float64(m.perMill)+3 {
			t.Errorf("/%d: %.1f‰ of the table, want about %d‰", m.bits, got, m.perMill)
		}
	}
	if again := makeTable(n); again[n-1] != tab[n-1] {
		t.Errorf("the table is not the same from run to run")
	}
	for _, d := range activeDsts(tab[:100], 1000, 1) {
		found := false
		for _, p := range tab[:100] {
			found = found || p.Contains(d)
		}
		if !found {
			t.Fatalf("active destination %s outside the installed prefixes", d)
		}
	}
	if !strings.Contains(mixText(), "/24 60.0%") {
		t.Errorf("mixText() = %q", mixText())
	}
}

// compareResults is a run with a baseline: xrouter takes 20 ns more per
// packet than the baseline in every round, whatever the round's speed.
func compareResults() *Results {
	res := &Results{
		Opts:      Options{Rounds: 2, Baseline: "/tmp/old-xrouter", BaselineName: "xrouter at 86f9f41"},
		Scenarios: []*Scenario{{Name: "v4-64", Desc: "IPv4, one route", FrameLen: 64}, {Name: "size-10k", Desc: "IPv4, 10k routes", FrameLen: 64}},
		Samples: map[string]map[string][]*Sample{
			"v4-64": {
				// 1000/4 = 250 ns and 1000/5 = 200 ns; drop 100 ns.
				ModeXrouter:  {{Mpps: 4, Generated: 10, Counted: 10, TTLOK: 10, XRForwarded: 10}, {Mpps: 4}},
				ModeBaseline: {{Mpps: 1000.0 / 230, Generated: 7, Counted: 7, TTLOK: 7, XRForwarded: 7}, {Mpps: 1000.0 / 230}},
				ModeKernel:   {{Mpps: 1}, {Mpps: 1}},
				ModeDrop:     {{Mpps: 10}, {Mpps: 10}},
			},
			"size-10k": {
				ModeXrouter:  {{Mpps: 2}, {Mpps: 1000.0 / 600}},
				ModeBaseline: {{Mpps: 1000.0 / 480}, {Mpps: 1000.0 / 580}},
				ModeKernel:   {{Mpps: 1}, {Mpps: 1}},
			},
		},
	}
	return res
}

func TestRunModes(t *testing.T) {
	if got := runModes(Options{}); !slices.Equal(got, AllModes) {
		t.Errorf("modes without a baseline = %v, want %v", got, AllModes)
	}
	want := []string{ModeKernel, ModeXrouter, ModeBaseline, ModeNoCache, ModeRedirect, ModeDrop}
	if got := runModes(Options{Baseline: "x"}); !slices.Equal(got, want) {
		t.Errorf("modes with a baseline = %v, want %v", got, want)
	}
}

func TestCompareMarkdown(t *testing.T) {
	res := compareResults()
	if d := res.delta("v4-64", ModeXrouter, ModeBaseline); d.N != 2 || math.Abs(d.Median-20) > 1e-9 {
		t.Errorf("delta = %+v, want +20 ns in both rounds", d)
	}
	// The difference needs no bare drop: size-10k has none.
	if d := res.delta("size-10k", ModeXrouter, ModeBaseline); d.N != 2 || math.Abs(d.Min-20) > 1e-9 || math.Abs(d.Max-20) > 1e-9 {
		t.Errorf("size-10k delta = %+v, want +20 ns", d)
	}
	md := res.CompareMarkdown(Compare{Title: "Before and after", Command: "make bench-compare BASE=86f9f41", Base: "86f9f41 (old)", Head: "abc1234 (new)"}, true)
	for _, want := range []string{
		"### Before and after\n",
		"**Development run**",
		"`make bench-compare BASE=86f9f41`",
		"Baseline: 86f9f41 (old); xrouter: abc1234 (new)",
		"| xrouter ÷ xrouter at 86f9f41 |",
		// ns above the harness: 250-100 and 230-100; +20 ns; 4/4.35 = 0.92×.
		"| v4-64 | 150 (150–150) | 130 (130–130) | +20 (+20 to +20) | 4.00 (4.00–4.00) | 4.35 (4.35–4.35) | 0.92× (0.92–0.92) | 4.00× (4.00–4.00) | 4.35× (4.35–4.35) |",
		"| size-10k | — | — | +20 (+20 to +20) |",
		"| v4-64 | xrouter at 86f9f41 | 7 | 7 | 7 | 7 | — | — |",
		"| v4-64 | xrouter at 86f9f41 | 4.35 | 4.35 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("comparison section lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(res.Markdown("make bench", false), "86f9f41") {
		t.Errorf("the forwarding section shows the baseline")
	}
}

// The comparison goes right after the forwarding section, and a second
// run replaces it; neither touches the forwarding or the FIB section.
func TestWriteCompareDocs(t *testing.T) {
	res := compareResults()
	c := Compare{Title: "Before and after", Command: "make bench-compare"}
	head := "# Benchmarks\n\nintro\n\n"
	fwd := markBegin + "\n## Forwarding throughput\n\nnumbers\n" + markEnd
	fib := fibMarkBegin + "\n## Control plane\n" + fibMarkEnd + "\n"
	file := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(file, []byte(head+fwd+"\n\n"+fib), 0o644); err != nil {
		t.Fatal(err)
	}
	section := cmpMarkBegin + "\n" + res.CompareMarkdown(c, false) + cmpMarkEnd
	for range 2 {
		if err := res.WriteCompareDocs(file, c, false); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if want := head + fwd + "\n\n" + section + "\n\n" + fib; string(b) != want {
			t.Fatalf("docs after the comparison:\n%s\nwant:\n%s", b, want)
		}
	}
	// A file without a forwarding section: before the FIB section.
	if err := os.WriteFile(file, []byte(head+fib), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteCompareDocs(file, c, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != head+section+"\n\n"+fib {
		t.Errorf("docs without a forwarding section:\n%s", b)
	}
	// Markers out of order are an error, not a guess.
	if err := os.WriteFile(file, []byte(head+cmpMarkEnd+"\n"+cmpMarkBegin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteCompareDocs(file, c, false); err == nil {
		t.Errorf("markers out of order: no error")
	}
}
