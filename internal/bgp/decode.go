package bgp

import (
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The watcher callback sees every best path GoBGP selects: a million of
// them for a full table, and again on its withdrawal. It needs two things
// from a path, its prefix and its next hop, so it reads just those fields
// from the encoded Any values: it picks the next-hop attribute by its type
// URL instead of unmarshalling every attribute (AS path, communities, ...)
// into a fresh message, and it parses addresses without allocating.
//
// The names and field numbers come from the generated descriptors, so a
// renumbered field in GoBGP's API would be picked up (or fail the tests),
// not misread.
var (
	nameIPAddressPrefix = proto.MessageName(&api.IPAddressPrefix{})
	nameNextHop         = proto.MessageName(&api.NextHopAttribute{})
	nameMpReach         = proto.MessageName(&api.MpReachNLRIAttribute{})

	fieldPrefixLen = fieldNumber(&api.IPAddressPrefix{}, "prefix_len")
	fieldPrefix    = fieldNumber(&api.IPAddressPrefix{}, "prefix")
	fieldNextHop   = fieldNumber(&api.NextHopAttribute{}, "next_hop")
	fieldNextHops  = fieldNumber(&api.MpReachNLRIAttribute{}, "next_hops")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic(fmt.Sprintf("bgp: GoBGP message %s has no field %s", proto.MessageName(m), name))
	}
	return f.Number()
}

// anyIs reports whether a holds a message of the given full name, as
// anypb.Any.MessageIs does: the type URL's last path segment is the name.
func anyIs(a *anypb.Any, name protoreflect.FullName) bool {
	u, n := a.GetTypeUrl(), string(name)
	if len(u) < len(n) || u[len(u)-len(n):] != n {
		return false
	}
	return len(u) == len(n) || u[len(u)-len(n)-1] == '/'
}

// pathPrefix is the unicast prefix of a path's NLRI.
func pathPrefix(p *api.Path) (netip.Prefix, error) {
	if p.Nlri == nil {
		return netip.Prefix{}, errors.New("path without NLRI")
	}
	if !anyIs(p.Nlri, nameIPAddressPrefix) {
		return netip.Prefix{}, fmt.Errorf("path NLRI %s is not a unicast prefix", p.Nlri.TypeUrl)
	}
	var (
		bits uint64
		addr []byte
	)
	b := p.Nlri.Value
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return netip.Prefix{}, fmt.Errorf("path NLRI: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldPrefixLen && typ == protowire.VarintType:
			bits, n = protowire.ConsumeVarint(b)
		case num == fieldPrefix && typ == protowire.BytesType:
			addr, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return netip.Prefix{}, fmt.Errorf("path NLRI: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	a, err := parseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("path prefix %q: %w", addr, err)
	}
	if bits > 128 {
		return netip.Prefix{}, fmt.Errorf("path prefix %s/%d: prefix length out of range", a, bits)
	}
	pfx, err := a.Unmap().Prefix(int(bits))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("path prefix %s/%d: %w", a, bits, err)
	}
	return pfx, nil
}

// pathNexthop finds the next hop: NEXT_HOP for IPv4, the first (global)
// address of MP_REACH_NLRI for IPv6. A link-local-only IPv6 next hop is not
// supported yet: it needs the interface the session runs over.
func pathNexthop(p *api.Path) (netip.Addr, error) {
	for _, a := range p.Pattrs {
		var (
			s     []byte
			found bool
			err   error
		)
		switch {
		case anyIs(a, nameNextHop):
			s, found, err = bytesField(a.Value, fieldNextHop, false)
		case anyIs(a, nameMpReach):
			s, found, err = bytesField(a.Value, fieldNextHops, true)
		default:
			continue
		}
		if err != nil {
			continue // as an attribute that does not decode: look further
		}
		if !found {
			s = nil // an empty next hop, as the message's zero value
		}
		nh, err := parseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("next hop %q: %w", s, err)
		}
		nh = nh.Unmap()
		if nh.IsUnspecified() || nh.IsLinkLocalUnicast() {
			return netip.Addr{}, fmt.Errorf("next hop %s cannot be installed", nh)
		}
		return nh, nil
	}
	return netip.Addr{}, errors.New("path without next hop")
}

// bytesField returns a length-delimited field of an encoded message: its
// first occurrence for a repeated field, its last (as proto decoding does)
// for a singular one. The whole message is checked to be well formed.
func bytesField(b []byte, field protowire.Number, first bool) (v []byte, found bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, protowire.ParseError(n)
		}
		b = b[n:]
		if num == field && typ == protowire.BytesType {
			var x []byte
			x, n = protowire.ConsumeBytes(b)
			if n >= 0 && (!found || !first) {
				v, found = x, true
			}
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, false, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return v, found, nil
}

// parseAddr parses an address as netip.ParseAddr does, without allocating
// for the common dotted-quad IPv4 form.
func parseAddr(b []byte) (netip.Addr, error) {
	if a, ok := parseIPv4(b); ok {
		return a, nil
	}
	return netip.ParseAddr(string(b))
}

// parseIPv4 accepts exactly four decimal octets of 0–255 without leading
// zeros, a subset of what netip.ParseAddr accepts (ok false: let it decide).
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	i := 0
	for k := range 4 {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int(b[i]-'0')
			i++
			if i-start > 3 {
				return netip.Addr{}, false
			}
		}
		if i == start || v > 255 || (i-start > 1 && b[start] == '0') {
			return netip.Addr{}, false
		}
		ip[k] = byte(v)
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}
