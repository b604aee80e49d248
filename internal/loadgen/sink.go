package dataplane

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Sink is a counting XDP program for the far end of test and benchmark
// topologies. On a veth it also lets frames redirected into the peer arrive.
type Sink struct {
	objs sinkObjects
}

// SinkCounts is what a sink saw.
type SinkCounts struct {
	IP    uint64 // IPv4 and IPv6 frames
	TTLOK uint64 // frames whose TTL / hop limit equalled the expected value
	Bytes uint64
}

// LoadSink loads the sink. expectTTL is the TTL a correctly forwarded frame
// carries; drop makes it drop frames (benchmarks) instead of passing them.
func LoadSink(expectTTL uint8, drop bool) (*Sink, error) {
	spec, err := loadSink()
	if err != nil {
		return nil, fmt.Errorf("loading sink spec: %w", err)
	}
	verdict := uint32(2) // XDP_PASS
	if drop {
		verdict = 1 // XDP_DROP
	}
	if err := spec.Variables["expect_ttl"].Set(expectTTL); err != nil {
		return nil, fmt.Errorf("setting expect_ttl: %w", err)
	}
	if err := spec.Variables["verdict"].Set(verdict); err != nil {
		return nil, fmt.Errorf("setting verdict: %w", err)
	}
	s := &Sink{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("loading sink objects: %w", err)
	}
	return s, nil
}

// Program is the sink's XDP program.
func (s *Sink) Program() *ebpf.Program { return s.objs.XrouterSink }

// Counts sums the sink's per-CPU counters.
func (s *Sink) Counts() (SinkCounts, error) {
	var c SinkCounts
	for i, dst := range []*uint64{&c.IP, &c.TTLOK, &c.Bytes} {
		var per []uint64
		if err := s.objs.SinkStats.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("reading sink counter %d: %w", i, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

// Close releases the sink.
func (s *Sink) Close() error { return s.objs.Close() }
