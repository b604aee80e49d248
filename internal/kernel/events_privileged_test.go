package kernel_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
	"github.com/xrouter/xrouter/internal/testbed"
)

// vethNS returns a namespace with the veth pair v0/v1 up and 10.5.0.1/24
// on v0.
func vethNS(t *testing.T) *testbed.Netns {
	t.Helper()
	ns := testbed.NewNetns(t, "xrkern-")
	ns.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ns.IP(t, "link", "set", "v0", "up")
	ns.IP(t, "link", "set", "v1", "up")
	ns.IP(t, "addr", "add", "10.5.0.1/24", "dev", "v0")
	return ns
}

func subscribe(t *testing.T, ns *testbed.Netns, f kernel.Filter) *kernel.Subscription {
	t.Helper()
	s, err := kernel.Subscribe(ns.Path(), f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// routesSeen collects the route events of s for d, by destination.
func routesSeen(s *kernel.Subscription, d time.Duration) (map[string]kernel.RouteInfo, int) {
	got, lost := map[string]kernel.RouteInfo{}, 0
	deadline := time.After(d)
	for {
		select {
		case e := <-s.Events():
			switch e.Kind {
			case kernel.Route:
				got[e.Route.Dst.String()] = e.Route
			case kernel.Lost:
				lost++
			}
		case <-deadline:
			return got, lost
		}
	}
}

// TestOwnRoutesReachOnlyThoseWhoWantThemPrivileged: one socket, two
// subscribers. Routes of the ignored protocol reach only the subscriber
// that asked for them; other routes reach both; a subscriber alone that
// ignores them has the kernel drop them.
func TestOwnRoutesReachOnlyThoseWhoWantThemPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t)
	tracker := subscribe(t, ns, kernel.Filter{Kinds: kernel.Route | kernel.Link | kernel.Addr, IgnoreProtocol: 186})
	if kernel.HubFiltered(tracker) != 186 {
		t.Errorf("alone, the subscriber ignoring protocol 186 left the socket unfiltered (%d)", kernel.HubFiltered(tracker))
	}
	all := subscribe(t, ns, kernel.Filter{Kinds: kernel.All})
	if !kernel.SameHub(all, tracker) {
		t.Fatal("two subscriptions in one namespace opened two sockets")
	}
	if kernel.HubFiltered(all) != 0 {
		t.Errorf("a subscriber wants every route but the socket still filters protocol %d", kernel.HubFiltered(all))
	}
	ns.IP(t, "route", "add", "10.60.0.0/16", "via", "10.5.0.2", "proto", "186")
	ns.IP(t, "route", "add", "10.61.0.0/16", "via", "10.5.0.2", "proto", "static")
	ns.IP(t, "route", "add", "10.62.0.0/16", "nexthop", "via", "10.5.0.2", "nexthop", "via", "10.5.0.3")
	gotAll, _ := routesSeen(all, 500*time.Millisecond)
	gotTracker, _ := routesSeen(tracker, 100*time.Millisecond)
	for _, p := range []string{"10.60.0.0/16", "10.61.0.0/16", "10.62.0.0/16"} {
		if _, ok := gotAll[p]; !ok {
			t.Errorf("%s: not seen by the subscriber of every route (saw %v)", p, gotAll)
		}
	}
	if r := gotAll["10.60.0.0/16"]; r.Protocol != 186 || r.Multipath || r.Table != unix.RT_TABLE_MAIN {
		t.Errorf("10.60.0.0/16 decoded as %+v", r)
	}
	if r := gotAll["10.62.0.0/16"]; !r.Multipath {
		t.Errorf("multipath route decoded as %+v", r)
	}
	if _, ok := gotTracker["10.60.0.0/16"]; ok {
		t.Error("a route of the ignored protocol reached the subscriber ignoring it")
	}
	if _, ok := gotTracker["10.61.0.0/16"]; !ok {
		t.Errorf("a static route did not reach the tracker (saw %v)", gotTracker)
	}

	// The subscriber of every route leaves: the kernel filters again.
	all.Close()
	if f := kernel.HubFiltered(tracker); f != 186 {
		t.Errorf("after the last subscriber of our routes left, filter = %d", f)
	}
	ns.IP(t, "link", "set", "v1", "mtu", "1400")
	deadline := time.After(2 * time.Second)
	for seen := false; !seen; {
		select {
		case e := <-tracker.Events():
			seen = e.Kind == kernel.Link && e.Link.Attrs().Name == "v1" && e.Link.Attrs().MTU == 1400
		case <-deadline:
			t.Fatal("link event not delivered")
		}
	}
}

// TestOverrunTellsEverySubscriberPrivileged: when the kernel drops events
// because the socket is full, every subscriber receives Lost.
func TestOverrunTellsEverySubscriberPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t)
	a := subscribe(t, ns, kernel.Filter{Kinds: kernel.Route, Queue: 1 << 16})
	b := subscribe(t, ns, kernel.Filter{Kinds: kernel.Link, Queue: 1 << 16})
	// Shrink the buffer far below one burst.
	if err := unix.SetsockoptInt(kernel.HubFD(a), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&sb, "route add 10.%d.%d.0/24 via 10.5.0.2\n", 70+i/256, i%256)
	}
	batch := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(batch, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.IP(t, "-batch", batch)
	for name, s := range map[string]*kernel.Subscription{"route": a, "link": b} {
		if _, lost := routesSeen(s, time.Second); lost == 0 {
			t.Errorf("2000 route events into a 1 KiB socket buffer: %s subscriber not told of the loss", name)
		}
	}
}

