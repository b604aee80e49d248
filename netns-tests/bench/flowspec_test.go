package bench

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rule sets: distinct, valid for xrouter, never overlapping another
// host's rule, the attack's rule mid-list and the victim's rules together.
func TestMakeFSRules(t *testing.T) {
	for _, n := range []int{1, 8, 100, 10_000} {
		s, err := makeFSRules(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.rules) != n {
			t.Fatalf("%d rules, want %d", len(s.rules), n)
		}
		seen := map[netip.Prefix]bool{}
		attacks := 0
		for _, f := range s.rules {
			if f.attack() {
				attacks++
				continue
			}
			if f.dst.Contains(fsVictim) {
				continue
			}
			for p := range seen {
				if p.Overlaps(f.dst) {
					t.Fatalf("n=%d: %s overlaps %s", n, f.dst, p)
				}
			}
			seen[f.dst] = true
			if f.dst.Overlaps(oneRoute4) || f.dst.Overlaps(fsSpoofBack) {
				t.Fatalf("n=%d: %s overlaps the routes the scenarios use", n, f.dst)
			}
		}
		if attacks != 1 || s.rules[s.attackPos-1] != (fsRule{netip.PrefixFrom(fsVictim, 32), protoUDP, fsAttackPort}) {
			t.Fatalf("n=%d: %d attack rules, position %d", n, attacks, s.attackPos)
		}
		if want := min(n, 1+len(fsVictimRules)); s.victimRules != want {
			t.Errorf("n=%d: %d rules name the victim, want %d", n, s.victimRules, want)
		}
		if n == 10_000 && (s.attackPos < n/3 || s.attackPos > 2*n/3) {
			t.Errorf("n=%d: the attack's rule is #%d, want it mid-list", n, s.attackPos)
		}
		if y := s.yaml(); strings.Count(y, "action: {rate: 0}") != n {
			t.Errorf("n=%d: config has %d rules", n, strings.Count(y, "action: {rate: 0}"))
		}
	}
}

func TestVerdict(t *testing.T) {
	le5 := func(v float64) bool { return v <= 0.05 }
	for _, tc := range []struct {
		s    spread
		want string
	}{
		{spread{Median: 0.02, Min: 0.01, Max: 0.04, N: 3}, "met"},
		{spread{Median: 0.2, Min: 0.1, Max: 0.4, N: 3}, "missed"},
		{spread{Median: 0.02, Min: -0.5, Max: 0.4, N: 3}, "inconclusive at this noise (rounds on both sides; the median meets it)"},
		{spread{}, "not measured"},
	} {
		if got := verdict(tc.s, le5); got != tc.want {
			t.Errorf("verdict(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// A FlowSpec-only run adds its section after the forwarding sections and
// leaves them alone; a second run replaces it.
func TestWriteFlowSpecDocs(t *testing.T) {
	dir := t.TempDir()
	docs := filepath.Join(dir, "benchmarks.md")
	orig := "# Benchmarks\n\n" + markBegin + "\nFWD\n" + markEnd + "\n\n" + cmpMarkBegin + "\nCMP\n" + cmpMarkEnd + "\n\n" + fibMarkBegin + "\nFIB\n" + fibMarkEnd + "\n"
	if err := os.WriteFile(docs, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	res := &Results{Opts: Options{Rounds: 2}, FlowSpec: map[int]FlowSpecSet{100: {Rules: 100, AttackPos: 50, VictimRules: 8}},
		Scenarios: []*Scenario{{Name: "fs-drop-100", Rules: 100, Drop: true}, {Name: "fs-fwd-100", Rules: 100}},
		Samples: map[string]map[string][]*Sample{
			"fs-drop-100": {ModeFSXrouter: {{Mpps: 5}, {Mpps: 4}}, ModeNftLinear: {{Mpps: 0.5}, {Mpps: 0.5}}, ModeNftSet: {{Mpps: 1}, {Mpps: 1}},
				ModeDrop: {{Mpps: 10}, {Mpps: 5}}},
			"fs-fwd-100": {ModeXrouter: {{Mpps: 4}, {Mpps: 4}}, ModeFSXrouter: {{Mpps: 3.9}, {Mpps: 3.85}}},
		}}
	for range 2 {
		if err := res.WriteDocs(docs, filepath.Join(dir, "img"), "cmd", true); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(docs)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if strings.Count(doc, fsMarkBegin) != 1 || !strings.Contains(doc, "\nFWD\n") || !strings.Contains(doc, "\nCMP\n") {
		t.Fatalf("sections mangled:\n%s", doc)
	}
	if i, j, k := strings.Index(doc, cmpMarkEnd), strings.Index(doc, fsMarkBegin), strings.Index(doc, fibMarkBegin); !(i < j && j < k) {
		t.Errorf("FlowSpec section not between the comparison and the FIB sections:\n%s", doc)
	}
	for _, want := range []string{
		"| 100 (`fs-drop-100`) | #50 | 8 | 4.50 (4.00–5.00) | 0.50 (0.50–0.50) | 1.00 (1.00–1.00) | 9.00× (8.00–10.00) | 4.50× (4.00–5.00) | 10.00×, 5.00× |",
		"Measured 9.00× (8.00–10.00) against the linear chain (inconclusive at this noise (rounds on both sides; the median misses it)",
		"`fs-fwd-100`: measured 3.1% (2.5 to 3.7), met",
		// Above the bare drop (100 and 200 ns): xrouter 100 and 50 ns, the
		// rules 1900 and 1800 ns (19× and 36×), the set 900 and 800 (9×, 16×).
		"| 100 | 150 (100–200) | 75 (50–100) | 1850 (1800–1900) | 850 (800–900) | 27.50× (19.00–36.00) | 12.50× (9.00–16.00) |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %q in:\n%s", want, doc)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "img", "bench-flowspec.png")); err != nil || fi.Size() == 0 {
		t.Errorf("plot not written: %v", err)
	}
}
