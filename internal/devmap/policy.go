package devmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/sysctl"
)

// srcPolicy is what makes the kernel validate IPv4 sources with a full
// reverse lookup although rp_filter is off (fib_validate_source in
// net/ipv4/fib_frontend.c): custom local routes
// (net->ipv4.fib_has_custom_local_routes, set when a route of type local is
// added through netlink) or custom rules (fib_has_custom_rules, set when any
// IPv4 rule is added), both unless accept_local; and route realms
// (fib_num_tclassid_users), even with accept_local. The kernel never clears
// the first two, so neither does xrouter; realms are kept as well (the
// kernel counts their users, which cannot be read back), which only makes
// the fast path check more than the kernel would: always safe.
type srcPolicy struct {
	customLocal bool
	customRules bool
	realms      bool
}

// full reports whether the kernel does the full check for a device with
// rp_filter off and the given accept_local.
func (s srcPolicy) full(acceptLocal bool) bool {
	return s.realms || (!acceptLocal && (s.customLocal || s.customRules))
}

func (s srcPolicy) or(o srcPolicy) srcPolicy {
	return srcPolicy{s.customLocal || o.customLocal, s.customRules || o.customRules, s.realms || o.realms}
}

// policyGroups are the rtnetlink groups whose events change the port flags
// besides links and addresses: rp_filter (netconf; accept_local and
// disable_ipv6 send none, hence the sysctl poll), IPv4 routes and rules.
var policyGroups = []uint{unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE}

// rtmsg's type byte, and the protocol of the kernel's own routes and rules.
const (
	rtmTypeOff   = 7
	rtmProtoOff  = 5
	rtnLocal     = unix.RTN_LOCAL
	rtprotKernel = unix.RTPROT_KERNEL
	rtaFlow      = unix.RTA_FLOW
)

// routePolicy says what an IPv4 route (rtmsg and attributes) adds to the
// source policy: a local route not made by the kernel for an address, or a
// realm on the route or one of its paths.
func routePolicy(b []byte) srcPolicy {
	var s srcPolicy
	if len(b) < unix.SizeofRtMsg || b[0] != unix.AF_INET {
		return s
	}
	s.customLocal = b[rtmTypeOff] == rtnLocal && b[rtmProtoOff] != rtprotKernel
	attrs, err := nl.ParseRouteAttr(b[unix.SizeofRtMsg:])
	if err != nil {
		return s
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case rtaFlow:
			s.realms = s.realms || (len(a.Value) >= 4 && binary.NativeEndian.Uint32(a.Value) != 0)
		case unix.RTA_MULTIPATH:
			s.realms = s.realms || multipathRealm(a.Value)
		}
	}
	return s
}

// multipathRealm reports whether any rtnexthop of RTA_MULTIPATH carries a
// realm.
func multipathRealm(b []byte) bool {
	for len(b) >= unix.SizeofRtNexthop {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtNexthop || l > len(b) {
			return false
		}
		if attrs, err := nl.ParseRouteAttr(b[unix.SizeofRtNexthop:l]); err == nil {
			for _, a := range attrs {
				if a.Attr.Type == rtaFlow && len(a.Value) >= 4 && binary.NativeEndian.Uint32(a.Value) != 0 {
					return true
				}
			}
		}
		al := (l + unix.RTNH_ALIGNTO - 1) &^ (unix.RTNH_ALIGNTO - 1)
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	return false
}

// rulePolicy says what an IPv4 rule (fib_rule_hdr and attributes) adds.
// seen: the rule was announced as added (the kernel marks its rules custom
// on any add, even of a rule equal to a default one); otherwise it was
// listed, and only rules not made by the kernel count.
func rulePolicy(b []byte, added bool) srcPolicy {
	var s srcPolicy
	if len(b) < 12 || b[0] != unix.AF_INET {
		return s
	}
	s.customRules = added
	proto := uint8(0)
	attrs, err := nl.ParseRouteAttr(b[12:])
	if err != nil {
		return srcPolicy{customRules: true}
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case nl.FRA_PROTOCOL:
			if len(a.Value) >= 1 {
				proto = a.Value[0]
			}
		case nl.FRA_FLOW:
			s.realms = s.realms || (len(a.Value) >= 4 && binary.NativeEndian.Uint32(a.Value) != 0)
		}
	}
	if proto != rtprotKernel {
		s.customRules = true
	}
	return s
}

// scanSourcePolicy lists the IPv4 rules and routes of every table.
func scanSourcePolicy() (srcPolicy, error) {
	var s srcPolicy
	for _, q := range []struct {
		typ, reply uint16
		hdr        nl.NetlinkRequestData
		f          func([]byte) srcPolicy
	}{
		{unix.RTM_GETRULE, unix.RTM_NEWRULE, &nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET}}, func(b []byte) srcPolicy { return rulePolicy(b, false) }},
		{unix.RTM_GETROUTE, unix.RTM_NEWROUTE, &nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET}}, routePolicy},
	} {
		var msgs [][]byte
		var err error
		for range 10 {
			req := nl.NewNetlinkRequest(int(q.typ), unix.NLM_F_DUMP)
			req.AddData(q.hdr)
			msgs, err = req.Execute(unix.NETLINK_ROUTE, q.reply)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return s, fmt.Errorf("listing IPv4 %s: %w", map[uint16]string{unix.RTM_GETRULE: "rules", unix.RTM_GETROUTE: "routes"}[q.typ], err)
		}
		for _, m := range msgs {
			s = s.or(q.f(m))
		}
	}
	return s, nil
}

