package dataplane

import "testing"

// flagCase is a fwdCase run with one port's flags set (and every other
// port's cleared): what user space (internal/devmap) sets for tc and for
// egress ports that cannot transmit XDP frames.
type flagCase struct {
	fwdCase
	port  string
	flags PortFlags
}

func portFlagCases() []flagCase {
	udp4 := frame4(ip4(), udp(40000, 53, payload(18)))
	udp6 := frame6(ip6(), udp(40000, 53, payload(18)))
	tcIn := PortFlags{TCIngress: true}
	return []flagCase{
		// tc filters on the ingress port: every IP packet arriving there
		// goes to the kernel, which runs them.
		{fwdCase{name: "ipv4 ingress with tc", frame: udp4, outcome: PassTCIngress}, devSrc, tcIn},
		{fwdCase{name: "ipv6 ingress with tc", frame: udp6, outcome: PassTCIngress}, devSrc, tcIn},
		{fwdCase{name: "ipv4 to a router address, ingress with tc", frame: udp4To(routerOwn4), outcome: PassTCIngress}, devSrc, tcIn},
		// Not IP: the kernel gets it anyway, under its own reason.
		{fwdCase{name: "arp, ingress with tc", frame: arpRequest(), outcome: PassNotIP}, devSrc, tcIn},
		// tc on another port's ingress changes nothing here.
		{fwdCase{name: "ipv4 egress has tc ingress", frame: udp4, outcome: Forwarded, egress: devDst}, devDst, tcIn},
		// An egress port user space keeps out of the devmap: the flag
		// names the reason.
		{fwdCase{name: "ipv4 egress with tc egress", frame: udp4To(noDevmap4), outcome: PassTCEgress}, devNoDM, PortFlags{TCEgress: true}},
		{fwdCase{name: "ipv6 egress with tc egress", frame: udp6To(noDevmap6), outcome: PassTCEgress}, devNoDM, PortFlags{TCEgress: true}},
		{fwdCase{name: "ipv4 egress without xdp xmit", frame: udp4To(noDevmap4), outcome: PassNoXDPXmit}, devNoDM, PortFlags{NoXDPXmit: true}},
		{fwdCase{name: "ipv6 egress without xdp xmit", frame: udp6To(noDevmap6), outcome: PassNoXDPXmit}, devNoDM, PortFlags{NoXDPXmit: true}},
		{fwdCase{name: "ipv4 egress with both", frame: udp4To(noDevmap4), outcome: PassTCEgress}, devNoDM, PortFlags{TCEgress: true, NoXDPXmit: true}},
		// The devmap decides: the egress flags are read only after a
		// failed redirect, never by a packet that is forwarded.
		{fwdCase{name: "ipv4 egress flag but in the devmap", frame: udp4, outcome: Forwarded, egress: devDst}, devDst, PortFlags{TCEgress: true}},
	}
}

// TestFwdPortFlagsPrivileged fails against bpf/fwd.c before tc and XDP
// transmit support: packets arriving on a port with tc ingress filters were
// forwarded past them, and egress ports kept out of the devmap were all
// counted as not_in_devmap.
func TestFwdPortFlagsPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	for _, c := range portFlagCases() {
		t.Run(c.name, func(t *testing.T) {
			e.setFlags(t, PortFlags{})
			if err := e.dp.SetPort(e.ifindex[c.port], routerMAC[c.port], c.flags); err != nil {
				t.Fatal(err)
			}
			e.check(t, c.fwdCase)
		})
	}
}
