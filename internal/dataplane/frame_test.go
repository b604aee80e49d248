package dataplane

// A small frame builder for the BPF tests: Ethernet, IPv4 (with options),
// IPv6, UDP, TCP and ICMP, enough to reach every branch of bpf/fwd.c.

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeARP  = 0x0806
	etherTypeVLAN = 0x8100

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
)

// ether builds an Ethernet II frame.
func ether(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, ethLen+len(payload))
	b = append(b, dst...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// ipv4Hdr is an IPv4 header; zero TotLen and Check are computed.
type ipv4Hdr struct {
	TOS      uint8
	TotLen   uint16
	ID       uint16
	FragOff  uint16 // flags and fragment offset as on the wire
	TTL      uint8
	Proto    uint8
	Check    uint16
	Src, Dst netip.Addr
	Options  []byte // a multiple of 4 bytes; sets IHL
}

func (h ipv4Hdr) marshal(payload []byte) []byte {
	hl := ipv4Len + len(h.Options)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 4<<4 | uint8(hl/4)
	b[1] = h.TOS
	tot := h.TotLen
	if tot == 0 {
		tot = uint16(hl + len(payload))
	}
	binary.BigEndian.PutUint16(b[2:], tot)
	binary.BigEndian.PutUint16(b[4:], h.ID)
	binary.BigEndian.PutUint16(b[6:], h.FragOff)
	b[8] = h.TTL
	b[9] = h.Proto
	src, dst := h.Src.As4(), h.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	copy(b[20:], h.Options)
	check := h.Check
	if check == 0 {
		check = checksum(b)
	}
	binary.BigEndian.PutUint16(b[10:], check)
	return append(b, payload...)
}

// ipv6Hdr is an IPv6 header; a zero PayloadLen is computed.
type ipv6Hdr struct {
	TC         uint8
	Flow       uint32
	PayloadLen uint16
	Next       uint8
	Hop        uint8
	Src, Dst   netip.Addr
}

func (h ipv6Hdr) marshal(payload []byte) []byte {
	b := make([]byte, ipv6Len, ipv6Len+len(payload))
	binary.BigEndian.PutUint32(b, 6<<28|uint32(h.TC)<<20|h.Flow&0xfffff)
	pl := h.PayloadLen
	if pl == 0 {
		pl = uint16(len(payload))
	}
	binary.BigEndian.PutUint16(b[4:], pl)
	b[6] = h.Next
	b[7] = h.Hop
	src, dst := h.Src.As16(), h.Dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	return append(b, payload...)
}

// udp builds a UDP datagram. The router never looks at L4 checksums, so
// this one is left zero ("none" for IPv4).
func udp(sport, dport uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = binary.BigEndian.AppendUint16(b, 0)
	return append(b, payload...)
}

// tcp builds a bare TCP header (SYN) with a payload.
func tcp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 1)
	b[12] = 5 << 4
	b[13] = 0x02
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// icmp builds an ICMP or ICMPv6 message: type, code, checksum (ICMP only;
// ICMPv6 would need the pseudo-header, and the router ignores it), body.
func icmp(typ, code uint8, body []byte) []byte {
	b := []byte{typ, code, 0, 0}
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// echoBody is an echo request/reply's identifier, sequence and data.
func echoBody() []byte {
	return []byte{0x12, 0x34, 0, 1, 'x', 'r', 'o', 'u', 't', 'e', 'r', '!'}
}

// payload returns n bytes of a recognisable pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, computed in full.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// fixIPv4Checksum recomputes the IPv4 header checksum of an Ethernet frame
// after a test changed a header field.
func fixIPv4Checksum(frame []byte) []byte {
	hl := int(frame[ethLen]&0xf) * 4
	hdr := frame[ethLen : ethLen+hl]
	binary.BigEndian.PutUint16(hdr[10:], 0)
	binary.BigEndian.PutUint16(hdr[10:], checksum(hdr))
	return frame
}

// mutate returns a copy of frame changed by f.
func mutate(frame []byte, f func(b []byte)) []byte {
	b := append([]byte(nil), frame...)
	f(b)
	return b
}

// forwarded is the frame kernel forwarding would send for in: trailing
// padding trimmed, MAC addresses of the next hop and the egress device, TTL or
// hop limit one less, and for IPv4 the checksum updated the way the kernel's
// ip_decrease_ttl() does it.
func forwarded(in []byte, dst, src net.HardwareAddr) []byte {
	b := append([]byte(nil), in...)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	switch binary.BigEndian.Uint16(b[12:]) {
	case etherTypeIPv4:
		b = b[:ethLen+int(binary.BigEndian.Uint16(b[ethLen+2:]))]
		ip := b[ethLen:]
		ip[8]--
		check := uint32(binary.BigEndian.Uint16(ip[10:])) + 0x0100
		if check >= 0xffff {
			check++
		}
		binary.BigEndian.PutUint16(ip[10:], uint16(check))
	case etherTypeIPv6:
		b = b[:ethLen+ipv6Len+int(binary.BigEndian.Uint16(b[ethLen+4:]))]
		b[ethLen+7]--
	}
	return b
}
