package dataplane

import (
	"fmt"
	"time"
)

// Limits of the next-hop cache's size (dataplane.cache.size).
const (
	MinCacheSize = 16
	MaxCacheSize = 1 << 24
)

// CacheSettings is the dataplane.cache section of the configuration: the
// per-CPU next-hop cache in front of the FIB lookup. The size is the
// maps'; Enabled and MaxAge are what the cache's invalidator follows.
type CacheSettings struct {
	// Enabled turns the cache on; off, every packet takes the full lookup.
	Enabled bool `mapstructure:"enabled"`
	// Size is the number of cache entries (destination × ingress).
	Size int `mapstructure:"size"`
	// MaxAge is the period at which every entry is invalidated regardless
	// of events (learned PMTU exceptions send none).
	MaxAge time.Duration `mapstructure:"max_age"`
}

// Validate checks the values; errors name the key.
func (c CacheSettings) Validate() error {
	if c.Size < MinCacheSize || c.Size > MaxCacheSize {
		return fmt.Errorf("key \"dataplane.cache.size\": %d entries is out of range (%d to %d)", c.Size, MinCacheSize, MaxCacheSize)
	}
	if c.MaxAge < 100*time.Millisecond || c.MaxAge > time.Hour {
		return fmt.Errorf("key \"dataplane.cache.max_age\": %s is out of range (100ms to 1h)", c.MaxAge)
	}
	return nil
}
