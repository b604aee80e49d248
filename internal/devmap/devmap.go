// Package devmap decides which interfaces take part in forwarding. It
// attaches the XDP program to them (auto, native or generic mode), keeps the
// program's devmap and port entries in step with their state, follows link
// events for hot-plug, and pins the XDP links so that forwarding outlives
// the daemon and a restart adopts the running data plane.
package devmap

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// Mode is how the XDP program is attached.
type Mode string

// Attach modes. Auto tries native (driver) mode and falls back to generic.
const (
	Auto    Mode = "auto"
	Native  Mode = "native"
	Generic Mode = "generic"
)

// Hooks are what the manager calls back into the daemon.
type Hooks struct {
	// OnAttach, if set, is called with the name of every interface attached
	// after Start (hot-plug), so the daemon can check its sysctls.
	OnAttach func(name string)
	// OnEgressChange, if set, is called after every devmap change (with
	// the manager's lock held; it must not call back into the manager).
	// The next-hop cache's invalidator bumps its generation there.
	OnEgressChange func()
}

// Port is one interface xrouter forwards on.
type Port struct {
	Name    string `json:"name"`
	Index   int    `json:"ifindex"`
	MAC     string `json:"mac"`
	Mode    string `json:"mode"`    // native or generic, as attached
	Egress  bool   `json:"egress"`  // in the devmap: up, no tc egress, can transmit XDP frames
	Adopted bool   `json:"adopted"` // the link was pinned by an earlier run
	// TC is what tc does on the interface that the fast path leaves to
	// the kernel (see TC).
	TC TC `json:"tc"`
	// NoXDPXmit: the device cannot transmit XDP frames (it does not
	// advertise NETDEV_XDP_ACT_NDO_XMIT), so it is no redirect target.
	NoXDPXmit bool `json:"no_xdp_xmit,omitempty"`

	flags dataplane.PortFlags
	up    bool   // link up with carrier, as last seen
	tcx   string // the tcx programs syncTC last saw (tcxSig)
	link  link.Link
}

// Manager owns the attached interfaces.
type Manager struct {
	// cfg selects the interfaces (Interfaces must exist at Start;
	// Matches is also asked about interfaces that appear later) and how
	// to attach (Mode, PinPath, shared with the dataplane's maps).
	cfg   Settings
	hooks Hooks
	dp    *dataplane.Dataplane
	log   *slog.Logger

	mu    sync.Mutex
	ports map[int]*Port
	// src: what makes the kernel check IPv4 sources more with rp_filter
	// off (sticky, as in the kernel); addr4: interfaces with an IPv4
	// address. Both feed the port flags.
	src   srcPolicy
	addr4 map[int]bool
}

// New returns a manager; nothing is attached until Start.
func New(cfg Settings, hooks Hooks, dp *dataplane.Dataplane, log *slog.Logger) *Manager {
	return &Manager{cfg: cfg, hooks: hooks, dp: dp, log: log, ports: map[int]*Port{}, addr4: map[int]bool{}}
}

func (m *Manager) linksDir() string { return LinksDir(m.cfg.PinPath) }

// LinksDir is where the XDP links are pinned, one file per ifindex.
func LinksDir(pinPath string) string { return filepath.Join(pinPath, "links") }

// Start attaches to every selected interface, adopting pinned links. It is
// all or nothing: if any interface fails, the ones attached by this call are
// detached again and the error names the interface. Pinned links of
// interfaces no longer selected are detached only after everything else
// succeeded.
func (m *Manager) Start() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	for _, name := range m.cfg.Interfaces {
		l, ok := byName[name]
		if !ok {
			return fmt.Errorf("interface %q: no such interface", name)
		}
		if err := eligible(l); err != nil {
			return fmt.Errorf("interface %q: %w", name, err)
		}
	}
	if err := os.MkdirAll(m.linksDir(), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", m.linksDir(), err)
	}

	// Before any interface forwards: local sources, and what the kernel
	// checks of sources, must be known. A full source check that an
	// earlier run set stays (the kernel's reasons for it are sticky).
	m.syncLocal()
	src, err := scanSourcePolicy()
	if err != nil {
		// Unknown: check sources fully, which is always safe.
		m.log.Warn("cannot tell whether the kernel checks IPv4 sources fully; assuming it does", "err", err)
		src = srcPolicy{customRules: true, realms: true}
	}
	if m.dp.AnyFullSourceCheck() {
		src.realms = true
	}
	m.addSrcPolicy(src)
	var attached []*Port
	for _, l := range links {
		if !m.cfg.Matches(l.Attrs().Name) || eligible(l) != nil {
			continue
		}
		p, err := m.attach(l)
		if err != nil {
			for _, a := range attached {
				if !a.Adopted {
					m.detach(a)
				}
			}
			return fmt.Errorf("interface %q: %w", l.Attrs().Name, err)
		}
		attached = append(attached, p)
	}
	m.removeStalePins()
	return nil
}

