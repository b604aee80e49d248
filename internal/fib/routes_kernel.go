package fib

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// KernelWriter is the Writer for the Linux FIB over rtnetlink. Its routes
// carry protocol ProtocolBGP and their own metric, so they are distinct
// from (and never replace) routes of any other origin for the same prefix.
//
// Writes go out in batches on one NETLINK_ROUTE socket, each request with
// its own acknowledgement matched by sequence number, so a full table is
// written at the kernel's speed while every route's outcome is still known.
//
// Next hops that are not on a connected subnet are resolved through the FIB
// (one step). While Watch runs, resolutions are cached and Refresh tells
// which of them changed, so the dependent routes can be moved; without it,
// every Apply resolves afresh.
type KernelWriter struct {
	h      *netlink.Handle
	sock   *routeSocket
	rc     routeConf
	metric int
	table  int
	nsPath string
	log    *slog.Logger

	// objs are our nexthop objects (nil: the kernel has none); objectsOn
	// says whether routes are put on them (off: per-route gateways).
	objs      *nhObjects
	objectsOn bool

	tracking atomic.Bool
	// cache holds resolutions (kept across Apply calls only while
	// tracking); used by the worker goroutine only.
	cache map[netip.Addr]resolution
	// sharedKernel holds multipath next-hop lists handed out (see
	// shareKernel); used by the worker goroutine only.
	sharedKernel map[string][]Nexthop
}

// resolution is a resolved next hop or why it could not be resolved.
type resolution struct {
	nh  Nexthop
	err error
	// one is []Nexthop{nh}, shared by every single-next-hop route through
	// it (a full table would otherwise hold a million copies).
	one []Nexthop
}

func (r resolution) same(o resolution) bool {
	if (r.err == nil) != (o.err == nil) {
		return false
	}
	return r.err != nil || r.nh == o.nh
}

// NewKernelWriter opens rtnetlink sockets in the network namespace at
// nsPath (/run/netns/NAME; empty is the calling thread's). Of s it reads
// Metric (default DefaultMetric; it must differ from the metric of any
// operator route we must not overwrite), Table (default DefaultTable) and
// NexthopObjects. log receives the writer's notices (nil: slog.Default()).
func NewKernelWriter(s Settings, nsPath string, log *slog.Logger) (*KernelWriter, error) {
	s = s.withDefaults()
	if s.Metric < 0 || s.Table < 0 {
		return nil, fmt.Errorf("route metric %d and table %d must not be negative", s.Metric, s.Table)
	}
	var h *netlink.Handle
	var err error
	if nsPath == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	sock, err := openRouteSocket(nsPath)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening rtnetlink for route writes: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	k := &KernelWriter{
		h: h, sock: sock, metric: s.Metric, table: s.Table, nsPath: nsPath, log: log,
		rc:           routeConf{table: uint32(s.Table), metric: uint32(s.Metric)},
		cache:        map[netip.Addr]resolution{},
		sharedKernel: map[string][]Nexthop{},
	}
	// Our objects of an earlier run are adopted whether or not new routes
	// use objects: their routes keep forwarding, and they are deleted
	// once no route of ours uses them.
	switch err := adoptObjects(k); {
	case err == nil:
		k.objectsOn = s.NexthopObjects
	case objectsRefused(err):
		k.log.Warn("the kernel has no nexthop objects; installing routes with per-route gateways", "err", err)
	default:
		k.log.Warn("reading nexthop objects failed; installing routes with per-route gateways", "err", err)
	}
	if !k.objectsOn && k.objs != nil && !s.NexthopObjects {
		k.log.Info("nexthop objects off (fib.nexthop_objects): installing routes with per-route gateways")
	}
	return k, nil
}

// adoptObjects is KernelWriter.adoptObjects; a variable so that a test can
// play a kernel without nexthop objects.
var adoptObjects = (*KernelWriter).adoptObjects

// NexthopObjects reports whether new routes go on nexthop objects.
func (k *KernelWriter) NexthopObjects() bool { return k.objectsOn }

// Close releases the netlink sockets; the routes stay.
func (k *KernelWriter) Close() {
	k.h.Close()
	k.sock.close()
}

// ErrNextHopUnresolved is the error of a route whose BGP next hop the FIB
// cannot reach now (no route, or an unreachable one). It is not a fault of
// the route: it stays wanted and is installed when the next hop resolves.
var ErrNextHopUnresolved = errors.New("next hop does not resolve")

