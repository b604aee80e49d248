package nhcache

// What kernel forwarding decides beyond bpf_fib_lookup's answer, kept in
// the data plane's xr_fib configuration and route-MTU tries (see
// docs/architecture.md, "Fidelity"): route mtu metrics, the multipath hash
// policy and whether PMTU exceptions count. Unlike the cache's generation,
// this is needed whether or not the cache is enabled.

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/kernel"
	"github.com/xrouter/xrouter/internal/sysctl"
)

// Bounds the kernel applies to an mtu it forwards with (include/net/ip.h
// IP_MAX_MTU, include/linux/ipv6.h IPV6_MIN_MTU, ip6_forward).
const (
	ipMaxMTU   = 0xfff0
	ipv6MinMTU = 1280
)

// rtKey identifies one kernel route the way a replace or delete does.
type rtKey struct {
	family   uint8
	table    uint32
	dst      netip.Prefix
	src      netip.Prefix
	tos      uint8
	priority uint32
}

// fibState is the routes with an mtu metric and the sysctls last written
// to the data plane. Guarded by Invalidator.mu.
type fibState struct {
	mtus    map[rtKey]uint32
	sysctls sysctl.FIB
	// reread: a route with an mtu was deleted or lost its mtu; the
	// others under its key (IPv6 siblings) are re-read from a dump.
	reread  bool
	changed bool
}

// routeKeyMTU extracts a route's key and mtu metric (0 when it has none).
func routeKeyMTU(r kernel.RouteInfo) (rtKey, uint32) {
	return rtKey{family: r.Family, table: r.Table, dst: r.Dst, src: r.Src, tos: r.Tos, priority: r.Priority}, r.MTU
}

// noteRouteMTU records a route event. Called with v.mu held.
func (v *Invalidator) noteRouteMTU(r kernel.RouteInfo, deleted bool) {
	k, mtu := routeKeyMTU(r)
	old, tracked := v.fib.mtus[k]
	switch {
	case !deleted && mtu != 0:
		if !tracked || old != mtu {
			v.fib.mtus[k] = mtu
			v.fib.changed = true
		}
	case tracked:
		v.fib.reread = true
	}
}

// fibConfig is what the sysctls mean for the program.
func fibConfig(s sysctl.FIB) dataplane.FIBConfig {
	return dataplane.FIBConfig{
		ECMPKernel4: s.HashPolicy4 >= 2,
		ECMPKernel6: s.HashPolicy6 >= 2,
		IgnorePMTU4: !s.ForwardUsePMTU,
		MinPMTU4:    uint32(max(s.MinPMTU, 0)),
	}
}

// routeMTUBounds turns the routes with an mtu into the tries' contents:
// for every such prefix, the smallest effective mtu among it and the
// prefixes covering it, in any table (the rules may pick any, and a more
// specific route without an mtu is not known here, so a packet is checked
// against every mtu route that could be the kernel's choice).
func routeMTUBounds(mtus map[rtKey]uint32, s sysctl.FIB) map[netip.Prefix]uint32 {
	own := map[netip.Prefix]uint32{}
	for k, mtu := range mtus {
		eff := mtu
		if k.family == unix.AF_INET {
			eff = min(eff, ipMaxMTU)
			if s.ForwardUsePMTU {
				// bpf_fib_lookup then checks the route's mtu but
				// not an exception below it, which forwarding
				// honours; exceptions never go below min_pmtu.
				eff = min(eff, uint32(max(s.MinPMTU, 68)))
			}
		} else {
			eff = max(eff, ipv6MinMTU)
		}
		if cur, ok := own[k.dst]; !ok || eff < cur {
			own[k.dst] = eff
		}
	}
	out := make(map[netip.Prefix]uint32, len(own))
	for p, b := range own {
		for bits := 0; bits < p.Bits(); bits++ {
			if m, ok := own[netip.PrefixFrom(p.Addr(), bits).Masked()]; ok && m < b {
				b = m
			}
		}
		out[p] = b
	}
	return out
}

// writeFIB writes the configuration and tries if anything changed (or
// force). Called with v.mu held.
func (v *Invalidator) writeFIB(force bool) error {
	s := sysctl.ReadFIB()
	if !force && !v.fib.changed && s == v.fib.sysctls {
		return nil
	}
	if err := v.dp.SetFIB(fibConfig(s), routeMTUBounds(v.fib.mtus, s)); err != nil {
		return fmt.Errorf("route MTUs: %w", err)
	}
	if s != v.fib.sysctls {
		v.log.Info("forwarding settings the fast path mirrors", "fib_multipath_hash_policy", s.HashPolicy4,
			"ipv6_fib_multipath_hash_policy", s.HashPolicy6, "ip_forward_use_pmtu", s.ForwardUsePMTU, "min_pmtu", s.MinPMTU,
			"routes_with_mtu", len(v.fib.mtus))
	}
	v.fib.sysctls = s
	v.fib.changed = false
	return nil
}

// mtusFrom collects the routes with an mtu metric from a route dump.
func mtusFrom(routes []kernel.RouteInfo) map[rtKey]uint32 {
	out := map[rtKey]uint32{}
	for _, r := range routes {
		if k, mtu := routeKeyMTU(r); mtu != 0 {
			out[k] = mtu
		}
	}
	return out
}

// rereadMTUs replaces the tracked routes from a fresh dump. Called with
// v.mu held.
func (v *Invalidator) rereadMTUs() error {
	routes, err := listRoutes()
	if err != nil {
		return err
	}
	v.fib.mtus = mtusFrom(routes)
	v.fib.reread = false
	v.fib.changed = true
	return nil
}

// SyncFIB reads the routes and sysctls and writes them to the data plane
// now; the daemon calls it before attaching the program, so that no packet
// is forwarded past a route's mtu while the event loop starts.
func (v *Invalidator) SyncFIB() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.rereadMTUs(); err != nil {
		return err
	}
	return v.writeFIB(true)
}
