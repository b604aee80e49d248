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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/unixsock"
)

// control is what the daemon's local API exposes.
type control struct {
	pinPath string            // the data plane's pins, for /stats and /status
	matches func(string) bool // the interface selection, for /status
	speaker *bgp.Speaker      // nil when BGP is off
	routes  *fib.Routes       // nil when BGP is off
	// flowspec lists the installed FlowSpec rules with their counters
	// (nil until the data plane is loaded).
	flowspec func() ([]dataplane.FlowspecRuleStats, error)
}

// peerRow is one line of `xrouter peers`.
type peerRow struct {
	bgp.PeerState
	UptimeSeconds int64 `json:"uptime_seconds"`
	Installed     int   `json:"installed"`
}

func (c *control) peers(ctx context.Context) ([]peerRow, error) {
	if c.speaker == nil {
		return []peerRow{}, nil
	}
	ps, err := c.speaker.Peers(ctx)
	if err != nil {
		return nil, err
	}
	// A route counts for the peer whose address BGP gave as its next hop.
	byNH := c.routes.CountByNextHop()
	out := make([]peerRow, 0, len(ps))
	for _, p := range ps {
		out = append(out, peerRow{PeerState: p, UptimeSeconds: int64(p.Uptime.Seconds()), Installed: byNH[p.Address]})
	}
	return out, nil
}

func (c *control) installed() []fib.InstalledRoute {
	if c.routes == nil {
		return []fib.InstalledRoute{}
	}
	return c.routes.Installed()
}

// listenAPI opens the unix socket, mode 0600 (0660 with group) from the
// moment it can be reached, replacing a stale one but never one a running
// daemon answers on.
func listenAPI(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = unixsock.LookupGroup(group); err != nil {
			return nil, fmt.Errorf("api.group: %w", err)
		}
	}
	return unixsock.Listen("api socket", path, gid)
}

// apiServer is the local API's HTTP server: its answers are quick, so a
// client that sends slowly or never reads is cut off, and headers are
// small.
func apiServer(h http.Handler) *http.Server {
	srv := newHTTPServer(h)
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxHeaderBytes = 16 << 10
	srv.DisableGeneralOptionsHandler = true // OPTIONS * is ours to refuse
	return srv
}

// apiPaths are the local API's resources; each is read with GET (or
// HEAD) and takes no parameters.
var apiPaths = []string{"/peers", "/routes", "/stats", "/status", "/flowspec", "/flowspec/bgp"}

// apiError answers with an HTTP error status and {"error": msg}, one line.
func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// quoteShort quotes what a client sent for an error message, cut to a
// readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// strict refuses, with a JSON error, every request that is not a GET or
// HEAD of one of apiPaths exactly (no parameters, no path cleaning, no
// redirects), before next sees it.
func strict(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL == nil || !slices.Contains(apiPaths, r.URL.Path) || r.URL.RawPath != "":
			path := r.RequestURI
			if r.URL != nil && r.URL.RawPath == "" {
				path = r.URL.Path
			}
			apiError(w, http.StatusNotFound, fmt.Sprintf("no such resource %s (the API serves %s)", quoteShort(path), strings.Join(apiPaths, ", ")))
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			apiError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: the API is read-only (GET)", quoteShort(r.Method)))
		case r.URL.RawQuery != "" || r.URL.ForceQuery:
			apiError(w, http.StatusBadRequest, fmt.Sprintf("%s takes no parameters (got %s)", r.URL.Path, quoteShort(r.URL.RawQuery)))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// handler serves the local API.
func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			apiError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		ps, err := c.peers(r.Context())
		reply(w, ps, err)
	})
	// Every neighbour's FlowSpec rules as the speaker judged them,
	// accepted or rejected with the reason.
	mux.HandleFunc("GET /flowspec/bgp", func(w http.ResponseWriter, r *http.Request) {
		if c.speaker == nil {
			reply(w, []bgp.FlowSpecPeerView{}, nil)
			return
		}
		reply(w, c.speaker.FlowSpec(), nil)
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, c.installed(), nil)
	})
	// The data plane's counters and status, for users of api.group, who
	// cannot open the pins themselves.
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := readStatsSnapshot(c.pinPath)
		reply(w, s, err)
	})
	mux.HandleFunc("GET /flowspec", func(w http.ResponseWriter, r *http.Request) {
		if c.flowspec == nil {
			reply(w, []flowspecRow{}, nil)
			return
		}
		st, err := c.flowspec()
		reply(w, flowspecRows(st), err)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		s, err := collectStatus(c.pinPath, c.matches)
		reply(w, s, err)
	})
	return strict(mux)
}

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
			var rows []peerRow
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
