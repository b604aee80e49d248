package nhcache

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/kernel"
	"github.com/xrouter/xrouter/internal/testbed"
)

// rulesIn dumps the rules from inside ns.
func rulesIn(t *testing.T, ns *testbed.Netns) [][]byte {
	t.Helper()
	var msgs [][]byte
	if err := ns.Do(func() error {
		var err error
		msgs, err = dump(unix.RTM_GETRULE, unix.RTM_NEWRULE)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// vethNS returns a namespace with the veth pair v0/v1 up and 10.5.0.1/24
// on v0, plus fd00:5::1/64 when v6.
func vethNS(t *testing.T, v6 bool) *testbed.Netns {
	t.Helper()
	ns := testbed.NewNetns(t, "xrinv-")
	ns.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ns.IP(t, "link", "set", "v0", "up")
	ns.IP(t, "link", "set", "v1", "up")
	ns.IP(t, "addr", "add", "10.5.0.1/24", "dev", "v0")
	if v6 {
		ns.IP(t, "addr", "add", "fd00:5::1/64", "dev", "v0", "nodad")
	}
	return ns
}

func TestDefaultRulesPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrinv-")
	rules := func() [][]byte { return rulesIn(t, ns) }
	msgs := rules()
	if !defaultRules(msgs, unix.AF_INET) || !defaultRules(msgs, unix.AF_INET6) {
		t.Fatalf("a fresh namespace's rules are not recognised as the default set")
	}
	for _, c := range []struct {
		args             []string
		custom4, custom6 bool
	}{
		{[]string{"rule", "add", "to", "10.1.0.0/16", "lookup", "100"}, true, false},
		{[]string{"-6", "rule", "add", "fwmark", "1", "lookup", "100"}, true, true},
	} {
		ns.IP(t, c.args...)
		msgs := rules()
		if got4, got6 := !defaultRules(msgs, unix.AF_INET), !defaultRules(msgs, unix.AF_INET6); got4 != c.custom4 || got6 != c.custom6 {
			t.Errorf("after ip %v: custom v4 %v v6 %v, want %v %v", c.args, got4, got6, c.custom4, c.custom6)
		}
	}
	// Moving the local rule is not the default set either.
	ns2 := testbed.NewNetns(t, "xrinv-")
	ns2.IP(t, "rule", "add", "pref", "100", "lookup", "local")
	ns2.IP(t, "rule", "del", "pref", "0")
	if defaultRules(rulesIn(t, ns2), unix.AF_INET) {
		t.Error("local rule moved to pref 100: still taken for the default set")
	}
}

// TestRouteClassesPrivileged: the routes the cache must not serve by
// destination alone are recognised in a dump, however they were made.
func TestRouteClassesPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t, true)
	for _, args := range [][]string{
		{"route", "add", "10.60.0.0/16", "nexthop", "via", "10.5.0.2", "nexthop", "via", "10.5.0.3"},
		{"-6", "route", "add", "fd00:60::/48", "nexthop", "via", "fd00:5::2", "nexthop", "via", "fd00:5::3"},
		{"-6", "route", "add", "fd00:61::/48", "via", "fd00:5::2"},
		{"-6", "route", "append", "fd00:61::/48", "via", "fd00:5::3"},
		{"nexthop", "add", "id", "7", "via", "10.5.0.2", "dev", "v0"},
		{"route", "add", "10.62.0.0/16", "nhid", "7"},
		{"nexthop", "add", "id", "9", "via", "10.5.0.3", "dev", "v0"},
		{"nexthop", "add", "id", "8", "group", "7/9"},
		{"route", "add", "10.66.0.0/16", "nhid", "8"},
		{"route", "add", "10.63.0.0/16", "tos", "0x10", "via", "10.5.0.2"},
		{"-6", "route", "add", "fd00:64::/48", "from", "fd00:99::/48", "via", "fd00:5::2"},
		{"route", "add", "10.65.0.0/16", "via", "10.5.0.2"},
	} {
		ns.IP(t, args...)
	}
	var routes []kernel.RouteInfo
	var singles map[uint32]bool
	if err := ns.Do(func() error {
		var err error
		if singles, err = listSingleNexthops(); err != nil {
			return err
		}
		routes, err = listRoutes()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]kernel.RouteInfo{}
	for _, r := range routes {
		got[r.Dst.String()] = r
	}
	for _, c := range []struct {
		prefix           string
		multipath        bool
		tos, srcSpecific bool
	}{
		{"10.60.0.0/16", true, false, false},
		{"fd00:60::/48", true, false, false},
		{"fd00:61::/48", true, false, false},
		// On a single nexthop object: one next hop, cacheable.
		{"10.62.0.0/16", false, false, false},
		{"10.66.0.0/16", true, false, false},
		{"10.63.0.0/16", false, true, false},
		{"fd00:64::/48", false, false, true},
		{"10.65.0.0/16", false, false, false},
	} {
		r, ok := got[c.prefix]
		if !ok {
			t.Errorf("%s: not in the dump", c.prefix)
			continue
		}
		if multipath(r, singles) != c.multipath || (r.Tos != 0) != c.tos || (r.SrcLen != 0) != c.srcSpecific {
			t.Errorf("%s: parsed %+v, want multipath %v tos %v source-specific %v", c.prefix, r, c.multipath, c.tos, c.srcSpecific)
		}
	}
}

// TestRouteEventsMultipathPrivileged: the events (not only dumps) mark
// multipath routes, including a sibling appended to an IPv6 route and a
// route on a nexthop object.
func TestRouteEventsMultipathPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t, true)
	ns.IP(t, "-6", "route", "add", "fd00:61::/48", "via", "fd00:5::2")
	ns.IP(t, "nexthop", "add", "id", "7", "via", "10.5.0.2", "dev", "v0")
	sub, err := kernel.Subscribe(ns.Path(), kernel.Filter{Kinds: kinds, Queue: eventQueue})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ns.IP(t, "-6", "route", "append", "fd00:61::/48", "via", "fd00:5::3")
	ns.IP(t, "route", "add", "10.62.0.0/16", "nhid", "7")
	ns.IP(t, "route", "add", "10.60.0.0/16", "nexthop", "via", "10.5.0.2", "nexthop", "via", "10.5.0.3")
	want := map[string]bool{"fd00:61::/48": true, "10.62.0.0/16": true, "10.60.0.0/16": true}
	seen := map[string]bool{}
	deadline := time.After(3 * time.Second)
	for len(seen) < len(want) {
		select {
		case ev := <-sub.Events():
			if ev.Kind != kernel.Route || ev.Type != unix.RTM_NEWROUTE || !want[ev.Route.Dst.String()] {
				continue
			}
			if !ev.Route.Multipath {
				t.Errorf("event for %s not marked multipath", ev.Route.Dst)
			}
			seen[ev.Route.Dst.String()] = true
		case <-deadline:
			t.Fatalf("saw events for %v, want %v", seen, want)
		}
	}
}

