package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/cilium/ebpf"
)

// FIBConfig is what the kernel's forwarding path decides from namespace-wide
// sysctls and bpf_fib_lookup does not (see docs/architecture.md,
// "Fidelity"). User space (internal/nhcache) reads them and writes them
// here.
type FIBConfig struct {
	// ECMPKernel4 and ECMPKernel6: the multipath hash policy
	// (net.ipv4.fib_multipath_hash_policy, net.ipv6....) is one the fast
	// path does not reproduce, so packets to multipath destinations go to
	// the kernel (ecmp_hash).
	ECMPKernel4 bool `json:"ecmp_kernel_ipv4"`
	ECMPKernel6 bool `json:"ecmp_kernel_ipv6"`
	// IgnorePMTU4: net.ipv4.ip_forward_use_pmtu is 0, so IPv4 forwarding
	// ignores PMTU exceptions that are not locked; the fast path then
	// second-guesses bpf_fib_lookup's FRAG_NEEDED with the device MTU.
	IgnorePMTU4 bool `json:"ignore_pmtu_ipv4"`
	// MinPMTU4 is net.ipv4.route.min_pmtu: an exception at or below it may
	// be locked, and is honoured.
	MinPMTU4 uint32 `json:"min_pmtu_ipv4"`
}

// RouteMTUMapName is the IPv4 route-MTU trie (xr_rmtu6 is IPv6's).
const (
	RouteMTU4MapName = "xr_rmtu4"
	RouteMTU6MapName = "xr_rmtu6"
)

// SetFIB writes the configuration and replaces the route-MTU tries with
// bounds: per prefix, the largest IP packet the kernel forwards to any
// destination under it (prefixes of both families). The program skips the
// tries for packets no longer than the smallest bound, so that bound is
// lowered before entries are added and raised only after they are removed.
func (d *Dataplane) SetFIB(c FIBConfig, bounds map[netip.Prefix]uint32) error {
	min4, min6 := uint32(math.MaxUint32), uint32(math.MaxUint32)
	for p, v := range bounds {
		if p.Addr().Is4() {
			min4 = min(min4, v)
		} else {
			min6 = min(min6, v)
		}
	}
	var old fwdXrFibCfg
	if err := d.objs.XrFib.Lookup(uint32(0), &old); err != nil {
		return fmt.Errorf("reading xr_fib: %w", err)
	}
	if err := d.putFIBCfg(c, min(old.RmtuMin4, min4), min(old.RmtuMin6, min6)); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for p, v := range bounds {
		p = p.Masked()
		want[p] = true
		m, key := d.rmtuKey(p)
		if err := m.Put(key, v); err != nil {
			return fmt.Errorf("adding route MTU %s %d: %w", p, v, err)
		}
	}
	have, err := d.RouteMTUs()
	if err != nil {
		return err
	}
	for p := range have {
		if want[p] {
			continue
		}
		m, key := d.rmtuKey(p)
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing route MTU %s: %w", p, err)
		}
	}
	return d.putFIBCfg(c, min4, min6)
}

func (d *Dataplane) putFIBCfg(c FIBConfig, min4, min6 uint32) error {
	v := fwdXrFibCfg{RmtuMin4: min4, RmtuMin6: min6, MinPmtu: c.MinPMTU4}
	if c.ECMPKernel4 {
		v.Flags |= uint32(fwdXrFibFlagsXR_FIB_ECMP_KERNEL4)
	}
	if c.ECMPKernel6 {
		v.Flags |= uint32(fwdXrFibFlagsXR_FIB_ECMP_KERNEL6)
	}
	if c.IgnorePMTU4 {
		v.Flags |= uint32(fwdXrFibFlagsXR_FIB_IGNORE_PMTU4)
	}
	if err := d.objs.XrFib.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("writing xr_fib: %w", err)
	}
	return nil
}

func (d *Dataplane) rmtuKey(p netip.Prefix) (*ebpf.Map, any) {
	if p.Addr().Is4() {
		return d.objs.XrRmtu4, fwdXrLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
	}
	return d.objs.XrRmtu6, fwdXrLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// RouteMTUs lists the route-MTU tries' entries, both families.
func (d *Dataplane) RouteMTUs() (map[netip.Prefix]uint32, error) {
	out := map[netip.Prefix]uint32{}
	var k4 fwdXrLpm4
	var k6 fwdXrLpm6
	var v uint32
	it := d.objs.XrRmtu4.Iterate()
	for it.Next(&k4, &v) {
		out[netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen))] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", RouteMTU4MapName, err)
	}
	it = d.objs.XrRmtu6.Iterate()
	for it.Next(&k6, &v) {
		out[netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen))] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", RouteMTU6MapName, err)
	}
	return out, nil
}
