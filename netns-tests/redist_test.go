package netnstests

import (
	"strings"
	"testing"
	"time"
)

// TestRedistributePrivileged: connected subnets and static kernel routes
// of the router that the redistribution prefix list matches are announced
// to BIRD; ones it does not match are not (though the neighbour's export
// list would let them through); a static route added while running is
// announced and one removed is withdrawn.
func TestRedistributePrivileged(t *testing.T) {
	tp := newTopo(t)
	tp.Router.IP(t, "addr", "add", "10.88.1.1/24", "dev", "r-src")
	tp.Router.IP(t, "route", "add", "10.88.9.0/24", "via", "10.201.1.2")                    // proto boot
	tp.Router.IP(t, "route", "add", "10.55.0.0/24", "via", "10.201.1.2", "proto", "static") // not in the list
	bird := startBIRD(t, tp.Dst, birdConfDst(nil, 0))
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, bgpHead+`  prefix_lists:
    - name: redist
      entries: [{prefix: 10.88.0.0/16, le: 24}]
    - name: out
      entries: [{prefix: 10.88.0.0/16, le: 24}, {prefix: 10.55.0.0/16, le: 24}, {prefix: 10.201.0.0/16, le: 24}]
  redistribute:
    connected: {enabled: true, prefix_list: redist}
    static: {enabled: true, prefix_list: redist}
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
      hold_time: 9s
      export: out
`)
	d := startDaemon(t, tp.Router, cfgPath)

	has := func(p string) bool { return strings.Contains(bird.routesOf("xr"), p+" ") }
	for _, p := range []string{"10.88.1.0/24", "10.88.9.0/24"} {
		if !waitFor(20*time.Second, func() bool { return has(p) }) {
			t.Fatalf("BIRD did not learn %s within 20 s:\n%s\n%s", p, bird.birdc("show", "route"), bird.birdc("show", "protocols", "all", "xr"))
		}
	}
	for _, p := range []string{"10.55.0.0/24", "10.201.1.0/24", "10.201.2.0/24"} {
		if has(p) {
			t.Errorf("BIRD learned %s, which the redistribution list does not match:\n%s", p, bird.routesOf("xr"))
		}
	}

	// Added while running (proto static): announced.
	tp.Router.IP(t, "route", "add", "10.88.10.0/24", "via", "10.201.1.2", "proto", "static")
	if !waitFor(10*time.Second, func() bool { return has("10.88.10.0/24") }) {
		t.Errorf("static route added while running not announced:\n%s", bird.routesOf("xr"))
	}
	// Removed: withdrawn.
	tp.Router.IP(t, "route", "del", "10.88.9.0/24", "via", "10.201.1.2")
	if !waitFor(10*time.Second, func() bool { return !has("10.88.9.0/24") }) {
		t.Errorf("static route removed but still announced:\n%s", bird.routesOf("xr"))
	}
	// A connected subnet that goes away is withdrawn too.
	tp.Router.IP(t, "addr", "del", "10.88.1.1/24", "dev", "r-src")
	if !waitFor(10*time.Second, func() bool { return !has("10.88.1.0/24") }) {
		t.Errorf("connected subnet removed but still announced:\n%s", bird.routesOf("xr"))
	}
	if !has("10.88.10.0/24") {
		t.Errorf("10.88.10.0/24 withdrawn with the others:\n%s", bird.routesOf("xr"))
	}
	if !d.running() {
		t.Error("daemon exited")
	}
}
