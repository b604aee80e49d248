package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/daemon"
	"github.com/xrouter/xrouter/internal/devmap"
)

func statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show attached interfaces, attach mode, program id and warnings",
		Long: `Show the interfaces the data plane is pinned on, with attach mode,
program id, whether each is a redirect target, notes on what tc makes
the fast path leave to the kernel, which families go to the kernel for
netfilter's sake (naming the rules), and warnings: forwarding disabled, a
veth peer without XDP, an interface that cannot transmit XDP frames,
netfilter rules the fast path skips, stale pins. Reads the pins and the
kernel, so it works whether the daemon runs
or not; run it in the router's namespace (--netns NAME).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			rep, err := daemon.CollectStatus(cfg.Dataplane.PinPath, cfg.Dataplane.Matches)
			if errors.Is(err, os.ErrPermission) && cfg.API.Socket != "" {
				// Not root: a member of api.group asks the daemon.
				if aerr := apiGet(cfg.API.Socket, "/status", &rep); aerr != nil {
					return fmt.Errorf("%w; %w", err, aerr)
				}
			} else if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rep)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "INTERFACE\tIFINDEX\tMODE\tPROG\tUP\tEGRESS\tFWD v4/v6\tVETH PEER")
			for _, i := range rep.Interfaces {
				fwd := "?"
				if i.Forwarding != nil {
					fwd = onOff(i.Forwarding.IPv4) + "/" + onOff(i.Forwarding.IPv6)
				}
				peer := i.VethPeer
				if peer == "" {
					peer = "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", i.Name, i.Index, i.Mode, i.ProgID, yesNo(i.Up), yesNo(i.Egress), fwd, peer)
			}
			tw.Flush()
			if c := rep.Cache; c != nil {
				state := "off"
				if c.Active {
					state = "on"
				}
				fmt.Fprintf(out, "next-hop cache: %s, generation %d, %d bumps", state, c.Generation, c.Bumps)
				if c.Bypass4 || c.Bypass6 {
					fmt.Fprintf(out, ", bypassed for ipv4=%s ipv6=%s (policy rules, TOS or source routes)", yesNo(c.Bypass4), yesNo(c.Bypass6))
				}
				fmt.Fprintln(out)
			}
			for _, l := range rep.NetfilterSummary {
				fmt.Fprintln(out, l)
			}
			for _, n := range rep.Notes {
				fmt.Fprintln(out, "note:", n)
			}
			for _, w := range rep.Warnings {
				fmt.Fprintln(out, "warning:", w)
			}
			return nil
		},
	}
	configFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func detachCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "detach",
		Short: "Remove a stopped daemon's data plane (XDP links and pinned maps)",
		Long: `Remove what a stopped daemon left forwarding: the pinned XDP links (the
program leaves the interfaces and the kernel forwards alone) and the pinned
maps. Do not run it while the daemon runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			idx, err := devmap.Detach(cfg.Dataplane.PinPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "detached %d interface(s); removed %s\n", len(idx), cfg.Dataplane.PinPath)
			return nil
		},
	}
	configFlags(cmd)
	return cmd
}
