package devmap

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// SysctlPoll is how often the sysctls that change without an event
// (accept_local, disable_ipv6) are read again.
const SysctlPoll = time.Second

// Run follows link events until ctx ends: a selected interface that appears
// is attached, one that goes down leaves the devmap, one that is deleted is
// forgotten. A periodic resync repairs anything an event burst or a lost
// netlink message left behind. It returns only on ctx's end or when the
// subscription cannot be made.
func (m *Manager) Run(ctx context.Context, resync time.Duration) error {
	for {
		err := m.watch(ctx, resync)
		if ctx.Err() != nil {
			return nil
		}
		m.log.Warn("link subscription ended, resubscribing", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (m *Manager) watch(ctx context.Context, resync time.Duration) error {
	// Links and addresses: hot-plug and the local addresses. Lost events
	// make a full resync.
	links, err := kernel.Subscribe("", kernel.Filter{Kinds: kernel.Link | kernel.Addr})
	if err != nil {
		return fmt.Errorf("subscribing to link and address events: %w", err)
	}
	defer links.Close()
	// rp_filter changes (netconf), routes and rules: the port flags follow
	// them at once. A subscription of its own, so that a route burst it
	// falls behind on re-reads only the rules and routes.
	ps, err := kernel.Subscribe("", kernel.Filter{Kinds: kernel.Netconf | kernel.Route | kernel.Rule, Queue: policyQueue})
	if err != nil {
		return fmt.Errorf("subscribing to netconf, route and rule events: %w", err)
	}
	defer ps.Close()
	errs := make(chan error, 1)
	kick := make(chan struct{}, 1)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go func() {
		if err := m.followPolicy(pctx, ps, kick); err != nil {
			select {
			case errs <- err:
			default:
			}
		}
	}()
	// Events between Start and the subscriptions would be lost otherwise.
	if p, err := scanSourcePolicy(); err == nil {
		m.addSrcPolicy(p)
	}
	tcSub, err := kernel.Subscribe("", kernel.Filter{Kinds: kernel.TC, Queue: 64})
	if err != nil {
		return fmt.Errorf("subscribing to tc events: %w", err)
	}
	defer tcSub.Close()
	m.Resync()
	if resync <= 0 {
		resync = 30 * time.Second
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	// accept_local and disable_ipv6 send no event: their sysctls are read
	// again every SysctlPoll.
	poll := time.NewTicker(SysctlPoll)
	defer poll.Stop()
	// tc changes come in bursts (a qdisc and its filters); they are read
	// once the burst settles. tcx programs send no event: they are
	// polled.
	tcSettle := time.NewTimer(0)
	if !tcSettle.Stop() {
		<-tcSettle.C
	}
	tcxTick := time.NewTicker(tcxPoll)
	defer tcxTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case <-kick:
			m.mu.Lock()
			m.refreshFlags()
			m.mu.Unlock()
		case <-poll.C:
			m.mu.Lock()
			m.refreshFlags()
			m.mu.Unlock()
		case <-tick.C:
			m.Resync()
		case _, ok := <-tcSub.Events():
			if !ok {
				return fmt.Errorf("tc events: %w", tcSub.Err())
			}
			tcSettle.Reset(tcSettleDelay)
		case <-tcSettle.C:
			m.syncTC()
		case <-tcxTick.C:
			if m.tcxChanged() {
				m.syncTC()
			}
		case ev, ok := <-links.Events():
			if !ok {
				return fmt.Errorf("link and address events: %w", links.Err())
			}
			switch ev.Kind {
			case kernel.Link:
				m.handle(ev)
			case kernel.Addr:
				m.syncLocal()
			case kernel.Lost:
				m.log.Warn("link and address events lost: resync")
				m.Resync()
			}
		}
	}
}

func (m *Manager) handle(ev kernel.Event) {
	if ev.Type == unix.RTM_DELLINK {
		m.forget(ev.Link.Attrs().Index)
		return
	}
	m.apply(ev.Link)
}

// apply brings one interface in line with the selection.
func (m *Manager) apply(l netlink.Link) {
	a := l.Attrs()
	m.mu.Lock()
	p, known := m.ports[a.Index]
	m.mu.Unlock()
	selected := m.cfg.Matches(a.Name) && eligible(l) == nil
	switch {
	case known && selected:
		m.mu.Lock()
		err := m.refresh(p, l)
		m.mu.Unlock()
		if err != nil {
			m.log.Error("updating interface", "interface", a.Name, "err", err)
		}
	case known && !selected:
		// Renamed out of the selection.
		m.detach(p)
		m.log.Info("interface no longer selected: detached", "interface", a.Name)
	case !known && selected:
		if _, err := m.attach(l); err != nil {
			m.log.Error("attaching new interface", "interface", a.Name, "err", err)
			return
		}
		if m.hooks.OnAttach != nil {
			m.hooks.OnAttach(a.Name)
		}
	}
}

// syncLocal copies the namespace's IPv4 addresses into the data plane, which
// leaves packets claiming one of them as source to the kernel.
func (m *Manager) syncLocal() {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		m.log.Warn("listing local addresses", "err", err)
		return
	}
	var list []netip.Addr
	has := map[int]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			list = append(list, ip)
			has[a.LinkIndex] = true
		}
	}
	if err := m.dp.SetLocal4(list); err != nil {
		m.log.Error("updating local addresses", "err", err)
	}
	// Whether each port has an IPv4 address (loose rp_filter), and
	// disable_ipv6, which removes the IPv6 addresses when set.
	m.mu.Lock()
	m.addr4 = has
	m.refreshFlags()
	m.mu.Unlock()
}

