package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// TestFlowspecTimingPrivileged prints ns per packet of the program with the
// FlowSpec classifier: no rules; 1, 100 and 10000 rules indexed by
// destination (each rule its own /32, the packet's destination among them,
// its port not matching, or not among them); the same counts with no destination, so that
// every rule is a candidate (a linear scan); and a packet that a rule
// drops. BPF_PROG_RUN on one CPU, next-hop cache on, the best of three
// rounds. It asserts nothing about speed; it runs only with XR_TIMING=1:
//
//	XR_TIMING=1 go test -count=1 -run TestFlowspecTimingPrivileged -v ./internal/dataplane/
func TestFlowspecTimingPrivileged(t *testing.T) {
	if os.Getenv("XR_TIMING") == "" {
		t.Skip("set XR_TIMING=1 to measure")
	}
	e := newFwdEnv(t)
	e.router.AddNeigh(t, devDst, mustAddr("10.201.2.50"), routerMAC[devSrc])
	e.router.IP(t, "route", "add", "10.90.0.0/16", "via", "10.201.2.50")
	dst := mustAddr("10.90.1.1")
	hot := frame4(ip4(to4(dst), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 2, payload(18)))
	drop := frame4(ip4(to4(dst), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 53, payload(18)))
	// To a destination no rule names: the classifier's lookup misses.
	other := frame4(ip4(to4(mustAddr("10.90.1.2")), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 2, payload(18)))

	indexed := func(n int) []flowspec.Rule {
		rules := []flowspec.Rule{fs4(flowspec.Match{Dst: netip.PrefixFrom(dst, 32), Proto: eq(17), DstPort: eq(53)}, fsDrop)}
		for i := 1; i < n; i++ {
			a := netip.AddrFrom4([4]byte{10, 91, byte(i >> 8), byte(i)})
			rules = append(rules, fs4(flowspec.Match{Dst: netip.PrefixFrom(a, 32), Proto: eq(17), DstPort: eq(53)}, fsDrop))
		}
		return rules
	}
	// No destination: every rule is a candidate for every packet. The
	// sources never match; the last rule drops port 53.
	linear := func(n int) []flowspec.Rule {
		var rules []flowspec.Rule
		for i := 1; i < n; i++ {
			a := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
			rules = append(rules, fs4(flowspec.Match{Src: netip.PrefixFrom(a, 32), Proto: eq(17), DstPort: eq(53)}, fsDrop))
		}
		return append(rules, fs4(flowspec.Match{Proto: eq(17), DstPort: eq(53)}, fsDrop))
	}
	run := func(frame []byte, verdict uint32) (time.Duration, error) {
		var total time.Duration
		const calls = 200
		for range calls {
			v, d, err := e.timedRun(devSrc, frame, 240)
			if err != nil {
				return 0, err
			}
			if v != verdict {
				return 0, fmt.Errorf("verdict %d", v)
			}
			total += d
		}
		return total / calls, nil
	}
	e.enableCache(t, 1)
	type row struct {
		name  string
		rules []flowspec.Rule
		frame []byte
		v     uint32
	}
	rows := []row{{"no rules, forwarded", nil, hot, xdpRedirect}}
	for _, n := range []int{1, 100, 10000} {
		rows = append(rows, row{fmt.Sprintf("%d rules by dst, forwarded", n), indexed(n), hot, xdpRedirect})
		rows = append(rows, row{fmt.Sprintf("%d rules by dst, dropped", n), indexed(n), drop, xdpDrop})
		rows = append(rows, row{fmt.Sprintf("%d rules by dst, none for it, forwarded", n), indexed(n), other, xdpRedirect})
		rows = append(rows, row{fmt.Sprintf("%d rules no dst (linear), forwarded", n), linear(n), hot, xdpRedirect})
		rows = append(rows, row{fmt.Sprintf("%d rules no dst (linear), dropped", n), linear(n), drop, xdpDrop})
	}
	best := map[string]time.Duration{}
	for round := range 3 {
		for _, r := range rows {
			flowspec.Sort(r.rules)
			if err := e.dp.SetFlowspec(r.rules); err != nil {
				t.Fatal(err)
			}
			err := e.onCPU0(func() error {
				if _, err := run(r.frame, r.v); err != nil {
					return err
				}
				d, err := run(r.frame, r.v)
				if old, ok := best[r.name]; !ok || d < old {
					best[r.name] = d
				}
				return err
			})
			if err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
		}
		for _, r := range rows {
			t.Logf("round %d, best so far: %-42s %8.1f ns/packet", round+1, r.name, float64(best[r.name].Nanoseconds()))
		}
	}
}
