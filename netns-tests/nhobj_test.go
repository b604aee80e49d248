package netnstests

// Routes on kernel nexthop objects (`ip nexthop`, routes with nhid), the
// way xrouter installs its BGP routes: bpf_fib_lookup follows them, the
// fast path forwards them (and caches those on a single object), an object
// replaced to another gateway moves the traffic at once, and a group
// object spreads flows as kernel forwarding does.

import (
	"strconv"
	"testing"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestCacheNexthopObjectsPrivileged: traffic to a route on a nexthop
// object crosses in XDP (xrouter's forwarded grows, the kernel's
// ForwDatagrams does not) and hits the cache; once the object is replaced
// to another gateway (one RTM_NEWNEXTHOP, no route event), the next
// packets go to the new gateway; once it is deleted (taking its route
// with it), none are forwarded; flows to a route on a 4-way group take
// the next hop the kernel picks for each, and use all four.
func TestCacheNexthopObjectsPrivileged(t *testing.T) {
	r := newCacheRouter(t, "")
	rt := r.tp.Router
	dev := testbed.LineRouterDstDev
	const dst, dst6 = "10.81.1.1", "fd00:81::1"

	bumps := r.statusBumps(t)
	rt.IP(t, "nexthop", "add", "id", "100", "via", cacheHops[0].addr, "dev", dev, "proto", "bgp")
	rt.IP(t, "route", "add", "10.81.0.0/16", "nhid", "100", "proto", "bgp", "metric", "20")
	rt.IP(t, "nexthop", "add", "id", "120", "via", cacheHops6[0], "dev", dev, "proto", "bgp")
	rt.IP(t, "-6", "route", "add", "fd00:81::/48", "nhid", "120", "proto", "bgp", "metric", "20")
	r.waitBumped(t, bumps, "routes on objects")
	r.settle(t, dst, 100)
	r.settle(t, dst6, 100)

	before := r.cacheStats(t)
	var id4, id6 uint32
	g := measure(t, r.tp, func() {
		id4 = r.send(t, dst, 0, 50, 100)
		id6 = r.send(t, dst6, 0, 50, 100)
		r.expect(t, id4, 50, cacheHops[0].mac, 0)
		r.expect(t, id6, 50, cacheHops[0].mac, 0)
	})
	t.Logf("stats growth %v; kernel ForwDatagrams +%d, Ip6OutForwDatagrams +%d", g.stats, g.kernel4, g.kernel6)
	if g.stats["forwarded"] < 100 {
		t.Errorf("forwarded grew by %d, want at least 100: routes on objects do not take the fast path", g.stats["forwarded"])
	}
	if g.kernel4 != 0 || g.kernel6 != 0 {
		t.Errorf("kernel forwarded %d IPv4 and %d IPv6 packets, want 0: packets took the slow path", g.kernel4, g.kernel6)
	}
	if s := r.cacheStats(t); s.Hit <= before.Hit {
		t.Errorf("cache %+v: no hit for routes on a single object", s)
	}

	// The object moves to another gateway: one kernel operation; no
	// route changes.
	for _, step := range []struct{ id, addr, dst string }{
		{"100", cacheHops[1].addr, dst},
		{"120", cacheHops6[1], dst6},
	} {
		bumps = r.statusBumps(t)
		rt.IP(t, "nexthop", "replace", "id", step.id, "via", step.addr, "dev", dev, "proto", "bgp")
		r.waitBumped(t, bumps, "object "+step.id+" replaced")
		if want := r.kernelHop(t, step.dst, 0); want != cacheHops[1].mac {
			t.Fatalf("kernel sends %s to %s after the replace, want %s", step.dst, want, cacheHops[1].mac)
		}
		id := r.send(t, step.dst, 0, 20, 100)
		r.expect(t, id, 20, cacheHops[1].mac, 0)
	}

	// The object goes, and with it the kernel's route on it (for IPv4
	// without a route event: RTM_DELNEXTHOP is what invalidates). The
	// cache held the destination; the next packets are not forwarded.
	r.settle(t, dst, 100)
	bumps = r.statusBumps(t)
	rt.IP(t, "nexthop", "del", "id", "100")
	r.waitBumped(t, bumps, "object 100 deleted")
	want := r.kernelHop(t, dst, 0)
	if want != "" {
		t.Fatalf("the kernel still sends %s to %s after its object was deleted", dst, want)
	}
	r.expect(t, r.send(t, dst, 0, 10, 100), 10, want, 0)

	// A group of four objects: flows spread as the kernel spreads them.
	rt.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1") // L4: ports count
	for i, h := range cacheHops {
		rt.IP(t, "nexthop", "add", "id", strconv.Itoa(101+i), "via", h.addr, "dev", dev, "proto", "bgp")
	}
	bumps = r.statusBumps(t)
	rt.IP(t, "nexthop", "add", "id", "110", "group", "101/102/103/104", "proto", "bgp")
	rt.IP(t, "route", "add", "10.82.0.0/16", "nhid", "110", "proto", "bgp", "metric", "20")
	r.waitBumped(t, bumps, "route on a group")
	const gdst = "10.82.1.1"
	used := map[string]int{}
	before = r.cacheStats(t)
	g = measure(t, r.tp, func() {
		for sport := uint16(23000); sport < 23048; sport++ {
			want := r.kernelHop(t, gdst, sport)
			if want == "" {
				t.Fatalf("sport %d: the kernel has no next hop", sport)
			}
			id := r.send(t, gdst, sport, 3, 40)
			r.expect(t, id, 3, want, 0)
			used[want]++
		}
	})
	if len(used) != len(cacheHops) {
		t.Errorf("flows used next hops %v, want all %d", used, len(cacheHops))
	}
	if g.kernel4 != 0 || g.stats["forwarded"] < 48*3 {
		t.Errorf("group route: forwarded +%d, kernel ForwDatagrams +%d; want every packet in XDP", g.stats["forwarded"], g.kernel4)
	}
	if s := r.cacheStats(t); s.Uncacheable <= before.Uncacheable {
		t.Errorf("cache %+v: lookups of a group route should be counted uncacheable", s)
	}
	t.Logf("flows per next hop: %v", used)
}
