package flowspec

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Settings is the config's flowspec section: static rules, installed at
// start and on every reload (source "config").
type Settings struct {
	Rules []StaticRule `mapstructure:"rules"`
}

// StaticRule is one rule of flowspec.rules.
type StaticRule struct {
	Match  StaticMatch  `mapstructure:"match"`
	Action StaticAction `mapstructure:"action"`
}

// StaticMatch is a rule's match. Lists are ORed; in one element, terms
// joined by "&" are ANDed: destination_port: ["=53", ">=1024&<=2048"].
type StaticMatch struct {
	// Family is ipv4 or ipv6; needed only when neither prefix says.
	Family          string   `mapstructure:"family"`
	Destination     string   `mapstructure:"destination"`
	Source          string   `mapstructure:"source"`
	Protocol        []string `mapstructure:"protocol"`
	Port            []string `mapstructure:"port"`
	DestinationPort []string `mapstructure:"destination_port"`
	SourcePort      []string `mapstructure:"source_port"`
	ICMPType        []string `mapstructure:"icmp_type"`
	ICMPCode        []string `mapstructure:"icmp_code"`
	TCPFlags        []string `mapstructure:"tcp_flags"`
	PacketLength    []string `mapstructure:"packet_length"`
	DSCP            []string `mapstructure:"dscp"`
	Fragment        []string `mapstructure:"fragment"`
}

// StaticAction is a rule's action: rate in bytes per second (0: drop),
// and/or a DSCP to mark; neither: count only.
type StaticAction struct {
	Rate *float64 `mapstructure:"rate"`
	DSCP *int     `mapstructure:"dscp"`
}

var protocolNames = map[string]uint64{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
}

var tcpFlagNames = map[string]uint64{
	"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80,
}

var fragmentNames = map[string]uint64{
	"dont-fragment": 1, "is-fragment": 2, "first-fragment": 4, "last-fragment": 8,
}

// parseNum parses a numeric component: each element ORed, "&" ANDs, each
// term an optional operator (=, !=, <, <=, >, >=; none: =) and a number or,
// with names, a name.
func parseNum(list []string, names map[string]uint64) ([]NumOp, error) {
	var ops []NumOp
	for _, el := range list {
		for j, term := range strings.Split(el, "&") {
			term = strings.TrimSpace(term)
			op := NumOp{And: j > 0}
			rest := term
			switch {
			case strings.HasPrefix(rest, "!="):
				op.LT, op.GT, rest = true, true, rest[2:]
			case strings.HasPrefix(rest, "<="):
				op.LT, op.EQ, rest = true, true, rest[2:]
			case strings.HasPrefix(rest, ">="):
				op.GT, op.EQ, rest = true, true, rest[2:]
			case strings.HasPrefix(rest, "<"):
				op.LT, rest = true, rest[1:]
			case strings.HasPrefix(rest, ">"):
				op.GT, rest = true, rest[1:]
			case strings.HasPrefix(rest, "="):
				op.EQ, rest = true, rest[1:]
			default:
				op.EQ = true
			}
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				n, ok := names[strings.ToLower(strings.TrimSpace(rest))]
				if !ok {
					return nil, fmt.Errorf("%q: want [op]number (op one of = != < <= > >=), terms joined by &", term)
				}
				v = n
			}
			op.Value = v
			ops = append(ops, op)
		}
	}
	return ops, nil
}

// parseBits parses a bitmask component: each element ORed, "&" ANDs, each
// term "[!][=]flags" with flags names or a number joined by "|": "!"
// negates, "=" asks for all the bits (otherwise any of them).
func parseBits(list []string, names map[string]uint64) ([]BitOp, error) {
	var ops []BitOp
	for _, el := range list {
		for j, term := range strings.Split(el, "&") {
			term = strings.TrimSpace(term)
			op := BitOp{And: j > 0}
			rest := term
			if strings.HasPrefix(rest, "!") {
				op.Not, rest = true, rest[1:]
			}
			if strings.HasPrefix(rest, "=") {
				op.Match, rest = true, rest[1:]
			}
			for _, f := range strings.Split(rest, "|") {
				f = strings.ToLower(strings.TrimSpace(f))
				if v, ok := names[f]; ok {
					op.Value |= v
					continue
				}
				v, err := strconv.ParseUint(f, 0, 16)
				if err != nil {
					return nil, fmt.Errorf("%q: want [!][=]flag|flag..., terms joined by &", term)
				}
				op.Value |= v
			}
			ops = append(ops, op)
		}
	}
	return ops, nil
}

