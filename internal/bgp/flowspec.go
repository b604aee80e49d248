package bgp

// FlowSpec (RFC 8955 for IPv4, RFC 8956 for IPv6): GoBGP's FlowSpec paths
// turned into flowspec.Rules. This file decodes a path, checks it against
// the neighbour's flowspec_import policy and runs the RFC 8955 section 6
// validation against GoBGP's unicast RIB; fswatch.go follows the paths per
// neighbour and hands the accepted rules on.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// FlowSpec component types (RFC 8955 section 4.2.2, RFC 8956 section 3).
const (
	fsDstPrefix = 1
	fsSrcPrefix = 2
	fsProto     = 3
	fsPort      = 4
	fsDstPort   = 5
	fsSrcPort   = 6
	fsICMPType  = 7
	fsICMPCode  = 8
	fsTCPFlags  = 9
	fsPktLen    = 10
	fsDSCP      = 11
	fsFragment  = 12
	fsFlowLabel = 13
)

var fsComponentNames = map[uint32]string{
	fsDstPrefix: "dst", fsSrcPrefix: "src", fsProto: "proto", fsPort: "port",
	fsDstPort: "dport", fsSrcPort: "sport", fsICMPType: "icmp-type", fsICMPCode: "icmp-code",
	fsTCPFlags: "tcp-flags", fsPktLen: "length", fsDSCP: "dscp", fsFragment: "fragment",
	fsFlowLabel: "flow-label",
}

// Operator byte bits (RFC 8955 section 4.2.1).
const (
	opEnd = 0x80
	opAnd = 0x40
	opLT  = 0x04 // numeric
	opGT  = 0x02
	opEQ  = 0x01
	opNot = 0x02 // bitmask
	opM   = 0x01
)

// fsPath is one FlowSpec path of a neighbour, decoded.
type fsPath struct {
	peer     netip.Addr
	family   string // FamilyIPv4FlowSpec or FamilyIPv6FlowSpec
	key      string // identity within the neighbour: family, NLRI, path id
	nlri     string // the NLRI as text, for logs and the API
	withdraw bool
	rule     flowspec.Rule
	// err: a component or action xrouter cannot apply; the rule is never
	// installed (RFC 8955 asks for all of a rule or nothing).
	err error
}

// isFlowSpecPath reports whether p is of a FlowSpec family.
func isFlowSpecPath(p *api.Path) bool {
	return p.Family != nil && p.Family.Safi == api.Family_SAFI_FLOW_SPEC_UNICAST
}

// decodeFlowSpec decodes a FlowSpec path. An error means the path cannot
// even be identified (no neighbour, no NLRI): it is ignored. A rule that
// is identified but cannot be applied has fsPath.err set.
func decodeFlowSpec(p *api.Path) (fsPath, error) {
	fam := familyName(p.Family)
	if !isFlowSpecFamily(fam) {
		return fsPath{}, fmt.Errorf("family %v is not a FlowSpec family", p.Family)
	}
	peer, err := netip.ParseAddr(p.NeighborIp)
	if err != nil || peer.IsUnspecified() {
		return fsPath{}, fmt.Errorf("FlowSpec path without a neighbour (%q)", p.NeighborIp)
	}
	if p.Nlri == nil {
		return fsPath{}, errors.New("FlowSpec path without NLRI")
	}
	m, err := p.Nlri.UnmarshalNew()
	if err != nil {
		return fsPath{}, fmt.Errorf("FlowSpec NLRI: %w", err)
	}
	nlri, ok := m.(*api.FlowSpecNLRI)
	if !ok {
		return fsPath{}, fmt.Errorf("FlowSpec path with NLRI %s", proto.MessageName(m))
	}
	out := fsPath{peer: peer.Unmap(), family: fam, withdraw: p.IsWithdraw}
	out.rule.Source = flowSpecSource(out.peer)
	out.rule.Match.Family = flowspec.IPv4
	if fam == FamilyIPv6FlowSpec {
		out.rule.Match.Family = flowspec.IPv6
	}
	text, err := out.decodeComponents(nlri.Rules)
	out.nlri = strings.Join(text, " ")
	if out.nlri == "" {
		out.nlri = "(empty)"
	}
	out.key = fam + " " + out.nlri
	if p.Identifier != 0 {
		out.key += fmt.Sprintf(" path-id %d", p.Identifier)
	}
	if err != nil {
		out.err = err
		return out, nil
	}
	if !out.withdraw {
		out.rule.Action, out.err = flowSpecAction(p.Pattrs)
	}
	return out, nil
}