// TestLostEventsResyncPrivileged: when the hub reports lost events (a
// socket overrun), the invalidator re-reads the kernel's state and bumps
// the generation instead of applying what it got as if complete; a route
// whose event was lost is then known.
func TestLostEventsResyncPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t, false)
	dp, err := dataplane.Load(testbed.PinDir(t, "xrinv-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	v, err := NewInvalidator(dataplane.CacheSettings{Enabled: true, MaxAge: time.Hour}, dp, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan kernel.Event, 4)
	var before, after dataplane.CacheState
	err = ns.Do(func() error {
		if err := v.resync("start"); err != nil {
			return err
		}
		before = v.State()
		// A route with a TOS whose event was lost.
		ns.IP(t, "route", "add", "10.63.0.0/16", "tos", "0x10", "via", "10.5.0.2")
		events <- kernel.Event{Kind: kernel.Link, Type: unix.RTM_NEWLINK}
		events <- kernel.Event{Kind: kernel.Lost}
		close(events)
		err := v.readLoop(context.Background(), events, func() error { return nil })
		after = v.State()
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "reading netlink events") {
		t.Fatalf("readLoop: %v, want the end of the subscription", err)
	}
	if after.Generation == 0 || after.Generation <= before.Generation {
		t.Errorf("generation %d after lost events, %d before: not bumped", after.Generation, before.Generation)
	}
	if before.Bypass4 || !after.Bypass4 {
		t.Errorf("IPv4 bypass %v before, %v after a TOS route whose event was lost: not re-read", before.Bypass4, after.Bypass4)
	}
}