// Resolve finds the connected gateway and interface through which the
// kernel reaches a BGP next hop. A next hop on a connected subnet resolves to
// itself; one further away (iBGP, multihop) resolves to the gateway of the
// route that covers it, because the kernel rejects a gateway it cannot reach
// directly ("Nexthop has invalid gateway").
func (k *KernelWriter) Resolve(nh netip.Addr) (Nexthop, error) {
	routes, err := k.h.RouteGetWithOptions(net.IP(nh.AsSlice()), &netlink.RouteGetOptions{})
	switch {
	case errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH):
		return Nexthop{}, fmt.Errorf("resolving next hop %s: %w (%v)", nh, ErrNextHopUnresolved, err)
	case err != nil:
		return Nexthop{}, fmt.Errorf("resolving next hop %s: %w", nh, err)
	case len(routes) == 0:
		return Nexthop{}, fmt.Errorf("resolving next hop %s: %w (no route)", nh, ErrNextHopUnresolved)
	}
	rt := routes[0]
	switch rt.Type {
	case unix.RTN_UNICAST:
	case unix.RTN_LOCAL:
		return Nexthop{}, fmt.Errorf("next hop %s is an address of this host", nh)
	default:
		return Nexthop{}, fmt.Errorf("next hop %s: %w (route type %d)", nh, ErrNextHopUnresolved, rt.Type)
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

// resolve is Resolve through the cache.
func (k *KernelWriter) resolve(nh netip.Addr) resolution {
	if r, ok := k.cache[nh]; ok {
		return r
	}
	r := k.resolveNow(nh)
	k.cache[nh] = r
	return r
}

func (k *KernelWriter) resolveNow(nh netip.Addr) resolution {
	var r resolution
	r.nh, r.err = k.Resolve(nh)
	if r.err == nil {
		r.one = []Nexthop{r.nh}
	}
	return r
}

// Apply performs ops: a replace for an op with next hops (one route,
// multipath when they resolve to more than one gateway), a delete for one
// without. Each op's outcome lands in res at its index; a route already gone
// is no error for a delete. The ops must be for distinct prefixes.
func (k *KernelWriter) Apply(ops []Op, res []Result) {
	if !k.tracking.Load() {
		clear(k.cache) // resolve afresh for every batch
	}
	msgs := make([]routeMsg, 0, len(ops))
	where := make([]int, 0, len(ops))
	for i, op := range ops {
		res[i] = Result{}
		if op.NextHops == nil {
			msgs = append(msgs, routeMsg{prefix: op.Prefix})
			where = append(where, i)
			continue
		}
		if k.objectsOn {
			o, err := k.objectFor(op)
			switch {
			case err == nil:
				res[i].Kernel, res[i].NHID = o.kernel, o.id
				msgs = append(msgs, routeMsg{prefix: op.Prefix, kernel: o.kernel, nhid: o.id})
				where = append(where, i)
				continue
			case objectsRefused(err):
				k.objectsOn = false
				k.log.Warn("the kernel refuses nexthop objects; installing routes with per-route gateways", "err", err)
			default:
				res[i].Err = err
				continue
			}
		}
		kernel, err := k.kernelNexthops(op)
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i].Kernel = kernel
		msgs = append(msgs, routeMsg{prefix: op.Prefix, kernel: kernel})
		where = append(where, i)
	}
	errs := make([]error, len(msgs))
	k.sock.exchange(k.rc, msgs, errs)
	for j, err := range errs {
		i := where[j]
		switch {
		case err == nil:
		case ops[i].NextHops == nil && errors.Is(err, syscall.ESRCH):
		case ops[i].NextHops == nil:
			res[i].Err = fmt.Errorf("deleting route %s: %w", ops[i].Prefix, err)
		default:
			res[i] = Result{Err: fmt.Errorf("replacing route %s: %w", ops[i].Prefix, err)}
		}
	}
}

// kernelNexthops resolves an op's next hops into the kernel's.
func (k *KernelWriter) kernelNexthops(op Op) ([]Nexthop, error) {
	prefix := op.Prefix
	if len(op.NextHops) == 1 && op.NextHops[0].Is4() == prefix.Addr().Is4() {
		r := k.resolve(op.NextHops[0])
		if r.err != nil {
			return nil, fmt.Errorf("route %s: %w", prefix, r.err)
		}
		return r.one, nil
	}
	kernel := make([]Nexthop, 0, len(op.NextHops))
	for _, nh := range op.NextHops {
		if nh.Is4() != prefix.Addr().Is4() {
			return nil, fmt.Errorf("route %s: next hop %s is of the other family", prefix, nh)
		}
		r := k.resolve(nh)
		if r.err != nil {
			return nil, fmt.Errorf("route %s: %w", prefix, r.err)
		}
		kernel = append(kernel, r.nh)
	}
	kernel = sortNexthops(kernel)
	if len(kernel) == 0 {
		return nil, fmt.Errorf("route %s: no next hop", prefix)
	}
	return k.shareKernel(kernel), nil
}

