package netnstests

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
)

// The differential test's frame generator: a seeded random stream of IPv4
// and IPv6 frames that covers what the fast path must get exactly right or
// leave to the kernel (sizes around every MTU, TTL edges, DF, options,
// fragments, extension headers, ICMP errors, short L4 headers, martians,
// local and unrouted destinations). Each frame carries its index in the
// IPv4 ID or the IPv6 flow label, so a difference can be traced to the
// frame that caused it, also from an ICMP error that quotes it.

// diffAddrs are the addresses of the differential topology.
var (
	dfSrc4   = netip.MustParseAddr("10.210.1.2")
	dfRout4  = netip.MustParseAddr("10.210.2.1")
	dfDst4   = netip.MustParseAddr("10.210.2.2")
	dfSrc6   = netip.MustParseAddr("fd00:210:1::2")
	dfRout6  = netip.MustParseAddr("fd00:210:2::1")
	dfDst6   = netip.MustParseAddr("fd00:210:2::2")
	dfMACRin = net.HardwareAddr{0x02, 0xd1, 0, 0, 1, 1}
	dfMACS   = net.HardwareAddr{0x02, 0xd1, 0, 0, 1, 2}
	dfMACOut = net.HardwareAddr{0x02, 0xd1, 0, 0, 2, 1}
	dfMACD   = net.HardwareAddr{0x02, 0xd1, 0, 0, 2, 2}
	dfMACD2  = net.HardwareAddr{0x02, 0xd1, 0, 0, 2, 3} // the next hop's MAC after it changes
)

// genFrame is one frame of the stream and what it is, for messages.
type genFrame struct {
	tag   uint32
	desc  string
	bytes []byte
}

type frameGen struct {
	r   *rand.Rand
	tag uint32
}

func newFrameGen(seed uint64, firstTag uint32) *frameGen {
	return &frameGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tag: firstTag}
}

func (g *frameGen) pick(n int) int { return g.r.IntN(n) }

// dst4 picks an IPv4 destination: mostly routed through the far host,
// some to the router itself, to blackhole/unreachable/prohibit routes, to
// nowhere, hairpinned back to the sender.
func (g *frameGen) dst4() (netip.Addr, string) {
	switch g.pick(12) {
	case 0:
		return dfDst4, "dst-host"
	case 1:
		return dfRout4, "router-local"
	case 2:
		return netip.AddrFrom4([4]byte{198, 51, 100, byte(g.pick(192))}), "bh/unreach/prohibit"
	case 3:
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + g.pick(250))}), "no-route"
	case 4:
		return dfSrc4, "hairpin"
	case 5, 6:
		return netip.AddrFrom4([4]byte{198, 19, byte(g.pick(256)), byte(1 + g.pick(250))}), "198.19/16"
	default:
		return netip.AddrFrom4([4]byte{198, 18, byte(g.pick(256)), byte(1 + g.pick(250))}), "198.18/16"
	}
}

func (g *frameGen) src4() (netip.Addr, string) {
	switch g.pick(20) {
	case 0:
		return netip.MustParseAddr("127.0.0.5"), "src-loopback"
	case 1:
		return netip.MustParseAddr("0.1.2.3"), "src-thisnet"
	case 2:
		return netip.MustParseAddr("224.1.2.3"), "src-mcast"
	case 3:
		return dfRout4, "src-local"
	case 4, 5:
		return netip.AddrFrom4([4]byte{198, 18, byte(g.pick(256)), byte(1 + g.pick(250))}), "src-far"
	case 6:
		return netip.AddrFrom4([4]byte{198, 19, 7, byte(1 + g.pick(250))}), "src-198.19.7"
	default:
		return dfSrc4, "src"
	}
}

func (g *frameGen) dst6() (netip.Addr, string) {
	switch g.pick(12) {
	case 0:
		return dfDst6, "dst-host"
	case 1:
		return dfRout6, "router-local"
	case 2:
		a := netip.MustParseAddr("2001:db8:51::").As16()
		a[7] = byte(g.pick(3)) // ::/64 blackhole, 1 unreachable, 2 prohibit
		a[15] = byte(1 + g.pick(250))
		return netip.AddrFrom16(a), "bh/unreach/prohibit"
	case 3:
		return netip.MustParseAddr("2001:db8:ffff::1"), "no-route"
	case 4:
		return dfSrc6, "hairpin"
	case 5, 6:
		a := netip.MustParseAddr("2001:db8:19::").As16()
		a[6], a[15] = byte(g.pick(256)), byte(1+g.pick(250))
		return netip.AddrFrom16(a), "2001:db8:19::/48"
	default:
		a := netip.MustParseAddr("2001:db8:18::").As16()
		a[6], a[15] = byte(g.pick(256)), byte(1+g.pick(250))
		return netip.AddrFrom16(a), "2001:db8:18::/48"
	}
}

