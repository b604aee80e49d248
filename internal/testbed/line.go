package testbed

import (
	"net/netip"
	"testing"
)

// Port is one end of a link in a topology: the interface and its addresses
// (with prefix length).
type Port struct {
	Link
	Addr4 netip.Prefix
	Addr6 netip.Prefix
}

// Line is the smallest routed topology, three namespaces in a row:
//
//	Src (SrcPort) ⇄ (RouterSrc) Router (RouterDst) ⇄ (DstPort) Dst
//
// Src and Dst have default routes via the router; the router has forwarding
// on and nothing attached. The subnets exist only inside these namespaces, so
// every Line can use the same ones.
type Line struct {
	Src, Router, Dst *Netns

	SrcPort   Port // in Src, facing the router: 10.201.1.2/24, fd00:201:1::2/64
	RouterSrc Port // in Router, facing Src: 10.201.1.1/24, fd00:201:1::1/64
	RouterDst Port // in Router, facing Dst: 10.201.2.1/24, fd00:201:2::1/64
	DstPort   Port // in Dst, facing the router: 10.201.2.2/24, fd00:201:2::2/64
}

// Interface names in a Line.
const (
	LineSrcDev       = "src0"
	LineRouterSrcDev = "r-src"
	LineRouterDstDev = "r-dst"
	LineDstDev       = "dst0"
)

// NewLine builds a Line whose namespaces are named prefix + "s"/"r"/"d" + a
// random suffix. Neighbours are left to ARP/ND; callers that need fixed
// neighbour entries add them with AddNeigh.
func NewLine(t testing.TB, prefix string) *Line {
	t.Helper()
	l := &Line{
		Src:    NewNetns(t, prefix+"s"),
		Router: NewNetns(t, prefix+"r"),
		Dst:    NewNetns(t, prefix+"d"),
	}
	src, rsrc := Veth(t, l.Src, LineSrcDev, l.Router, LineRouterSrcDev)
	rdst, dst := Veth(t, l.Router, LineRouterDstDev, l.Dst, LineDstDev)
	l.SrcPort = Port{src, netip.MustParsePrefix("10.201.1.2/24"), netip.MustParsePrefix("fd00:201:1::2/64")}
	l.RouterSrc = Port{rsrc, netip.MustParsePrefix("10.201.1.1/24"), netip.MustParsePrefix("fd00:201:1::1/64")}
	l.RouterDst = Port{rdst, netip.MustParsePrefix("10.201.2.1/24"), netip.MustParsePrefix("fd00:201:2::1/64")}
	l.DstPort = Port{dst, netip.MustParsePrefix("10.201.2.2/24"), netip.MustParsePrefix("fd00:201:2::2/64")}

	for _, p := range []struct {
		ns   *Netns
		port Port
	}{{l.Src, l.SrcPort}, {l.Router, l.RouterSrc}, {l.Router, l.RouterDst}, {l.Dst, l.DstPort}} {
		p.ns.AddAddr(t, p.port.Name, p.port.Addr4)
		p.ns.AddAddr(t, p.port.Name, p.port.Addr6)
	}
	l.Router.EnableForwarding(t)
	for _, h := range []struct {
		ns  *Netns
		gw4 netip.Addr
		gw6 netip.Addr
	}{{l.Src, l.RouterSrc.Addr4.Addr(), l.RouterSrc.Addr6.Addr()}, {l.Dst, l.RouterDst.Addr4.Addr(), l.RouterDst.Addr6.Addr()}} {
		h.ns.IP(t, "-4", "route", "add", "default", "via", h.gw4.String())
		h.ns.IP(t, "-6", "route", "add", "default", "via", h.gw6.String())
	}
	return l
}
