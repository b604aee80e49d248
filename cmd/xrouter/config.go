package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/devmap"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	check := &cobra.Command{
		Use:   "check -c FILE",
		Short: "Validate a config file without touching anything",
		Long: `Validate a config file: unknown keys, malformed values, unknown modes,
and interfaces that do not exist in the current network namespace are
reported with the key and the file. Nothing is attached or changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f, _ := cmd.Flags().GetString("config"); f == "" {
				return fmt.Errorf("config check: -c FILE is required")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := checkInterfaces(cfg); err != nil {
				return err
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: config %s: %s\n", cfg.File, w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "config %s: ok\n", cfg.File)
			return nil
		},
	}
	configFlags(check)
	keys := &cobra.Command{
		Use:   "keys",
		Short: "List every configuration key",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			for _, k := range config.AllKeys() {
				fmt.Fprintln(cmd.OutOrStdout(), k)
			}
		},
	}
	cmd.AddCommand(check, keys)
	return cmd
}

// checkInterfaces verifies that the explicitly listed interfaces exist in
// this network namespace.
func checkInterfaces(cfg *config.Config) error {
	if err := cfg.RequireInterfaces(); err != nil {
		return err
	}
	where := cfg.File
	if where == "" {
		where = "defaults"
	}
	for _, name := range cfg.Dataplane.Interfaces {
		if err := devmap.CheckInterface(name); err != nil {
			return fmt.Errorf("config %s: key \"dataplane.interfaces\": interface %q: %w", where, name, err)
		}
	}
	return nil
}
