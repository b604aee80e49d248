package fib

import (
	"fmt"
	"time"
)

// Settings is the fib section of the configuration: where xrouter's
// routes go and how long it keeps those of an earlier run. The config
// package decodes it under "fib"; the tags are the keys.
type Settings struct {
	// Metric of xrouter's routes; distinct from operator routes, so that a
	// replace never overwrites one.
	Metric int `mapstructure:"metric"`
	// Table is the routing table xrouter's routes go to (254 is main).
	Table int `mapstructure:"table"`
	// StaleTimeout: routes left by an earlier run and not confirmed by a
	// peer (or End-of-RIB) within it are removed.
	StaleTimeout time.Duration `mapstructure:"stale_timeout"`
	// ResyncInterval is the period of the full diff against the kernel.
	ResyncInterval time.Duration `mapstructure:"resync_interval"`
	// RemoveOnStop removes xrouter's routes on a clean stop; by default
	// they stay for graceful restart.
	RemoveOnStop bool `mapstructure:"remove_on_stop"`
	// NexthopObjects puts xrouter's routes on shared kernel nexthop
	// objects (when the kernel has them); off, every route carries its
	// own gateways.
	NexthopObjects bool `mapstructure:"nexthop_objects"`
	// PIC (prefix-independent convergence) puts routes that have a
	// backup next hop on "protected" nexthop objects, which a peer's
	// session loss repoints to the backup at once (see pic.go). It needs
	// NexthopObjects.
	PIC bool `mapstructure:"pic"`
}

// Validate checks the values without touching the system; errors name
// the key.
func (s Settings) Validate() error {
	if s.Metric < 0 || s.Metric > 1<<31-1 {
		return fmt.Errorf("key \"fib.metric\": %d out of range", s.Metric)
	}
	if s.Table <= 0 || s.Table == 255 {
		return fmt.Errorf("key \"fib.table\": %d is not a usable routing table (254 is main; 255 is local)", s.Table)
	}
	if s.StaleTimeout <= 0 {
		return fmt.Errorf("key \"fib.stale_timeout\": must be positive")
	}
	return nil
}

// withDefaults fills the zero values: a Settings built in code (tests,
// tools) need only name what it changes.
func (s Settings) withDefaults() Settings {
	if s.Metric == 0 {
		s.Metric = DefaultMetric
	}
	if s.Table == 0 {
		s.Table = DefaultTable
	}
	if s.StaleTimeout == 0 {
		s.StaleTimeout = DefaultStaleTimeout
	}
	if s.ResyncInterval == 0 {
		s.ResyncInterval = DefaultResyncInterval
	}
	return s
}
