package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/netfilter"
	"github.com/xrouter/xrouter/internal/sysctl"
)

type statusReport struct {
	PinPath    string        `json:"pin_path"`
	Interfaces []ifaceStatus `json:"interfaces"`
	Cache      *cacheStatus  `json:"cache,omitempty"`
	Netfilter  *nfStatus     `json:"netfilter,omitempty"`
	// NetfilterSummary is the netfilter state in words, for the text output.
	NetfilterSummary []string `json:"netfilter_summary,omitempty"`
	// Notes are what the fast path leaves to the kernel by design (tc).
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
}

// nfStatus is what the program does for netfilter (its flags, pinned) and
// the rules that make it so (read from the kernel now).
type nfStatus struct {
	Mode  netfilter.Mode          `json:"mode"` // the daemon's
	Pass  dataplane.NetfilterPass `json:"to_kernel"`
	Rules netfilter.Report        `json:"rules"`
}

// readNetfilterStatus reads the pinned flags and scans the ruleset; the
// lines are for the text output, the warnings where flags and rules
// disagree (a stopped daemon, bypass).
func readNetfilterStatus(pin string, managed func(string) bool) (*nfStatus, []string, []string) {
	pass, err := dataplane.ReadPinnedNetfilter(pin)
	if err != nil {
		return nil, nil, nil
	}
	// The daemon's mode, as it recorded it (this command's config may
	// not be the daemon's).
	mode := netfilter.Respect
	if pass.Bypass {
		mode = netfilter.Bypass
	}
	st := &nfStatus{Mode: mode, Pass: pass, Rules: netfilter.Scan(managed)}
	var lines, warns []string
	rules4, rules6 := st.Rules.Pass()
	for _, f := range []struct {
		name         string
		ipv6, passed bool
		rules        bool
	}{{"IPv4", false, pass.IPv4, rules4}, {"IPv6", true, pass.IPv6, rules6}} {
		reason := st.Rules.Reason(f.ipv6)
		switch {
		case f.passed && f.rules:
			lines = append(lines, fmt.Sprintf("netfilter: %s: %s traffic goes to the kernel (dataplane.netfilter: %s)", reason, f.name, mode))
		case f.passed:
			lines = append(lines, fmt.Sprintf("netfilter: %s traffic goes to the kernel; no rules that need it now (the daemon follows changes)", f.name))
		case f.rules && mode == netfilter.Bypass:
			warns = append(warns, fmt.Sprintf("netfilter: %s: forwarded %s traffic skips it (dataplane.netfilter: bypass)", reason, f.name))
		case f.rules:
			warns = append(warns, fmt.Sprintf("netfilter: %s: forwarded %s traffic skips it: the daemon has not applied it (is `xrouter run` running?)", reason, f.name))
		default:
			lines = append(lines, fmt.Sprintf("netfilter: no rules XDP would skip for %s: fast path", f.name))
		}
	}
	return st, lines, warns
}

// cacheStatus is the next-hop cache's control block as the program sees it.
type cacheStatus struct {
	dataplane.CacheState
	// Active: a generation is set and its lease has not run out.
	Active bool `json:"active"`
}

func readCacheStatus(pin string) *cacheStatus {
	st, err := dataplane.ReadPinnedCacheState(pin)
	if err != nil {
		return nil
	}
	return &cacheStatus{CacheState: st, Active: st.Generation != 0 && st.LeaseNs > dataplane.MonotonicCoarseNs()}
}

type ifaceStatus struct {
	devmap.Status
	Forwarding *sysctl.Forwarding `json:"forwarding,omitempty"`
}

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
			rep, err := collectStatus(cfg.Dataplane.PinPath, cfg.Dataplane.Matches)
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

func prefixed(name string, ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = name + ": " + strings.TrimSpace(w)
	}
	return out
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

// collectStatus reads the pins and the kernel: what `status` shows, and the
// API's /status.
func collectStatus(pin string, matches func(string) bool) (statusReport, error) {
	// Without the rights to open pins, Inspect would report every link as
	// unreadable: say so instead, so that the caller can ask the daemon.
	if _, err := dataplane.ReadPinnedStats(pin); errors.Is(err, os.ErrPermission) {
		return statusReport{}, err
	}
	st, err := devmap.Inspect(pin)
	if err != nil {
		return statusReport{}, err
	}
	rep := statusReport{PinPath: pin, Notes: []string{}, Warnings: []string{}}
	ports := map[string]bool{}
	for _, s := range st {
		is := ifaceStatus{Status: s}
		ports[s.Name] = true
		rep.Notes = append(rep.Notes, prefixed(s.Name, s.Notes)...)
		rep.Warnings = append(rep.Warnings, prefixed(s.Name, s.Warnings)...)
		if s.Name != "?" {
			if f, err := sysctl.CheckForwarding(s.Name); err == nil {
				is.Forwarding = &f
				rep.Warnings = append(rep.Warnings, f.Problems()...)
			}
		}
		rep.Interfaces = append(rep.Interfaces, is)
	}
	rep.Cache = readCacheStatus(pin)
	nf, nfLines, nfWarns := readNetfilterStatus(pin, func(dev string) bool {
		return ports[dev] || matches(dev)
	})
	rep.Netfilter, rep.NetfilterSummary = nf, nfLines
	rep.Warnings = append(rep.Warnings, nfWarns...)
	if len(st) == 0 {
		rep.Warnings = append(rep.Warnings, "no interface is attached under "+pin)
	}
	return rep, nil
}
