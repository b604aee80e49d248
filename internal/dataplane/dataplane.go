package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
)

// Pinned map names inside the pin directory. The program pins its maps by
// name (LIBBPF_PIN_BY_NAME), so a restarted daemon finds the same maps.
const (
	StatsMapName  = "xr_stats"
	DevmapMapName = "xr_devmap"
	PortsMapName  = "xr_ports"
	Local4MapName = "xr_local4"

	portTabMapName      = "xr_port_tab"
	local4FilterMapName = "xr_local4_filter"
	local4FilterBits    = 65536 // XR_LOCAL4_FILTER_BITS in bpf/xrouter.h
)

// PortFlags are what kernel forwarding obeys on an interface and
// bpf_fib_lookup ignores (sysctls, tc) or what keeps it from being a
// redirect target; user space reads them and keeps them in the port entry.
type PortFlags struct {
	// RPFilter is the effective net.ipv4.conf rp_filter: the larger of "all"
	// and the interface's (0 off, 1 strict, 2 loose).
	RPFilter int
	// AcceptLocal is net.ipv4.conf.IF.accept_local.
	AcceptLocal bool
	// NoForward6 is set when the kernel would not forward IPv6 arriving
	// here (net.ipv6.conf.all.forwarding = 0).
	NoForward6 bool
	// FullSourceCheck is set when, with rp_filter off, the kernel still
	// validates IPv4 sources with a reverse lookup (fib_validate_source's
	// full check): custom local routes or custom rules exist and
	// accept_local is off, or route realms are in use.
	FullSourceCheck bool
	// NoAddr4: the interface has no IPv4 address, so loose rp_filter
	// rejects sources that do not route back out of it.
	NoAddr4 bool
	// NoIPv6 is net.ipv6.conf.IF.disable_ipv6 (or no IPv6 device): the
	// kernel drops IPv6 arriving on or leaving by the interface.
	NoIPv6 bool
	// CheckEgress6: some port has NoIPv6, so the program checks the egress
	// port of every IPv6 packet (set on every port, or on none).
	CheckEgress6 bool
	// TCIngress: tc runs filters (or tcx programs) on the interface's
	// ingress; every packet arriving there goes to the kernel.
	TCIngress bool
	// TCEgress: the interface has tc on egress; it is kept out of the
	// devmap, and this names the reason for packets routed to it.
	TCEgress bool
	// NoXDPXmit: the interface cannot transmit XDP frames; kept out of
	// the devmap, named as the reason.
	NoXDPXmit bool
}

func (f PortFlags) bits() uint16 {
	var b uint16
	switch f.RPFilter {
	case 1:
		b |= uint16(fwdXrPortFlagsXR_PORT_RPF_STRICT)
	case 2:
		b |= uint16(fwdXrPortFlagsXR_PORT_RPF_LOOSE)
	}
	for _, fb := range []struct {
		on  bool
		bit fwdXrPortFlags
	}{
		{f.AcceptLocal, fwdXrPortFlagsXR_PORT_ACCEPT_LOCAL},
		{f.NoForward6, fwdXrPortFlagsXR_PORT_NO_FWD6},
		{f.FullSourceCheck, fwdXrPortFlagsXR_PORT_SRC_FULL},
		{f.NoAddr4, fwdXrPortFlagsXR_PORT_NO_ADDR4},
		{f.NoIPv6, fwdXrPortFlagsXR_PORT_NO_IPV6},
		{f.CheckEgress6, fwdXrPortFlagsXR_PORT_EGRESS6CHECK},
		{f.TCIngress, fwdXrPortFlagsXR_PORT_TC_INGRESS},
		{f.TCEgress, fwdXrPortFlagsXR_PORT_TC_EGRESS},
		{f.NoXDPXmit, fwdXrPortFlagsXR_PORT_NO_XDP_XMIT},
	} {
		if fb.on {
			b |= uint16(fb.bit)
		}
	}
	return b
}

// Dataplane is the loaded forwarding program and its maps.
type Dataplane struct {
	objs fwdObjects
	// hopEpoch is the epoch of the next-hop table (NextHopsSeen).
	hopEpoch uint32
	// nfMu serialises writers of the nf word (netfilter and flowspec bits).
	nfMu sync.Mutex
	fs   fsState
}

// Load loads bpf/fwd.c with the default cache size. Its maps are pinned in pinDir:
// maps already pinned there are reused (so counters and devmap entries
// survive a restart), and missing ones are created and pinned. pinDir must
// be on a bpffs.
func Load(pinDir string) (*Dataplane, error) { return LoadWith(pinDir, CacheSettings{}) }

