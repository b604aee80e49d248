// Package sysctl reads (and, when allowed, sets) the per-interface sysctls
// that decide whether the kernel forwards: the fast path's bpf_fib_lookup
// returns FWD_DISABLED unless forwarding is on for the ingress interface,
// and the slow path must agree with it; rp_filter and accept_local are
// checked by the kernel but not by bpf_fib_lookup, so the data plane is told.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcSys is where the sysctls live; a variable so tests can point it at a
// fake tree.
var ProcSys = "/proc/sys"

// Forwarding is the forwarding state of one interface, as the sysctls of
// the calling thread's network namespace say.
type Forwarding struct {
	Interface string `json:"interface"`
	IPv4      bool   `json:"ipv4"`
	IPv6      bool   `json:"ipv6"`
	// IPv6All: ip6_forward runs for this interface, which takes
	// net.ipv6.conf.all.forwarding (or the interface's force_forwarding),
	// whatever the interface's own forwarding says.
	IPv6All bool `json:"ipv6_all"`
}

// Problems describes, for people, what would go wrong; empty when the
// interface forwards both families.
func (f Forwarding) Problems() []string {
	var out []string
	if !f.IPv4 {
		out = append(out, fmt.Sprintf("%s: IPv4 forwarding is off (net.ipv4.conf.%s.forwarding=0): packets go to the kernel as fwd_disabled and are not routed", f.Interface, f.Interface))
	}
	if !f.IPv6 {
		out = append(out, fmt.Sprintf("%s: IPv6 forwarding is off (net.ipv6.conf.%s.forwarding=0): packets go to the kernel as fwd_disabled and are not routed", f.Interface, f.Interface))
	} else if !f.IPv6All {
		out = append(out, fmt.Sprintf("%s: net.ipv6.conf.all.forwarding=0: the kernel does not forward IPv6, so the fast path passes it as fwd_disabled", f.Interface))
	}
	return out
}

// CheckForwarding reads the forwarding sysctls of an interface. It changes
// nothing.
func CheckForwarding(iface string) (Forwarding, error) {
	f := Forwarding{Interface: iface}
	var err error
	if f.IPv4, err = readBool("net/ipv4/conf", iface, "forwarding"); err != nil {
		return f, err
	}
	if f.IPv6, err = readBool("net/ipv6/conf", iface, "forwarding"); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		// IPv6 disabled on the interface: nothing to forward.
		f.IPv6, f.IPv6All = true, true
		return f, nil
	}
	f.IPv6All = ReadPolicy(iface).ForwardIPv6
	return f, nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding for iface, and IPv6
// forwarding globally (net.ipv6.conf.all), which the kernel's IPv6 slow path
// requires. Only called when the config allows it.
func EnableForwarding(iface string) error {
	if err := writeSysctl("net/ipv4/conf", iface, "forwarding", "1"); err != nil {
		return err
	}
	err := writeSysctl("net/ipv6/conf", iface, "forwarding", "1")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return writeSysctl("net/ipv6/conf", "all", "forwarding", "1")
}

func sysctlPath(dir, iface, key string) string {
	// Interface names with dots are written with slashes in sysctl(8)
	// notation, but the /proc path keeps the dot.
	return filepath.Join(ProcSys, dir, iface, key)
}

func readInt(dir, iface, key string) (int, error) {
	p := sysctlPath(dir, iface, key)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p, err)
	}
	return v, nil
}

func readBool(dir, iface, key string) (bool, error) {
	v, err := readInt(dir, iface, key)
	return v != 0, err
}

// intOr reads an integer sysctl; a missing or unreadable one reads as def.
func intOr(def int, dir, iface, key string) int {
	v, err := readInt(dir, iface, key)
	if err != nil {
		return def
	}
	return v
}

// Policy is what besides the FIB decides whether the kernel forwards an
// IPv4 or IPv6 packet arriving on an interface. bpf_fib_lookup checks none
// of it, so the fast path is told.
type Policy struct {
	// RPFilter is the effective rp_filter, the larger of "all" and the
	// interface's: 0 off, 1 strict, 2 loose.
	RPFilter int
	// AcceptLocal: local IPv4 source addresses are accepted (all or iface).
	AcceptLocal bool
	// ForwardIPv6: ip6_forward forwards at all, which needs
	// net.ipv6.conf.all.forwarding or the interface's force_forwarding
	// (Linux 6.17+).
	ForwardIPv6 bool
	// DisableIPv6 is net.ipv6.conf.IF.disable_ipv6, or the interface has
	// no IPv6 device (no conf directory: IPv6 off, or an MTU below
	// 1280): the kernel drops IPv6 arriving on or leaving by it.
	DisableIPv6 bool
}

// ReadPolicy reads an interface's Policy the way the kernel combines the
// sysctls.
func ReadPolicy(iface string) Policy {
	return Policy{
		RPFilter:    max(intOr(0, "net/ipv4/conf", "all", "rp_filter"), intOr(0, "net/ipv4/conf", iface, "rp_filter")),
		AcceptLocal: intOr(0, "net/ipv4/conf", "all", "accept_local") != 0 || intOr(0, "net/ipv4/conf", iface, "accept_local") != 0,
		ForwardIPv6: intOr(1, "net/ipv6/conf", "all", "forwarding") != 0 || intOr(0, "net/ipv6/conf", iface, "force_forwarding") != 0,
		DisableIPv6: intOr(1, "net/ipv6/conf", iface, "disable_ipv6") != 0,
	}
}

func writeSysctl(dir, iface, key, val string) error {
	p := sysctlPath(dir, iface, key)
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// FIB is what of the namespace's routing sysctls the fast path must mirror:
// bpf_fib_lookup applies none of them the way kernel forwarding does.
type FIB struct {
	// HashPolicy4 and HashPolicy6 are net.ipv4.fib_multipath_hash_policy
	// and net.ipv6.fib_multipath_hash_policy (0 L3, 1 L4, 2 inner L3,
	// 3 custom fields).
	HashPolicy4, HashPolicy6 int
	// ForwardUsePMTU is net.ipv4.ip_forward_use_pmtu: forwarding honours
	// PMTU exceptions.
	ForwardUsePMTU bool
	// MinPMTU is net.ipv4.route.min_pmtu.
	MinPMTU int
}

// ReadFIB reads the routing sysctls of the calling thread's namespace. One
// that cannot be read takes the value that makes the fast path hand more
// packets to the kernel.
func ReadFIB() FIB {
	return FIB{
		HashPolicy4:    intOr(3, "net/ipv4", "", "fib_multipath_hash_policy"),
		HashPolicy6:    intOr(3, "net/ipv6", "", "fib_multipath_hash_policy"),
		ForwardUsePMTU: intOr(1, "net/ipv4", "", "ip_forward_use_pmtu") != 0,
		MinPMTU:        intOr(552, "net/ipv4/route", "", "min_pmtu"),
	}
}
