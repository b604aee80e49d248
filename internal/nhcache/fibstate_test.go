package nhcache

import (
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/sysctl"
)

// TestRouteMTUBounds: each prefix gets the smallest effective mtu of itself
// and its covering prefixes in any table; IPv6 never below 1280; with
// ip_forward_use_pmtu an IPv4 bound is at most min_pmtu.
func TestRouteMTUBounds(t *testing.T) {
	pp := netip.MustParsePrefix
	mtus := map[rtKey]uint32{
		{family: unix.AF_INET, table: 254, dst: pp("198.18.0.0/16")}:    1400,
		{family: unix.AF_INET, table: 100, dst: pp("198.18.5.0/24")}:    1450,
		{family: unix.AF_INET, table: 254, dst: pp("198.18.6.0/24")}:    1300,
		{family: unix.AF_INET, table: 100, dst: pp("198.18.6.0/24")}:    1350,
		{family: unix.AF_INET6, table: 254, dst: pp("2001:db8::/32")}:   1000,
		{family: unix.AF_INET6, table: 254, dst: pp("2001:db8:1::/48")}: 1500,
	}
	got := routeMTUBounds(mtus, sysctl.FIB{MinPMTU: 552})
	want := map[netip.Prefix]uint32{
		pp("198.18.0.0/16"): 1400, pp("198.18.5.0/24"): 1400, pp("198.18.6.0/24"): 1300,
		pp("2001:db8::/32"): 1280, pp("2001:db8:1::/48"): 1280,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bounds %v, want %v", got, want)
	}
	got = routeMTUBounds(mtus, sysctl.FIB{MinPMTU: 552, ForwardUsePMTU: true})
	if got[pp("198.18.0.0/16")] != 552 || got[pp("2001:db8::/32")] != 1280 {
		t.Errorf("with ip_forward_use_pmtu: bounds %v, want IPv4 at 552", got)
	}
}
