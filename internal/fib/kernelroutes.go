package fib

// Kernel routes xrouter did not write, for BGP redistribution. It follows
// the kernel's changes through the event hub (internal/kernel), filtered
// like next-hop tracking (nhtrack.go); nothing else in the package depends
// on it.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// KernelRoutes are the redistributable routes of the main table.
type KernelRoutes struct {
	// Connected are the subnets of addresses on the interfaces (protocol
	// kernel, scope link, unicast).
	Connected []netip.Prefix
	// Static are operator routes: protocol static or boot (what `ip route
	// add` gives without a proto).
	Static []netip.Prefix
}

// ListKernelRoutes reads the redistributable routes of the main table of
// the calling thread's namespace (IPv4 and IPv6). Routes of protocol
// ProtocolBGP (ours) are never included; link-local IPv6 subnets neither.
func ListKernelRoutes() (KernelRoutes, error) {
	var out KernelRoutes
	routes, err := listRedistributable()
	if err != nil {
		return out, fmt.Errorf("listing kernel routes: %w", err)
	}
	seenC, seenS := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for _, r := range routes {
		if r.Dst == nil || r.Type != unix.RTN_UNICAST {
			continue
		}
		p, ok := ipNetPrefix(r.Dst)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		switch {
		case r.Protocol == unix.RTPROT_KERNEL && connected(r):
			if !seenC[p] {
				seenC[p] = true
				out.Connected = append(out.Connected, p)
			}
		case r.Protocol == unix.RTPROT_STATIC || r.Protocol == unix.RTPROT_BOOT:
			if !seenS[p] {
				seenS[p] = true
				out.Static = append(out.Static, p)
			}
		}
	}
	sortPrefixes(out.Connected)
	sortPrefixes(out.Static)
	return out, nil
}

// connected reports whether a kernel route (protocol kernel) is an
// address's subnet: scope link in IPv4; IPv6 routes all have scope
// universe, so there it is one without a gateway.
func connected(r netlink.Route) bool {
	if r.Family == netlink.FAMILY_V6 {
		return r.Gw == nil && len(r.MultiPath) == 0
	}
	return r.Scope == netlink.SCOPE_LINK
}

// redistributableProtocols are the route protocols ListKernelRoutes keeps.
var redistributableProtocols = []netlink.RouteProtocol{unix.RTPROT_KERNEL, unix.RTPROT_STATIC, unix.RTPROT_BOOT}

// listRedistributable dumps the main table's routes of the protocols
// ListKernelRoutes keeps. With strict checking the kernel filters the dump
// by protocol itself, so the BGP table (a million routes at the edge) is
// not copied to user space and parsed on every resync, which during a
// failover is after every event-socket overrun. Without strict checking
// (kernels before 4.20) it is the whole table, filtered here.
func listRedistributable() ([]netlink.Route, error) {
	main := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if h.SetStrictCheck(true) != nil {
		return h.RouteListFiltered(netlink.FAMILY_ALL, main, netlink.RT_FILTER_TABLE)
	}
	var out []netlink.Route
	for _, proto := range redistributableProtocols {
		f := *main
		f.Protocol = proto
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &f, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func sortPrefixes(ps []netip.Prefix) { slices.SortFunc(ps, comparePrefix) }

// WatchKernelRoutes calls fn with the redistributable routes now and after
// every change (route events are coalesced over settle), until ctx ends.
// Call it from the thread's namespace the daemon runs in (the whole
// process, under nsenter). A failed listing is logged and retried at the
// next event or after a minute.
func WatchKernelRoutes(ctx context.Context, settle time.Duration, log *slog.Logger, fn func(KernelRoutes)) error {
	if log == nil {
		log = slog.Default()
	}
	// Filtered like next-hop tracking: our own routes (a full table
	// while BGP converges) do not wake it.
	sub, err := kernel.Subscribe("", kernel.Filter{Kinds: kernel.Route, IgnoreProtocol: ProtocolBGP})
	if err != nil {
		return fmt.Errorf("subscribing to route changes: %w", err)
	}
	updates := make(chan struct{}, 1)
	go func() {
		defer sub.Close()
		err := followChanges(ctx, sub, func(kernel.Event) {
			select {
			case updates <- struct{}{}:
			default:
			}
		})
		if err != nil {
			log.Warn("redistribution: route subscription", "err", err)
			close(updates)
		}
	}()
	go func() {
		var last KernelRoutes
		first := true
		emit := func() {
			kr, err := ListKernelRoutes()
			if err != nil {
				log.Warn("redistribution: listing kernel routes", "err", err)
				return
			}
			if !first && slices.Equal(kr.Connected, last.Connected) && slices.Equal(kr.Static, last.Static) {
				return
			}
			first, last = false, kr
			fn(kr)
		}
		emit()
		var timer <-chan time.Time
		safety := time.NewTicker(time.Minute) // a missed event is repaired
		defer safety.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-updates:
				if !ok {
					log.Warn("redistribution: route subscription closed; polling every minute")
					updates = nil
					continue
				}
				if timer == nil {
					timer = time.After(settle)
				}
			case <-timer:
				timer = nil
				emit()
			case <-safety.C:
				emit()
			}
		}
	}()
	return nil
}