func (g *frameGen) src6() (netip.Addr, string) {
	switch g.pick(20) {
	case 0:
		return netip.MustParseAddr("fe80::1234"), "src-linklocal"
	case 1:
		return netip.MustParseAddr("::1"), "src-loopback"
	case 2:
		return netip.MustParseAddr("ff02::1"), "src-mcast"
	case 3, 4:
		a := netip.MustParseAddr("2001:db8:18::").As16()
		a[6], a[15] = byte(g.pick(256)), byte(1+g.pick(250))
		return netip.AddrFrom16(a), "src-far"
	default:
		return dfSrc6, "src"
	}
}

// size picks an IP total length: small, or around the route MTU (1400),
// the egress MTU (1500) and beyond it.
func (g *frameGen) size() int {
	switch g.pick(8) {
	case 0:
		return 1398 + g.pick(5)
	case 1:
		return 1498 + g.pick(5)
	case 2:
		return 1501 + g.pick(700)
	default:
		return 28 + g.pick(300)
	}
}

func (g *frameGen) ttl() uint8 {
	switch g.pick(20) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 2
	case 3:
		return 255
	default:
		return 64
	}
}

// l4Kind is what follows the IP header.
type l4Kind int

const (
	l4UDP l4Kind = iota
	l4TCP
	l4Echo
	l4ICMPErr
	l4Short // an L4 header cut short (UDP/TCP with < 4 bytes, ICMP with none)
	l4Other // protocol with no ports (GRE)
)

func (g *frameGen) l4() l4Kind {
	switch n := g.pick(40); {
	case n < 16:
		return l4UDP
	case n < 28:
		return l4TCP
	case n < 34:
		return l4Echo
	case n < 36:
		return l4ICMPErr
	case n < 39:
		return l4Short
	default:
		return l4Other
	}
}

// next returns the next frame of the stream.
func (g *frameGen) next() genFrame {
	g.tag++
	if g.pick(2) == 0 {
		return g.frame4()
	}
	return g.frame6()
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// l4Body builds the L4 part (header and payload) of n bytes for proto; pseudo
// is the pseudo-header's sum (0 for ICMPv4).
func (g *frameGen) l4Body(kind l4Kind, n int, v6 bool, pseudo func(proto uint8, l int) uint32) (uint8, []byte, string) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	icmpProto, echo, errType := uint8(1), uint8(8), uint8(3)
	if v6 {
		icmpProto, echo, errType = 58, 128, 1
	}
	switch kind {
	case l4UDP:
		if n < 8 {
			return 17, b, "udp-short"
		}
		binary.BigEndian.PutUint16(b[4:], uint16(n))
		b[6], b[7] = 0, 0
		binary.BigEndian.PutUint16(b[6:], csumFold(csumAdd(pseudo(17, n), b)))
		return 17, b, "udp"
	case l4TCP:
		if n < 20 {
			return 6, b, "tcp-short"
		}
		b[12] = 5 << 4
		b[13] = 0x18 // PSH, ACK
		b[16], b[17] = 0, 0
		binary.BigEndian.PutUint16(b[16:], csumFold(csumAdd(pseudo(6, n), b)))
		return 6, b, "tcp"
	case l4Echo, l4ICMPErr:
		if n < 8 {
			return icmpProto, b, "icmp-short"
		}
		desc := "echo"
		if kind == l4Echo {
			b[0], b[1] = echo, 0
		} else {
			b[0], b[1] = errType, 0
			desc = "icmp-error"
		}
		b[2], b[3] = 0, 0
		var ps uint32
		if v6 {
			ps = pseudo(icmpProto, n)
		}
		binary.BigEndian.PutUint16(b[2:], csumFold(csumAdd(ps, b)))
		return icmpProto, b, desc
	case l4Short:
		switch g.pick(3) {
		case 0:
			return 17, b[:min(n, g.pick(4))], "udp-short"
		case 1:
			return 6, b[:min(n, g.pick(4))], "tcp-short"
		default:
			return icmpProto, b[:min(n, g.pick(2)*4)], "icmp-empty"
		}
	default:
		return 47, b, "gre"
	}
}