// TestFullQueueIsLostPrivileged: a subscriber that does not keep up loses
// events alone and is told so once it reads again.
func TestFullQueueIsLostPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t)
	slow := subscribe(t, ns, kernel.Filter{Kinds: kernel.Route, Queue: 1})
	fast := subscribe(t, ns, kernel.Filter{Kinds: kernel.Route, Queue: 64})
	for i := range 3 {
		ns.IP(t, "route", "add", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 80, byte(i), 0}), 24).String(), "via", "10.5.0.2")
	}
	gotFast, lostFast := routesSeen(fast, 500*time.Millisecond)
	if len(gotFast) != 3 || lostFast != 0 {
		t.Errorf("fast subscriber: %d routes, %d losses; want 3 and 0", len(gotFast), lostFast)
	}
	_, lostSlow := routesSeen(slow, time.Second)
	if lostSlow == 0 {
		t.Error("a subscriber whose queue overflowed was not told")
	}
}

// TestSubscriptionInCallersNamespacePrivileged: an empty path is the
// calling thread's namespace, and two namespaces get two sockets.
func TestSubscriptionInCallersNamespacePrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns1, ns2 := vethNS(t), vethNS(t)
	var s1 *kernel.Subscription
	if err := ns1.Do(func() error {
		var err error
		s1, err = kernel.Subscribe("", kernel.Filter{Kinds: kernel.Route})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s1.Close)
	s2 := subscribe(t, ns2, kernel.Filter{Kinds: kernel.Route})
	if kernel.SameHub(s1, s2) {
		t.Fatal("two namespaces share one socket")
	}
	ns1.IP(t, "route", "add", "10.90.0.0/16", "via", "10.5.0.2")
	got1, _ := routesSeen(s1, 500*time.Millisecond)
	got2, _ := routesSeen(s2, 100*time.Millisecond)
	if _, ok := got1["10.90.0.0/16"]; !ok {
		t.Errorf("route not seen in its namespace: %v", got1)
	}
	if len(got2) != 0 {
		t.Errorf("routes of another namespace seen: %v", got2)
	}
}

// TestDecodeWhatSubscribersNeedPrivileged: route events carry the source
// prefix, metric, mtu metric and realms (on the route or a path); rule
// events their family, protocol and realm.
func TestDecodeWhatSubscribersNeedPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t)
	ns.IP(t, "addr", "add", "fd00:5::1/64", "dev", "v0", "nodad")
	s := subscribe(t, ns, kernel.Filter{Kinds: kernel.Route | kernel.Rule})
	ns.IP(t, "route", "add", "10.63.0.0/16", "via", "10.5.0.2", "realm", "7")
	ns.IP(t, "route", "add", "10.64.0.0/16", "nexthop", "via", "10.5.0.2", "realm", "3", "nexthop", "via", "10.5.0.3")
	ns.IP(t, "route", "add", "10.65.0.0/16", "via", "10.5.0.2", "mtu", "1400", "metric", "77")
	ns.IP(t, "-6", "route", "add", "fd00:64::/48", "from", "fd00:99::/48", "via", "fd00:5::2")
	ns.IP(t, "rule", "add", "to", "10.57.0.0/16", "lookup", "100", "realms", "5")
	routes := map[string]kernel.RouteInfo{}
	var rules []kernel.RuleInfo
	deadline := time.After(2 * time.Second)
	for len(routes) < 4 || len(rules) < 1 {
		select {
		case e := <-s.Events():
			switch {
			case e.Kind == kernel.Route && e.Type == unix.RTM_NEWROUTE:
				routes[e.Route.Dst.String()] = e.Route
			case e.Kind == kernel.Rule && e.Type == unix.RTM_NEWRULE:
				rules = append(rules, e.Rule)
			}
		case <-deadline:
			t.Fatalf("events missing: routes %v rules %v", routes, rules)
		}
	}
	if r := routes["10.63.0.0/16"]; !r.Realms || r.Multipath {
		t.Errorf("route with a realm decoded as %+v", r)
	}
	if r := routes["10.64.0.0/16"]; !r.Realms || !r.Multipath {
		t.Errorf("multipath route with a realm on one path decoded as %+v", r)
	}
	if r := routes["10.65.0.0/16"]; r.MTU != 1400 || r.Priority != 77 || r.Realms {
		t.Errorf("route with mtu 1400 metric 77 decoded as %+v", r)
	}
	if r := routes["fd00:64::/48"]; r.Src != netip.MustParsePrefix("fd00:99::/48") || r.SrcLen != 48 {
		t.Errorf("source-specific route decoded as %+v", r)
	}
	if r := rules[0]; r.Family != unix.AF_INET || !r.Realms || r.Protocol == unix.RTPROT_KERNEL {
		t.Errorf("rule with a realm decoded as %+v", r)
	}
}
