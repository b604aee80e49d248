package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/unixsock"
)

// control is what the daemon's local API exposes.
type control struct {
	pinPath string            // the data plane's pins, for /stats and /status
	matches func(string) bool // the interface selection, for /status
	speaker bgpSpeaker        // nil when BGP is off
	routes  routeTable        // nil when BGP is off
	// flowspec lists the installed FlowSpec rules with their counters
	// (nil: none).
	flowspec func() ([]dataplane.FlowspecRuleStats, error)
}

// PeerRow is one line of `xrouter peers`: the API's /peers.
type PeerRow struct {
	bgp.PeerState
	UptimeSeconds int64 `json:"uptime_seconds"`
	Installed     int   `json:"installed"`
}

func (c *control) peers(ctx context.Context) ([]PeerRow, error) {
	if c.speaker == nil {
		return []PeerRow{}, nil
	}
	ps, err := c.speaker.Peers(ctx)
	if err != nil {
		return nil, err
	}
	// A route counts for the peer whose address BGP gave as its next hop.
	byNH := c.routes.CountByNextHop()
	out := make([]PeerRow, 0, len(ps))
	for _, p := range ps {
		out = append(out, PeerRow{PeerState: p, UptimeSeconds: int64(p.Uptime.Seconds()), Installed: byNH[p.Address]})
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

// reply answers with v as JSON, or with err.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		apiError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// handler serves the local API.
func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
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
		s, err := ReadStats(c.pinPath)
		reply(w, s, err)
	})
	mux.HandleFunc("GET /flowspec", func(w http.ResponseWriter, r *http.Request) {
		if c.flowspec == nil {
			reply(w, []FlowspecRow{}, nil)
			return
		}
		st, err := c.flowspec()
		reply(w, FlowspecRows(st), err)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		s, err := CollectStatus(c.pinPath, c.matches)
		reply(w, s, err)
	})
	return strict(mux)
}

// FlowspecRow is one rule of `xrouter flowspec` and of the API's
// /flowspec.
type FlowspecRow struct {
	Rule    int     `json:"rule"` // position in classifier order, from 1
	Family  int     `json:"family"`
	Match   string  `json:"match"`
	Source  string  `json:"source"`
	Action  string  `json:"action"`
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	Over    uint64  `json:"over_rate_packets"`
	PPS     float64 `json:"pps,omitempty"` // over `xrouter flowspec --interval`
	BPS     float64 `json:"bytes_per_second,omitempty"`
}

// FlowspecRows numbers the installed rules in classifier order.
func FlowspecRows(st []dataplane.FlowspecRuleStats) []FlowspecRow {
	rows := make([]FlowspecRow, 0, len(st))
	for i, s := range st {
		rows = append(rows, FlowspecRow{
			Rule: i + 1, Family: int(s.Rule.Match.Family), Match: s.Rule.Match.String(), Source: s.Rule.Source,
			Action: s.Rule.Action.String(), Packets: s.Packets, Bytes: s.Bytes, Over: s.Over,
		})
	}
	return rows
}