// flowSpecSource is the Source of a neighbour's rules.
func flowSpecSource(peer netip.Addr) string { return "peer " + peer.String() }

// decodeComponents fills out.rule.Match from the NLRI's components and
// returns them as text (the rule's identity). The first component that
// cannot be applied is the error; the text covers every component anyway.
func (out *fsPath) decodeComponents(rules []*anypb.Any) ([]string, error) {
	var (
		text  []string
		first error
		seen  = map[uint32]bool{}
	)
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	m := &out.rule.Match
	v6 := m.Family == flowspec.IPv6
	for _, a := range rules {
		if a.GetTypeUrl() == "" {
			// GoBGP's "unknown" component: one it could not decode.
			// GoBGP v3.37 decodes an IPv6 prefix component as if its
			// offset were 0, which fails for a non-zero offset.
			text = append(text, "unknown")
			fail(errors.New("unsupported component: one GoBGP could not decode (malformed, or an IPv6 prefix with a non-zero offset)"))
			continue
		}
		c, err := a.UnmarshalNew()
		if err != nil {
			text = append(text, "undecodable")
			fail(fmt.Errorf("undecodable component %s: %w", a.GetTypeUrl(), err))
			continue
		}
		switch c := c.(type) {
		case *api.FlowSpecIPPrefix:
			name := fsComponentNames[c.Type]
			t := fmt.Sprintf("%s %s/%d", name, c.Prefix, c.PrefixLen)
			if c.Offset != 0 {
				t += fmt.Sprintf(" offset %d", c.Offset)
			}
			text = append(text, t)
			if seen[c.Type] {
				fail(fmt.Errorf("component %s given twice", name))
			}
			seen[c.Type] = true
			pfx, err := fsPrefix(c, v6)
			switch {
			case err != nil:
				fail(err)
			case c.Offset != 0:
				fail(fmt.Errorf("unsupported component: %s with IPv6 prefix offset %d (the classifier matches prefixes from bit 0)", name, c.Offset))
			case c.Type == fsDstPrefix:
				m.Dst = pfx
			case c.Type == fsSrcPrefix:
				m.Src = pfx
			default:
				fail(fmt.Errorf("unsupported component: prefix of type %d", c.Type))
			}
		case *api.FlowSpecComponent:
			name, known := fsComponentNames[c.Type]
			if !known || c.Type == fsDstPrefix || c.Type == fsSrcPrefix {
				name = fmt.Sprintf("type-%d", c.Type)
			}
			bitmask := c.Type == fsTCPFlags || c.Type == fsFragment
			text = append(text, name+" "+opsText(c.Items, bitmask))
			if seen[c.Type] {
				fail(fmt.Errorf("component %s given twice", name))
			}
			seen[c.Type] = true
			if len(c.Items) == 0 {
				fail(fmt.Errorf("component %s without operators", name))
				continue
			}
			switch c.Type {
			case fsProto:
				m.Proto = numOps(c.Items)
			case fsPort:
				m.Port = numOps(c.Items)
			case fsDstPort:
				m.DstPort = numOps(c.Items)
			case fsSrcPort:
				m.SrcPort = numOps(c.Items)
			case fsICMPType:
				m.ICMPType = numOps(c.Items)
			case fsICMPCode:
				m.ICMPCode = numOps(c.Items)
			case fsTCPFlags:
				m.TCPFlags = bitOps(c.Items)
			case fsPktLen:
				m.PktLen = numOps(c.Items)
			case fsDSCP:
				m.DSCP = numOps(c.Items)
			case fsFragment:
				m.Fragment = bitOps(c.Items)
			case fsFlowLabel:
				if !v6 {
					fail(errors.New("unsupported component: flow-label (type 13) in an IPv4 rule"))
				}
				m.FlowLabel = numOps(c.Items)
			default:
				fail(fmt.Errorf("unsupported component: type %d", c.Type))
			}
		case *api.FlowSpecMAC:
			text = append(text, fmt.Sprintf("mac-type-%d %s", c.Type, c.Address))
			fail(fmt.Errorf("unsupported component: MAC address (type %d)", c.Type))
		default:
			text = append(text, string(proto.MessageName(c)))
			fail(fmt.Errorf("unsupported component %s", proto.MessageName(c)))
		}
	}
	return text, first
}

