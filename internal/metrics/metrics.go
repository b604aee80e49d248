// Package metrics exposes the data plane's counters to Prometheus.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
)

// StatsSource yields the current counters.
type StatsSource func() (dataplane.Stats, error)

// PortsSource yields the attached interfaces.
type PortsSource func() []devmap.Port

type collector struct {
	stats   StatsSource
	ports   PortsSource
	packets *prometheus.Desc
	bytes   *prometheus.Desc
	iface   *prometheus.Desc
	up      *prometheus.Desc
}

// NewCollector reads the counters at every scrape, so Prometheus sees the
// kernel's numbers, not a copy.
func NewCollector(stats StatsSource, ports PortsSource) prometheus.Collector {
	return &collector{
		stats:   stats,
		ports:   ports,
		packets: prometheus.NewDesc("xrouter_packets_total", "Packets seen by the XDP program, by outcome (forwarded, or the reason for passing to the kernel).", []string{"outcome"}, nil),
		bytes:   prometheus.NewDesc("xrouter_bytes_total", "Bytes seen by the XDP program, by outcome.", []string{"outcome"}, nil),
		iface:   prometheus.NewDesc("xrouter_interface_egress", "1 if the interface is a redirect target (in the devmap), 0 if attached but down.", []string{"interface", "mode"}, nil),
		up:      prometheus.NewDesc("xrouter_dataplane_up", "1 if the counters could be read.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.iface
	ch <- c.up
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.stats()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, o := range dataplane.Outcomes() {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s[o].Packets), o.String())
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s[o].Bytes), o.String())
	}
	for _, p := range c.ports() {
		v := 0.0
		if p.Egress {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.iface, prometheus.GaugeValue, v, p.Name, p.Mode)
	}
}

// Handler serves /metrics from cols alone (no Go runtime metrics: the
// router's numbers, not the daemon's).
func Handler(cols ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(cols...)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
