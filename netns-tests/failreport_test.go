package netnstests

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The failover benchmark's report: a table per run and, per feed, one
// figure with a panel per event.

var failReceiverNames = map[string]string{
	"xrouter": "xrouter (GoBGP + fib, XDP)",
	"bird":    "BIRD 2 (protocol kernel)",
	"frr":     "FRR bgpd + zebra",
}

var failReceiverColor = map[string]color.Color{
	"xrouter": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"bird":    color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	"frr":     color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

var failPhaseTitle = map[string]string{
	"kill":        "kill -9 of A's speaker → B",
	"kill-return": "A's speaker back → A",
	"cut":         "A's link cut (hold timer) → B",
	"cut-return":  "A's link back → A",
}

func phaseCell(ph *phase) string {
	if ph == nil {
		return "–"
	}
	if !ph.OK {
		return fmt.Sprintf("not converged (lost %d)", ph.Lost)
	}
	s := fmt.Sprintf("%.1f", ph.Converged.Seconds())
	if ph.SessionUp > 0 {
		s = fmt.Sprintf("%.1f (session %.1f)", ph.Converged.Seconds(), ph.SessionUp.Seconds())
	}
	return fmt.Sprintf("%s / %d", s, ph.Lost)
}

func (r failResult) phase(name string) *phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// failTable renders the results as a markdown table.
func failTable(rs []failResult) string {
	var b strings.Builder
	b.WriteString("| feed | receiver | prefixes per upstream (v4 + v6) | both tables loaded (s) | peak RSS (MiB) | CPU for the load (s) |")
	for _, p := range []string{"kill", "kill-return", "cut", "cut-return"} {
		fmt.Fprintf(&b, " %s: s / lost |", failPhaseTitle[p])
	}
	b.WriteString(" CPU in all (s) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		load := fmt.Sprintf("%.1f", r.Load.Seconds())
		if r.Flaps > 0 {
			load += fmt.Sprintf(" (%d session drops)", r.Flaps)
		}
		fmt.Fprintf(&b, "| %s | %s | %d + %d | %s | %d | %.1f |", r.Feed, failReceiverNames[r.Receiver], r.N4, r.N6,
			load, r.PeakRSS>>20, r.CPULoad)
		for _, p := range []string{"kill", "kill-return", "cut", "cut-return"} {
			fmt.Fprintf(&b, " %s |", phaseCell(r.phase(p)))
		}
		fmt.Fprintf(&b, " %.1f |\n", r.CPUTotal)
	}
	return b.String()
}

// plotFail draws one figure per feed: a panel per event, the fraction of
// samples forwarding via the right upstream against the seconds since the
// event, a line per receiver.
func plotFail(file, feed string, rs []failResult) error {
	phases := []string{"kill", "kill-return", "cut", "cut-return"}
	const cols = 2
	rows := (len(phases) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, name := range phases {
		p := plot.New()
		p.Title.Text = failPhaseTitle[name]
		p.X.Label.Text = "seconds since the event"
		p.Y.Label.Text = "fraction of samples via the right upstream"
		p.Y.Min, p.Y.Max = 0, 1.05
		p.Legend.Top = false
		p.Add(plotter.NewGrid())
		for _, r := range rs {
			if r.Feed != feed {
				continue
			}
			ph := r.phase(name)
			if ph == nil || len(ph.Curve) == 0 {
				continue
			}
			pts := make(plotter.XYs, len(ph.Curve))
			for k, c := range ph.Curve {
				pts[k].X, pts[k].Y = c[0], c[1]
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color = failReceiverColor[r.Receiver]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(r.Receiver, l)
		}
		plots[i/cols][i%cols] = p
	}
	const w, h = 260 * vg.Millimeter, 190 * vg.Millimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j := range plots[i] {
			if plots[i][j] != nil {
				plots[i][j].Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeFailDoc writes the results between the failover markers of the doc
// (appended to the file when missing); text after the failover:results
// part of the section is kept.
func writeFailDoc(path, imgDir string, o failOpts, rs []failResult) error {
	const (
		begin, end       = "<!-- failover:begin -->", "<!-- failover:end -->"
		resBegin, resEnd = "<!-- failover:results:begin -->", "<!-- failover:results:end -->"
	)
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(path), imgDir)
	if err != nil {
		rel = imgDir
	}
	var figs strings.Builder
	for _, feed := range o.Feeds {
		name := "failover-" + feed + ".png"
		if err := plotFail(filepath.Join(imgDir, name), feed, rs); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		fmt.Fprintf(&figs, "\n![Failover, %s feed: fraction of sampled prefixes forwarding via the right upstream](%s)\n", feed, filepath.ToSlash(filepath.Join(rel, name)))
	}
	old, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n")
	} else if err != nil {
		return err
	}
	s := string(old)
	if !strings.Contains(s, begin) {
		s = strings.TrimRight(s, "\n") + "\n\n" + begin + "\n" + end + "\n"
	}
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if j < i {
		return fmt.Errorf("%s: %s after %s", path, end, begin)
	}
	section := s[i+len(begin) : j]
	results := resBegin + "\n" + failDocText(o, failTable(rs)) + figs.String() + resEnd
	if ri, rj := strings.Index(section, resBegin), strings.Index(section, resEnd); ri >= 0 && rj > ri {
		section = section[:ri] + results + section[rj+len(resEnd):]
	} else {
		section = "\n" + results + "\n"
	}
	s = s[:i+len(begin)] + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func failDocText(o failOpts, table string) string {
	var b strings.Builder
	b.WriteString("## Control plane: two upstreams, failover\n\n")
	fmt.Fprintf(&b, "Two upstreams A and B each send the same %d IPv4 and %d IPv6 prefixes over one eBGP session (both families), A with the shorter AS paths. ", o.N4, o.N6)
	b.WriteString("Feeds: *diverse* groups prefixes into attribute sets of their own (AS path, MED, communities), about one set per 3.2 prefixes and one UPDATE per set, so half the UPDATEs carry a single NLRI; *packed* gives every prefix one attribute set and fills each UPDATE (what `make bench-fib` sends). ")
	fmt.Fprintf(&b, "A source behind the receiver sends a UDP probe every %s to one address in each of %d sampled prefixes; AF_PACKET taps on the upstreams' links record where each arrives.\n\n", o.Interval, o.Samples)
	b.WriteString(table)
	b.WriteString("\nEach event column: seconds from the event until every sample arrived via the right upstream and kept doing so, then the probes lost (sent after the event, arrived at neither upstream; while A's link is cut, arrivals at A count as lost). For the returns, the seconds until the session was up again come first in parentheses. After kill -9, A's link still delivers (only its speaker died), so a probe lost there was dropped by the receiver itself while routes moved.\n\n")
	fmt.Fprintf(&b, "- Command: `make bench-failover` (`XROUTER_FAILBENCH_PREFIXES=%d XROUTER_FAILBENCH_PREFIXES6=%d go test -run TestFailoverBenchPrivileged -v ./netns-tests/`)\n", o.N4, o.N6)
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- Machine: %d CPUs; kernel %s; Go %s\n", runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version())
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Loaded: the later of both tables in the receiver's kernel (`fib_triestat` Main prefixes and `rt6_stats` routes up to baseline + N) and both feeders' data acknowledged by the receiver's TCP (`SIOCOUTQ` 0 after End-of-RIB), from the first session up. Peak RSS: `VmHWM` then (FRR: bgpd + zebra). Each event waits until the receiver is idle (under 5%% of a CPU over 2 s). Hold time offered by the feeders: %d s (keepalive a third). The link cut drops every packet on A's side in both directions (tc); the carrier stays up, so the hold timer is the only way to notice.\n", o.Hold)
	return b.String()
}
