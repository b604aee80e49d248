package fib

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// KernelConfig says where KernelWriter writes and how our routes look.
// Zero values take the defaults.
type KernelConfig struct {
	// Metric of our routes (default DefaultMetric). It must differ from the
	// metric of any operator route we must not overwrite.
	Metric int
	// Table is the routing table (default DefaultTable, main).
	Table int
	// NetNS is the path of a network namespace (/run/netns/NAME) to write
	// into; empty is the namespace of the calling thread.
	NetNS string
}

// KernelWriter is the Writer for the Linux FIB over rtnetlink. Its routes
// carry protocol ProtocolBGP and their own metric, so they are distinct
// from (and never replace) routes of any other origin for the same prefix.
type KernelWriter struct {
	h      *netlink.Handle
	metric int
	table  int
}

// NewKernelWriter opens an rtnetlink handle in the configured namespace.
func NewKernelWriter(cfg KernelConfig) (*KernelWriter, error) {
	if cfg.Metric == 0 {
		cfg.Metric = DefaultMetric
	}
	if cfg.Table == 0 {
		cfg.Table = DefaultTable
	}
	if cfg.Metric < 0 || cfg.Table < 0 {
		return nil, fmt.Errorf("route metric %d and table %d must not be negative", cfg.Metric, cfg.Table)
	}
	var h *netlink.Handle
	var err error
	if cfg.NetNS == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", cfg.NetNS, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	return &KernelWriter{h: h, metric: cfg.Metric, table: cfg.Table}, nil
}

// Close releases the netlink handle; the routes stay.
func (k *KernelWriter) Close() {
	k.h.Close()
}

// Resolve finds the connected gateway and interface through which the
// kernel reaches a BGP next hop. A next hop on a connected subnet resolves to
// itself; one further away (iBGP, multihop) resolves to the gateway of the
// route that covers it, because the kernel rejects a gateway it cannot reach
// directly ("Nexthop has invalid gateway").
//
// It resolves once, at install time: when the covering route changes later,
// the dependent routes move only at the next Resync or update of the prefix.
func (k *KernelWriter) Resolve(nh netip.Addr) (Nexthop, error) {
	routes, err := k.h.RouteGetWithOptions(net.IP(nh.AsSlice()), &netlink.RouteGetOptions{})
	if err != nil {
		return Nexthop{}, fmt.Errorf("resolving next hop %s: %w", nh, err)
	}
	if len(routes) == 0 {
		return Nexthop{}, fmt.Errorf("resolving next hop %s: no route", nh)
	}
	rt := routes[0]
	switch rt.Type {
	case unix.RTN_UNICAST:
	case unix.RTN_LOCAL:
		return Nexthop{}, fmt.Errorf("next hop %s is an address of this host", nh)
	default:
		return Nexthop{}, fmt.Errorf("next hop %s is unreachable (route type %d)", nh, rt.Type)
	}
	if rt.Gw == nil {
		return Nexthop{Gateway: nh, LinkIndex: rt.LinkIndex}, nil
	}
	gw, ok := netip.AddrFromSlice(rt.Gw)
	if !ok {
		return Nexthop{}, fmt.Errorf("resolving next hop %s: bad gateway %v", nh, rt.Gw)
	}
	return Nexthop{Gateway: gw.Unmap(), LinkIndex: rt.LinkIndex}, nil
}

// Replace installs prefix with replace semantics: one route, multipath when
// the next hops resolve to more than one gateway.
func (k *KernelWriter) Replace(prefix netip.Prefix, nexthops []netip.Addr) ([]Nexthop, error) {
	var kernel []Nexthop
	for _, nh := range nexthops {
		if nh.Is4() != prefix.Addr().Is4() {
			return nil, fmt.Errorf("route %s: next hop %s is of the other family", prefix, nh)
		}
		r, err := k.Resolve(nh)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", prefix, err)
		}
		kernel = append(kernel, r)
	}
	kernel = sortNexthops(kernel)
	if len(kernel) == 0 {
		return nil, fmt.Errorf("route %s: no next hop", prefix)
	}
	rt := k.route(prefix)
	if len(kernel) == 1 {
		rt.Gw = net.IP(kernel[0].Gateway.AsSlice())
		rt.LinkIndex = kernel[0].LinkIndex
	} else {
		for _, nh := range kernel {
			rt.MultiPath = append(rt.MultiPath, &netlink.NexthopInfo{
				LinkIndex: nh.LinkIndex,
				Gw:        net.IP(nh.Gateway.AsSlice()),
			})
		}
	}
	if err := k.h.RouteReplace(rt); err != nil {
		return nil, fmt.Errorf("replacing route %s: %w", prefix, err)
	}
	return kernel, nil
}

// Delete removes our route for prefix; routes of other protocols or metrics
// for the same prefix are not touched, because the kernel matches protocol
// and metric when they are given.
func (k *KernelWriter) Delete(prefix netip.Prefix) error {
	err := k.h.RouteDel(k.route(prefix))
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("deleting route %s: %w", prefix, err)
	}
	return nil
}

// List returns our routes: our protocol, table and metric.
func (k *KernelWriter) List() ([]InstalledRoute, error) {
	filter := &netlink.Route{Protocol: ProtocolBGP, Table: k.table, Priority: k.metric}
	mask := netlink.RT_FILTER_PROTOCOL | netlink.RT_FILTER_TABLE | netlink.RT_FILTER_PRIORITY
	routes, err := k.h.RouteListFiltered(netlink.FAMILY_ALL, filter, mask)
	if err != nil {
		return nil, fmt.Errorf("listing routes of protocol %d table %d: %w", ProtocolBGP, k.table, err)
	}
	out := make([]InstalledRoute, 0, len(routes))
	for _, rt := range routes {
		if rt.Dst == nil {
			continue
		}
		addr, ok := netip.AddrFromSlice(rt.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := rt.Dst.Mask.Size()
		ir := InstalledRoute{Prefix: netip.PrefixFrom(addr.Unmap(), ones)}
		if rt.Gw != nil {
			gw, _ := netip.AddrFromSlice(rt.Gw)
			ir.Kernel = append(ir.Kernel, Nexthop{Gateway: gw.Unmap(), LinkIndex: rt.LinkIndex})
		}
		for _, nh := range rt.MultiPath {
			gw, _ := netip.AddrFromSlice(nh.Gw)
			ir.Kernel = append(ir.Kernel, Nexthop{Gateway: gw.Unmap(), LinkIndex: nh.LinkIndex})
		}
		ir.Kernel = sortNexthops(ir.Kernel)
		out = append(out, ir)
	}
	return out, nil
}

func (k *KernelWriter) route(prefix netip.Prefix) *netlink.Route {
	family := netlink.FAMILY_V4
	if prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	return &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP(prefix.Addr().AsSlice()), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())},
		Protocol: ProtocolBGP,
		Priority: k.metric,
		Table:    k.table,
		Family:   family,
		Type:     unix.RTN_UNICAST,
	}
}

// sortNexthops orders and deduplicates next hops: two BGP next hops behind
// the same gateway are one kernel next hop, and a stable order makes the
// kernel's listing comparable with what we wrote.
func sortNexthops(nh []Nexthop) []Nexthop {
	slices.SortFunc(nh, func(a, b Nexthop) int {
		if c := a.Gateway.Compare(b.Gateway); c != 0 {
			return c
		}
		return a.LinkIndex - b.LinkIndex
	})
	return slices.Compact(nh)
}
