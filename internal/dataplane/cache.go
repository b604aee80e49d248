package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Map names of the next-hop cache. The cache itself is not pinned (its size
// is configurable and a new program starts empty); the generation, the
// counters and the multipath tries are.
const (
	CacheGenMapName   = "xr_cache_gen"
	CacheStatsMapName = "xr_cache_stats"
	NHCacheMapName    = "xr_nh_cache"
	NHCache4MapName   = "xr_nh_cache4"
	Mpath4MapName     = "xr_mpath4"
	Mpath6MapName     = "xr_mpath6"

	// DefaultCacheSize is the size of xr_nh_cache (IPv6) and of
	// xr_nh_cache4 (IPv4) unless CacheSettings.Size says otherwise.
	DefaultCacheSize = 65536
)

// CacheState is the cache's control block as user space writes it.
type CacheState struct {
	// Generation of valid entries; 0 turns the cache off.
	Generation uint64 `json:"generation"`
	// Bumps counts the generation changes made by user space.
	Bumps uint64 `json:"bumps"`
	// LeaseNs is a CLOCK_MONOTONIC_COARSE time in ns after which the
	// program bypasses the cache (the daemon renews it while alive).
	LeaseNs uint64 `json:"lease_ns"`
	// Bypass4 and Bypass6 make the program skip the cache for a family
	// whose lookups depend on more than the destination (policy rules,
	// TOS or source-specific routes).
	Bypass4 bool `json:"bypass_ipv4"`
	Bypass6 bool `json:"bypass_ipv6"`
}

// CacheStats are the cache's counters summed over the CPUs.
type CacheStats struct {
	Hit         uint64 `json:"hit"`
	Miss        uint64 `json:"miss"`
	Insert      uint64 `json:"insert"`
	Bypass      uint64 `json:"bypass"`
	Uncacheable uint64 `json:"uncacheable"`
	AdmitSkip   uint64 `json:"admit_skip"`
}

// MonotonicCoarseNs is the clock the program compares the lease with.
func MonotonicCoarseNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return uint64(ts.Nano())
}

// CacheState reads the control block.
func (d *Dataplane) CacheState() (CacheState, error) { return readCacheState(d.objs.XrCacheGen) }

// ReadPinnedCacheState reads the control block pinned in pinDir.
func ReadPinnedCacheState(pinDir string) (CacheState, error) {
	m, err := loadPinned(pinDir, CacheGenMapName)
	if err != nil {
		return CacheState{}, err
	}
	defer m.Close()
	return readCacheState(m)
}

func loadPinned(pinDir, name string) (*ebpf.Map, error) {
	path := filepath.Join(pinDir, name)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("opening pinned map %s: %w", path, err)
	}
	return m, nil
}

func readCacheState(m *ebpf.Map) (CacheState, error) {
	var v fwdXrCacheCfg
	if err := m.Lookup(uint32(0), &v); err != nil {
		return CacheState{}, fmt.Errorf("reading %s: %w", CacheGenMapName, err)
	}
	return CacheState{
		Generation: v.Gen,
		Bumps:      v.Bumps,
		LeaseNs:    v.LeaseNs,
		Bypass4:    v.Flags&uint32(fwdXrCacheFlagsXR_CACHE_BYPASS4) != 0,
		Bypass6:    v.Flags&uint32(fwdXrCacheFlagsXR_CACHE_BYPASS6) != 0,
	}, nil
}

// Offsets of struct xr_cache_cfg's fields.
const (
	cfgOffGen   = 0
	cfgOffBumps = 8
	cfgOffLease = 16
	cfgOffFlags = 24
	cfgOffNF    = 28
)

// SetCacheState writes the control block through its memory mapping, one
// word-sized store per field, the generation last. A map update would be a
// memcpy the program might see half done (a new generation with the old
// bypass flags); this way a program that reads the new generation (it
// reads it first) also reads the new flags and lease. Callers serialise.
func (d *Dataplane) SetCacheState(s CacheState) error {
	mem, err := d.objs.XrCacheGen.Memory()
	if err != nil {
		return fmt.Errorf("mapping %s: %w", CacheGenMapName, err)
	}
	var flags uint32
	if s.Bypass4 {
		flags |= uint32(fwdXrCacheFlagsXR_CACHE_BYPASS4)
	}
	if s.Bypass6 {
		flags |= uint32(fwdXrCacheFlagsXR_CACHE_BYPASS6)
	}
	w4 := func(off int64, v uint32) error {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], v)
		_, err := mem.WriteAt(b[:], off)
		return err
	}
	w8 := func(off int64, v uint64) error {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], v)
		_, err := mem.WriteAt(b[:], off)
		return err
	}
	for _, err := range []error{
		w4(cfgOffFlags, flags),
		w8(cfgOffLease, s.LeaseNs),
		w8(cfgOffBumps, s.Bumps),
		w8(cfgOffGen, s.Generation),
	} {
		if err != nil {
			return fmt.Errorf("writing %s: %w", CacheGenMapName, err)
		}
	}
	return nil
}

// CacheStats sums the cache counters of the loaded program.
func (d *Dataplane) CacheStats() (CacheStats, error) { return readCacheStats(d.objs.XrCacheStats) }

// ReadPinnedCacheStats reads the cache counters pinned in pinDir.
func ReadPinnedCacheStats(pinDir string) (CacheStats, error) {
	m, err := loadPinned(pinDir, CacheStatsMapName)
	if err != nil {
		return CacheStats{}, err
	}
	defer m.Close()
	return readCacheStats(m)
}

