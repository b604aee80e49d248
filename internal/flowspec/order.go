package flowspec

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// component is one component of a rule as RFC 8955 §5.1 compares it: a
// prefix (types 1 and 2) or the wire bytes of its operator list.
type component struct {
	typ int
	pfx netip.Prefix
	val []byte
}

// valueLen is the shortest RFC 8955 value length (1, 2, 4 or 8 bytes) that
// holds v, and its two-bit code.
func valueLen(v uint64) (int, byte) {
	switch {
	case v <= 0xff:
		return 1, 0
	case v <= 0xffff:
		return 2, 1
	case v <= 0xffffffff:
		return 4, 2
	}
	return 8, 3
}

func putValue(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// opHeader is an operator byte's common part (RFC 8955 §4.2.1): the end-of-list
// bit on the last term, the AND bit (never on the first), the value's
// length code; bits are the type's own low bits.
func opHeader(i, count int, and bool, code, bits byte) byte {
	o := code<<4 | bits
	if i == count-1 {
		o |= 0x80
	}
	if and && i > 0 {
		o |= 0x40
	}
	return o
}

func flag(on bool, bit byte) byte {
	if on {
		return bit
	}
	return 0
}

// encodeNum is the wire form of a numeric operator list (RFC 8955
// §4.2.1.1), each value in its shortest length.
func encodeNum(ops []NumOp) []byte {
	var b []byte
	for i, op := range ops {
		n, code := valueLen(op.Value)
		o := opHeader(i, len(ops), op.And, code, flag(op.LT, 4)|flag(op.GT, 2)|flag(op.EQ, 1))
		b = putValue(append(b, o), op.Value, n)
	}
	return b
}

// encodeBits is the wire form of a bitmask operator list (§4.2.1.2).
func encodeBits(ops []BitOp) []byte {
	var b []byte
	for i, op := range ops {
		n, code := valueLen(op.Value)
		o := opHeader(i, len(ops), op.And, code, flag(op.Not, 2)|flag(op.Match, 1))
		b = putValue(append(b, o), op.Value, n)
	}
	return b
}

func (m *Match) components() []component {
	var cs []component
	if m.Dst.IsValid() {
		cs = append(cs, component{typ: 1, pfx: m.Dst.Masked()})
	}
	if m.Src.IsValid() {
		cs = append(cs, component{typ: 2, pfx: m.Src.Masked()})
	}
	for _, c := range []struct {
		typ int
		num []NumOp
		bit []BitOp
	}{
		{3, m.Proto, nil}, {4, m.Port, nil}, {5, m.DstPort, nil}, {6, m.SrcPort, nil},
		{7, m.ICMPType, nil}, {8, m.ICMPCode, nil}, {9, nil, m.TCPFlags}, {10, m.PktLen, nil},
		{11, m.DSCP, nil}, {12, nil, m.Fragment}, {13, m.FlowLabel, nil},
	} {
		switch {
		case len(c.num) > 0:
			cs = append(cs, component{typ: c.typ, val: encodeNum(c.num)})
		case len(c.bit) > 0:
			cs = append(cs, component{typ: c.typ, val: encodeBits(c.bit)})
		}
	}
	return cs
}

// comparePrefix: the longer of two prefixes that agree on the shorter's
// bits comes first; otherwise the lower address.
func comparePrefix(a, b netip.Prefix) int {
	n := min(a.Bits(), b.Bits())
	pa, _ := a.Addr().Prefix(n)
	pb, _ := b.Addr().Prefix(n)
	if c := pa.Addr().Compare(pb.Addr()); c != 0 {
		return c
	}
	return b.Bits() - a.Bits()
}

// Compare orders two rules of the same family as RFC 8955 §5.1 (and RFC
// 8956 §4 for IPv6) does: negative when a takes precedence over b (is tried
// first), positive when b does, 0 when they match the same packets by the
// same components. Rules of different families are ordered IPv4 first
// (they never compete for a packet).
func Compare(a, b *Rule) int {
	if a.Match.Family != b.Match.Family {
		return int(a.Match.Family) - int(b.Match.Family)
	}
	ca, cb := a.Match.components(), b.Match.components()
	for i := 0; i < len(ca) && i < len(cb); i++ {
		x, y := ca[i], cb[i]
		if x.typ != y.typ {
			// The rule with the lower component type (a component the
			// other lacks) takes precedence.
			return x.typ - y.typ
		}
		if x.typ <= 2 {
			if c := comparePrefix(x.pfx, y.pfx); c != 0 {
				return c
			}
			continue
		}
		n := min(len(x.val), len(y.val))
		if c := bytes.Compare(x.val[:n], y.val[:n]); c != 0 {
			return c
		}
		// Equal up to the shorter: the longer string comes first.
		if len(x.val) != len(y.val) {
			return len(y.val) - len(x.val)
		}
	}
	// The rule with more components comes first.
	return len(cb) - len(ca)
}

// Sort puts rules in the order the classifier tries them: RFC 8955 §5.1,
// then (for rules matching by the same components) by source, stably.
func Sort(rules []Rule) {
	slices.SortStableFunc(rules, func(a, b Rule) int {
		if c := Compare(&a, &b); c != 0 {
			return c
		}
		return strings.Compare(a.Source, b.Source)
	})
}

// Key identifies what a rule matches, independent of its action and
// source: two rules with the same Key are the same FlowSpec NLRI.
func (m *Match) Key() string {
	var b []byte
	b = append(b, byte(m.Family))
	for _, c := range m.components() {
		b = append(b, byte(c.typ))
		if c.typ <= 2 {
			b = append(b, byte(c.pfx.Bits()))
			b = append(b, c.pfx.Addr().AsSlice()...)
			continue
		}
		b = append(b, byte(len(c.val)))
		b = append(b, c.val...)
	}
	if m.DstOffset != 0 || m.SrcOffset != 0 {
		b = append(b, 0xff, m.DstOffset, m.SrcOffset)
	}
	return hex.EncodeToString(b)
}

func numString(ops []NumOp) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			if op.And {
				b.WriteByte('&')
			} else {
				b.WriteByte(',')
			}
		}
		switch {
		case op.LT && op.GT && op.EQ:
			b.WriteString("true")
			continue
		case !op.LT && !op.GT && !op.EQ:
			b.WriteString("false")
			continue
		case op.LT && op.GT:
			b.WriteString("!=")
		case op.LT:
			b.WriteByte('<')
		case op.GT:
			b.WriteByte('>')
		}
		if op.EQ && (op.LT || op.GT) {
			b.WriteByte('=')
		} else if op.EQ {
			b.WriteString("=")
		}
		fmt.Fprintf(&b, "%d", op.Value)
	}
	return b.String()
}

