package fib

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// kNexthop is one object as `ip -j nexthop show` prints it.
type kNexthop struct {
	ID       uint32 `json:"id"`
	Gateway  string `json:"gateway"`
	Protocol string `json:"protocol"`
	Group    []struct {
		ID uint32 `json:"id"`
	} `json:"group"`
}

func listNexthops(t *testing.T, ns string) map[uint32]kNexthop {
	t.Helper()
	out := ipCmd(t, "-n", ns, "-j", "nexthop", "show")
	var l []kNexthop
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("ip -j nexthop show: %v: %s", err, out)
	}
	m := map[uint32]kNexthop{}
	for _, n := range l {
		m[n.ID] = n
	}
	return m
}

// kRoute is one route as `ip -j route show` prints it.
type kRoute struct {
	Dst     string `json:"dst"`
	NHID    uint32 `json:"nhid"`
	Gateway string `json:"gateway"`
}

func listBGPRoutes(t *testing.T, ns string, family string) map[string]kRoute {
	t.Helper()
	out := ipCmd(t, "-n", ns, family, "-j", "route", "show", "proto", "bgp")
	var l []kRoute
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("ip -j route show: %v: %s", err, out)
	}
	m := map[string]kRoute{}
	for _, r := range l {
		m[r.Dst] = r
	}
	return m
}

func runRoutes(t *testing.T, r *Routes) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func nPrefixes(first byte, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{first, byte(i >> 8), byte(i), 0}), 24)
	}
	return out
}