// shareKernel returns an equal multipath next-hop list handed out before,
// so that routes via the same set share one slice.
func (k *KernelWriter) shareKernel(kernel []Nexthop) []Nexthop {
	key := make([]byte, 0, len(kernel)*20)
	for _, nh := range kernel {
		a := nh.Gateway.As16()
		key = append(key, a[:]...)
		key = binary.NativeEndian.AppendUint32(key, uint32(nh.LinkIndex))
	}
	if s, ok := k.sharedKernel[string(key)]; ok {
		return s
	}
	if len(k.sharedKernel) >= 4096 {
		clear(k.sharedKernel)
	}
	k.sharedKernel[string(key)] = kernel
	return kernel
}

// Replace installs one route with replace semantics (see Apply).
func (k *KernelWriter) Replace(prefix netip.Prefix, nexthops []netip.Addr) ([]Nexthop, error) {
	if len(nexthops) == 0 {
		return nil, fmt.Errorf("route %s: no next hop", prefix)
	}
	res := make([]Result, 1)
	k.Apply([]Op{{Prefix: prefix, NextHops: nexthops}}, res)
	return res[0].Kernel, res[0].Err
}

// Delete removes our route for prefix; routes of other protocols or metrics
// for the same prefix are not touched, because the delete names protocol
// and metric.
func (k *KernelWriter) Delete(prefix netip.Prefix) error {
	res := make([]Result, 1)
	k.Apply([]Op{{Prefix: prefix}}, res)
	return res[0].Err
}

// List returns our routes: our protocol, table and metric. A route on one
// of our nexthop objects has NHID set and the object's next hops.
func (k *KernelWriter) List() ([]InstalledRoute, error) {
	var out []InstalledRoute
	body := make([]byte, unix.SizeofRtMsg) // AF_UNSPEC: both families
	err := k.sock.dump(unix.RTM_GETROUTE, body, func() { out = out[:0] }, func(typ uint16, b []byte) {
		if ir, ok := k.parseRoute(typ, b); ok {
			out = append(out, ir)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing routes of protocol %d table %d: %w", ProtocolBGP, k.table, err)
	}
	return out, nil
}

// parseRoute reads one dumped route; ok only for one of ours.
func (k *KernelWriter) parseRoute(typ uint16, b []byte) (InstalledRoute, bool) {
	if typ != unix.RTM_NEWROUTE || len(b) < unix.SizeofRtMsg || b[5] != ProtocolBGP {
		return InstalledRoute{}, false
	}
	family, bits, table := b[0], int(b[1]), uint32(b[4])
	var dst, gw netip.Addr
	var oif int
	var metric uint32
	var multipath []Nexthop
	var nhid uint32
	attrs(b[unix.SizeofRtMsg:], func(t uint16, v []byte) {
		switch t {
		case unix.RTA_TABLE:
			if len(v) == 4 {
				table = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_DST:
			dst, _ = netip.AddrFromSlice(v)
		case unix.RTA_PRIORITY:
			if len(v) == 4 {
				metric = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_GATEWAY:
			gw, _ = netip.AddrFromSlice(v)
		case unix.RTA_OIF:
			if len(v) == 4 {
				oif = int(binary.NativeEndian.Uint32(v))
			}
		case rtaNHID:
			if len(v) == 4 {
				nhid = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_MULTIPATH:
			for len(v) >= unix.SizeofRtNexthop {
				l := int(binary.NativeEndian.Uint16(v[0:2]))
				if l < unix.SizeofRtNexthop || l > len(v) {
					break
				}
				nh := Nexthop{LinkIndex: int(binary.NativeEndian.Uint32(v[4:8]))}
				attrs(v[unix.SizeofRtNexthop:l], func(t uint16, a []byte) {
					if t == unix.RTA_GATEWAY {
						g, _ := netip.AddrFromSlice(a)
						nh.Gateway = g.Unmap()
					}
				})
				multipath = append(multipath, nh)
				v = v[min(rtaAlign(l), len(v)):]
			}
		}
	})
	if table != uint32(k.table) || metric != uint32(k.metric) {
		return InstalledRoute{}, false
	}
	if !dst.IsValid() {
		switch family {
		case unix.AF_INET:
			dst = netip.IPv4Unspecified()
		case unix.AF_INET6:
			dst = netip.IPv6Unspecified()
		default:
			return InstalledRoute{}, false
		}
	}
	p, err := dst.Unmap().Prefix(bits)
	if err != nil {
		return InstalledRoute{}, false
	}
	ir := InstalledRoute{Prefix: p, NHID: nhid}
	if kernel, ok := k.objectKernel(nhid); ok {
		ir.Kernel = kernel
		return ir, true
	}
	if gw.IsValid() {
		ir.Kernel = append(ir.Kernel, Nexthop{Gateway: gw.Unmap(), LinkIndex: oif})
	}
	ir.Kernel = sortNexthops(append(ir.Kernel, multipath...))
	return ir, true
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
