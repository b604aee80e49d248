package loadgen

import (
	"errors"
	"fmt"

	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Sink is a counting XDP program (bpf/sink.c) for the far end of test and
// benchmark topologies. On a veth it also lets frames redirected into the
// peer arrive.
type Sink struct {
	objs sinkObjects
	link link.Link // nil until Attach
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

// AttachSink loads a sink and attaches it to ifindex in native mode
// through a BPF link (AttachXDP); Close detaches it. Call it from a thread
// in the interface's namespace (testbed.Netns.Do).
func AttachSink(ifindex int, expectTTL uint8, drop bool) (*Sink, error) {
	s, err := LoadSink(expectTTL, drop)
	if err != nil {
		return nil, err
	}
	if s.link, err = AttachXDP(s.Program(), ifindex); err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("attaching sink to ifindex %d: %w", ifindex, err)
	}
	return s, nil
}

// SinkOn attaches a sink to dev in ns (AttachSink, from a thread in ns)
// until the test ends; it fails the test on error.
func SinkOn(t testing.TB, ns *testbed.Netns, dev string, expectTTL uint8, drop bool) *Sink {
	t.Helper()
	ifindex := ns.Link(t, dev).Index
	var s *Sink
	if err := ns.Do(func() error {
		var err error
		s, err = AttachSink(ifindex, expectTTL, drop)
		return err
	}); err != nil {
		t.Fatalf("netns %s: sink on %s: %v", ns.Name(), dev, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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

// Close detaches the sink (if attached) and releases it. Only the first
// call does anything.
func (s *Sink) Close() error {
	var err error
	if s.link != nil {
		err = s.link.Close()
		s.link = nil
	}
	if s.objs.XrouterSink != nil {
		err = errors.Join(err, s.objs.Close())
		s.objs = sinkObjects{}
	}
	return err
}
