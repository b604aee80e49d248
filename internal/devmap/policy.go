package devmap

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/kernel"
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

// policyQueue is how many route, rule and netconf events may wait for the
// policy follower: it sees every route written (a BGP table too) but
// handles each without a system call, so it only falls behind when the
// machine does.
const policyQueue = 4096

// routePolicy says what an IPv4 route adds to the source policy: a local
// route not made by the kernel for an address, or a realm on the route or
// one of its paths.
func routePolicy(r kernel.RouteInfo) srcPolicy {
	if r.Family != unix.AF_INET {
		return srcPolicy{}
	}
	return srcPolicy{customLocal: r.Type == unix.RTN_LOCAL && r.Protocol != unix.RTPROT_KERNEL, realms: r.Realms}
}

// rulePolicy says what an IPv4 rule adds. added: the rule was announced as
// added (the kernel marks its rules custom on any add, even of a rule equal
// to a default one); otherwise it was listed, and only rules not made by
// the kernel count.
func rulePolicy(r kernel.RuleInfo, added bool) srcPolicy {
	if r.Family != unix.AF_INET {
		return srcPolicy{}
	}
	return srcPolicy{customRules: added || r.Protocol != unix.RTPROT_KERNEL, realms: r.Realms}
}

// scanSourcePolicy lists the IPv4 rules and routes of every table.
func scanSourcePolicy() (srcPolicy, error) {
	var s srcPolicy
	for _, q := range []struct {
		typ, reply uint16
		what       string
		f          func([]byte) srcPolicy
	}{
		{unix.RTM_GETRULE, unix.RTM_NEWRULE, "rules", func(b []byte) srcPolicy {
			r, ok := kernel.DecodeRule(b)
			if !ok {
				// Unreadable: count it as custom.
				return srcPolicy{customRules: len(b) > 0 && b[0] == unix.AF_INET}
			}
			return rulePolicy(r, false)
		}},
		{unix.RTM_GETROUTE, unix.RTM_NEWROUTE, "routes", func(b []byte) srcPolicy {
			r, _ := kernel.DecodeRoute(b)
			return routePolicy(r)
		}},
	} {
		var acc srcPolicy
		var err error
		for range 10 {
			acc = srcPolicy{}
			req := nl.NewNetlinkRequest(int(q.typ), unix.NLM_F_DUMP)
			req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET}})
			err = req.ExecuteIter(unix.NETLINK_ROUTE, q.reply, func(b []byte) bool {
				acc = acc.or(q.f(b))
				return true
			})
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return s, fmt.Errorf("listing IPv4 %s: %w", q.what, err)
		}
		s = s.or(acc)
	}
	return s, nil
}

// policyEvent says what one event adds to the policy, and whether it asks
// for the port flags to be read again.
func policyEvent(ev kernel.Event) (srcPolicy, bool) {
	switch {
	case ev.Kind == kernel.Netconf:
		return srcPolicy{}, true
	case ev.Type == unix.RTM_NEWROUTE:
		return routePolicy(ev.Route), false
	case ev.Type == unix.RTM_NEWRULE:
		return rulePolicy(ev.Rule, true), false
	}
	return srcPolicy{}, false
}

// followPolicy reads policy events until ctx ends or the subscription
// fails, recording them and sending on kick when the flags need a refresh.
// Lost events re-list everything.
func (m *Manager) followPolicy(ctx context.Context, sub *kernel.Subscription, kick chan<- struct{}) error {
	for {
		var ev kernel.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-sub.Events():
		}
		if !ok {
			return fmt.Errorf("reading policy events: %w", sub.Err())
		}
		var add srcPolicy
		refresh := false
		if ev.Kind == kernel.Lost {
			p, err := scanSourcePolicy()
			if err != nil {
				m.log.Warn("re-listing rules and routes after lost events", "err", err)
			}
			add, refresh = p, true
		} else {
			add, refresh = policyEvent(ev)
		}
		if m.addSrcPolicy(add) || refresh {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
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