// policyEvent says what one message adds to the policy, and whether it
// asks for the port flags to be read again.
func policyEvent(m syscall.NetlinkMessage) (srcPolicy, bool) {
	switch m.Header.Type {
	case unix.RTM_NEWNETCONF, unix.RTM_DELNETCONF:
		return srcPolicy{}, true
	case unix.RTM_NEWROUTE:
		return routePolicy(m.Data), false
	case unix.RTM_NEWRULE:
		return rulePolicy(m.Data, true), false
	}
	return srcPolicy{}, false
}

// followPolicy reads policy events until ctx ends or the socket fails,
// recording them and sending on kick when the flags need a refresh.
// A lost event (overrun) re-lists everything.
func (m *Manager) followPolicy(ctx context.Context, s *nl.NetlinkSocket, kick chan<- struct{}) error {
	for ctx.Err() == nil {
		msgs, _, err := s.Receive()
		refresh := false
		switch {
		case errors.Is(err, unix.ENOBUFS):
			p, serr := scanSourcePolicy()
			if serr != nil {
				m.log.Warn("re-listing rules and routes after lost events", "err", serr)
			}
			m.addSrcPolicy(p)
			refresh = true
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading policy events: %w", err)
		}
		var add srcPolicy
		for _, msg := range msgs {
			p, r := policyEvent(msg)
			add = add.or(p)
			refresh = refresh || r
		}
		if m.addSrcPolicy(add) || refresh {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// addSrcPolicy records p (sticky) and reports whether anything changed.
func (m *Manager) addSrcPolicy(p srcPolicy) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.src.or(p)
	if n == m.src {
		return false
	}
	m.log.Info("IPv4 source validation: the kernel checks more with rp_filter off", "custom_local_routes", n.customLocal, "custom_rules", n.customRules, "route_realms", n.realms)
	m.src = n
	return true
}

// portFlags tells the fast path what kernel forwarding obeys on the port
// and bpf_fib_lookup does not: the interface's sysctls and state, its tc,
// and why it is no redirect target. Called with m.mu held; CheckEgress6 is
// filled in by the caller, which knows every port.
func (m *Manager) portFlags(p *Port) dataplane.PortFlags {
	pol := sysctl.ReadPolicy(p.Name)
	return dataplane.PortFlags{
		RPFilter:        pol.RPFilter,
		AcceptLocal:     pol.AcceptLocal,
		NoForward6:      !pol.ForwardIPv6,
		FullSourceCheck: pol.RPFilter == 0 && m.src.full(pol.AcceptLocal),
		NoAddr4:         !m.addr4[p.Index],
		NoIPv6:          pol.DisableIPv6,
		TCIngress:       len(p.TC.Ingress) > 0,
		TCEgress:        len(p.TC.Egress) > 0,
		NoXDPXmit:       p.NoXDPXmit,
	}
}

// sysctlFlags is the part of the flags that logFlags reports.
func sysctlFlags(f dataplane.PortFlags) dataplane.PortFlags {
	return dataplane.PortFlags{RPFilter: f.RPFilter, AcceptLocal: f.AcceptLocal, NoForward6: f.NoForward6,
		FullSourceCheck: f.FullSourceCheck, NoAddr4: f.NoAddr4, NoIPv6: f.NoIPv6}
}

// refreshFlags re-reads every port's flags and writes those that changed.
// Called with m.mu held.
func (m *Manager) refreshFlags() {
	want := map[int]dataplane.PortFlags{}
	any6 := false
	for idx, p := range m.ports {
		f := m.portFlags(p)
		any6 = any6 || f.NoIPv6
		want[idx] = f
	}
	for idx, f := range want {
		f.CheckEgress6 = any6
		p := m.ports[idx]
		if f == p.flags {
			continue
		}
		mac, err := net.ParseMAC(p.MAC)
		if err == nil {
			err = m.dp.SetPort(idx, mac, f)
		}
		if err != nil {
			m.log.Error("updating interface flags", "interface", p.Name, "err", err)
			continue
		}
		if sysctlFlags(f) != sysctlFlags(p.flags) {
			logFlags(m, p, f)
		}
		p.flags = f
	}
}

// anyNoIPv6 reports whether a port other than except, or self, has
// disable_ipv6. Called with m.mu held.
func (m *Manager) anyNoIPv6(except int, self bool) bool {
	if self {
		return true
	}
	for idx, p := range m.ports {
		if idx != except && p.flags.NoIPv6 {
			return true
		}
	}
	return false
}

func logFlags(m *Manager, p *Port, f dataplane.PortFlags) {
	m.log.Info("interface sysctls changed", "interface", p.Name, "rp_filter", f.RPFilter, "accept_local", f.AcceptLocal,
		"ipv6_forwarding_off", f.NoForward6, "full_source_check", f.FullSourceCheck, "no_ipv4_address", f.NoAddr4,
		"ipv6_disabled", f.NoIPv6)
}