// CheckInterface says why the named interface of this network namespace
// cannot take part in forwarding, or nil: it must exist, and be an Ethernet
// interface other than loopback.
func CheckInterface(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return errors.New("no such interface")
		}
		return err
	}
	return eligible(l)
}

// eligible says why an interface cannot take part, or nil.
func eligible(l netlink.Link) error {
	a := l.Attrs()
	if a.Flags&(1<<3) != 0 || a.Name == "lo" { // net.FlagLoopback
		return errors.New("loopback cannot forward")
	}
	if a.EncapType != "" && a.EncapType != "ether" {
		return fmt.Errorf("link type %q is not Ethernet", a.EncapType)
	}
	if len(a.HardwareAddr) != 6 {
		return errors.New("no Ethernet address")
	}
	return nil
}

// xmitCapable asks the kernel whether a device can transmit frames XDP
// redirects to it. When the kernel cannot say (no "netdev" generic
// netlink family), it is assumed able, as before.
func xmitCapable(ifindex int, name string, log *slog.Logger) bool {
	f, ok, err := xdpFeatures(ifindex)
	if err != nil {
		log.Warn("cannot read XDP features; assuming the interface can transmit XDP frames", "interface", name, "err", err)
		return true
	}
	return !ok || canXmitXDP(f)
}

// logTC logs what tc on a port now means for the fast path, when it
// changed from was.
func (m *Manager) logTC(p *Port, was TC) {
	if p.TC.equal(was) {
		return
	}
	switch {
	case len(p.TC.Ingress) > 0 && len(p.TC.Egress) > 0:
		m.log.Info("tc on interface: packets arriving here and packets routed out of it go to the kernel", "interface", p.Name, "tc", p.TC.String())
	case len(p.TC.Ingress) > 0:
		m.log.Info("tc on interface: packets arriving here go to the kernel", "interface", p.Name, "tc", p.TC.String())
	case len(p.TC.Egress) > 0:
		m.log.Info("tc on interface: packets routed out of it go to the kernel", "interface", p.Name, "tc", p.TC.String())
	default:
		m.log.Info("tc on interface: nothing the fast path would skip any more", "interface", p.Name)
	}
}

func (m *Manager) logXmit(p *Port) {
	if p.NoXDPXmit {
		m.log.Warn("interface cannot transmit XDP frames (no ndo_xdp_xmit): not a redirect target, packets routed to it go to the kernel", "interface", p.Name, "mode", p.Mode)
	} else {
		m.log.Info("interface can transmit XDP frames again: redirect target", "interface", p.Name)
	}
}

func up(l netlink.Link) bool {
	f := l.Attrs().RawFlags
	return f&unix.IFF_UP != 0 && f&unix.IFF_LOWER_UP != 0
}

