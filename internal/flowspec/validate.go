package flowspec

import (
	"fmt"
	"math"
	"net/netip"
)

// Component limits of the XDP classifier: a numeric component may compile
// to at most MaxRanges disjoint value ranges, a bitmask component may have
// at most MaxBitTerms terms (bpf/xrouter.h XR_FS_RANGES, XR_FS_BITOPS).
const (
	MaxRanges   = 4
	MaxBitTerms = 4
)

// Range is an inclusive range of values.
type Range struct{ Lo, Hi uint64 }

// Component names as errors and listings use them (RFC 8955 names).
var componentNames = map[int]string{
	1: "destination", 2: "source", 3: "protocol", 4: "port", 5: "destination-port",
	6: "source-port", 7: "icmp-type", 8: "icmp-code", 9: "tcp-flags", 10: "packet-length",
	11: "dscp", 12: "fragment", 13: "flow-label",
}

// ComponentName is the name of FlowSpec component type typ.
func ComponentName(typ int) string {
	if n, ok := componentNames[typ]; ok {
		return n
	}
	return fmt.Sprintf("type %d", typ)
}

// numComponents lists the numeric components with their type and domain
// (the largest value a packet can carry).
func (m *Match) numComponents() []struct {
	typ int
	ops []NumOp
	max uint64
} {
	return []struct {
		typ int
		ops []NumOp
		max uint64
	}{
		{3, m.Proto, 255}, {4, m.Port, 65535}, {5, m.DstPort, 65535}, {6, m.SrcPort, 65535},
		{7, m.ICMPType, 255}, {8, m.ICMPCode, 255}, {10, m.PktLen, 65535}, {11, m.DSCP, 63},
	}
}

// Ranges evaluates a numeric operator list over the values 0..max: the
// values for which it is true, as sorted disjoint ranges. AND binds tighter
// than OR (RFC 8955 §4.2.1.1).
func Ranges(ops []NumOp, max uint64) []Range {
	var res, grp []Range
	for i, op := range ops {
		t := termRanges(op, max)
		if i == 0 || !op.And {
			if i > 0 {
				res = union(res, grp)
			}
			grp = t
		} else {
			grp = intersect(grp, t)
		}
	}
	return union(res, grp)
}

func termRanges(op NumOp, max uint64) []Range {
	var r []Range
	v := op.Value
	if op.LT && v > 0 {
		r = append(r, Range{0, min(v-1, max)})
	}
	if op.EQ && v <= max {
		r = append(r, Range{v, v})
	}
	if op.GT && v < max {
		r = append(r, Range{v + 1, max})
	}
	return union(nil, r)
}

// union merges two sorted disjoint range lists (either may be unsorted
// only when built by termRanges, which is sorted).
func union(a, b []Range) []Range {
	all := append(append([]Range{}, a...), b...)
	// Insertion sort: lists are short.
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && all[j].Lo < all[j-1].Lo; j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	var out []Range
	for _, r := range all {
		if n := len(out); n > 0 && (r.Lo <= out[n-1].Hi || r.Lo == out[n-1].Hi+1) {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func intersect(a, b []Range) []Range {
	var out []Range
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.Lo, y.Lo), min(x.Hi, y.Hi)
			if lo <= hi {
				out = append(out, Range{lo, hi})
			}
		}
	}
	return union(nil, out)
}

// Validate reports whether the XDP classifier can apply r exactly: an error
// names the first component (or action) it cannot match or carry out.
// A rule that fails is never installed, not even in part.
func Validate(r Rule) error {
	m := &r.Match
	if m.Family != IPv4 && m.Family != IPv6 {
		return fmt.Errorf("family %d: want 4 or 6", m.Family)
	}
	for _, p := range []struct {
		typ    int
		pfx    netip.Prefix
		offset uint8
	}{{1, m.Dst, m.DstOffset}, {2, m.Src, m.SrcOffset}} {
		if p.pfx.IsValid() && p.pfx.Addr().Is4() != (m.Family == IPv4) {
			return fmt.Errorf("%s %s: not an IPv%d prefix", ComponentName(p.typ), p.pfx, m.Family)
		}
		if p.offset != 0 {
			return fmt.Errorf("%s: prefix offset %d: the classifier matches only offset 0", ComponentName(p.typ), p.offset)
		}
	}
	if len(m.FlowLabel) > 0 {
		return fmt.Errorf("%s: not matched by the classifier", ComponentName(13))
	}
	for _, c := range m.numComponents() {
		if len(c.ops) > 0 && len(Ranges(c.ops, c.max)) > MaxRanges {
			return fmt.Errorf("%s: more than %d separate value ranges", ComponentName(c.typ), MaxRanges)
		}
	}
	for _, c := range []struct {
		typ int
		ops []BitOp
		max uint64
	}{{9, m.TCPFlags, 0xfff}, {12, m.Fragment, 0xf}} {
		if len(c.ops) > MaxBitTerms {
			return fmt.Errorf("%s: more than %d terms", ComponentName(c.typ), MaxBitTerms)
		}
		for _, op := range c.ops {
			if op.Value > c.max {
				return fmt.Errorf("%s: bitmask %#x has bits above %#x", ComponentName(c.typ), op.Value, c.max)
			}
		}
	}
	a := r.Action
	if a.RateLimited && (a.Rate < 0 || math.IsNaN(float64(a.Rate)) || math.IsInf(float64(a.Rate), 0)) {
		return fmt.Errorf("traffic-rate %v: want a finite rate >= 0 bytes/s", a.Rate)
	}
	if a.MarkDSCP && a.DSCP > 63 {
		return fmt.Errorf("traffic-marking %d: DSCP is 0-63", a.DSCP)
	}
	return nil
}
