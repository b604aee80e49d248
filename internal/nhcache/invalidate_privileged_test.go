package nhcache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// dumpIn dumps the netlink table typ (request header hdr) from inside ns.
func dumpIn(t *testing.T, ns *testbed.Netns, typ uint16, hdr []byte) []syscall.NetlinkMessage {
	t.Helper()
	var msgs []syscall.NetlinkMessage
	if err := ns.Do(func() error {
		var err error
		msgs, err = dumpRetry(typ, hdr)
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
	rules := func() []syscall.NetlinkMessage { return dumpIn(t, ns, unix.RTM_GETRULE, make([]byte, 12)) }
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
	if defaultRules(dumpIn(t, ns2, unix.RTM_GETRULE, make([]byte, 12)), unix.AF_INET) {
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
		{"route", "add", "10.63.0.0/16", "tos", "0x10", "via", "10.5.0.2"},
		{"-6", "route", "add", "fd00:64::/48", "from", "fd00:99::/48", "via", "fd00:5::2"},
		{"route", "add", "10.65.0.0/16", "via", "10.5.0.2"},
	} {
		ns.IP(t, args...)
	}
	got := map[string]route{}
	for _, m := range dumpIn(t, ns, unix.RTM_GETROUTE, make([]byte, unix.SizeofRtMsg)) {
		if r, ok := parseRoute(m.Data); ok {
			got[r.dst.String()] = r
		}
	}
	for _, c := range []struct {
		prefix           string
		multipath        bool
		tos, srcSpecific bool
	}{
		{"10.60.0.0/16", true, false, false},
		{"fd00:60::/48", true, false, false},
		{"fd00:61::/48", true, false, false},
		{"10.62.0.0/16", true, false, false},
		{"10.63.0.0/16", false, true, false},
		{"fd00:64::/48", false, false, true},
		{"10.65.0.0/16", false, false, false},
	} {
		r, ok := got[c.prefix]
		if !ok {
			t.Errorf("%s: not in the dump", c.prefix)
			continue
		}
		if r.multipath != c.multipath || (r.tos != 0) != c.tos || (r.srcLen != 0) != c.srcSpecific {
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
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = subscribe()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ns.IP(t, "-6", "route", "append", "fd00:61::/48", "via", "fd00:5::3")
	ns.IP(t, "route", "add", "10.62.0.0/16", "nhid", "7")
	ns.IP(t, "route", "add", "10.60.0.0/16", "nexthop", "via", "10.5.0.2", "nexthop", "via", "10.5.0.3")
	want := map[string]bool{"fd00:61::/48": true, "10.62.0.0/16": true, "10.60.0.0/16": true}
	seen := map[string]bool{}
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(3 * time.Second)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		msgs, _ := syscall.ParseNetlinkMessage(buf[:n])
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWROUTE {
				continue
			}
			if r, ok := parseRoute(m.Data); ok && want[r.dst.String()] {
				if !r.multipath {
					t.Errorf("event for %s not marked multipath", r.dst)
				}
				seen[r.dst.String()] = true
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("saw events for %v, want %v", seen, want)
	}
}

// TestOverrunDetectedPrivileged: when the kernel drops events because the
// socket is full, the batch reports them lost (the caller then turns the
// cache off and re-reads everything) instead of bumping as if complete.
func TestOverrunDetectedPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := vethNS(t, false)
	var fd int
	if err := ns.Do(func() error {
		var err error
		if fd, err = subscribe(); err != nil {
			return err
		}
		// Shrink the buffer far below one burst.
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1024)
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "route add 10.70.%d.0/24 via 10.5.0.2\n", i)
	}
	batch := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(batch, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.IP(t, "-batch", batch)
	v := &Invalidator{neigh: map[neighKey]neighVal{}}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	reason, lost, berr := v.batch(fd, buf, n, err)
	if berr != nil {
		t.Fatal(berr)
	}
	if lost == "" {
		t.Fatalf("200 route events into a 1 KiB socket buffer: batch says %q, nothing lost", reason)
	}
}