// fsPrefix parses a prefix component of the rule's family.
func fsPrefix(c *api.FlowSpecIPPrefix, v6 bool) (netip.Prefix, error) {
	a, err := netip.ParseAddr(c.Prefix)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix component %q: %w", c.Prefix, err)
	}
	a = a.Unmap()
	if a.Is6() != v6 {
		return netip.Prefix{}, fmt.Errorf("prefix component %s of the other address family", a)
	}
	p, err := a.Prefix(int(c.PrefixLen))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix component %s/%d: %w", a, c.PrefixLen, err)
	}
	return p, nil
}

func numOps(items []*api.FlowSpecComponentItem) []flowspec.NumOp {
	out := make([]flowspec.NumOp, len(items))
	for i, it := range items {
		out[i] = flowspec.NumOp{
			And: i > 0 && it.Op&opAnd != 0, LT: it.Op&opLT != 0, GT: it.Op&opGT != 0, EQ: it.Op&opEQ != 0,
			Value: it.Value,
		}
	}
	return out
}

func bitOps(items []*api.FlowSpecComponentItem) []flowspec.BitOp {
	out := make([]flowspec.BitOp, len(items))
	for i, it := range items {
		out[i] = flowspec.BitOp{
			And: i > 0 && it.Op&opAnd != 0, Not: it.Op&opNot != 0, Match: it.Op&opM != 0, Value: it.Value,
		}
	}
	return out
}

// opsText renders an operator list: numeric terms as "<=80", bitmask ones
// as "!=0x02" (match, negated) or "0x02" (any bit); "&" joins ANDed terms,
// a space ORed ones.
func opsText(items []*api.FlowSpecComponentItem, bitmask bool) string {
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			if it.Op&opAnd != 0 {
				b.WriteString("&")
			} else {
				b.WriteString(" ")
			}
		}
		if bitmask {
			if it.Op&opNot != 0 {
				b.WriteString("!")
			}
			if it.Op&opM != 0 {
				b.WriteString("=")
			}
			fmt.Fprintf(&b, "0x%02x", it.Value)
			continue
		}
		switch it.Op & (opLT | opGT | opEQ) {
		case 0:
			b.WriteString("false:")
		case opLT:
			b.WriteString("<")
		case opGT:
			b.WriteString(">")
		case opEQ:
			b.WriteString("=")
		case opLT | opEQ:
			b.WriteString("<=")
		case opGT | opEQ:
			b.WriteString(">=")
		case opLT | opGT:
			b.WriteString("!=")
		default:
			b.WriteString("true:")
		}
		fmt.Fprintf(&b, "%d", it.Value)
	}
	return b.String()
}

