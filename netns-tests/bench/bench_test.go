package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	full     = flag.Bool("full", false, "run the full benchmark (make bench); without it TestBenchPrivileged skips")
	xrPath   = flag.String("xrouter", "bin/xrouter", "the xrouter binary to benchmark")
	docs     = flag.String("docs", "", "docs/benchmarks.md to write the results into (empty: do not write)")
	rounds   = flag.Int("rounds", 5, "rounds")
	duration = flag.Duration("duration", 700*time.Millisecond, "duration of one measurement")
	table    = flag.Int("table", 1_000_000, "full table size")
	command  = flag.String("command", "make bench", "the command line to record in the docs")
	dev      = flag.Bool("dev", false, "mark the docs as a development run on a shared machine")
	fsRules  = flag.String("flowspec", "1,100,10000", "rule counts of the FlowSpec attack-drop scenarios, comma-separated (empty: none)")
	fsFwd    = flag.Int("flowspec-fwd", 100, "rule count of the FlowSpec forwarding scenario (0: none)")
	fsOnly   = flag.Bool("flowspec-only", false, "run only the FlowSpec scenarios (docs: only their section)")

	// make bench-compare: a second xrouter build as one more mode.
	baseline     = flag.String("baseline", "", "a second xrouter binary (another commit's build) to measure as one more mode, with the xrouter mode's config; the docs get only the comparison section")
	baselineName = flag.String("baseline-name", DefaultBaselineName, "the baseline mode's label")
	baselineRev  = flag.String("baseline-rev", "", "the baseline's commit, to record in the docs")
	headRev      = flag.String("head-rev", "", "the commit of -xrouter's build, to record in the docs")
	compareTitle = flag.String("compare-title", "Against an earlier build", "the comparison section's heading")
)

// TestBenchPrivileged is `make bench`: the whole benchmark, results into
// the docs. It only runs with -full, so `go test ./...` skips it (the smoke
// test in netns-tests covers the same code in a quick mode).
func TestBenchPrivileged(t *testing.T) {
	if !*full {
		t.Skip("the full benchmark runs with -full (make bench)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	xr, err := filepath.Abs(*xrPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(xr); err != nil {
		t.Fatalf("xrouter binary: %v (run make build)", err)
	}
	o := DefaultOptions(xr)
	o.Rounds, o.Duration, o.Table = *rounds, *duration, *table
	if o.FlowSpec, err = parseCounts(*fsRules); err != nil {
		t.Fatalf("-flowspec: %v", err)
	}
	o.FlowSpecFwd, o.NoForwarding = *fsFwd, *fsOnly
	if *baseline != "" {
		if o.Baseline, err = filepath.Abs(*baseline); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(o.Baseline); err != nil {
			t.Fatalf("baseline binary: %v", err)
		}
		o.BaselineName = *baselineName
		// A comparison is about forwarding: the FlowSpec scenarios
		// would only make it longer.
		o.FlowSpec, o.FlowSpecFwd = nil, 0
	}
	if o.Table < 100_000 {
		o.Sweep = []int{o.Table / 100, o.Table / 10}
	}
	res, err := Run(ctx, t, o)
	if err != nil {
		if ctx.Err() != nil {
			t.Fatalf("interrupted; cleaning up: %v", err)
		}
		t.Fatal(err)
	}
	t.Logf("benchmark finished in %s", res.Elapsed.Round(time.Second))
	if o.Baseline != "" {
		// A comparison run writes only its own section: the forwarding
		// section and its plots stay those of the last make bench.
		c := Compare{Title: *compareTitle, Command: *command, Base: *baselineRev, Head: *headRev}
		if c.Base == "" {
			c.Base = "`" + *baseline + "`"
		}
		if c.Head == "" {
			c.Head = "`" + *xrPath + "`"
		}
		os.Stdout.WriteString("\n" + res.CompareMarkdown(c, *dev) + "\n")
		if *docs != "" {
			if err := res.WriteCompareDocs(*docs, c, *dev); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote the comparison section of %s", *docs)
		}
		return
	}
	if !o.NoForwarding {
		os.Stdout.WriteString("\n" + res.Markdown(*command, *dev) + "\n")
	}
	if len(o.FlowSpec) > 0 || o.FlowSpecFwd > 0 {
		os.Stdout.WriteString("\n" + res.FlowSpecMarkdown(*command, *dev) + "\n")
	}
	if *docs != "" {
		img := filepath.Join(filepath.Dir(*docs), "img")
		if err := res.WriteDocs(*docs, img, *command, *dev); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s and the plots in %s", *docs, img)
	}
}

// parseCounts parses "1,100,10000".
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want a positive rule count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
