package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// CacheSource yields the next-hop cache's counters and control block.
type CacheSource func() (dataplane.CacheStats, dataplane.CacheState, error)

type cacheCollector struct {
	src        CacheSource
	events     *prometheus.Desc
	generation *prometheus.Desc
	bumps      *prometheus.Desc
}

// NewCacheCollector exports the next-hop cache's counters.
func NewCacheCollector(src CacheSource) prometheus.Collector {
	return &cacheCollector{
		src:        src,
		events:     prometheus.NewDesc("xrouter_nh_cache_total", "Next-hop cache events: hit, miss, insert, bypass (not consulted), uncacheable (multipath), admit_skip (first sighting).", []string{"event"}, nil),
		generation: prometheus.NewDesc("xrouter_nh_cache_generation", "Current cache generation (0: cache off).", nil, nil),
		bumps:      prometheus.NewDesc("xrouter_nh_cache_bumps_total", "Generation bumps (invalidations of the whole cache).", nil, nil),
	}
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.generation
	ch <- c.bumps
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s, st, err := c.src()
	if err != nil {
		return
	}
	for name, v := range map[string]uint64{"hit": s.Hit, "miss": s.Miss, "insert": s.Insert, "bypass": s.Bypass, "uncacheable": s.Uncacheable, "admit_skip": s.AdmitSkip} {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(v), name)
	}
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(st.Generation))
	ch <- prometheus.MustNewConstMetric(c.bumps, prometheus.CounterValue, float64(st.Bumps))
}