// How long a burst of tc events must be quiet before tc is read again,
// and how often tcx programs (which send no event) are looked for.
const (
	tcSettleDelay = 100 * time.Millisecond
	tcxPoll       = time.Second
)

// syncTC re-reads what tc does on every port and applies what changed:
// the port's flags (ingress) and its devmap membership (egress).
func (m *Manager) syncTC() {
	qs, err := allQdiscs()
	if err != nil {
		m.log.Warn("reading tc state", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.ports {
		l := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: p.Index, Name: p.Name}}
		tc, err := readTC(l, qs[p.Index])
		if err != nil {
			m.log.Warn("reading tc state", "interface", p.Name, "err", err)
			continue
		}
		p.tcx = tcxSig(tc)
		if tc.equal(p.TC) {
			continue
		}
		was := p.TC
		p.TC = tc
		m.logTC(p, was)
		mac, err := net.ParseMAC(p.MAC)
		if err != nil {
			continue
		}
		if err := m.sync(p, mac); err != nil {
			m.log.Error("updating interface after a tc change", "interface", p.Name, "err", err)
		}
	}
}

// tcxChanged says whether any port's tcx programs differ from what
// syncTC last saw.
func (m *Manager) tcxChanged() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.ports {
		in, out, err := tcxPrograms(p.Index)
		if err != nil {
			continue
		}
		if tcxSig(TC{Ingress: tcxNames(in, false), Egress: tcxNames(out, true)}) != p.tcx {
			return true
		}
	}
	return false
}

// Resync compares every interface with the selection and the attached set,
// and re-reads the local addresses, the interfaces' sysctls (which send
// no events) and tc.
func (m *Manager) Resync() {
	defer m.syncTC()
	m.syncLocal()
	links, err := netlink.LinkList()
	if err != nil {
		m.log.Warn("resync: listing interfaces", "err", err)
		return
	}
	present := map[int]bool{}
	for _, l := range links {
		present[l.Attrs().Index] = true
		m.apply(l)
	}
	m.mu.Lock()
	var gone []int
	for idx := range m.ports {
		if !present[idx] {
			gone = append(gone, idx)
		}
	}
	m.mu.Unlock()
	for _, idx := range gone {
		m.forget(idx)
	}
}