func readCacheStats(m *ebpf.Map) (CacheStats, error) {
	var per []fwdXrCachePcpu
	if err := m.Lookup(uint32(0), &per); err != nil {
		return CacheStats{}, fmt.Errorf("reading %s: %w", CacheStatsMapName, err)
	}
	var s CacheStats
	for _, c := range per {
		s.Hit += c.Hit
		s.Miss += c.Miss
		s.Insert += c.Insert
		s.Bypass += c.Bypass
		s.Uncacheable += c.Uncacheable
		s.AdmitSkip += c.AdmitSkip
	}
	return s, nil
}

// AddMultipath marks a prefix as multipath: destinations in it are never
// cached. Adding a prefix twice is not an error.
func (d *Dataplane) AddMultipath(p netip.Prefix) error {
	m, key := d.mpathKey(p)
	if err := m.Put(key, uint8(1)); err != nil {
		return fmt.Errorf("adding multipath prefix %s: %w", p, err)
	}
	return nil
}

func (d *Dataplane) mpathKey(p netip.Prefix) (*ebpf.Map, any) {
	p = p.Masked()
	if p.Addr().Is4() {
		return d.objs.XrMpath4, fwdXrLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
	}
	return d.objs.XrMpath6, fwdXrLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// Multipath lists the multipath prefixes.
func (d *Dataplane) Multipath() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var k4 fwdXrLpm4
	var k6 fwdXrLpm6
	var v uint8
	it := d.objs.XrMpath4.Iterate()
	for it.Next(&k4, &v) {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen)))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", Mpath4MapName, err)
	}
	it = d.objs.XrMpath6.Iterate()
	for it.Next(&k6, &v) {
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen)))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", Mpath6MapName, err)
	}
	return out, nil
}

// SetMultipath replaces the multipath prefixes with want, adding before
// deleting, so no prefix that stays multipath is ever missing.
func (d *Dataplane) SetMultipath(want []netip.Prefix) error {
	keep := map[netip.Prefix]bool{}
	for _, p := range want {
		p = p.Masked()
		keep[p] = true
		if err := d.AddMultipath(p); err != nil {
			return err
		}
	}
	have, err := d.Multipath()
	if err != nil {
		return err
	}
	for _, p := range have {
		if keep[p] {
			continue
		}
		m, key := d.mpathKey(p)
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing multipath prefix %s: %w", p, err)
		}
	}
	return nil
}

// CacheEntries counts the cache's keys, both families (for tests and
// diagnostics).
func (d *Dataplane) CacheEntries() (int, error) {
	var k6 fwdXrNhKey
	var k4 fwdXrNhKey4
	var v []fwdXrNhEntry
	n := 0
	it := d.objs.XrNhCache.Iterate()
	for it.Next(&k6, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("listing %s: %w", NHCacheMapName, err)
	}
	it = d.objs.XrNhCache4.Iterate()
	for it.Next(&k4, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("listing %s: %w", NHCache4MapName, err)
	}
	return n, nil
}

// PinnedMapNames lists every map the program pins, for detach.
func PinnedMapNames() []string {
	return []string{StatsMapName, DevmapMapName, PortsMapName, Local4MapName,
		CacheGenMapName, CacheStatsMapName, Mpath4MapName, Mpath6MapName}
}

// NetfilterPass is what the program does for netfilter's sake: for each
// family set, every well-formed packet goes to the kernel (outcome
// netfilter) instead of the fast path.
type NetfilterPass struct {
	IPv4 bool `json:"ipv4"`
	IPv6 bool `json:"ipv6"`
	// Bypass records that the daemon runs with dataplane.netfilter:
	// bypass (for status; the program does not read it).
	Bypass bool `json:"bypass"`
}

func (n NetfilterPass) bits() uint32 {
	var b uint32
	if n.IPv4 {
		b |= uint32(fwdXrNfFlagsXR_NF_PASS4)
	}
	if n.IPv6 {
		b |= uint32(fwdXrNfFlagsXR_NF_PASS6)
	}
	if n.Bypass {
		b |= uint32(fwdXrNfFlagsXR_NF_BYPASS)
	}
	return b
}

// SetNetfilter tells the program which families to hand to the kernel for
// netfilter: one word-sized store through the control block's mapping,
// apart from the cache's fields (their writer need not be serialised with
// this one), keeping the FlowSpec bits that share the word.
func (d *Dataplane) SetNetfilter(n NetfilterPass) error {
	mask := uint32(fwdXrNfFlagsXR_NF_PASS4 | fwdXrNfFlagsXR_NF_PASS6 | fwdXrNfFlagsXR_NF_BYPASS)
	return d.writeNF(mask, n.bits())
}

// Netfilter reads what SetNetfilter wrote.
func (d *Dataplane) Netfilter() (NetfilterPass, error) { return readNetfilter(d.objs.XrCacheGen) }

// ReadPinnedNetfilter reads the netfilter flags pinned in pinDir.
func ReadPinnedNetfilter(pinDir string) (NetfilterPass, error) {
	m, err := loadPinned(pinDir, CacheGenMapName)
	if err != nil {
		return NetfilterPass{}, err
	}
	defer m.Close()
	return readNetfilter(m)
}

func readNetfilter(m *ebpf.Map) (NetfilterPass, error) {
	var v fwdXrCacheCfg
	if err := m.Lookup(uint32(0), &v); err != nil {
		return NetfilterPass{}, fmt.Errorf("reading %s: %w", CacheGenMapName, err)
	}
	return NetfilterPass{
		IPv4:   v.Nf&uint32(fwdXrNfFlagsXR_NF_PASS4) != 0,
		IPv6:   v.Nf&uint32(fwdXrNfFlagsXR_NF_PASS6) != 0,
		Bypass: v.Nf&uint32(fwdXrNfFlagsXR_NF_BYPASS) != 0,
	}, nil
}
