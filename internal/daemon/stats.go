package daemon

import (
	"fmt"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// StatsSnapshot is one reading of the fast path's counters: what `xrouter
// stats` shows and the API's /stats serves.
type StatsSnapshot struct {
	Outcomes dataplane.Stats       `json:"outcomes"`
	Cache    *dataplane.CacheStats `json:"cache,omitempty"` // nil for pins of an older version
}

// ReadStats reads the pinned counters under pin.
func ReadStats(pin string) (StatsSnapshot, error) {
	s, err := dataplane.ReadPinnedStats(pin)
	if err != nil {
		return StatsSnapshot{}, fmt.Errorf("%w (is the data plane running with this pin path?)", err)
	}
	snap := StatsSnapshot{Outcomes: s}
	if cs, err := dataplane.ReadPinnedCacheStats(pin); err == nil {
		snap.Cache = &cs
	}
	return snap, nil
}