// flowSpecAction reads the FlowSpec actions (RFC 8955 section 7) from the
// extended communities. traffic-rate-bytes and traffic-marking are
// applied; redirects, sampling and the terminal bit are not, and make the
// whole rule unusable. Other extended communities (route targets, ...)
// are not actions and are ignored.
func flowSpecAction(pattrs []*anypb.Any) (flowspec.Action, error) {
	var act flowspec.Action
	for _, pa := range pattrs {
		if !anyIs(pa, proto.MessageName(&api.ExtendedCommunitiesAttribute{})) {
			continue
		}
		var ec api.ExtendedCommunitiesAttribute
		if err := pa.UnmarshalTo(&ec); err != nil {
			return act, fmt.Errorf("extended communities: %w", err)
		}
		for _, c := range ec.Communities {
			m, err := c.UnmarshalNew()
			if err != nil {
				return act, fmt.Errorf("extended community %s: %w", c.GetTypeUrl(), err)
			}
			switch m := m.(type) {
			case *api.TrafficRateExtended:
				r := m.Rate
				if r < 0 || math.IsNaN(float64(r)) || math.IsInf(float64(r), 0) {
					return act, fmt.Errorf("traffic-rate %v is not a rate", r)
				}
				if act.RateLimited && act.Rate != r {
					return act, fmt.Errorf("conflicting traffic-rate actions %v and %v", act.Rate, r)
				}
				act.RateLimited, act.Rate = true, r
			case *api.TrafficRemarkExtended:
				if m.Dscp > 63 {
					return act, fmt.Errorf("traffic-marking DSCP %d above 63", m.Dscp)
				}
				if act.MarkDSCP && uint32(act.DSCP) != m.Dscp {
					return act, fmt.Errorf("conflicting traffic-marking actions %d and %d", act.DSCP, m.Dscp)
				}
				act.MarkDSCP, act.DSCP = true, uint8(m.Dscp)
			case *api.TrafficActionExtended:
				if m.Terminal {
					return act, errors.New("unsupported action: traffic-action with the terminal bit (go on with later rules)")
				}
				if m.Sample {
					return act, errors.New("unsupported action: traffic-action sample")
				}
			case *api.RedirectTwoOctetAsSpecificExtended:
				return act, fmt.Errorf("unsupported action: redirect to VRF %d:%d", m.Asn, m.LocalAdmin)
			case *api.RedirectFourOctetAsSpecificExtended:
				return act, fmt.Errorf("unsupported action: redirect to VRF %d:%d", m.Asn, m.LocalAdmin)
			case *api.RedirectIPv4AddressSpecificExtended:
				return act, fmt.Errorf("unsupported action: redirect to VRF %s:%d", m.Address, m.LocalAdmin)
			case *api.RedirectIPv6AddressSpecificExtended:
				return act, fmt.Errorf("unsupported action: redirect to VRF %s:%d", m.Address, m.LocalAdmin)
			case *api.UnknownExtended:
				// Types GoBGP does not decode in the FlowSpec ranges
				// (0x80-0x82 and redirect-to-IP, 0x08): actions we do
				// not know cannot be half-applied either.
				if hi := m.Type >> 8; hi == 0x80 || hi == 0x81 || hi == 0x82 || hi == 0x08 || m.Type == 0x08 {
					return act, fmt.Errorf("unsupported action: extended community type 0x%04x", m.Type)
				}
			}
		}
	}
	return act, nil
}

// actionNames are the flowspec_import actions a rule uses.
func actionNames(a flowspec.Action) []string {
	var out []string
	if a.RateLimited && a.Rate == 0 {
		out = append(out, FlowSpecActionDrop)
	} else if a.RateLimited {
		out = append(out, FlowSpecActionRateLimit)
	}
	if a.MarkDSCP {
		out = append(out, FlowSpecActionMark)
	}
	return out
}

// importCheck applies the neighbour's flowspec_import policy.
func importCheck(cfg Config, n Neighbor, r flowspec.Rule) error {
	fi := n.FlowSpecImport
	if fi.PrefixList == "" {
		if n.ebgp(cfg.AS) {
			return errors.New("eBGP neighbour without flowspec_import: every rule is rejected (RFC 8212)")
		}
		return nil // iBGP: accept all
	}
	if !r.Match.Dst.IsValid() {
		return fmt.Errorf("no destination prefix; flowspec_import.prefix_list %q needs one inside it", fi.PrefixList)
	}
	if !prefixListMatches(cfg, fi.PrefixList, r.Match.Dst) {
		return fmt.Errorf("destination %s does not match flowspec_import.prefix_list %q", r.Match.Dst, fi.PrefixList)
	}
	allowed := fi.Actions
	if len(allowed) == 0 {
		allowed = flowSpecActions
	}
	for _, a := range actionNames(r.Action) {
		if !slices.Contains(allowed, a) {
			return fmt.Errorf("action %s not allowed by flowspec_import.actions %v", a, allowed)
		}
	}
	return nil
}