// LoadWith is Load with the next-hop cache's settings; of them it reads
// Size, the entries per family (0: DefaultCacheSize).
func LoadWith(pinDir string, c CacheSettings) (*Dataplane, error) {
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pin directory: %w", err)
	}
	spec, err := loadFwd()
	if err != nil {
		return nil, fmt.Errorf("loading fwd spec: %w", err)
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("next-hop cache size %d is negative", c.Size)
	}
	if c.Size > 0 {
		spec.Maps[NHCacheMapName].MaxEntries = uint32(c.Size)
		spec.Maps[NHCache4MapName].MaxEntries = uint32(c.Size)
	}
	dp := &Dataplane{}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}
	if err := spec.LoadAndAssign(&dp.objs, opts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("loading fwd objects: pinned maps in %s are from an incompatible version (remove them with `xrouter detach`): %w", pinDir, err)
		}
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading fwd objects: %+v", verr)
		}
		return nil, fmt.Errorf("loading fwd objects: %w", err)
	}
	// The port array and the local-address filter are not pinned: fill
	// them from the (possibly adopted) pinned maps they stand in front of.
	if err := dp.loadPortTab(); err != nil {
		dp.Close()
		return nil, err
	}
	if err := dp.loadLocal4Filter(); err != nil {
		dp.Close()
		return nil, err
	}
	return dp, nil
}

// loadPortTab copies every entry of xr_ports into xr_port_tab.
func (d *Dataplane) loadPortTab() error {
	var k uint32
	var p fwdXrPort
	it := d.objs.XrPorts.Iterate()
	for it.Next(&k, &p) {
		if err := d.putPortTab(k, p); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing %s: %w", PortsMapName, err)
	}
	return nil
}

// putPortTab writes p to the array slot of ifindex, if it has one;
// a zero p clears the slot.
func (d *Dataplane) putPortTab(ifindex uint32, p fwdXrPort) error {
	if ifindex >= d.objs.XrPortTab.MaxEntries() {
		return nil
	}
	if p != (fwdXrPort{}) {
		p.Flags |= uint16(fwdXrPortFlagsXR_PORT_PRESENT)
	}
	if err := d.objs.XrPortTab.Put(ifindex, &p); err != nil {
		return fmt.Errorf("port %d: updating %s: %w", ifindex, portTabMapName, err)
	}
	return nil
}

// Program is the XDP forwarding program.
func (d *Dataplane) Program() *ebpf.Program { return d.objs.XrouterFwd }

// Close releases the process's handles. Pinned maps and links stay.
func (d *Dataplane) Close() error { return d.objs.Close() }

// SetPort registers an attached interface: its MAC for the ingress check and
// the sysctl-derived flags.
func (d *Dataplane) SetPort(ifindex int, mac net.HardwareAddr, flags PortFlags) error {
	var p fwdXrPort
	if len(mac) != 6 {
		return fmt.Errorf("port %d: MAC %q is not 6 bytes", ifindex, mac)
	}
	copy(p.Mac[:], mac)
	p.Flags = flags.bits()
	if err := d.objs.XrPorts.Put(uint32(ifindex), &p); err != nil {
		return fmt.Errorf("port %d: updating %s: %w", ifindex, PortsMapName, err)
	}
	return d.putPortTab(uint32(ifindex), p)
}

// AnyFullSourceCheck reports whether some port entry (perhaps an earlier
// run's) has the full source check on.
func (d *Dataplane) AnyFullSourceCheck() bool {
	var k uint32
	var p fwdXrPort
	it := d.objs.XrPorts.Iterate()
	for it.Next(&k, &p) {
		if p.Flags&uint16(fwdXrPortFlagsXR_PORT_SRC_FULL) != 0 {
			return true
		}
	}
	return false
}

// DeletePort forgets an interface; missing entries are not an error.
func (d *Dataplane) DeletePort(ifindex int) error {
	if err := d.putPortTab(uint32(ifindex), fwdXrPort{}); err != nil {
		return err
	}
	err := d.objs.XrPorts.Delete(uint32(ifindex))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("port %d: deleting from %s: %w", ifindex, PortsMapName, err)
	}
	return nil
}

// SetEgress makes ifindex a redirect target. The update is resolved in the
// calling thread's network namespace.
func (d *Dataplane) SetEgress(ifindex int) error {
	if err := d.objs.XrDevmap.Put(uint32(ifindex), uint32(ifindex)); err != nil {
		return fmt.Errorf("egress %d: updating %s: %w", ifindex, DevmapMapName, err)
	}
	return nil
}

// DeleteEgress removes ifindex as a redirect target; missing entries are not
// an error.
func (d *Dataplane) DeleteEgress(ifindex int) error {
	err := d.objs.XrDevmap.Delete(uint32(ifindex))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("egress %d: deleting from %s: %w", ifindex, DevmapMapName, err)
	}
	return nil
}

