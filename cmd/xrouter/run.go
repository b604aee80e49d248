package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/flowspec"
	"github.com/xrouter/xrouter/internal/metrics"
	"github.com/xrouter/xrouter/internal/netfilter"
	"github.com/xrouter/xrouter/internal/nhcache"
	"github.com/xrouter/xrouter/internal/sysctl"
)

// configFlags are the flags every config-reading command accepts; each
// overrides the config key it is bound to.
func configFlags(cmd *cobra.Command) {
	cmd.Flags().StringP("config", "c", "", "config file (YAML)")
	cmd.Flags().String("pin-path", "", "bpffs directory for pinned maps and links (dataplane.pin_path)")
	cmd.Flags().String("mode", "", "XDP attach mode: auto, native or generic (dataplane.mode)")
	cmd.Flags().String("log-level", "", "debug, info, warn or error (log.level)")
	cmd.Flags().String("metrics-listen", "", "serve Prometheus /metrics on IP:port (metrics.listen)")
}

func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	bound := map[string]*pflag.Flag{}
	for key, flag := range map[string]string{
		"dataplane.pin_path": "pin-path",
		"dataplane.mode":     "mode",
		"log.level":          "log-level",
		"metrics.listen":     "metrics-listen",
	} {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			bound[key] = f
		}
	}
	return config.Load(file, bound)
}