func bitString(ops []BitOp) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			if op.And {
				b.WriteByte('&')
			} else {
				b.WriteByte(',')
			}
		}
		if op.Not {
			b.WriteByte('!')
		}
		if op.Match {
			b.WriteByte('=')
		}
		fmt.Fprintf(&b, "%#x", op.Value)
	}
	return b.String()
}

// String is the match in a compact text form, components in type order:
// "dst 203.0.113.0/24 proto =17 dport =53,>=1024&<=2048".
func (m *Match) String() string {
	var parts []string
	if m.Dst.IsValid() {
		parts = append(parts, "dst "+m.Dst.String())
	}
	if m.Src.IsValid() {
		parts = append(parts, "src "+m.Src.String())
	}
	for _, c := range []struct {
		name string
		num  []NumOp
		bit  []BitOp
	}{
		{"proto", m.Proto, nil}, {"port", m.Port, nil}, {"dport", m.DstPort, nil}, {"sport", m.SrcPort, nil},
		{"icmp-type", m.ICMPType, nil}, {"icmp-code", m.ICMPCode, nil}, {"tcp-flags", nil, m.TCPFlags},
		{"len", m.PktLen, nil}, {"dscp", m.DSCP, nil}, {"frag", nil, m.Fragment}, {"flow-label", m.FlowLabel, nil},
	} {
		switch {
		case len(c.num) > 0:
			parts = append(parts, c.name+" "+numString(c.num))
		case len(c.bit) > 0:
			parts = append(parts, c.name+" "+bitString(c.bit))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("ipv%d any", m.Family)
	}
	return strings.Join(parts, " ")
}

// String is the action as text: "drop", "rate 1000B/s", "mark dscp 10",
// "rate 1000B/s, mark dscp 10" or "count".
func (a Action) String() string {
	var parts []string
	if a.RateLimited {
		if a.Rate == 0 {
			parts = append(parts, "drop")
		} else {
			parts = append(parts, fmt.Sprintf("rate %gB/s", a.Rate))
		}
	}
	if a.MarkDSCP {
		parts = append(parts, fmt.Sprintf("mark dscp %d", a.DSCP))
	}
	if len(parts) == 0 {
		return "count"
	}
	return strings.Join(parts, ", ")
}
