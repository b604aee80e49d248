package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// timedRun runs the program repeat times on frame and returns the verdict
// and the kernel's mean time per run. cilium/ebpf's Run drops the time.
// The caller must be in the router namespace.
func (e *fwdEnv) timedRun(dev string, frame []byte, repeat uint32) (uint32, time.Duration, error) {
	res, err := e.runResult(dev, frame, repeat)
	return res.Retval, res.Duration, err
}

// TestCacheTimingPrivileged prints ns per packet of the program with the
// cache off, on a cache hit, on ever-new destinations and on 20000 active
// destinations, measured with BPF_PROG_RUN on one CPU (no live frames, no
// veth), the best of three interleaved rounds. It asserts nothing
// about speed; it runs only with XR_TIMING=1:
//
//	XR_TIMING=1 go test -count=1 -run TestCacheTimingPrivileged -v ./internal/dataplane/
//
// XR_TIMING_ROUTES=N adds N /24 routes first (a bigger FIB trie), and the
// "new dst" packets go to random addresses under them. XR_TIMING_ROWS=TEXT
// measures only the rows whose name contains TEXT (e.g. "one dst").
func TestCacheTimingPrivileged(t *testing.T) {
	if os.Getenv("XR_TIMING") == "" {
		t.Skip("set XR_TIMING=1 to measure")
	}
	e := newFwdEnv(t)
	// Repeated runs see the frame as the program left it: a next hop whose
	// MAC is the router's ingress MAC keeps it addressed to the router, and
	// TTL 255 leaves 250 runs before it expires.
	e.router.AddNeigh(t, devDst, mustAddr("10.201.2.50"), routerMAC[devSrc])
	e.router.AddNeigh(t, devDst, mustAddr("fd00:201:2::50"), routerMAC[devSrc])
	e.router.IP(t, "route", "add", "10.90.0.0/16", "via", "10.201.2.50")
	e.router.IP(t, "route", "add", "fd00:90::/32", "via", "fd00:201:2::50")
	routes := 0
	if n := os.Getenv("XR_TIMING_ROUTES"); n != "" {
		if _, err := fmt.Sscan(n, &routes); err != nil || routes < 0 || routes > 1<<22 {
			t.Fatalf("XR_TIMING_ROUTES=%q: want a count up to %d", n, 1<<22)
		}
		var b strings.Builder
		for i := range routes {
			fmt.Fprintf(&b, "route add %d.%d.%d.0/24 via 10.201.2.50\n", 11+i>>16, (i>>8)&0xff, i&0xff)
		}
		f := t.TempDir() + "/routes"
		if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		e.router.IP(t, "-batch", f)
	}
	hot4 := frame4(ip4(to4(mustAddr("10.90.1.1")), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 2, payload(18)))
	hot6 := frame6(ip6(to6(mustAddr("fd00:90::1")), func(h *ipv6Hdr) { h.Hop = 255 }), udp(1, 2, payload(18)))
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([][]byte, 20000)
	for i := range random {
		d := netip.AddrFrom4([4]byte{10, 90, byte(rng.IntN(256)), byte(rng.IntN(256))})
		if routes > 0 {
			// Spread over the big table's routes.
			r := rng.IntN(routes)
			d = netip.AddrFrom4([4]byte{byte(11 + r>>16), byte(r >> 8), byte(r), byte(1 + rng.IntN(254))})
		}
		random[i] = frame4(ip4(to4(d), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 2, payload(18)))
	}

	// 20000 active destinations, picked at random for every packet.
	active := make([][]byte, 200000)
	for i := range active {
		active[i] = random[rng.IntN(len(random))]
	}
	actives := func() (time.Duration, error) {
		var total time.Duration
		for _, f := range active {
			v, d, err := e.timedRun(devSrc, f, 1)
			if err != nil {
				return 0, err
			}
			if v != xdpRedirect {
				return 0, fmt.Errorf("verdict %d", v)
			}
			total += d
		}
		return total / time.Duration(len(active)), nil
	}

	hot := func(frame []byte) (time.Duration, error) {
		var total time.Duration
		const calls = 200
		for range calls {
			v, d, err := e.timedRun(devSrc, frame, 240)
			if err != nil {
				return 0, err
			}
			if v != xdpRedirect {
				return 0, fmt.Errorf("verdict %d", v)
			}
			total += d
		}
		return total / calls, nil
	}
	// Destinations never seen before: fresh ones on every call.
	spread := func() (time.Duration, error) {
		var total time.Duration
		for range len(random) {
			d := netip.AddrFrom4([4]byte{10, 90, byte(rng.IntN(256)), byte(rng.IntN(256))})
			if routes > 0 {
				r := rng.IntN(routes)
				d = netip.AddrFrom4([4]byte{byte(11 + r>>16), byte(r >> 8), byte(r), byte(1 + rng.IntN(254))})
			}
			f := frame4(ip4(to4(d), func(h *ipv4Hdr) { h.TTL = 255 }), udp(1, 2, payload(18)))
			v, took, err := e.timedRun(devSrc, f, 1)
			if err != nil {
				return 0, err
			}
			if v != xdpRedirect {
				return 0, fmt.Errorf("verdict %d", v)
			}
			total += took
		}
		return total / time.Duration(len(random)), nil
	}
	results := map[string]time.Duration{}
	only := os.Getenv("XR_TIMING_ROWS")
	measure := func(name string, gen uint64, f func() (time.Duration, error)) {
		if only != "" && !strings.Contains(name, only) {
			return
		}
		e.enableCache(t, gen)
		if gen == 0 {
			e.setCache(t, CacheState{})
		}
		err := e.onCPU0(func() error {
			if _, err := f(); err != nil { // warm up
				return err
			}
			d, err := f()
			// The machine is shared: keep the best of the rounds.
			if old, ok := results[name]; !ok || d < old {
				results[name] = d
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for round := range 3 {
		measure("ipv4 one dst, cache off", 0, func() (time.Duration, error) { return hot(hot4) })
		measure("ipv4 one dst, cache hit", 1, func() (time.Duration, error) { return hot(hot4) })
		measure("ipv6 one dst, cache off", 0, func() (time.Duration, error) { return hot(hot6) })
		measure("ipv6 one dst, cache hit", 2, func() (time.Duration, error) { return hot(hot6) })
		measure("ipv4 new dst each packet, cache off", 0, spread)
		measure("ipv4 new dst each packet, cache on", 3, spread)
		measure("ipv4 20k active dsts, cache off", 0, actives)
		measure("ipv4 20k active dsts, cache on", 4, actives)
		for _, k := range []string{"ipv4 one dst, cache off", "ipv4 one dst, cache hit", "ipv6 one dst, cache off", "ipv6 one dst, cache hit",
			"ipv4 new dst each packet, cache off", "ipv4 new dst each packet, cache on", "ipv4 20k active dsts, cache off", "ipv4 20k active dsts, cache on"} {
			if _, ok := results[k]; !ok {
				continue
			}
			t.Logf("round %d, best so far: %-40s %6.1f ns/packet", round+1, k, float64(results[k].Nanoseconds()))
		}
		s, _ := e.dp.CacheStats()
		t.Logf("cache counters: %+v", s)
	}
}
