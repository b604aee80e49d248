// Package flowspec is the data model of BGP FlowSpec rules (RFC 8955 for
// IPv4, RFC 8956 for IPv6) as xrouter applies them: what a rule matches,
// what it does, where it came from, and the order in which rules are
// tried. The BGP speaker (internal/bgp) and the static config produce
// Rules; the data plane (internal/dataplane) compiles them into the XDP
// classifier. Nothing here imports GoBGP, netlink or cilium/ebpf.
package flowspec

import (
	"net/netip"
)

// Family is the address family a rule applies to.
type Family uint8

// Families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// NumOp is one term of a numeric operator list (RFC 8955 §4.2.1.1): the
// value is compared with LT/GT/EQ (all three clear: false; all three set:
// true), and the term is ANDed with the previous one when And is set,
// otherwise ORed. The first term's And is ignored.
type NumOp struct {
	And   bool
	LT    bool
	GT    bool
	EQ    bool
	Value uint64
}

// BitOp is one term of a bitmask operator list (RFC 8955 §4.2.1.2): with
// Match, the packet's bits ANDed with Value must equal Value; without it,
// any bit of Value set is enough. Not inverts the result. And as in NumOp.
type BitOp struct {
	And   bool
	Not   bool
	Match bool
	Value uint64
}

// Match is the set of components of a rule; an empty list or a zero
// prefix matches everything.
type Match struct {
	Family Family
	Dst    netip.Prefix // type 1; zero: any
	Src    netip.Prefix // type 2; zero: any
	// IPv6 prefix offsets (RFC 8956 §3.1) other than 0 cannot be matched
	// per packet by the classifier; a rule with one is rejected.
	DstOffset, SrcOffset uint8
	Proto                []NumOp // type 3: IP protocol / IPv6 next header
	Port                 []NumOp // type 4: source or destination port
	DstPort              []NumOp // type 5
	SrcPort              []NumOp // type 6
	ICMPType             []NumOp // type 7
	ICMPCode             []NumOp // type 8
	TCPFlags             []BitOp // type 9
	PktLen               []NumOp // type 10: IP total length (IPv6: payload + 40? see RFC 8956 §3.5)
	DSCP                 []NumOp // type 11
	Fragment             []BitOp // type 12: bits DF 1, IsF 2, FF 4, LF 8
	FlowLabel            []NumOp // type 13, IPv6 only
}

// Action is what a matching packet gets. A rule without rate or marking
// action only counts (and stops the search: the first match wins).
type Action struct {
	// RateLimited: a traffic-rate action was given; Rate is in bytes per
	// second, and 0 means drop.
	RateLimited bool
	Rate        float32
	// MarkDSCP: a traffic-marking action was given, with DSCP (0-63).
	MarkDSCP bool
	DSCP     uint8
}

// Rule is one FlowSpec rule as installed.
type Rule struct {
	Match  Match
	Action Action
	// Source says where the rule came from: "config" or "peer 192.0.2.1".
	Source string
}
