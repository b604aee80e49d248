package fib

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xrouter/xrouter/internal/kernel"
)

// TestListKernelRoutesPrivileged: the redistributable routes are the
// connected subnets and the static and boot routes of the main table;
// BGP's (ours), another daemon's and other tables' are left out, whichever
// way the kernel is asked (filtered dumps with strict checking, or the
// whole table).
func TestListKernelRoutesPrivileged(t *testing.T) {
	ns := routesNetns(t)
	for _, args := range [][]string{
		{"route", "add", "192.0.2.0/24", "via", "10.78.0.2", "proto", "static"},
		{"route", "add", "198.51.100.0/24", "via", "10.78.0.2"}, // proto boot
		{"route", "add", "203.0.113.0/24", "via", "10.78.0.2", "proto", "186"},
		{"route", "add", "203.0.114.0/24", "via", "10.78.0.2", "proto", "zebra"},
		{"route", "add", "203.0.115.0/24", "via", "10.78.0.2", "table", "100"},
		{"-6", "route", "add", "2001:db8:1::/48", "via", "2001:db8:78::2", "proto", "static"},
		{"-6", "route", "add", "2001:db8:2::/48", "via", "2001:db8:78::2", "proto", "186"},
	} {
		ipCmd(t, append([]string{"-n", ns}, args...)...)
	}
	var kr KernelRoutes
	if err := kernel.InNamespace("/run/netns/"+ns, func() error {
		var err error
		kr, err = ListKernelRoutes()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		sortPrefixes(out)
		return out
	}
	if want := pfx("10.78.0.0/24", "2001:db8:78::/64"); !slices.Equal(kr.Connected, want) {
		t.Errorf("connected = %v, want %v", kr.Connected, want)
	}
	if want := pfx("192.0.2.0/24", "198.51.100.0/24", "2001:db8:1::/48"); !slices.Equal(kr.Static, want) {
		t.Errorf("static = %v, want %v", kr.Static, want)
	}
}