// attach puts the program on l (adopting a pinned link when there is one)
// and registers the port.
func (m *Manager) attach(l netlink.Link) (*Port, error) {
	a := l.Attrs()
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.ports[a.Index]; ok {
		return p, m.refresh(p, l)
	}
	p := &Port{Name: a.Name, Index: a.Index, MAC: a.HardwareAddr.String()}
	pin := filepath.Join(m.linksDir(), strconv.Itoa(a.Index))

	if lk, err := link.LoadPinnedLink(pin, nil); err == nil {
		if err := m.adopt(lk, a.Index); err != nil {
			m.log.Warn("pinned XDP link unusable, attaching anew", "interface", a.Name, "pin", pin, "err", err)
			_ = lk.Unpin()
			_ = lk.Close()
		} else {
			p.link, p.Adopted = lk, true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("cannot load pinned XDP link, attaching anew", "interface", a.Name, "pin", pin, "err", err)
		_ = os.Remove(pin)
	}
	if p.link != nil {
		if cur := attachedMode(a.Index); Mode(m.cfg.Mode) != Auto && cur != m.cfg.Mode {
			m.log.Info("re-attaching in the configured mode", "interface", a.Name, "was", cur, "want", m.cfg.Mode)
			_ = p.link.Unpin()
			_ = p.link.Close()
			p.link, p.Adopted = nil, false
		}
	}
	if p.link == nil {
		lk, err := m.attachNew(a.Index, a.Name)
		if err != nil {
			return nil, err
		}
		if err := lk.Pin(pin); err != nil {
			_ = lk.Close()
			return nil, fmt.Errorf("pinning XDP link at %s: %w", pin, err)
		}
		p.link = lk
	}
	p.Mode = attachedMode(a.Index)
	if qs, err := netlink.QdiscList(l); err != nil {
		m.log.Warn("cannot list qdiscs; tc state unknown until the next change", "interface", a.Name, "err", err)
	} else if tc, err := readTC(l, qs); err != nil {
		m.log.Warn("cannot read tc state; unknown until the next change", "interface", a.Name, "err", err)
	} else {
		p.TC, p.tcx = tc, tcxSig(tc)
	}
	p.NoXDPXmit = !xmitCapable(a.Index, a.Name, m.log)
	p.flags = m.portFlags(p)
	p.flags.CheckEgress6 = m.anyNoIPv6(a.Index, p.flags.NoIPv6)
	if err := m.dp.SetPort(a.Index, a.HardwareAddr, p.flags); err != nil {
		m.detachLocked(p)
		return nil, err
	}
	m.ports[a.Index] = p
	if p.flags.NoIPv6 {
		m.refreshFlags() // the other ports now check their egress
	}
	if err := m.refresh(p, l); err != nil {
		m.detachLocked(p)
		return nil, err
	}
	verb := "attached"
	if p.Adopted {
		verb = "adopted"
	}
	m.log.Info("interface "+verb, "interface", p.Name, "ifindex", p.Index, "mode", p.Mode, "egress", p.Egress)
	m.logTC(p, TC{})
	if p.NoXDPXmit {
		m.logXmit(p)
	}
	return p, nil
}

// adopt swaps the freshly loaded program into a link an earlier run pinned,
// without a moment of not forwarding.
func (m *Manager) adopt(lk link.Link, ifindex int) error {
	info, err := lk.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	xi := info.XDP()
	if xi == nil {
		return errors.New("pinned link is not an XDP link")
	}
	if int(xi.Ifindex) != ifindex {
		return fmt.Errorf("pinned link belongs to ifindex %d", xi.Ifindex)
	}
	if err := lk.Update(m.dp.Program()); err != nil {
		return fmt.Errorf("updating program: %w", err)
	}
	return nil
}

func (m *Manager) attachNew(ifindex int, name string) (link.Link, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: m.dp.Program(), Interface: ifindex, Flags: flags})
	}
	switch Mode(m.cfg.Mode) {
	case Native:
		lk, err := try(link.XDPDriverMode)
		if err != nil {
			return nil, fmt.Errorf("attaching XDP in native mode: %w", explainAttach(err))
		}
		return lk, nil
	case Generic:
		lk, err := try(link.XDPGenericMode)
		if err != nil {
			return nil, fmt.Errorf("attaching XDP in generic mode: %w", explainAttach(err))
		}
		return lk, nil
	default:
		lk, err := try(link.XDPDriverMode)
		if err == nil {
			return lk, nil
		}
		m.log.Info("native XDP not available, falling back to generic", "interface", name, "err", err)
		lk, err2 := try(link.XDPGenericMode)
		if err2 != nil {
			return nil, fmt.Errorf("attaching XDP: native: %v; generic: %w", err, explainAttach(err2))
		}
		return lk, nil
	}
}

func explainAttach(err error) error {
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("another XDP program is already attached (remove it with `ip link set dev IFACE xdp off`): %w", err)
	}
	return err
}

// attachedMode reads the attach mode the kernel reports for ifindex.
func attachedMode(ifindex int) string {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "none"
	}
	return modeOf(l)
}

// modeOf names the XDP attach mode of a link as netlink reported it.
func modeOf(l netlink.Link) string {
	if l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		return "none"
	}
	switch l.Attrs().Xdp.AttachMode {
	case nl_XDP_ATTACHED_DRV:
		return string(Native)
	case nl_XDP_ATTACHED_SKB:
		return string(Generic)
	case nl_XDP_ATTACHED_HW:
		return "offload"
	case nl_XDP_ATTACHED_MULTI:
		return "multi"
	}
	return "unknown"
}

// Values of IFLA_XDP_ATTACHED.
const (
	nl_XDP_ATTACHED_DRV   = 1
	nl_XDP_ATTACHED_SKB   = 2
	nl_XDP_ATTACHED_HW    = 3
	nl_XDP_ATTACHED_MULTI = 4
)

// refresh brings a port's map entries in line with the link: in the devmap
// while up, out of it while down (the kernel then decides), MAC updated.
// Called with m.mu held.
func (m *Manager) refresh(p *Port, l netlink.Link) error {
	a := l.Attrs()
	if a.Name != p.Name {
		m.log.Info("interface renamed", "ifindex", p.Index, "from", p.Name, "to", a.Name)
		p.Name = a.Name
	}
	// A veth's XDP features follow its peer (an XDP program or GRO there);
	// the kernel sends a link event when they change.
	if no := !xmitCapable(p.Index, p.Name, m.log); no != p.NoXDPXmit {
		p.NoXDPXmit = no
		m.logXmit(p)
	}
	p.up = up(l)
	return m.sync(p, a.HardwareAddr)
}

