package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/daemon"
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
	setRuntime(cfg.Runtime, log)
	d, err := daemon.New(cfg, log)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	log.Info("xrouter running", "version", version, "pid", os.Getpid(), "interfaces", d.Interfaces(), "config", cfg.File)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the config and re-checking interfaces", "config", cfg.File)
			next, err := reload()
			if err == nil {
				err = d.Reload(next)
			}
			if err != nil {
				log.Error("config reload rejected; the running config stays in force", "err", err)
			} else {
				cfg = next
			}
			d.Resync()
		case <-d.Done():
			return d.Stop()
		case <-ctx.Done():
			log.Info("stopping", "reason", context.Cause(ctx))
			return d.Stop()
		}
	}
}

// setRuntime applies the runtime section: the Go memory limit and GC target.
func setRuntime(r config.Runtime, log *slog.Logger) {
	if limit, _ := r.MemoryLimitBytes(); limit > 0 { // validated
		debug.SetMemoryLimit(limit)
		log.Info("Go memory limit set (runtime.memory_limit)", "bytes", limit)
	}
	if g := r.GCTarget(os.Getenv("GOGC")); g != 0 {
		debug.SetGCPercent(g)
		log.Info("Go GC target set (runtime.gc_percent)", "percent", g, "configured", r.GCPercent != 0)
	}
}