// prefixListMatches reports whether an entry of the named list matches p:
// p inside the entry's prefix with a length in its ge/le range.
func prefixListMatches(cfg Config, name string, p netip.Prefix) bool {
	for _, pl := range cfg.PrefixLists {
		if pl.Name != name {
			continue
		}
		for _, e := range pl.Entries {
			ep, err := parsePrefix(e.Prefix)
			if err != nil || ep.Addr().Is4() != p.Addr().Is4() {
				continue
			}
			ge, le := e.lengths(ep)
			if ep.Contains(p.Addr()) && p.Bits() >= ge && p.Bits() <= le {
				return true
			}
		}
	}
	return false
}

// unicastRIB is what the validation asks of GoBGP's unicast table.
type unicastRIB interface {
	ListPath(ctx context.Context, r *api.ListPathRequest, fn func(*api.Destination)) error
}

// validateFlowSpec is the RFC 8955 section 6 validation of a rule from
// peer against the best unicast paths: (a) the rule has a destination
// prefix; (b) the best path of the longest unicast prefix covering it
// (the best-match route) was learned from peer; (c) every more specific
// unicast prefix inside the destination has its best path from the same
// neighbouring AS as the best-match route.
func validateFlowSpec(ctx context.Context, rib unicastRIB, peer netip.Addr, dst netip.Prefix) error {
	if !dst.IsValid() {
		return errors.New("validation: no destination prefix (RFC 8955 section 6; flowspec_validation: false accepts it)")
	}
	fam := FamilyIPv4Unicast
	if dst.Addr().Is6() {
		fam = FamilyIPv6Unicast
	}
	var (
		best    *api.Path
		bestPfx netip.Prefix
	)
	if err := rib.ListPath(ctx, &api.ListPathRequest{
		TableType: api.TableType_GLOBAL, Family: familyAPI(fam),
		Prefixes: []*api.TableLookupPrefix{{Prefix: dst.String(), Type: api.TableLookupPrefix_SHORTER}},
	}, func(d *api.Destination) {
		pfx, err := netip.ParsePrefix(d.Prefix)
		if err != nil || (best != nil && pfx.Bits() <= bestPfx.Bits()) || pfx.Bits() > dst.Bits() || !pfx.Contains(dst.Addr()) {
			return
		}
		for _, p := range d.Paths {
			if p.Best {
				best, bestPfx = p, pfx
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("validation: looking up %s in the unicast RIB: %w", dst, err)
	}
	if best == nil {
		return fmt.Errorf("validation: no unicast route covers %s", dst)
	}
	if isLocal(best) {
		return fmt.Errorf("validation: the best unicast route for %s, %s, is our own, not from %s", dst, bestPfx, peer)
	}
	from, err := netip.ParseAddr(best.NeighborIp)
	if err != nil || from.Unmap() != peer {
		return fmt.Errorf("validation: the best unicast route for %s, %s, is from %s, not from %s", dst, bestPfx, best.NeighborIp, peer)
	}
	var bad error
	if err := rib.ListPath(ctx, &api.ListPathRequest{
		TableType: api.TableType_GLOBAL, Family: familyAPI(fam),
		Prefixes: []*api.TableLookupPrefix{{Prefix: dst.String(), Type: api.TableLookupPrefix_LONGER}},
	}, func(d *api.Destination) {
		pfx, err := netip.ParsePrefix(d.Prefix)
		if bad != nil || err != nil || pfx.Bits() <= dst.Bits() {
			return
		}
		for _, p := range d.Paths {
			if p.Best && !isLocal(p) && p.SourceAsn != best.SourceAsn {
				bad = fmt.Errorf("validation: more specific unicast route %s is from AS %d, the best-match route %s from AS %d", pfx, p.SourceAsn, bestPfx, best.SourceAsn)
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("validation: looking up routes inside %s: %w", dst, err)
	}
	return bad
}