// sync writes a port's entry and devmap membership from what is known of
// it. The flags are written first, so that a packet that finds the port
// just removed from the devmap is counted under the reason. Called with
// m.mu held.
func (m *Manager) sync(p *Port, mac net.HardwareAddr) error {
	flags := m.portFlags(p)
	flags.CheckEgress6 = m.anyNoIPv6(p.Index, flags.NoIPv6)
	if s := mac.String(); s != p.MAC || flags != p.flags {
		if err := m.dp.SetPort(p.Index, mac, flags); err != nil {
			return err
		}
		if s != p.MAC {
			m.log.Info("interface MAC changed", "interface", p.Name, "mac", s)
		}
		if sysctlFlags(flags) != sysctlFlags(p.flags) {
			logFlags(m, p, flags)
		}
		old := p.flags
		p.MAC, p.flags = s, flags
		if old.NoIPv6 != flags.NoIPv6 {
			m.refreshFlags() // whether the others check their egress
		}
	}
	want := p.up && !flags.TCEgress && !flags.NoXDPXmit
	if want == p.Egress {
		return nil
	}
	if want {
		if err := m.dp.SetEgress(p.Index); err != nil {
			return err
		}
		m.egressChanged()
		m.log.Info("egress enabled", "interface", p.Name)
	} else {
		if err := m.dp.DeleteEgress(p.Index); err != nil {
			return err
		}
		m.egressChanged()
		why := "interface down"
		switch {
		case !p.up:
		case flags.TCEgress:
			why = "tc on egress"
		case flags.NoXDPXmit:
			why = "cannot transmit XDP frames"
		}
		m.log.Info("egress disabled", "interface", p.Name, "why", why)
	}
	p.Egress = want
	return nil
}

func (m *Manager) egressChanged() {
	if m.hooks.OnEgressChange != nil {
		m.hooks.OnEgressChange()
	}
}

// detach removes the program and the port's map entries.
func (m *Manager) detach(p *Port) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.detachLocked(p)
}

func (m *Manager) detachLocked(p *Port) {
	if err := m.dp.DeleteEgress(p.Index); err != nil {
		m.log.Warn("detach: devmap", "interface", p.Name, "err", err)
	}
	m.egressChanged()
	if err := m.dp.DeletePort(p.Index); err != nil {
		m.log.Warn("detach: ports map", "interface", p.Name, "err", err)
	}
	if p.link != nil {
		_ = p.link.Unpin()
		_ = p.link.Close()
		p.link = nil
	}
	delete(m.ports, p.Index)
	if p.flags.NoIPv6 {
		m.refreshFlags()
	}
}

// forget drops a port whose interface is gone: its link is dead, its
// entries are removed.
func (m *Manager) forget(ifindex int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.ports[ifindex]
	if !ok {
		return
	}
	m.detachLocked(p)
	m.log.Info("interface removed", "interface", p.Name, "ifindex", ifindex)
}

// removeStalePins detaches links pinned by an earlier run for interfaces
// that are gone or no longer selected, and map entries nobody owns.
func (m *Manager) removeStalePins() {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, _ := os.ReadDir(m.linksDir())
	for _, e := range entries {
		idx, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ok := m.ports[idx]; ok {
			continue
		}
		path := filepath.Join(m.linksDir(), e.Name())
		if lk, err := link.LoadPinnedLink(path, nil); err == nil {
			_ = lk.Unpin()
			_ = lk.Close()
		} else {
			_ = os.Remove(path)
		}
		m.log.Info("detached interface no longer selected", "ifindex", idx)
	}
	if idxs, err := m.dp.Egresses(); err == nil {
		for _, idx := range idxs {
			if p, ok := m.ports[idx]; !ok || !p.Egress {
				_ = m.dp.DeleteEgress(idx)
				m.egressChanged()
			}
		}
	}
	if idxs, err := m.dp.Ports(); err == nil {
		for _, idx := range idxs {
			if _, ok := m.ports[idx]; !ok {
				_ = m.dp.DeletePort(idx)
			}
		}
	}
}

// Ports returns a snapshot of the attached interfaces, by name.
func (m *Manager) Ports() []Port {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Port, 0, len(m.ports))
	for _, p := range m.ports {
		c := *p
		c.link = nil
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Port) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Close releases the handles. With detach, the program is removed from every
// interface and the pins are deleted; otherwise the data plane keeps
// forwarding and the next run adopts it.
func (m *Manager) Close(detach bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.ports {
		if detach {
			m.detachLocked(p)
			continue
		}
		if p.link != nil {
			_ = p.link.Close()
		}
	}
	if detach {
		_ = os.Remove(m.linksDir())
	}
}