// Rule converts a static rule to the model; errors name the key below
// match or action ("match.destination_port: ...").
func (s StaticRule) Rule() (Rule, error) {
	var r Rule
	m := &r.Match
	r.Source = "config"
	for _, p := range []struct {
		key string
		in  string
		out *netip.Prefix
	}{{"destination", s.Match.Destination, &m.Dst}, {"source", s.Match.Source, &m.Src}} {
		if p.in == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(strings.TrimSpace(p.in))
		if err != nil {
			return r, fmt.Errorf("match.%s: %q is not a prefix", p.key, p.in)
		}
		if pfx != pfx.Masked() {
			return r, fmt.Errorf("match.%s: %s has host bits set (%s)", p.key, pfx, pfx.Masked())
		}
		*p.out = pfx
	}
	switch strings.ToLower(s.Match.Family) {
	case "ipv4":
		m.Family = IPv4
	case "ipv6":
		m.Family = IPv6
	case "":
	default:
		return r, fmt.Errorf("match.family: %q: want ipv4 or ipv6", s.Match.Family)
	}
	for _, p := range []netip.Prefix{m.Dst, m.Src} {
		if !p.IsValid() {
			continue
		}
		f := IPv6
		if p.Addr().Is4() {
			f = IPv4
		}
		if m.Family != 0 && m.Family != f {
			return r, fmt.Errorf("match: %s is not an IPv%d prefix", p, m.Family)
		}
		m.Family = f
	}
	if m.Family == 0 {
		return r, fmt.Errorf("match.family: required when neither destination nor source is given (ipv4 or ipv6)")
	}
	var err error
	for _, n := range []struct {
		key   string
		in    []string
		names map[string]uint64
		out   *[]NumOp
	}{
		{"protocol", s.Match.Protocol, protocolNames, &m.Proto},
		{"port", s.Match.Port, nil, &m.Port},
		{"destination_port", s.Match.DestinationPort, nil, &m.DstPort},
		{"source_port", s.Match.SourcePort, nil, &m.SrcPort},
		{"icmp_type", s.Match.ICMPType, nil, &m.ICMPType},
		{"icmp_code", s.Match.ICMPCode, nil, &m.ICMPCode},
		{"packet_length", s.Match.PacketLength, nil, &m.PktLen},
		{"dscp", s.Match.DSCP, nil, &m.DSCP},
	} {
		if *n.out, err = parseNum(n.in, n.names); err != nil {
			return r, fmt.Errorf("match.%s: %w", n.key, err)
		}
	}
	if m.TCPFlags, err = parseBits(s.Match.TCPFlags, tcpFlagNames); err != nil {
		return r, fmt.Errorf("match.tcp_flags: %w", err)
	}
	if m.Fragment, err = parseBits(s.Match.Fragment, fragmentNames); err != nil {
		return r, fmt.Errorf("match.fragment: %w", err)
	}
	if a := s.Action.Rate; a != nil {
		r.Action.RateLimited = true
		r.Action.Rate = float32(*a)
		if *a < 0 {
			return r, fmt.Errorf("action.rate: %v: want bytes per second >= 0 (0 drops)", *a)
		}
	}
	if d := s.Action.DSCP; d != nil {
		if *d < 0 || *d > 63 {
			return r, fmt.Errorf("action.dscp: %d: want 0-63", *d)
		}
		r.Action.MarkDSCP, r.Action.DSCP = true, uint8(*d)
	}
	if err := Validate(r); err != nil {
		return r, fmt.Errorf("match: %w", err)
	}
	return r, nil
}

// StaticRules converts every rule; the error names the first bad key
// ("flowspec.rules[2].match.protocol: ...").
func (s Settings) StaticRules() ([]Rule, error) {
	var out []Rule
	for i, sr := range s.Rules {
		r, err := sr.Rule()
		if err != nil {
			k, rest, _ := strings.Cut(err.Error(), ": ")
			return nil, fmt.Errorf("key \"flowspec.rules[%d].%s\": %s", i, k, rest)
		}
		out = append(out, r)
	}
	return out, nil
}

// Validate checks the section.
func (s Settings) Validate() error {
	_, err := s.StaticRules()
	return err
}
