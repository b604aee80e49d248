package bench

import (
	"math"
	"net/netip"
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