func (g *frameGen) frame4() genFrame {
	src, sdesc := g.src4()
	dst, ddesc := g.dst4()
	total := g.size()
	opts := 0
	if g.pick(25) == 0 {
		opts = 4 // NOP, NOP, NOP, EOL
	}
	hl := 20 + opts
	kind := g.l4()
	pseudo := func(proto uint8, l int) uint32 {
		s, d := src.As4(), dst.As4()
		sum := csumAdd(0, s[:])
		sum = csumAdd(sum, d[:])
		return sum + uint32(proto) + uint32(l)
	}
	proto, l4, l4desc := g.l4Body(kind, max(total-hl, 0), false, pseudo)
	total = hl + len(l4)
	ip := make([]byte, hl, total)
	ip[0] = 0x40 | byte(hl/4)
	ip[1] = []byte{0, 0x10, 0xb8, 0x02}[g.pick(4)]
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint16(ip[4:], uint16(g.tag))
	var frag string
	switch g.pick(12) {
	case 0, 1, 2, 4, 5, 6:
		ip[6] = 0x40 // DF
		frag = "DF"
	case 3:
		if g.pick(4) == 0 {
			binary.BigEndian.PutUint16(ip[6:], 0x2000) // MF, offset 0
			frag = "frag-first"
		} else {
			binary.BigEndian.PutUint16(ip[6:], uint16(1+g.pick(100))) // last fragment
			frag = "frag-last"
		}
	}
	ttl := g.ttl()
	ip[8], ip[9] = ttl, proto
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	for i := 20; i < hl-1; i++ {
		ip[i] = 1 // NOP
	}
	binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip[:hl])))
	desc := fmt.Sprintf("v4 %s %s→%s(%s) %s len=%d ttl=%d %s", l4desc, src, dst, sdesc+"/"+ddesc, frag, total, ttl, map[bool]string{true: "options"}[opts > 0])
	if g.pick(40) == 0 {
		ip[10] ^= 0x5a // bad header checksum
		desc += " bad-csum"
	}
	return genFrame{g.tag, desc, ether(0x0800, append(ip, l4...))}
}

func (g *frameGen) frame6() genFrame {
	src, sdesc := g.src6()
	dst, ddesc := g.dst6()
	total := g.size()
	kind := g.l4()
	var ext []byte
	var extDesc string
	switch g.pick(24) {
	case 0:
		ext, extDesc = []byte{0, 0, 1, 4, 0, 0, 0, 0}, "hbh" // next, len 0, PadN
	case 1:
		ext, extDesc = []byte{0, 0, 1, 4, 0, 0, 0, 0}, "dstopts"
	case 2:
		ext, extDesc = []byte{0, 0, 0, 1, 0, 0, 0, byte(g.tag)}, "frag" // offset 0, MF
	}
	pseudo := func(proto uint8, l int) uint32 {
		s, d := src.As16(), dst.As16()
		sum := csumAdd(0, s[:])
		sum = csumAdd(sum, d[:])
		return sum + uint32(proto) + uint32(l)
	}
	proto, l4, l4desc := g.l4Body(kind, max(total-40-len(ext), 0), true, pseudo)
	next := proto
	if ext != nil {
		ext[0] = proto
		next = map[string]uint8{"hbh": 0, "dstopts": 60, "frag": 44}[extDesc]
	}
	plen := len(ext) + len(l4)
	ip := make([]byte, 40, 40+plen)
	tc := []uint32{0, 0x10, 0xb8}[g.pick(3)]
	binary.BigEndian.PutUint32(ip[0:], 6<<28|tc<<20|g.tag&0xfffff)
	binary.BigEndian.PutUint16(ip[4:], uint16(plen))
	hop := g.ttl()
	ip[6], ip[7] = next, hop
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	desc := fmt.Sprintf("v6 %s %s→%s(%s) %s len=%d hop=%d", l4desc, src, dst, sdesc+"/"+ddesc, extDesc, 40+plen, hop)
	return genFrame{g.tag, desc, ether(0x86dd, append(append(ip, ext...), l4...))}
}

// ether wraps an IP packet in the Ethernet header the sender puts on it.
func ether(etype uint16, ip []byte) []byte {
	f := make([]byte, 14, 14+len(ip))
	copy(f[0:], dfMACRin)
	copy(f[6:], dfMACS)
	binary.BigEndian.PutUint16(f[12:], etype)
	return append(f, ip...)
}
