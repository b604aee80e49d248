package dataplane

// Outcome is what happened to one packet in the fast path: enum
// xr_outcome of bpf/xrouter.h, whose values bpf2go generates
// (fwdXrOutcome*); the Go names below are those values, so the two cannot
// drift apart.
type Outcome uint32

// The outcomes. FlowspecDrop and FlowspecRate are drops (XDP_DROP), not
// passes: a FlowSpec rule with traffic-rate 0, and packets over a rule's
// rate.
const (
	Forwarded          = Outcome(fwdXrOutcomeXR_FORWARDED)
	PassNotIP          = Outcome(fwdXrOutcomeXR_PASS_NOT_IP)
	PassMalformed      = Outcome(fwdXrOutcomeXR_PASS_MALFORMED)
	PassIPOptions      = Outcome(fwdXrOutcomeXR_PASS_IP_OPTIONS)
	PassFragment       = Outcome(fwdXrOutcomeXR_PASS_FRAGMENT)
	PassTTLExceeded    = Outcome(fwdXrOutcomeXR_PASS_TTL_EXCEEDED)
	PassL2NotForUs     = Outcome(fwdXrOutcomeXR_PASS_L2NOT_FOR_US)
	PassMartian        = Outcome(fwdXrOutcomeXR_PASS_MARTIAN)
	PassICMPSpecial    = Outcome(fwdXrOutcomeXR_PASS_ICMP_SPECIAL)
	PassNotFwded       = Outcome(fwdXrOutcomeXR_PASS_NOT_FWDED)
	PassFwdDisabled    = Outcome(fwdXrOutcomeXR_PASS_FWD_DISABLED)
	PassBlackhole      = Outcome(fwdXrOutcomeXR_PASS_BLACKHOLE)
	PassUnreachable    = Outcome(fwdXrOutcomeXR_PASS_UNREACHABLE)
	PassProhibit       = Outcome(fwdXrOutcomeXR_PASS_PROHIBIT)
	PassUnsuppLWT      = Outcome(fwdXrOutcomeXR_PASS_UNSUPP_LWT)
	PassNoNeigh        = Outcome(fwdXrOutcomeXR_PASS_NO_NEIGH)
	PassFragNeeded     = Outcome(fwdXrOutcomeXR_PASS_FRAG_NEEDED)
	PassLookupOther    = Outcome(fwdXrOutcomeXR_PASS_LOOKUP_OTHER)
	PassNotInDevmap    = Outcome(fwdXrOutcomeXR_PASS_NOT_IN_DEVMAP)
	PassHairpin        = Outcome(fwdXrOutcomeXR_PASS_HAIRPIN)
	PassIngressUnknown = Outcome(fwdXrOutcomeXR_PASS_INGRESS_UNKNOWN)
	PassNetfilter      = Outcome(fwdXrOutcomeXR_PASS_NETFILTER)
	PassIPv6Disabled   = Outcome(fwdXrOutcomeXR_PASS_IPV6DISABLED)
	PassTCIngress      = Outcome(fwdXrOutcomeXR_PASS_TC_INGRESS)
	PassTCEgress       = Outcome(fwdXrOutcomeXR_PASS_TC_EGRESS)
	PassNoXDPXmit      = Outcome(fwdXrOutcomeXR_PASS_NO_XDP_XMIT)
	PassRouteMTU       = Outcome(fwdXrOutcomeXR_PASS_ROUTE_MTU)
	PassECMPHash       = Outcome(fwdXrOutcomeXR_PASS_ECMP_HASH)
	FlowspecDrop       = Outcome(fwdXrOutcomeXR_FLOWSPEC_DROP)
	FlowspecRate       = Outcome(fwdXrOutcomeXR_FLOWSPEC_RATE)
	// NumOutcomes is the number of outcomes (the stats map's size).
	NumOutcomes = Outcome(fwdXrOutcomeXR_OUTCOME_MAX)
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
