package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/daemon"
	"github.com/xrouter/xrouter/internal/fib"
)

// apiGet asks the running daemon.
func apiGet(socket, path string, v any) error {
	if socket == "" {
		return errors.New("api.socket is off: the daemon serves no local API")
	}
	cl := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	resp, err := cl.Get("http://xrouter" + path)
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("api socket %s: permission denied (it is root's, and api.group's if set)", socket)
	}
	if err != nil {
		return fmt.Errorf("asking the daemon at %s (is `xrouter run` running?): %w", socket, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon: %s: %s", resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

func peersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "Show BGP neighbours: AS, state, uptime, prefixes received/accepted/installed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var rows []daemon.PeerRow
			if err := apiGet(cfg.API.Socket, "/peers", &rows); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NEIGHBOR\tAS\tSTATE\tUPTIME\tRECEIVED\tACCEPTED\tINSTALLED")
			for _, p := range rows {
				up := "-"
				if p.UptimeSeconds > 0 {
					up = (time.Duration(p.UptimeSeconds) * time.Second).String()
				}
				state := p.State
				switch {
				case p.HeldDown != "":
					state += " (held down: " + p.HeldDown + ")"
				case p.PeerRestarting:
					state += " (peer restarting, routes kept)"
				case p.Hint != "":
					state += " (" + p.Hint + ")"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\n", p.Address, p.PeerAS, state, up, p.Received, p.Accepted, p.Installed)
			}
			return tw.Flush()
		},
	}
	configFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func routesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "routes [PREFIX]",
		Short: "Show the routes xrouter installed; with a prefix, also what the kernel FIB does for it",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var filter netip.Prefix
			if len(args) == 1 {
				filter, err = parsePrefixArg(args[0])
				if err != nil {
					return err
				}
			}
			var routes []fib.InstalledRoute
			if err := apiGet(cfg.API.Socket, "/routes", &routes); err != nil {
				return err
			}
			if filter.IsValid() {
				routes = slices.DeleteFunc(routes, func(r fib.InstalledRoute) bool { return !r.Prefix.Overlaps(filter) })
			}
			out := cmd.OutOrStdout()
			var lookup *fib.Lookup
			if filter.IsValid() {
				l, err := fib.LookupAddr(filter.Addr())
				if err != nil {
					return err
				}
				lookup = &l
			}
			if asJSON {
				return writeJSON(out, struct {
					Routes []fib.InstalledRoute `json:"routes"`
					Kernel *fib.Lookup          `json:"kernel,omitempty"`
				}{routes, lookup})
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PREFIX\tBGP NEXT HOP (PEER)\tKERNEL NEXT HOP")
			for _, r := range routes {
				for i := 0; i < max(len(r.NextHops), len(r.Kernel)); i++ {
					p, bgpNH, kNH := "", "", ""
					if i == 0 {
						p = r.Prefix.String()
					}
					if i < len(r.NextHops) {
						bgpNH = r.NextHops[i].String()
					}
					if i < len(r.Kernel) {
						kNH = fmt.Sprintf("%s ifindex %d", r.Kernel[i].Gateway, r.Kernel[i].LinkIndex)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p, bgpNH, kNH)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if lookup != nil {
				fmt.Fprintf(out, "kernel FIB for %s: %s\n", filter.Addr(), lookup)
			}
			return nil
		},
	}
	configFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func parsePrefixArg(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("routes: %q is neither a prefix nor an address", s)
}
