package dataplane

// Outcome is what happened to one packet in the fast path. It mirrors enum
// xr_outcome in bpf/xrouter.h; TestOutcomesMirrorBPF keeps the two in step.
type Outcome uint32

// The outcomes, in the order of enum xr_outcome.
const (
	Forwarded Outcome = iota
	PassNotIP
	PassMalformed
	PassIPOptions
	PassFragment
	PassTTLExceeded
	PassL2NotForUs
	PassMartian
	PassICMPSpecial
	PassNotFwded
	PassFwdDisabled
	PassBlackhole
	PassUnreachable
	PassProhibit
	PassUnsuppLWT
	PassNoNeigh
	PassFragNeeded
	PassLookupOther
	PassNotInDevmap
	PassHairpin
	PassIngressUnknown
	PassNetfilter
	PassIPv6Disabled
	PassTCIngress
	PassTCEgress
	PassNoXDPXmit
	PassRouteMTU
	PassECMPHash
	// FlowspecDrop and FlowspecRate are drops (XDP_DROP), not passes: a
	// FlowSpec rule with traffic-rate 0, and packets over a rule's rate.
	FlowspecDrop
	FlowspecRate
	// NumOutcomes is the number of outcomes (the stats map's size).
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{
	Forwarded:          "forwarded",
	PassNotIP:          "not_ip",
	PassMalformed:      "malformed",
	PassIPOptions:      "ip_options",
	PassFragment:       "fragment",
	PassTTLExceeded:    "ttl_exceeded",
	PassL2NotForUs:     "l2_not_for_us",
	PassMartian:        "martian",
	PassICMPSpecial:    "icmp_special",
	PassNotFwded:       "not_fwded",
	PassFwdDisabled:    "fwd_disabled",
	PassBlackhole:      "blackhole",
	PassUnreachable:    "unreachable",
	PassProhibit:       "prohibit",
	PassUnsuppLWT:      "unsupp_lwt",
	PassNoNeigh:        "no_neigh",
	PassFragNeeded:     "frag_needed",
	PassLookupOther:    "lookup_other",
	PassNotInDevmap:    "not_in_devmap",
	PassHairpin:        "hairpin",
	PassIngressUnknown: "ingress_unknown",
	PassNetfilter:      "netfilter",
	PassIPv6Disabled:   "ipv6_disabled",
	PassTCIngress:      "tc_ingress",
	PassTCEgress:       "tc_egress",
	PassNoXDPXmit:      "no_xdp_xmit",
	PassRouteMTU:       "route_mtu",
	PassECMPHash:       "ecmp_hash",
	FlowspecDrop:       "flowspec_drop",
	FlowspecRate:       "flowspec_rate",
}

var outcomeHelp = [NumOutcomes]string{
	Forwarded:          "forwarded by XDP (fast path)",
	PassNotIP:          "ethertype is neither IPv4 nor IPv6 (ARP, VLAN, ...)",
	PassMalformed:      "truncated or invalid header, or bad IPv4 header checksum",
	PassIPOptions:      "IPv4 options or IPv6 extension headers",
	PassFragment:       "IP fragment",
	PassTTLExceeded:    "TTL or hop limit <= 1; the kernel sends ICMP Time Exceeded",
	PassL2NotForUs:     "destination MAC is multicast, broadcast or another host's",
	PassMartian:        "source or destination the kernel never forwards (loopback, multicast, link-local, 0/8, v4-mapped)",
	PassICMPSpecial:    "ICMP error or IPv6 neighbour discovery",
	PassNotFwded:       "FIB: local delivery, broadcast or no route",
	PassFwdDisabled:    "FIB: forwarding disabled on the ingress interface",
	PassBlackhole:      "FIB: blackhole route",
	PassUnreachable:    "FIB: unreachable route",
	PassProhibit:       "FIB: prohibit route",
	PassUnsuppLWT:      "FIB: route needs lightweight-tunnel encapsulation",
	PassNoNeigh:        "FIB: next hop has no valid neighbour entry; the kernel resolves it",
	PassFragNeeded:     "FIB: larger than the egress MTU; the kernel fragments or sends ICMP",
	PassLookupOther:    "FIB: any other lookup result",
	PassNotInDevmap:    "egress interface is not managed by xrouter",
	PassHairpin:        "egress is the ingress interface; the kernel also sends an ICMP redirect",
	PassIngressUnknown: "ingress interface not registered yet",
	PassNetfilter:      "netfilter rules on a hook the fast path would skip (dataplane.netfilter: respect)",
	PassIPv6Disabled:   "IPv6 with disable_ipv6 on the ingress or egress interface; the kernel drops it",
	PassTCIngress:      "ingress interface has tc filters or tcx programs on ingress; the kernel runs them",
	PassTCEgress:       "egress interface has a qdisc the operator set, or tc egress filters; the kernel sends it through them",
	PassNoXDPXmit:      "egress interface cannot transmit XDP frames (no ndo_xdp_xmit); the kernel sends it",
	PassRouteMTU:       "longer than a route's mtu metric (which bpf_fib_lookup ignores); the kernel fragments or sends ICMP",
	PassECMPHash:       "multipath destination under a hash policy (2, 3) the fast path does not reproduce",
	FlowspecDrop:       "dropped (XDP_DROP) by a FlowSpec rule with traffic-rate 0",
	FlowspecRate:       "dropped (XDP_DROP): over the traffic-rate of the FlowSpec rule it matched",
}

// String returns the outcome's short name as used in stats and metrics.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Help describes the outcome for people.
func (o Outcome) Help() string {
	if o < NumOutcomes {
		return outcomeHelp[o]
	}
	return ""
}

// Outcomes lists every outcome in order.
func Outcomes() []Outcome {
	out := make([]Outcome, NumOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}
