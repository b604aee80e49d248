// Package netfilter finds the netfilter rules that the XDP fast path would
// skip and follows their changes. A forwarded packet that XDP redirects
// never reaches the kernel's prerouting, forward or postrouting hooks (nor
// conntrack, NAT, or the netdev ingress and egress hooks of the ports), so
// while such rules exist the data plane must hand the affected family to
// the kernel (dataplane.netfilter: respect). The nftables ruleset (which
// includes iptables-nft) is read over netlink and followed through its
// notifications; iptables-legacy tables are read through their
// getsockopt interface and re-checked periodically. It is the only package
// that imports google/nftables.
package netfilter

import (
	"fmt"
	"strings"
)

// Chain is a base chain (one attached to a hook) as the scan found it.
type Chain struct {
	// Source is "nftables" (nft and iptables-nft) or "iptables-legacy".
	Source string `json:"source"`
	// Family is the table's family: ip, ip6, inet, netdev, bridge or arp.
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"chain"`
	// Hook is prerouting, input, forward, output, postrouting, ingress or
	// egress.
	Hook string `json:"hook"`
	// Devices are the interfaces of a netdev (or inet ingress) chain.
	Devices []string `json:"devices,omitempty"`
	// Rules is the number of rules; -1 when they could not be read.
	Rules int `json:"rules"`
	// Policy is accept or drop.
	Policy string `json:"policy"`
	// Dormant: the table is switched off (nft add table ... { flags dormant; }).
	Dormant bool `json:"dormant,omitempty"`
}

// String names the chain the way an operator looks it up:
// "table inet filter chain forward (hook forward, 2 rules, policy accept)".
func (c Chain) String() string {
	var b strings.Builder
	if c.Source == "iptables-legacy" {
		fmt.Fprintf(&b, "iptables-legacy %s table %s chain %s", c.Family, c.Table, c.Name)
	} else {
		fmt.Fprintf(&b, "table %s %s chain %s", c.Family, c.Table, c.Name)
	}
	fmt.Fprintf(&b, " (hook %s", c.Hook)
	if len(c.Devices) > 0 {
		fmt.Fprintf(&b, " on %s", strings.Join(c.Devices, ","))
	}
	switch {
	case c.Rules < 0:
		b.WriteString(", rules unreadable")
	case c.Rules == 1:
		b.WriteString(", 1 rule")
	default:
		fmt.Fprintf(&b, ", %d rules", c.Rules)
	}
	if c.Policy != "" {
		fmt.Fprintf(&b, ", policy %s", c.Policy)
	}
	b.WriteString(")")
	return b.String()
}

// Report is what the fast path would skip, per family.
type Report struct {
	// IPv4 and IPv6 list the chains that forwarded packets of the family
	// would skip.
	IPv4 []Chain `json:"ipv4"`
	IPv6 []Chain `json:"ipv6"`
	// Err is set when the ruleset could not be read; both families then
	// count as affected (the kernel is the safe side).
	Err string `json:"error,omitempty"`
}

// Pass says which families must go to the kernel.
func (r Report) Pass() (ipv4, ipv6 bool) {
	if r.Err != "" {
		return true, true
	}
	return len(r.IPv4) > 0, len(r.IPv6) > 0
}

// Reason is one line on why a family goes to the kernel ("" when it does
// not): the first chain found, and how many more.
func (r Report) Reason(ipv6 bool) string {
	cs := r.IPv4
	if ipv6 {
		cs = r.IPv6
	}
	if r.Err != "" {
		return "netfilter ruleset unreadable: " + r.Err
	}
	if len(cs) == 0 {
		return ""
	}
	s := cs[0].String()
	if len(cs) > 1 {
		s += fmt.Sprintf(" and %d more", len(cs)-1)
	}
	return s
}

// skipped are the hooks XDP forwarding never reaches, per table family.
// ip, ip6 and inet: the forwarding path's hooks (input and output see only
// local traffic, which the fast path passes anyway); inet ingress runs on
// the device like netdev ingress. netdev: ingress (XDP runs before it) and
// egress (a redirected frame goes to the driver directly). bridge and arp
// tables do not see routed IP packets.
var skipped = map[string]map[string]bool{
	"ip":     {"prerouting": true, "forward": true, "postrouting": true},
	"ip6":    {"prerouting": true, "forward": true, "postrouting": true},
	"inet":   {"prerouting": true, "forward": true, "postrouting": true, "ingress": true},
	"netdev": {"ingress": true, "egress": true},
}

// Classify picks the chains that matter. A base chain on a skipped hook
// matters when it has a rule (or its rules are unreadable) or its policy is
// not accept, and its table is not dormant. A device-bound chain (netdev,
// inet ingress) matters only when one of its devices is managed (managed
// nil: all are), or when its devices are unknown. netdev chains see every
// protocol, so they affect both families; inet both; ip IPv4; ip6 IPv6.
func Classify(chains []Chain, managed func(dev string) bool) Report {
	r := Report{IPv4: []Chain{}, IPv6: []Chain{}}
	for _, c := range chains {
		if c.Dormant || !skipped[c.Family][c.Hook] {
			continue
		}
		if c.Rules == 0 && c.Policy != "drop" {
			continue
		}
		if (c.Family == "netdev" || c.Hook == "ingress") && len(c.Devices) > 0 && managed != nil {
			on := false
			for _, d := range c.Devices {
				on = on || managed(d)
			}
			if !on {
				continue
			}
		}
		if c.Family != "ip6" {
			r.IPv4 = append(r.IPv4, c)
		}
		if c.Family != "ip" {
			r.IPv6 = append(r.IPv6, c)
		}
	}
	return r
}
