package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/metrics"
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
			return run(cfg, newLogger(cfg))
		},
	}
	configFlags(cmd)
	return cmd
}

func run(cfg *config.Config, log *slog.Logger) error {
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
	ctl := &control{}
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
	if cfg.API.Socket != "" {
		ln, err := listenAPI(cfg.API.Socket)
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
	// The next-hop cache is off from here until the invalidator has read
	// the kernel's state and follows its events.
	inv, err := devmap.NewInvalidator(devmap.CacheConfig{Enabled: d.Cache.Enabled, MaxAge: d.Cache.MaxAge}, dp, log)
	if err != nil {
		return err
	}
	defer inv.Stop()

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
	reportWarnings(d.PinPath, log)

	if metricsLn != nil {
		cache := func() (dataplane.CacheStats, dataplane.CacheState, error) {
			s, err := dp.CacheStats()
			return s, inv.State(), err
		}
		serveHTTP(ctx, metricsLn, metrics.Handler(metrics.NewCollector(dp.Stats, mgr.Ports), metrics.NewCacheCollector(cache)), log)
		log.Info("serving metrics", "addr", metricsLn.Addr().String())
	}
	if apiLn != nil {
		serveHTTP(ctx, apiLn, ctl.handler(), log)
	}
	routesDone := make(chan error, 1)
	if bgpOn {
		// Routes left by an earlier run are loaded first and kept until
		// the peers confirm them or End-of-RIB: no blind flush.
		go func() { routesDone <- ctl.routes.Run(ctx) }()
		if err := ctl.speaker.Start(ctx); err != nil {
			return fmt.Errorf("starting BGP: %w", err)
		}
		defer func() {
			ctl.speaker.Stop()
			if routesDone != nil {
				<-routesDone
			}
		}()
	}

	log.Info("xrouter running", "version", version, "pid", os.Getpid(), "interfaces", len(mgr.Ports()), "config", cfg.File)
	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx, d.ResyncInterval) }()
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: re-checking interfaces")
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

// serveHTTP serves h on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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
	f, err := fib.CheckForwarding(iface)
	if err != nil {
		log.Warn("cannot read forwarding sysctls", "interface", iface, "err", err)
		return
	}
	probs := f.Problems()
	if len(probs) == 0 {
		return
	}
	if manage {
		if err := fib.EnableForwarding(iface); err != nil {
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
