package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/daemon"
)

func flowspecCmd() *cobra.Command {
	var asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "flowspec",
		Short: "List the installed FlowSpec rules with their sources and counters",
		Long: `List the FlowSpec rules in the XDP classifier in the order they are tried
(RFC 8955 §5.1; the first match wins), where each came from (config or a
BGP peer), its action, and the packets and bytes it matched (over_rate:
packets a rate limit dropped). Asks the running daemon through api.socket.
Rates are measured over --interval (0 skips them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var rows []daemon.FlowspecRow
			if err := apiGet(cfg.API.Socket, "/flowspec", &rows); err != nil {
				return err
			}
			if interval > 0 {
				time.Sleep(interval)
				var next []daemon.FlowspecRow
				if err := apiGet(cfg.API.Socket, "/flowspec", &next); err != nil {
					return err
				}
				prev := map[string]daemon.FlowspecRow{}
				for _, r := range rows {
					prev[fmt.Sprint(r.Family, r.Match)] = r
				}
				for i, r := range next {
					if p, ok := prev[fmt.Sprint(r.Family, r.Match)]; ok && r.Packets >= p.Packets {
						next[i].PPS = float64(r.Packets-p.Packets) / interval.Seconds()
						next[i].BPS = float64(r.Bytes-p.Bytes) / interval.Seconds()
					}
				}
				rows = next
			}
			return writeFlowspec(cmd.OutOrStdout(), rows, asJSON, interval > 0)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "measure rates over this interval (0: totals only)")
	configFlags(cmd)
	return cmd
}

func writeFlowspec(w io.Writer, rows []daemon.FlowspecRow, asJSON, rates bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no flowspec rules installed")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "#\tmatch\tsource\taction\tpackets\tbytes\tover_rate")
	if rates {
		fmt.Fprint(tw, "\tpps\tbytes/s")
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\tipv%d %s\t%s\t%s\t%d\t%d\t%d", r.Rule, r.Family, r.Match, r.Source, r.Action, r.Packets, r.Bytes, r.Over)
		if rates {
			fmt.Fprintf(tw, "\t%.0f\t%.0f", r.PPS, r.BPS)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
