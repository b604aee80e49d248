package fib

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRoutesScalePrivileged writes XROUTER_FIB_SCALE routes (for example
// 1000000) through the worker into a namespace and removes them again,
// logging the rates, once on nexthop objects and once with per-route
// gateways. It is skipped unless the variable is set: it measures, it
// asserts only that every route arrived and went.
func TestRoutesScalePrivileged(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XROUTER_FIB_SCALE"))
	if n <= 0 {
		t.Skip("set XROUTER_FIB_SCALE=N to write N routes")
	}
	for _, perRoute := range []bool{false, true} {
		name := "objects"
		if perRoute {
			name = "per-route"
		}
		t.Run(name, func(t *testing.T) { scaleRun(t, n, perRoute) })
	}
}

func scaleRun(t *testing.T, n int, perRoute bool) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: !perRoute}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// An iBGP-style next hop, resolved through an IGP-ish route, so that
	// moving that route moves every BGP route.
	ipCmd(t, "-n", ns, "route", "add", "192.0.2.0/24", "via", "10.78.0.4", "proto", "static")
	gw := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	prefixes := make([]netip.Prefix, n)
	for i := range n {
		// 11.0.0.0/24 upwards: n /24s, skipping nothing special below 1M.
		v := uint32(11<<24) + uint32(i)<<8
		prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
	}
	t0 := time.Now()
	for _, p := range prefixes {
		r.Set(p, gw)
	}
	t.Logf("sets queued after %v", time.Since(t0))
	waitStat(t, r, "install", func(s RoutesStats) bool { return s.Installed == n })
	in := time.Since(t0)
	t.Logf("installed %d routes in %v (%.0f/s); kernel: %s", n, in, float64(n)/in.Seconds(), fibCount(t, ns))

	// The IGP route moves: every route must follow.
	before := r.Stats().Replaces
	last := prefixes[n-1].Addr().Next().String()
	t0 = time.Now()
	ipCmd(t, "-n", ns, "route", "replace", "192.0.2.0/24", "via", "10.78.0.5", "proto", "static")
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Millisecond) {
		moved := strings.Contains(ipCmd(t, "-n", ns, "route", "get", last), "via 10.78.0.5")
		if moved && (!perRoute || r.Stats().Replaces-before >= uint64(n)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("routes did not follow the moved next hop")
		}
	}
	t.Logf("next hop moved under %d routes: all followed in %v, %d route writes", n, time.Since(t0), r.Stats().Replaces-before)
	if got := strings.Count(ipCmd(t, "-n", ns, "route", "show", "proto", "bgp"), "via 10.78.0.5"); got != n {
		t.Errorf("%d routes via 10.78.0.5 after the move, want %d", got, n)
	}

	t0 = time.Now()
	for _, p := range prefixes {
		r.Delete(p)
	}
	t.Logf("deletes queued after %v", time.Since(t0))
	waitStat(t, r, "delete", func(s RoutesStats) bool { return s.Installed == 0 && s.Pending == 0 })
	del := time.Since(t0)
	t.Logf("deleted %d routes in %v (%.0f/s); kernel: %s", n, del, float64(n)/del.Seconds(), fibCount(t, ns))
	if s := r.Stats(); s.Failures != 0 {
		t.Errorf("stats %+v: want no failures", s)
	}
}

func waitStat(t *testing.T, r *Routes, what string, cond func(RoutesStats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for !cond(r.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fibCount(t *testing.T, ns string) string {
	t.Helper()
	out := ipCmd(t, "netns", "exec", ns, "cat", "/proc/net/fib_triestat")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Prefixes:") {
			return strings.TrimSpace(l)
		}
	}
	return "?"
}
