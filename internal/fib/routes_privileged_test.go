package fib

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// routesNetns creates a namespace with a veth pair (both ends inside, up)
// carrying 10.78.0.1/24 and 2001:db8:78::1/64, and returns its name. It is
// deleted when the test ends.
func routesNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and writes kernel routes")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	name := fmt.Sprintf("xrbgp-fib-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	for _, args := range [][]string{
		{"link", "add", "r0", "type", "veth", "peer", "name", "r1"},
		{"link", "set", "lo", "up"},
		{"link", "set", "r0", "up"},
		{"link", "set", "r1", "up"},
		{"addr", "add", "10.78.0.1/24", "dev", "r0"},
		{"addr", "add", "2001:db8:78::1/64", "dev", "r0", "nodad"},
	} {
		ipCmd(t, append([]string{"-n", name}, args...)...)
	}
	return name
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nhidRE matches the nexthop object of a route in `ip route` output.
var nhidRE = regexp.MustCompile(` nhid [0-9]+`)

// ipRoutes is ipCmd for `ip route show`, without the routes' nexthop
// object ids (so that the gateways read the same with objects or without).
func ipRoutes(t *testing.T, args ...string) string {
	t.Helper()
	return nhidRE.ReplaceAllString(ipCmd(t, args...), "")
}

func TestKernelWriterPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)

	// An operator's static route for the prefix BGP will also install.
	ipCmd(t, "-n", ns, "route", "add", "198.51.100.0/24", "via", "10.78.0.3", "proto", "static")
	// The route to a BGP next hop that is not on a connected subnet.
	ipCmd(t, "-n", ns, "route", "add", "192.0.2.0/24", "via", "10.78.0.4", "proto", "static")

	single := netip.MustParsePrefix("198.51.100.0/24")
	got, err := w.Replace(single, []netip.Addr{netip.MustParseAddr("10.78.0.2")})
	if err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if len(got) != 1 || got[0].Gateway != netip.MustParseAddr("10.78.0.2") || got[0].LinkIndex == 0 {
		t.Errorf("Replace returned %v", got)
	}
	// Replace again with another next hop: still one route of ours.
	if _, err := w.Replace(single, []netip.Addr{netip.MustParseAddr("10.78.0.5")}); err != nil {
		t.Fatalf("second Replace: %v", err)
	}
	show := ipRoutes(t, "-n", ns, "route", "show", "198.51.100.0/24")
	if !strings.Contains(show, "via 10.78.0.3 dev r0 proto static") {
		t.Errorf("operator's static route was touched:\n%s", show)
	}
	if !strings.Contains(show, "via 10.78.0.5 dev r0 proto bgp metric 20") || strings.Contains(show, "10.78.0.2") {
		t.Errorf("want exactly one bgp route via 10.78.0.5 metric 20:\n%s", show)
	}

	ecmp := netip.MustParsePrefix("203.0.113.0/24")
	if _, err := w.Replace(ecmp, []netip.Addr{netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")}); err != nil {
		t.Fatalf("ECMP Replace: %v", err)
	}
	show = ipRoutes(t, "-n", ns, "route", "show", "203.0.113.0/24")
	if !strings.Contains(show, "proto bgp metric 20") || !strings.Contains(show, "nexthop via 10.78.0.2") || !strings.Contains(show, "nexthop via 10.78.0.3") {
		t.Errorf("want one multipath route via .2 and .3:\n%s", show)
	}

	recursive := netip.MustParsePrefix("100.64.0.0/16")
	got, err = w.Replace(recursive, []netip.Addr{netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatalf("recursive Replace: %v", err)
	}
	if len(got) != 1 || got[0].Gateway != netip.MustParseAddr("10.78.0.4") {
		t.Errorf("next hop 192.0.2.1 resolved to %v, want gateway 10.78.0.4", got)
	}
	show = ipRoutes(t, "-n", ns, "route", "show", "100.64.0.0/16")
	if !strings.Contains(show, "via 10.78.0.4 dev r0 proto bgp metric 20") {
		t.Errorf("recursive route:\n%s", show)
	}

	v6 := netip.MustParsePrefix("2001:db8:77::/48")
	if _, err := w.Replace(v6, []netip.Addr{netip.MustParseAddr("2001:db8:78::2"), netip.MustParseAddr("2001:db8:78::3")}); err != nil {
		t.Fatalf("IPv6 ECMP Replace: %v", err)
	}
	show = ipRoutes(t, "-n", ns, "-6", "route", "show", "2001:db8:77::/48")
	if !strings.Contains(show, "proto bgp metric 20") || !strings.Contains(show, "2001:db8:78::2") || !strings.Contains(show, "2001:db8:78::3") {
		t.Errorf("IPv6 multipath route:\n%s", show)
	}

	// Unreachable and own-address next hops are permanent errors naming the prefix.
	if _, err := w.Replace(netip.MustParsePrefix("100.65.0.0/16"), []netip.Addr{netip.MustParseAddr("10.99.0.1")}); err == nil || !strings.Contains(err.Error(), "100.65.0.0/16") || IsTransient(err) {
		t.Errorf("unreachable next hop: err = %v, want a permanent error naming the prefix", err)
	}
	if _, err := w.Replace(netip.MustParsePrefix("100.66.0.0/16"), []netip.Addr{netip.MustParseAddr("10.78.0.1")}); err == nil {
		t.Error("own address accepted as next hop")
	}

	list, err := w.List()
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for _, ir := range list {
		prefixes = append(prefixes, ir.Prefix.String())
	}
	want := "100.64.0.0/16 198.51.100.0/24 2001:db8:77::/48 203.0.113.0/24"
	slices.Sort(prefixes)
	if got := strings.Join(prefixes, " "); got != want {
		t.Errorf("List = %s, want %s (our routes only, not the static ones)", got, want)
	}
	for _, ir := range list {
		if ir.Prefix == ecmp && len(ir.Kernel) != 2 {
			t.Errorf("List: ECMP route has next hops %v", ir.Kernel)
		}
	}

	for _, p := range []netip.Prefix{single, ecmp, recursive, v6} {
		if err := w.Delete(p); err != nil {
			t.Errorf("Delete %s: %v", p, err)
		}
	}
	if err := w.Delete(single); err != nil {
		t.Errorf("deleting a route already gone: %v", err)
	}
	if out := ipRoutes(t, "-n", ns, "route", "show", "proto", "bgp"); strings.TrimSpace(out) != "" {
		t.Errorf("bgp routes left:\n%s", out)
	}
	if show := ipRoutes(t, "-n", ns, "route", "show", "198.51.100.0/24"); !strings.Contains(show, "via 10.78.0.3 dev r0 proto static") {
		t.Errorf("operator's static route gone after our delete:\n%s", show)
	}
}

// TestRoutesKernelPrivileged runs the worker against the kernel: a restart
// finds our routes, keeps them, and the sweep removes the unconfirmed one.
func TestRoutesKernelPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	a, b := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	gw := netip.MustParseAddr("10.78.0.2")

	run := func(r *Routes) (stop func()) {
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
	r1 := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	stop := run(r1)
	r1.Set(a, []netip.Addr{gw})
	r1.Set(b, []netip.Addr{gw})
	eventually(t, "two routes", func() bool { return r1.Stats().Installed == 2 })
	stop() // RemoveOnStop off: routes survive, as for graceful restart

	r2 := NewRoutes(w, Settings{ResyncInterval: -1, StaleTimeout: time.Hour}, quiet())
	stop = run(r2)
	defer stop()
	eventually(t, "routes found at start", func() bool { return r2.Stats().Installed == 2 })
	r2.Set(a, []netip.Addr{gw})
	r2.Sweep()
	eventually(t, "unconfirmed route swept", func() bool { return r2.Stats().Installed == 1 })
	out := ipRoutes(t, "-n", ns, "route", "show", "proto", "bgp")
	if !strings.Contains(out, "198.51.100.0/24 via 10.78.0.2") || strings.Contains(out, "203.0.113.0") {
		t.Errorf("after restart and sweep:\n%s", out)
	}
}

// TestNexthopTrackingPrivileged: an iBGP-style next hop (192.0.2.1) resolves
// through an IGP-ish static route; when that route moves to another
// gateway, the dependent route moves with it, without a resync; when it
// goes, the dependent route goes, and it comes back with it. Our own route
// writes do not count as changes.
func TestNexthopTrackingPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	ipCmd(t, "-n", ns, "route", "add", "192.0.2.0/24", "via", "10.78.0.4", "proto", "static")

	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	dep := netip.MustParsePrefix("100.64.0.0/16")
	other := netip.MustParsePrefix("198.51.100.0/24")
	r.Set(dep, []netip.Addr{netip.MustParseAddr("192.0.2.1")})
	r.Set(other, []netip.Addr{netip.MustParseAddr("10.78.0.2")}) // connected: not affected
	eventually(t, "routes installed", func() bool { return r.Stats().Installed == 2 })
	show := func(p string) string { return ipRoutes(t, "-n", ns, "route", "show", p, "proto", "bgp") }
	if out := show("100.64.0.0/16"); !strings.Contains(out, "via 10.78.0.4") {
		t.Fatalf("dependent route not via 10.78.0.4:\n%s", out)
	}
	replaces := r.Stats().Replaces

	// The IGP route moves to another gateway.
	ipCmd(t, "-n", ns, "route", "replace", "192.0.2.0/24", "via", "10.78.0.5", "proto", "static")
	waitKernel := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out := show("100.64.0.0/16"); !cond(out); out = show("100.64.0.0/16") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: dependent route after 5 s:\n%s", what, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitKernel("IGP route moved to 10.78.0.5", func(out string) bool { return strings.Contains(out, "via 10.78.0.5 dev r0") })
	// On a nexthop object, the object moved and no route was rewritten;
	// on its own gateways, the dependent route alone was.
	want := uint64(1)
	if w.NexthopObjects() {
		want = 0
	}
	if got := r.Stats().Replaces - replaces; got != want {
		t.Errorf("%d replaces after the IGP change, want %d", got, want)
	}
	if inst := r.Installed(); len(inst) != 2 {
		t.Errorf("installed = %+v", inst)
	}

	// The IGP route goes: the next hop is unreachable, the route goes.
	ipCmd(t, "-n", ns, "route", "del", "192.0.2.0/24")
	waitKernel("IGP route removed", func(out string) bool { return strings.TrimSpace(out) == "" })
	if s := r.Stats(); s.Installed != 1 || s.Desired != 2 {
		t.Errorf("stats %+v: want 1 installed and 2 desired", s)
	}
	// It comes back (now as a connected subnet): so does the route.
	ipCmd(t, "-n", ns, "addr", "add", "192.0.2.100/24", "dev", "r0")
	waitKernel("subnet connected", func(out string) bool { return strings.Contains(out, "via 192.0.2.1 dev r0") })
	if out := show("198.51.100.0/24"); !strings.Contains(out, "via 10.78.0.2") {
		t.Errorf("unrelated route moved:\n%s", out)
	}
}

