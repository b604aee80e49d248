package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/daemon"
	"github.com/xrouter/xrouter/internal/dataplane"
)

func statsCmd() *cobra.Command {
	var asJSON, all bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the fast path's per-outcome counters and rates",
		Long: `Show how many packets the XDP program forwarded and, for every packet it
passed to the kernel, why. Reads the pinned counters, so it works whether
the daemon runs or not; a user who may not open the pins (a member of
api.group) gets them from the daemon's API instead. Rates are measured over --interval (0 skips them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			read := statsReader(cfg.Dataplane.PinPath, cfg.API.Socket)
			first, err := read()
			if err != nil {
				return err
			}
			var rates *dataplane.Stats
			if interval > 0 {
				time.Sleep(interval)
				second, err := read()
				if err != nil {
					return err
				}
				r := rateOf(first.Outcomes, second.Outcomes, interval)
				first, rates = second, &r
			}
			if asJSON {
				return writeStatsJSON(cmd.OutOrStdout(), first.Outcomes, rates, interval, first.Cache)
			}
			writeStatsTable(cmd.OutOrStdout(), first.Outcomes, rates, all)
			writeCacheStats(cmd.OutOrStdout(), first.Cache)
			return nil
		},
	}
	configFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list outcomes that never happened")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "measure rates over this interval (0: totals only)")
	return cmd
}

// rateOf is per second; counters only grow, a restart of the map shows as 0.
func rateOf(a, b dataplane.Stats, d time.Duration) dataplane.Stats {
	var r dataplane.Stats
	sec := d.Seconds()
	for i := range r {
		if b[i].Packets >= a[i].Packets {
			r[i].Packets = uint64(float64(b[i].Packets-a[i].Packets) / sec)
			r[i].Bytes = uint64(float64(b[i].Bytes-a[i].Bytes) / sec)
		}
	}
	return r
}

type statsRow struct {
	Outcome    string  `json:"outcome"`
	Packets    uint64  `json:"packets"`
	Bytes      uint64  `json:"bytes"`
	PacketRate *uint64 `json:"pps,omitempty"`
	ByteRate   *uint64 `json:"bps,omitempty"`
	Help       string  `json:"help"`
}

func writeStatsJSON(w io.Writer, s dataplane.Stats, r *dataplane.Stats, interval time.Duration, cache *dataplane.CacheStats) error {
	out := struct {
		Time       time.Time             `json:"time"`
		IntervalMs int64                 `json:"interval_ms,omitempty"`
		Forwarded  uint64                `json:"forwarded"`
		Passed     uint64                `json:"passed"`
		Outcomes   []statsRow            `json:"outcomes"`
		Cache      *dataplane.CacheStats `json:"cache,omitempty"`
	}{Time: time.Now().UTC(), Cache: cache}
	if r != nil {
		out.IntervalMs = interval.Milliseconds()
	}
	for _, o := range dataplane.Outcomes() {
		row := statsRow{Outcome: o.String(), Packets: s[o].Packets, Bytes: s[o].Bytes, Help: o.Help()}
		if r != nil {
			pps, bps := r[o].Packets, r[o].Bytes*8
			row.PacketRate, row.ByteRate = &pps, &bps
		}
		if o == dataplane.Forwarded {
			out.Forwarded = s[o].Packets
		} else {
			out.Passed += s[o].Packets
		}
		out.Outcomes = append(out.Outcomes, row)
	}
	return writeJSON(w, out)
}

func writeStatsTable(w io.Writer, s dataplane.Stats, r *dataplane.Stats, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if r != nil {
		fmt.Fprintln(tw, "OUTCOME\tPACKETS\tBYTES\tPPS\tBIT/S\t\tMEANING")
	} else {
		fmt.Fprintln(tw, "OUTCOME\tPACKETS\tBYTES\t\tMEANING")
	}
	var total uint64
	for _, o := range dataplane.Outcomes() {
		total += s[o].Packets
		if !all && s[o].Packets == 0 && o != dataplane.Forwarded {
			continue
		}
		if r != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\t%s\n", o, s[o].Packets, s[o].Bytes, r[o].Packets, humanBits(r[o].Bytes*8), o.Help())
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%d\t\t%s\n", o, s[o].Packets, s[o].Bytes, o.Help())
		}
	}
	tw.Flush()
	if total > 0 {
		fmt.Fprintf(w, "fast path: %.1f%% of %d packets\n", 100*float64(s[dataplane.Forwarded].Packets)/float64(total), total)
	}
}

// writeCacheStats prints the next-hop cache's counters (totals since the
// pinned counters were created).
func writeCacheStats(w io.Writer, c *dataplane.CacheStats) {
	if c == nil {
		return
	}
	ratio := ""
	if n := c.Hit + c.Miss; n > 0 {
		ratio = fmt.Sprintf(" (%.1f%% of lookups hit)", 100*float64(c.Hit)/float64(n))
	}
	fmt.Fprintf(w, "next-hop cache: hit %d, miss %d, insert %d, bypass %d, uncacheable %d, admit_skip %d%s\n",
		c.Hit, c.Miss, c.Insert, c.Bypass, c.Uncacheable, c.AdmitSkip, ratio)
}

func humanBits(b uint64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.2fG", float64(b)/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.2fM", float64(b)/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.2fk", float64(b)/1e3)
	}
	return fmt.Sprintf("%d", b)
}

// statsReader reads the pins, or, when this user may not open them, asks
// the daemon over its API socket.
func statsReader(pin, socket string) func() (daemon.StatsSnapshot, error) {
	viaAPI := false
	return func() (daemon.StatsSnapshot, error) {
		if !viaAPI {
			s, err := daemon.ReadStats(pin)
			if err == nil || !errors.Is(err, os.ErrPermission) || socket == "" {
				return s, err
			}
			viaAPI = true
		}
		var s daemon.StatsSnapshot
		if err := apiGet(socket, "/stats", &s); err != nil {
			return s, fmt.Errorf("pins under %s: permission denied; %w", pin, err)
		}
		return s, nil
	}
}