// TestNexthopObjectsPrivileged: routes go on one object per next hop and
// one group per ECMP set; a next hop resolving differently is one object
// replace (no route message at all with nexthop_compat_mode=0), every route
// follows; objects go when their last route goes; an operator's object and
// its route are never touched.
func TestNexthopObjectsPrivileged(t *testing.T) {
	ns := routesNetns(t)
	nsPath := "/run/netns/" + ns
	ipCmd(t, "-n", ns, "route", "add", "192.0.2.0/24", "via", "10.78.0.4", "proto", "static")
	ipCmd(t, "-n", ns, "nexthop", "add", "id", "7", "via", "10.78.0.9", "dev", "r0")
	ipCmd(t, "-n", ns, "route", "add", "198.18.0.0/15", "nhid", "7")
	// Object replaces notify only the object, not every route on it.
	ipCmd(t, "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.nexthop_compat_mode=0")

	w, err := NewKernelWriter(Settings{NexthopObjects: true}, nsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if !w.NexthopObjects() {
		t.Fatal("nexthop objects off on this kernel")
	}
	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	stop := runRoutes(t, r)
	defer stop()

	direct, ecmp, ibgp := nPrefixes(11, 300), nPrefixes(12, 50), nPrefixes(13, 200)
	a2, a3, loop := netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3"), netip.MustParseAddr("192.0.2.1")
	for _, p := range direct {
		r.Set(p, []netip.Addr{a2})
	}
	for _, p := range ecmp {
		r.Set(p, []netip.Addr{a3, a2})
	}
	for _, p := range ibgp {
		r.Set(p, []netip.Addr{loop})
	}
	total := len(direct) + len(ecmp) + len(ibgp)
	eventually(t, "routes installed", func() bool { return r.Stats().Installed == total })

	objs := listNexthops(t, ns)
	var ours []kNexthop
	for _, o := range objs {
		if o.Protocol == "bgp" {
			ours = append(ours, o)
		}
	}
	// 10.78.0.2, 10.78.0.3, 192.0.2.1 (via 10.78.0.4), and {.2,.3}.
	if len(ours) != 4 {
		t.Fatalf("objects of protocol bgp: %+v, want 4 (three next hops, one group)", ours)
	}
	routes := listBGPRoutes(t, ns, "-4")
	if len(routes) != total {
		t.Fatalf("%d bgp routes in the kernel, want %d", len(routes), total)
	}
	ids := map[uint32]int{}
	for _, rt := range routes {
		if _, ok := objs[rt.NHID]; !ok || objs[rt.NHID].Protocol != "bgp" {
			t.Fatalf("route %+v not on an object of ours", rt)
		}
		ids[rt.NHID]++
	}
	if len(ids) != 3 {
		t.Errorf("routes use objects %v, want 3 (one per next-hop set)", ids)
	}
	grp := objs[routes["12.0.0.0/24"].NHID]
	if len(grp.Group) != 2 {
		t.Errorf("ECMP route's object %+v is not a group of two", grp)
	}
	if g := objs[routes["13.0.0.0/24"].NHID].Gateway; g != "10.78.0.4" {
		t.Errorf("iBGP next hop's object via %s, want 10.78.0.4", g)
	}

	// The IGP route to 192.0.2.1 moves: count what the kernel announces.
	sub, err := kernel.Subscribe(nsPath, kernel.Filter{Kinds: kernel.Route | kernel.Nexthop, Queue: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	replaces := r.Stats().Replaces
	ipCmd(t, "-n", ns, "route", "replace", "192.0.2.0/24", "via", "10.78.0.5", "proto", "static")
	eventually(t, "iBGP routes via 10.78.0.5", func() bool {
		out := ipCmd(t, "-n", ns, "route", "get", "13.0.199.1")
		return strings.Contains(out, "via 10.78.0.5")
	})
	time.Sleep(200 * time.Millisecond) // let late messages arrive
	var ourRoutes, nexthops, other int
	for drained := false; !drained; {
		select {
		case ev := <-sub.Events():
			switch {
			case ev.Kind == kernel.Route && ev.Route.Protocol == ProtocolBGP:
				ourRoutes++
			case ev.Kind == kernel.Nexthop && ev.Type == unix.RTM_NEWNEXTHOP:
				nexthops++
			default:
				other++
			}
		default:
			drained = true
		}
	}
	t.Logf("next hop moved under %d routes: %d bgp route messages, %d RTM_NEWNEXTHOP, %d other", len(ibgp), ourRoutes, nexthops, other)
	if ourRoutes != 0 || nexthops != 1 {
		t.Errorf("moving a next hop under %d routes: %d route messages of ours and %d nexthop messages, want 0 and 1", len(ibgp), ourRoutes, nexthops)
	}
	if got := r.Stats().Replaces - replaces; got != 0 {
		t.Errorf("%d route replaces for the move, want 0", got)
	}
	for _, ir := range r.Installed() {
		if ir.Prefix == ibgp[7] && (len(ir.Kernel) != 1 || ir.Kernel[0].Gateway != netip.MustParseAddr("10.78.0.5")) {
			t.Errorf("installed state of %s: %+v, want via 10.78.0.5", ir.Prefix, ir)
		}
	}

	// The ECMP routes go: their group goes, the members stay (in use).
	grpID := routes["12.0.0.0/24"].NHID
	for _, p := range ecmp {
		r.Delete(p)
	}
	eventually(t, "ECMP routes gone", func() bool { return r.Stats().Installed == len(direct)+len(ibgp) })
	eventually(t, "group deleted", func() bool { _, ok := listNexthops(t, ns)[grpID]; return !ok })
	if n := len(listBGPRoutes(t, ns, "-4")); n != len(direct)+len(ibgp) {
		t.Errorf("%d bgp routes after deleting the ECMP ones, want %d", n, len(direct)+len(ibgp))
	}
	// Everything goes: so do the objects, and only ours.
	for _, p := range slices.Concat(direct, ibgp) {
		r.Delete(p)
	}
	eventually(t, "all objects of ours deleted", func() bool {
		for _, o := range listNexthops(t, ns) {
			if o.Protocol == "bgp" {
				return false
			}
		}
		return true
	})
	if _, ok := listNexthops(t, ns)[7]; !ok {
		t.Error("the operator's object 7 was deleted")
	}
	if out := ipCmd(t, "-n", ns, "route", "show", "198.18.0.0/15"); !strings.Contains(out, "nhid 7") {
		t.Errorf("the operator's route on object 7 is gone: %q", out)
	}
}

// TestNexthopObjectsRestartPrivileged: a restarted writer adopts the
// objects of the earlier run (routes keep their object, same ids), and the
// objects only unconfirmed routes used are deleted with them at the sweep.
// An id taken by an operator's object is skipped, never replaced.
func TestNexthopObjectsRestartPrivileged(t *testing.T) {
	ns := routesNetns(t)
	nsPath := "/run/netns/" + ns
	// The first id our range hands out, taken by the operator.
	ipCmd(t, "-n", ns, "nexthop", "add", "id", "408944640", "via", "10.78.0.9", "dev", "r0")
	a2, a3 := netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")
	keep, drop := nPrefixes(11, 100), nPrefixes(12, 100)

	w1, err := NewKernelWriter(Settings{NexthopObjects: true}, nsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	r1 := NewRoutes(w1, Settings{ResyncInterval: -1}, quiet())
	stop := runRoutes(t, r1)
	for _, p := range keep {
		r1.Set(p, []netip.Addr{a2})
	}
	for _, p := range drop {
		r1.Set(p, []netip.Addr{a3})
	}
	eventually(t, "routes installed", func() bool { return r1.Stats().Installed == 200 })
	stop() // routes and objects stay, as for graceful restart
	w1.Close()
	before := listBGPRoutes(t, ns, "-4")
	if o := listNexthops(t, ns)[408944640]; o.Gateway != "10.78.0.9" {
		t.Fatalf("the operator's object was changed: %+v", o)
	}
	keepID, dropID := before["11.0.0.0/24"].NHID, before["12.0.0.0/24"].NHID
	if keepID == 0 || dropID == 0 || keepID == dropID {
		t.Fatalf("routes on objects %d and %d, want two objects", keepID, dropID)
	}

	var logBuf syncBuffer
	w2, err := NewKernelWriter(Settings{NexthopObjects: true}, nsPath, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w2.Close)
	if !strings.Contains(logBuf.String(), "found nexthop objects of an earlier run") {
		t.Errorf("no adoption notice; log:\n%s", logBuf.String())
	}
	r2 := NewRoutes(w2, Settings{ResyncInterval: -1, StaleTimeout: time.Hour}, quiet())
	stop = runRoutes(t, r2)
	defer stop()
	eventually(t, "routes found at start", func() bool { return r2.Stats().Installed == 200 })
	for _, p := range keep {
		r2.Set(p, []netip.Addr{a2})
	}
	eventually(t, "kept routes confirmed", func() bool { return r2.Stats().Replaces == uint64(len(keep)) })
	// Before the sweep, nothing is gone.
	if n := len(listBGPRoutes(t, ns, "-4")); n != 200 {
		t.Errorf("%d routes before the sweep, want 200", n)
	}
	r2.Sweep()
	eventually(t, "unconfirmed routes swept", func() bool { return r2.Stats().Installed == len(keep) })
	eventually(t, "their object deleted", func() bool { _, ok := listNexthops(t, ns)[dropID]; return !ok })
	after := listBGPRoutes(t, ns, "-4")
	if len(after) != len(keep) || after["11.0.0.0/24"].NHID != keepID {
		t.Errorf("after the sweep: %d routes, 11.0.0.0/24 on object %d; want %d routes on the adopted object %d",
			len(after), after["11.0.0.0/24"].NHID, len(keep), keepID)
	}
	if o := listNexthops(t, ns)[408944640]; o.Gateway != "10.78.0.9" {
		t.Errorf("the operator's object was changed: %+v", o)
	}
}

// TestNexthopObjectsRefusedPrivileged: a kernel that refuses nexthop
// objects (played here: the probe answers EOPNOTSUPP, as a kernel before
// 5.3 answers RTM_GETNEXTHOP) gets per-route gateways, with a log line.
func TestNexthopObjectsRefusedPrivileged(t *testing.T) {
	ns := routesNetns(t)
	orig := adoptObjects
	adoptObjects = func(*KernelWriter) error { return syscall.EOPNOTSUPP }
	t.Cleanup(func() { adoptObjects = orig })
	var logBuf syncBuffer
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if w.NexthopObjects() || !strings.Contains(logBuf.String(), "the kernel has no nexthop objects") {
		t.Errorf("objects on: %v; log:\n%s", w.NexthopObjects(), logBuf.String())
	}
	p := netip.MustParsePrefix("198.51.100.0/24")
	if _, err := w.Replace(p, []netip.Addr{netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")}); err != nil {
		t.Fatal(err)
	}
	out := ipCmd(t, "-n", ns, "route", "show", "198.51.100.0/24")
	if strings.Contains(out, "nhid") || !strings.Contains(out, "nexthop via 10.78.0.3") {
		t.Errorf("want a multipath route with its own gateways:\n%s", out)
	}
	if out := ipCmd(t, "-n", ns, "nexthop", "show"); strings.TrimSpace(out) != "" {
		t.Errorf("objects created: %s", out)
	}
}

// TestNexthopObjectsConfigOffPrivileged: fib.nexthop_objects off
// (PerRouteNexthops) writes per-route gateways on a kernel that has objects.
func TestNexthopObjectsConfigOffPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if _, err := w.Replace(netip.MustParsePrefix("198.51.100.0/24"), []netip.Addr{netip.MustParseAddr("10.78.0.2")}); err != nil {
		t.Fatal(err)
	}
	if out := ipCmd(t, "-n", ns, "route", "show", "198.51.100.0/24"); strings.Contains(out, "nhid") || !strings.Contains(out, "via 10.78.0.2") {
		t.Errorf("want a route with its own gateway:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNexthopObjectsLinkDownPrivileged: when a device loses its carrier,
// the kernel deletes the objects on it with every route on them, and takes
// them out of groups (whose routes keep forwarding through the other
// members). The worker leaves the group routes alone, and once the carrier
// is back every route is in the kernel again, the ECMP ones on a full
// group.
func TestNexthopObjectsLinkDownPrivileged(t *testing.T) {
	ns := routesNetns(t)
	for _, args := range [][]string{
		{"link", "add", "r2", "type", "veth", "peer", "name", "r3"},
		{"link", "set", "r2", "up"},
		{"link", "set", "r3", "up"},
		{"addr", "add", "10.79.0.1/24", "dev", "r2"},
	} {
		ipCmd(t, append([]string{"-n", ns}, args...)...)
	}
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	stop := runRoutes(t, r)
	defer stop()
	eventually(t, "watch running", w.tracking.Load)
	a, b := netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.79.0.2")
	single, ecmp := nPrefixes(11, 100), nPrefixes(12, 100)
	for _, p := range single {
		r.Set(p, []netip.Addr{a})
	}
	for _, p := range ecmp {
		r.Set(p, []netip.Addr{a, b})
	}
	n := len(single) + len(ecmp)
	eventually(t, "routes installed", func() bool { return len(listBGPRoutes(t, ns, "-4")) == n })
	routes := listBGPRoutes(t, ns, "-4")
	first, group := routes["11.0.0.0/24"].NHID, routes["12.0.0.0/24"].NHID

	ipCmd(t, "-n", ns, "link", "set", "r1", "down") // r0 loses its carrier
	eventually(t, "the kernel deleted the object", func() bool { _, ok := listNexthops(t, ns)[first]; return !ok })
	time.Sleep(300 * time.Millisecond) // the worker has seen it
	routes = listBGPRoutes(t, ns, "-4")
	if len(routes) != len(ecmp) || routes["12.0.0.0/24"].NHID != group {
		t.Errorf("carrier lost: %d routes, 12.0.0.0/24 on %d; want the %d ECMP routes left on their group %d",
			len(routes), routes["12.0.0.0/24"].NHID, len(ecmp), group)
	}
	if out := ipCmd(t, "-n", ns, "route", "get", "12.0.5.1"); !strings.Contains(out, "via 10.79.0.2") {
		t.Errorf("ECMP prefix with one member down: %s", out)
	}

	ipCmd(t, "-n", ns, "link", "set", "r1", "up")
	eventually(t, "routes back", func() bool {
		routes := listBGPRoutes(t, ns, "-4")
		if len(routes) != n {
			return false
		}
		objs := listNexthops(t, ns)
		for dst, rt := range routes {
			o, ok := objs[rt.NHID]
			if !ok {
				return false
			}
			if strings.HasPrefix(dst, "12.") && len(o.Group) != 2 {
				return false
			}
			if strings.HasPrefix(dst, "11.") && o.Gateway != "10.78.0.2" {
				return false
			}
		}
		return true
	})
	eventually(t, "the short group pruned", func() bool { _, ok := listNexthops(t, ns)[group]; return !ok })
	if s := r.Stats(); s.Installed != n {
		t.Errorf("stats %+v, want %d installed", s, n)
	}
}
