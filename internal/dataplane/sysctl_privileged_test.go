package dataplane

// Source validation and per-interface sysctls the program learns through
// the port flags (issue 9): the full source check with rp_filter off, loose
// rp_filter on an interface without IPv4 address, the reverse lookup's
// input interface under ip rules, and disable_ipv6. The flags are set
// directly here, as internal/devmap would compute them; the netns tests
// check that the daemon computes them and that the kernel agrees.

import (
	"net/netip"
	"testing"
)

// setPort registers one port with its own flags.
func (e *fwdEnv) setPort(t testing.TB, dev string, flags PortFlags) {
	t.Helper()
	if err := e.dp.SetPort(e.ifindex[dev], routerMAC[dev], flags); err != nil {
		t.Fatal(err)
	}
}

func spoofed4(src netip.Addr) []byte {
	return frame4(ip4(func(h *ipv4Hdr) { h.Src = src }), udp(1, 2, payload(18)))
}

// TestFwdFullSourceCheckPrivileged: with rp_filter off the kernel only asks
// whether the source is one of its addresses, unless custom local routes or
// rules exist (or realms): then fib_validate_source does the full check, a
// reverse lookup in which a source resolving to a local or broadcast route
// is a martian (net/ipv4/fib_frontend.c, Linux 6.18). Before the
// FullSourceCheck flag the program forwarded such packets.
func TestFwdFullSourceCheckPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.router.IP(t, "route", "add", "local", "10.55.0.0/16", "dev", "lo")
	cases := []fwdCase{
		{name: "source in a custom local route", frame: spoofed4(mustAddr("10.55.1.1")), outcome: PassMartian},
		{name: "source is a subnet broadcast", frame: spoofed4(mustAddr("10.201.2.255")), outcome: PassMartian},
		{name: "source is the router's own address", frame: spoofed4(routerOwn4), outcome: PassMartian},
		{name: "source on the ingress subnet", frame: spoofed4(srcHost4), outcome: Forwarded, egress: devDst},
		{name: "source routed via another port", frame: spoofed4(mustAddr("10.98.7.7")), outcome: Forwarded, egress: devDst},
		{name: "source in a blackhole route", frame: spoofed4(mustAddr("10.66.1.7")), outcome: Forwarded, egress: devDst},
		// No route: the kernel accepts it, but bpf_fib_lookup's
		// NOT_FWDED does not tell no route from a local one.
		{name: "source with no route", frame: spoofed4(mustAddr("10.200.7.7")), outcome: PassMartian},
	}
	e.setFlags(t, PortFlags{FullSourceCheck: true})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { e.check(t, c) })
	}
	// Without the flag only own addresses are martians, as the kernel
	// does without custom local routes and rules.
	e.setFlags(t, PortFlags{})
	c := cases[0]
	c.outcome, c.egress = Forwarded, devDst
	t.Run("flag off", func(t *testing.T) { e.check(t, c) })
}

// TestFwdLooseRPFNoAddressPrivileged: loose rp_filter on an interface with
// no IPv4 address rejects a source that does not route back out of it
// (__fib_validate_source: no_addr leads to last_resort, which rejects
// under any rp_filter), as strict mode would.
func TestFwdLooseRPFNoAddressPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.router.Sysctl(t, "net.ipv4.conf.all.rp_filter", "2")
	viaOther := fwdCase{name: "source routed via another port", frame: spoofed4(mustAddr("10.98.7.7")), outcome: PassMartian}
	viaIngress := fwdCase{name: "source routed via the ingress", frame: spoofed4(mustAddr("10.96.7.7")), outcome: Forwarded, egress: devDst}
	e.setFlags(t, PortFlags{RPFilter: 2, NoAddr4: true})
	t.Run("no address/"+viaOther.name, func(t *testing.T) { e.check(t, viaOther) })
	t.Run("no address/"+viaIngress.name, func(t *testing.T) { e.check(t, viaIngress) })
	e.setFlags(t, PortFlags{RPFilter: 2})
	viaOther.outcome, viaOther.egress = Forwarded, devDst
	t.Run("with address/"+viaOther.name, func(t *testing.T) { e.check(t, viaOther) })
}

