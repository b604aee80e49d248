package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/fib"
)

// realParts are the daemon's components: the XDP data plane, fib.Routes
// writing kernel routes, the GoBGP speaker, real listeners.
func realParts() parts {
	return parts{
		dataPlane:  newXDPPlane,
		routeTable: newKernelRoutes,
		speaker: func(c bgp.Config, sink bgp.RouteSink, log *slog.Logger) (bgpSpeaker, error) {
			sp, err := bgp.New(c, sink, log)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return sp, nil
		},
		listen: func(key, addr, group string) (net.Listener, error) {
			if key == "api.socket" {
				return listenAPI(addr, group)
			}
			return net.Listen("tcp", addr)
		},
		watchRoutes: func(ctx context.Context, log *slog.Logger, fn func(fib.KernelRoutes)) error {
			return fib.WatchKernelRoutes(ctx, 200*time.Millisecond, log, fn)
		},
	}
}

// newKernelRoutes is the route table BGP fills: fib.Routes over a netlink
// writer, which release closes.
func newKernelRoutes(s fib.Settings, log *slog.Logger) (routeTable, func(), error) {
	kw, err := fib.NewKernelWriter(s, "", log)
	if err != nil {
		return nil, nil, fmt.Errorf("fib: %w", err)
	}
	rt := fib.NewRoutes(kw, s, log)
	return rt, kw.Close, nil
}

// pprofHandler is Go's profiling endpoints, without registering them on
// the default mux.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// newHTTPServer is the server of /metrics and /debug/pprof: a client
// has 5 s to send its headers, and an idle connection is closed after a
// minute. No read or write timeout: a CPU profile takes as long as asked.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
}

// serveHTTP serves srv on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, srv *http.Server, log *slog.Logger) {
	if srv.ErrorLog == nil {
		// The server's own complaints (a handler's panic, a failed
		// accept) go to the daemon's log, with its format.
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}
