package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// FlowspecSource yields the installed FlowSpec rules with their counters.
type FlowspecSource func() ([]dataplane.FlowspecRuleStats, error)

type flowspecCollector struct {
	src                   FlowspecSource
	packets, bytes, overs *prometheus.Desc
	rules                 *prometheus.Desc
}

// NewFlowspecCollector exports per-rule FlowSpec counters, labelled with
// the rule's position, match, source and action.
func NewFlowspecCollector(src FlowspecSource) prometheus.Collector {
	l := []string{"rule", "match", "source", "action"}
	return &flowspecCollector{
		src:     src,
		packets: prometheus.NewDesc("xrouter_flowspec_packets_total", "Packets a FlowSpec rule matched (first match), whatever its action did.", l, nil),
		bytes:   prometheus.NewDesc("xrouter_flowspec_bytes_total", "Bytes (Ethernet frames) a FlowSpec rule matched.", l, nil),
		overs:   prometheus.NewDesc("xrouter_flowspec_over_rate_packets_total", "Packets a rate-limiting FlowSpec rule dropped for being over its rate.", l, nil),
		rules:   prometheus.NewDesc("xrouter_flowspec_rules", "FlowSpec rules installed in the XDP classifier.", nil, nil),
	}
}

func (c *flowspecCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.overs
	ch <- c.rules
}

func (c *flowspecCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.rules, prometheus.GaugeValue, float64(len(st)))
	for i, s := range st {
		l := []string{strconv.Itoa(i + 1), s.Rule.Match.String(), s.Rule.Source, s.Rule.Action.String()}
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.Packets), l...)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.Bytes), l...)
		ch <- prometheus.MustNewConstMetric(c.overs, prometheus.CounterValue, float64(s.Over), l...)
	}
}