func newLogger(c *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the router daemon",
		Long: `Run the router daemon: attach the XDP fast path to the configured
interfaces (adopting a data plane pinned by an earlier run), keep the devmap
in step with the interfaces, and serve metrics. SIGTERM or SIGINT stop it;
the data plane keeps forwarding unless dataplane.detach_on_exit is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return run(cfg, newLogger(cfg), func() (*config.Config, error) { return loadConfig(cmd) })
		},
	}
	configFlags(cmd)
	return cmd
}

func run(cfg *config.Config, log *slog.Logger, reload func() (*config.Config, error)) error {
	d := cfg.Dataplane
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Everything that can be checked without changing the system is checked
	// first, so a bad config attaches nothing.
	if err := checkInterfaces(cfg); err != nil {
		return err
	}
	if err := checkCaps(cfg); err != nil {
		return err
	}
	if limit, _ := cfg.Runtime.MemoryLimitBytes(); limit > 0 { // validated
		debug.SetMemoryLimit(limit)
		log.Info("Go memory limit set (runtime.memory_limit)", "bytes", limit)
	}
	if g := cfg.Runtime.GCTarget(os.Getenv("GOGC")); g != 0 {
		debug.SetGCPercent(g)
		log.Info("Go GC target set (runtime.gc_percent)", "percent", g, "configured", cfg.Runtime.GCPercent != 0)
	}
	for _, w := range cfg.Warnings() {
		log.Warn("open control surface: " + w)
	}
	ctl := &control{pinPath: cfg.Dataplane.PinPath, matches: cfg.Dataplane.Matches}
	bgpOn := cfg.BGP.AS != 0
	if bgpOn {
		kw, err := fib.NewKernelWriter(fib.KernelConfig{Metric: cfg.FIB.Metric, Table: cfg.FIB.Table})
		if err != nil {
			return fmt.Errorf("fib: %w", err)
		}
		defer kw.Close()
		ctl.routes = fib.NewRoutes(kw, fib.RoutesConfig{
			StaleTimeout:   cfg.FIB.StaleTimeout,
			ResyncInterval: cfg.FIB.ResyncInterval,
			RemoveOnStop:   cfg.FIB.RemoveOnStop,
		}, log)
		sp, err := bgp.New(cfg.BGP, ctl.routes, log)
		if err != nil {
			return fmt.Errorf("config %s: %w", cfg.File, err)
		}
		ctl.speaker = sp
	}
	// Listeners are opened before anything is attached: an address in use
	// must not leave a half-started router behind.
	var metricsLn, apiLn net.Listener
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("config %s: key \"metrics.listen\": %w", cfg.File, err)
		}
		defer ln.Close()
		metricsLn = ln
	}
	var pprofLn net.Listener
	if cfg.Debug.PProf != "" {
		ln, err := net.Listen("tcp", cfg.Debug.PProf)
		if err != nil {
			return fmt.Errorf("config %s: key \"debug.pprof\": %w", cfg.File, err)
		}
		defer ln.Close()
		pprofLn = ln
	}
	if cfg.API.Socket != "" {
		ln, err := listenAPI(cfg.API.Socket, cfg.API.Group)
		if err != nil {
			return fmt.Errorf("config %s: key \"api.socket\": %w", cfg.File, err)
		}
		defer ln.Close()
		apiLn = ln
	}
	if err := devmap.EnsureBpffs(d.PinPath); err != nil {
		return err
	}
	// A failed start must leave nothing behind; but pins an earlier run
	// left are a data plane still forwarding, and stay.
	fresh, started := !pinned(d.PinPath), false
	defer func() {
		if fresh && !started {
			_, _ = devmap.Detach(d.PinPath)
		}
	}()
	dp, err := dataplane.LoadWith(d.PinPath, dataplane.Options{CacheSize: d.Cache.Size})
	if err != nil {
		return err
	}
	defer dp.Close()
	// FlowSpec: the static rules are in the classifier before the program
	// is attached (the BGP speaker adds its peers' through the same table).
	fsTable := flowspec.NewTable(dp.SetFlowspec)
	if err := applyStaticFlowspec(fsTable, cfg, log); err != nil {
		return err
	}
	ctl.flowspec = dp.FlowspecStats
	if ctl.speaker != nil {
		// Each call is one neighbour's whole current rule set (empty:
		// withdrawn). Rules the classifier cannot match are left out
		// and named; the others are installed.
		ctl.speaker.OnFlowSpec(func(source string, rules []flowspec.Rule) {
			if err := fsTable.Set(source, rules); err != nil {
				log.Warn("flowspec rules from BGP not installed", "source", source, "err", err)
			}
		})
	}
	// The next-hop cache is off from here until the invalidator has read
	// the kernel's state and follows its events.
	inv, err := nhcache.NewInvalidator(nhcache.Config{Enabled: d.Cache.Enabled, MaxAge: d.Cache.MaxAge}, dp, log)
	if err != nil {
		return err
	}
	defer inv.Stop()
	// Netfilter is read before anything is attached, so that no packet
	// skips a firewall rule that is already there.
	for _, w := range d.Netfilter.Warnings() {
		log.Warn(w)
	}
	nfw := netfilter.New(netfilter.Config{
		Mode:    d.Netfilter,
		Managed: d.Matches,
		Apply: func(ipv4, ipv6 bool) error {
			return dp.SetNetfilter(dataplane.NetfilterPass{IPv4: ipv4, IPv6: ipv6, Bypass: d.Netfilter == netfilter.Bypass})
		},
	}, log)
	nfw.Check()
	// Route MTUs and the forwarding sysctls are in the program before it
	// is attached; the invalidator keeps them current from then on.
	if err := inv.SyncFIB(); err != nil {
		return err
	}

	mgr := devmap.New(devmap.Config{
		Explicit:       d.Interfaces,
		Match:          d.Matches,
		Mode:           devmap.Mode(d.Mode),
		PinPath:        d.PinPath,
		OnAttach:       func(name string) { checkForwarding(name, d.ManageForwarding, log) },
		OnEgressChange: func() { inv.Bump("devmap") },
	}, dp, log)
	if err := mgr.Start(); err != nil {
		return fmt.Errorf("attaching data plane: %w", err)
	}
	started = true
	detach := d.DetachOnExit
	defer func() {
		mgr.Close(detach)
		if detach {
			dp.Close()
			if _, err := devmap.Detach(d.PinPath); err != nil {
				log.Warn("removing pins", "err", err)
			}
			log.Info("data plane detached")
		} else {
			log.Info("data plane left forwarding; the next `xrouter run` adopts it", "pin_path", d.PinPath)
		}
	}()

	for _, p := range mgr.Ports() {
		checkForwarding(p.Name, d.ManageForwarding, log)
	}
	invDone := make(chan error, 1)
	go func() { invDone <- inv.Run(ctx) }()
	defer func() {
		stop()
		if err := <-invDone; err != nil {
			log.Warn("next-hop cache invalidator", "err", err)
		}
	}()
	nfDone := make(chan error, 1)
	go func() { nfDone <- nfw.Run(ctx) }()
	// XDP forwarding does not confirm neighbours; the prober makes their
	// state machine run for the next hops in use, as kernel forwarding does.
	probeDone := make(chan error, 1)
	go func() { probeDone <- nhcache.NewProber(dp, log).Run(ctx) }()
	defer func() {
		stop()
		if err := <-nfDone; err != nil {
			log.Warn("netfilter watcher", "err", err)
		}
		if err := <-probeDone; err != nil {
			log.Warn("neighbour confirmation", "err", err)
		}
	}()
	reportWarnings(d.PinPath, log)

	if metricsLn != nil {
		cache := func() (dataplane.CacheStats, dataplane.CacheState, error) {
			s, err := dp.CacheStats()
			return s, inv.State(), err
		}
		serveHTTP(ctx, metricsLn, newHTTPServer(metrics.Handler(metrics.NewCollector(dp.Stats, mgr.Ports), metrics.NewCacheCollector(cache), metrics.NewFlowspecCollector(dp.FlowspecStats))), log)
		log.Info("serving metrics", "addr", metricsLn.Addr().String())
	}
	if apiLn != nil {
		serveHTTP(ctx, apiLn, apiServer(ctl.handler()), log)
	}
	if pprofLn != nil {
		serveHTTP(ctx, pprofLn, newHTTPServer(pprofHandler()), log)
		log.Info("serving profiles (debug.pprof)", "addr", pprofLn.Addr().String()+"/debug/pprof/")
	}
	routesDone := make(chan error, 1)
	if bgpOn {
		// Routes left by an earlier run are loaded first and kept until
		// the peers confirm them or End-of-RIB: no blind flush. A data
		// plane pinned by an earlier run means this is a restart: with
		// graceful restart, peers are told so and keep our routes.
		go func() { routesDone <- ctl.routes.Run(ctx) }()
		ctl.speaker.SetRestarting(!fresh)
		if err := ctl.speaker.Start(ctx); err != nil {
			return fmt.Errorf("starting BGP: %w", err)
		}
		defer func() {
			// Routes and data plane staying: a graceful restart, peers
			// keep our routes. Otherwise withdraw properly.
			keep := !cfg.FIB.RemoveOnStop && !detach
			if !keep || !ctl.speaker.Leave() {
				ctl.speaker.Stop()
			}
			if routesDone != nil {
				stop() // an error return has not cancelled ctx yet
				<-routesDone
			}
		}()
		if err := startRedistribution(ctx, ctl.speaker, log); err != nil {
			return err
		}
	}

	log.Info("xrouter running", "version", version, "pid", os.Getpid(), "interfaces", len(mgr.Ports()), "config", cfg.File)
	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx, d.ResyncInterval) }()
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the config and re-checking interfaces", "config", cfg.File)
			if next, err := reloadConfig(ctx, cfg, reload, ctl.speaker, fsTable, log); err != nil {
				log.Error("config reload rejected; the running config stays in force", "err", err)
			} else {
				cfg = next
			}
			mgr.Resync()
			reportWarnings(d.PinPath, log)
		case err := <-routesDone:
			routesDone = nil
			if err != nil {
				return fmt.Errorf("fib: %w", err)
			}
		case err := <-done:
			if err != nil {
				return err
			}
			log.Info("stopping", "reason", context.Cause(ctx))
			return nil
		}
	}
}

// reloadConfig reads the config again and applies what may change while
// running: the bgp section (neighbours, networks, prefix lists, policies,
// redistribution, graceful restart, max-prefix). The new config is checked
// completely first; a file that does not load, or that changes a key which
// needs a restart, is rejected and nothing is applied.
func reloadConfig(ctx context.Context, cur *config.Config, load func() (*config.Config, error), sp *bgp.Speaker, fs *flowspec.Table, log *slog.Logger) (*config.Config, error) {
	next, err := load()
	if err != nil {
		return nil, err
	}
	if err := restartOnly(cur, next); err != nil {
		return nil, fmt.Errorf("config %s: %w", next.File, err)
	}
	if err := applyStaticFlowspec(fs, next, log); err != nil {
		return nil, err
	}
	if sp == nil {
		log.Info("config reloaded", "config", next.File, "flowspec_rules", len(next.Flowspec.Rules))
		return next, nil
	}
	sum, err := sp.Reload(ctx, next.BGP)
	if err != nil {
		// Back to the running config's rules: nothing of next applies.
		_ = applyStaticFlowspec(fs, cur, log)
		return nil, fmt.Errorf("config %s: %w", next.File, err)
	}
	log.Info("config reloaded", "config", next.File, "bgp", sum.String())
	return next, nil
}

// applyStaticFlowspec installs the config's flowspec rules (source
// "config") in place of the ones installed before.
func applyStaticFlowspec(fs *flowspec.Table, cfg *config.Config, log *slog.Logger) error {
	rules, err := cfg.Flowspec.StaticRules()
	if err != nil {
		return fmt.Errorf("config %s: %w", cfg.File, err)
	}
	if err := fs.Set("config", rules); err != nil {
		return fmt.Errorf("config %s: key \"flowspec.rules\": %w", cfg.File, err)
	}
	if len(rules) > 0 {
		log.Info("flowspec rules installed", "source", "config", "rules", len(rules), "total", len(fs.Rules()))
	}
	return nil
}

// restartOnly names the first section outside bgp that changed: those are
// read at start only.
func restartOnly(cur, next *config.Config) error {
	for _, s := range []struct {
		key       string
		cur, next any
	}{
		{"dataplane", cur.Dataplane, next.Dataplane},
		{"log", cur.Log, next.Log},
		{"metrics", cur.Metrics, next.Metrics},
		{"api", cur.API, next.API},
		{"fib", cur.FIB, next.FIB},
		{"debug", cur.Debug, next.Debug},
		{"runtime", cur.Runtime, next.Runtime},
	} {
		if !reflect.DeepEqual(s.cur, s.next) {
			return fmt.Errorf("key %q: changes to this section need a restart (`xrouter run` again); reload applies bgp.* and flowspec only", s.key)
		}
	}
	if (cur.BGP.AS == 0) != (next.BGP.AS == 0) {
		return errors.New(`key "bgp.as": turning BGP on or off needs a restart`)
	}
	return nil
}

// startRedistribution follows the kernel's connected and static routes
// and hands them to the speaker, which announces those its
// bgp.redistribute prefix lists match. It always runs, so that a reload
// that turns redistribution on needs no restart.
func startRedistribution(ctx context.Context, sp *bgp.Speaker, log *slog.Logger) error {
	err := fib.WatchKernelRoutes(ctx, 200*time.Millisecond, log, func(kr fib.KernelRoutes) {
		for _, k := range []struct {
			kind string
			ps   []netip.Prefix
		}{{bgp.RedistributeConnected, kr.Connected}, {bgp.RedistributeStatic, kr.Static}} {
			if err := sp.Redistribute(ctx, k.kind, k.ps); err != nil {
				log.Error("redistribution", "kind", k.kind, "err", err)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("redistribution: %w", err)
	}
	return nil
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

// pinned reports whether an earlier run left a data plane in pinPath.
func pinned(pinPath string) bool {
	_, err := os.Stat(filepath.Join(pinPath, dataplane.StatsMapName))
	return err == nil
}

func checkForwarding(iface string, manage bool, log *slog.Logger) {
	f, err := sysctl.CheckForwarding(iface)
	if err != nil {
		log.Warn("cannot read forwarding sysctls", "interface", iface, "err", err)
		return
	}
	probs := f.Problems()
	if len(probs) == 0 {
		return
	}
	if manage {
		if err := sysctl.EnableForwarding(iface); err != nil {
			log.Error("enabling forwarding", "interface", iface, "err", err)
			return
		}
		log.Info("enabled forwarding (dataplane.manage_forwarding)", "interface", iface)
		return
	}
	for _, p := range probs {
		log.Warn("forwarding disabled; set dataplane.manage_forwarding or the sysctl", "interface", iface, "problem", p)
	}
}

func reportWarnings(pinPath string, log *slog.Logger) {
	st, err := devmap.Inspect(pinPath)
	if err != nil {
		log.Warn("inspecting data plane", "err", err)
		return
	}
	for _, s := range st {
		for _, w := range s.Warnings {
			log.Warn(w, "interface", s.Name)
		}
	}
}