// TestFwdRPFReverseLookupIifPrivileged: the kernel's reverse lookup has the
// forward route's device as input interface (flowi4_iif = oif), so a rule
// on iif can send it to another table than a lookup from the ingress.
// Here a rule for iif r-dst routes 10.78/16 back out of r-dst, while the
// main table has it behind r-src: strict rp_filter rejects a packet from
// 10.78.1.1 arriving on r-src and leaving by r-dst. The program's reverse
// lookup from the ingress accepted it.
func TestFwdRPFReverseLookupIifPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.router.Sysctl(t, "net.ipv4.conf.all.rp_filter", "1")
	e.router.IP(t, "route", "add", "10.78.0.0/16", "via", srcHost4.String())
	e.router.IP(t, "route", "add", "10.78.0.0/16", "via", dstHost4.String(), "table", "100")
	e.router.IP(t, "route", "add", "10.77.0.0/16", "via", dstHost4.String())
	e.router.IP(t, "route", "add", "10.77.0.0/16", "via", srcHost4.String(), "table", "100")
	e.router.IP(t, "rule", "add", "iif", devDst, "lookup", "100", "pref", "100")
	e.setFlags(t, PortFlags{RPFilter: 1, FullSourceCheck: true})
	for _, c := range []fwdCase{
		{name: "main says ingress, rule for the egress says otherwise", frame: spoofed4(mustAddr("10.78.1.1")), outcome: PassMartian},
		{name: "main says elsewhere, rule for the egress says ingress", frame: spoofed4(mustAddr("10.77.1.1")), outcome: Forwarded, egress: devDst},
		{name: "source on the ingress subnet", frame: spoofed4(srcHost4), outcome: Forwarded, egress: devDst},
	} {
		t.Run(c.name, func(t *testing.T) { e.check(t, c) })
	}
}

// TestFwdIPv6DisabledPrivileged: the kernel drops IPv6 arriving on a device
// with disable_ipv6 (ip6_rcv_core) and IPv6 routed out of one (ip6_output);
// bpf_fib_lookup looks at neither, so the program passes such packets
// (ipv6_disabled) and the kernel drops them. The egress check runs only
// when some port has the flag (CheckEgress6 on every port).
func TestFwdIPv6DisabledPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	udp6 := fwdCase{frame: udp6To(remote6), outcome: PassIPv6Disabled}
	udp4 := fwdCase{frame: udp4To(remote4), outcome: Forwarded, egress: devDst}

	e.setFlags(t, PortFlags{CheckEgress6: true})
	e.setPort(t, devSrc, PortFlags{NoIPv6: true, CheckEgress6: true})
	t.Run("ingress disabled", func(t *testing.T) { e.check(t, udp6) })
	t.Run("ingress disabled, ipv4", func(t *testing.T) { e.check(t, udp4) })
	bad := udp6
	bad.frame = mutate(udp6.frame, func(b []byte) { b[14] = 0x40 }) // version 4 in an IPv6 frame
	t.Run("ingress disabled, malformed", func(t *testing.T) { e.check(t, bad) })

	e.setFlags(t, PortFlags{CheckEgress6: true})
	e.setPort(t, devDst, PortFlags{NoIPv6: true, CheckEgress6: true})
	t.Run("egress disabled", func(t *testing.T) { e.check(t, udp6) })
	t.Run("egress disabled, ipv4", func(t *testing.T) { e.check(t, udp4) })
	other := fwdCase{frame: udp6To(small6), outcome: Forwarded, egress: devMTU}
	t.Run("other egress", func(t *testing.T) { e.check(t, other) })
	hop1 := fwdCase{frame: frame6(ip6(func(h *ipv6Hdr) { h.Hop = 1 }), udp(1, 2, payload(18))), outcome: PassTTLExceeded}
	t.Run("egress disabled, hop limit 1", func(t *testing.T) { e.check(t, hop1) })

	e.setFlags(t, PortFlags{})
	t.Run("no flags", func(t *testing.T) { e.check(t, fwdCase{frame: udp6To(remote6), outcome: Forwarded, egress: devDst}) })
}