// Egresses lists the ifindexes in the devmap.
func (d *Dataplane) Egresses() ([]int, error) {
	return ifindexes[uint32](d.objs.XrDevmap, DevmapMapName)
}

// Ports lists the ifindexes in the ports map.
func (d *Dataplane) Ports() ([]int, error) {
	return ifindexes[fwdXrPort](d.objs.XrPorts, PortsMapName)
}

// ifindexes lists the keys of a map keyed by ifindex.
func ifindexes[V any](m *ebpf.Map, name string) ([]int, error) {
	var out []int
	var k uint32
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, int(k))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", name, err)
	}
	return out, nil
}

// local4Filter is the value of xr_local4_filter: one bit per hash of an
// address (struct xr_local4_filter).
type local4Filter [local4FilterBits / 64]uint64

// local4Bit is the program's ipv4_local hash: the address as the program
// loads it (a little-endian word of the network-order bytes), multiplied
// by 2^32/phi, top 16 bits.
func local4Bit(a [4]byte) uint32 {
	return (binary.LittleEndian.Uint32(a[:]) * 0x9e3779b1) >> (32 - 16)
}

func (f *local4Filter) add(a [4]byte) {
	b := local4Bit(a)
	f[b/64] |= 1 << (b % 64)
}

func (d *Dataplane) putLocal4Filter(f *local4Filter) error {
	if err := d.objs.XrLocal4Filter.Put(uint32(0), f); err != nil {
		return fmt.Errorf("updating %s: %w", local4FilterMapName, err)
	}
	return nil
}

// local4 lists the addresses in xr_local4.
func (d *Dataplane) local4() ([][4]byte, error) {
	var k [4]byte
	var v uint8
	var out [][4]byte
	it := d.objs.XrLocal4.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", Local4MapName, err)
	}
	return out, nil
}

// loadLocal4Filter sets the filter's bits for the addresses in xr_local4.
func (d *Dataplane) loadLocal4Filter() error {
	have, err := d.local4()
	if err != nil {
		return err
	}
	var f local4Filter
	for _, a := range have {
		f.add(a)
	}
	return d.putLocal4Filter(&f)
}

// SetLocal4 replaces the set of local IPv4 addresses with addrs, adding
// before deleting so that no address the namespace has is missing meanwhile.
// The filter in front of the map always covers every address in the map:
// it gets the union of the old and new sets first, and only the new set
// once the old addresses are gone. (A program reading the filter while it
// is rewritten sees, per word, the old or the new bits; both cover the map
// at that moment.)
func (d *Dataplane) SetLocal4(addrs []netip.Addr) error {
	want := map[[4]byte]bool{}
	one := uint8(1)
	have, err := d.local4()
	if err != nil {
		return err
	}
	var union, next local4Filter
	for _, a := range have {
		union.add(a)
	}
	for _, a := range addrs {
		if a.Is4() {
			union.add(a.As4())
			next.add(a.As4())
		}
	}
	if err := d.putLocal4Filter(&union); err != nil {
		return err
	}
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		k := a.As4()
		want[k] = true
		if err := d.objs.XrLocal4.Put(k, one); err != nil {
			return fmt.Errorf("adding local address %s to %s: %w", a, Local4MapName, err)
		}
	}
	for _, k := range have {
		if want[k] {
			continue
		}
		if err := d.objs.XrLocal4.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing local address %s from %s: %w", netip.AddrFrom4(k), Local4MapName, err)
		}
	}
	return d.putLocal4Filter(&next)
}

// Stats sums the per-CPU counters of the loaded program.
func (d *Dataplane) Stats() (Stats, error) { return readStats(d.objs.XrStats) }

// Counter is one outcome's packets and bytes.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Stats holds a counter per outcome, indexed by Outcome.
type Stats [NumOutcomes]Counter

// ReadPinnedStats reads the counters from the stats map pinned in pinDir, so
// it works whether the daemon runs or not.
func ReadPinnedStats(pinDir string) (Stats, error) {
	path := filepath.Join(pinDir, StatsMapName)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return Stats{}, fmt.Errorf("opening pinned stats map %s: %w", path, err)
	}
	defer m.Close()
	return readStats(m)
}

func readStats(m *ebpf.Map) (Stats, error) {
	var s Stats
	var per []fwdXrCounter
	for o := Outcome(0); o < NumOutcomes; o++ {
		if err := m.Lookup(uint32(o), &per); err != nil {
			return s, fmt.Errorf("reading counter %s: %w", o, err)
		}
		for _, c := range per {
			s[o].Packets += c.Packets
			s[o].Bytes += c.Bytes
		}
	}
	return s, nil
}