// TestWatchIgnoresOwnRoutesPrivileged: the socket filter keeps our own
// writes (protocol 186) out of the change feed; other routes get through.
func TestWatchIgnoresOwnRoutesPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Watch(ctx, func() { calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	eventually(t, "watch running", w.tracking.Load)
	// The namespace's own IPv6 set-up (link-local address, its routes)
	// still sends events for a while: start counting once it is quiet.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		calls.Store(0)
		time.Sleep(300 * time.Millisecond)
		if calls.Load() == 0 {
			break
		}
	}
	ops := make([]Op, 1000)
	for i := range ops {
		ops[i] = Op{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 0}), 24),
			NextHops: []netip.Addr{netip.MustParseAddr("10.78.0.2")}}
	}
	res := make([]Result, len(ops))
	w.Apply(ops, res)
	for i := range ops {
		if res[i].Err != nil {
			t.Fatalf("Apply %s: %v", ops[i].Prefix, res[i].Err)
		}
		ops[i].NextHops = nil
	}
	w.Apply(ops, res)
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Errorf("%d change calls for 2000 writes of our own, want 0", n)
	}
	ipCmd(t, "-n", ns, "route", "add", "192.0.2.0/24", "via", "10.78.0.4", "proto", "static")
	eventually(t, "change reported for a static route", func() bool { return calls.Load() > 0 })
}

// TestRouteSocketOutcomesPrivileged: in one batch, each request gets its own
// outcome, matched by sequence number, with the kernel's explanation.
func TestRouteSocketOutcomesPrivileged(t *testing.T) {
	ns := routesNetns(t)
	s, err := openRouteSocket("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	link := 0
	for _, l := range strings.Split(ipCmd(t, "-n", ns, "-o", "link", "show", "r0"), ":") {
		if v, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			link = v
			break
		}
	}
	good := Nexthop{Gateway: netip.MustParseAddr("10.78.0.2"), LinkIndex: link}
	bad := Nexthop{Gateway: netip.MustParseAddr("192.0.2.99"), LinkIndex: link} // not on a connected subnet
	msgs := []routeMsg{
		{prefix: netip.MustParsePrefix("198.51.100.0/24"), kernel: []Nexthop{good}},
		{prefix: netip.MustParsePrefix("203.0.113.0/24"), kernel: []Nexthop{bad}},
		{prefix: netip.MustParsePrefix("100.64.0.0/16")}, // delete of a route that is not there
		{prefix: netip.MustParsePrefix("100.65.0.0/16"), kernel: []Nexthop{good, {Gateway: netip.MustParseAddr("10.78.0.3"), LinkIndex: link}}},
	}
	// Many of them, so that the batch spans more than one sendmsg.
	for i := range 2 * batchWindow {
		msgs = append(msgs, routeMsg{prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 0}), 24), kernel: []Nexthop{good}})
	}
	errs := make([]error, len(msgs))
	s.exchange(routeConf{table: DefaultTable, metric: DefaultMetric}, msgs, errs)
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("valid routes: %v, %v", errs[0], errs[3])
	}
	if errs[1] == nil || IsTransient(errs[1]) || !strings.Contains(errs[1].Error(), "gateway") {
		t.Errorf("unreachable gateway: err = %v, want a permanent error with the kernel's explanation", errs[1])
	}
	if !errors.Is(errs[2], syscall.ESRCH) {
		t.Errorf("delete of a missing route: err = %v, want ESRCH", errs[2])
	}
	for i, err := range errs[4:] {
		if err != nil {
			t.Fatalf("route %s: %v", msgs[4+i].prefix, err)
		}
	}
	out := ipRoutes(t, "-n", ns, "route", "show", "proto", "bgp")
	if n := strings.Count(out, "\n"); n < 2*batchWindow+2 || strings.Contains(out, "203.0.113.0") {
		t.Errorf("kernel holds %d lines of bgp routes, want %d and not 203.0.113.0/24", n, 2*batchWindow+2)
	}
}
