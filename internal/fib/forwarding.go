// Package fib is the kernel FIB as xrouter sees it. For the data plane it
// checks that the kernel will forward on the attached interfaces: the fast
// path's bpf_fib_lookup returns FWD_DISABLED unless forwarding is on for the
// ingress interface, and the slow path must agree with it.
package fib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// IPv6All is net.ipv6.conf.all.forwarding: the kernel's slow path
	// (ip6_forward) forwards only when it is on, whatever the interface says.
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
		out = append(out, fmt.Sprintf("%s: net.ipv6.conf.all.forwarding=0: the kernel's slow path will not forward IPv6 the fast path forwards", f.Interface))
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
	if f.IPv6All, err = readBool("net/ipv6/conf", "all", "forwarding"); err != nil {
		return f, err
	}
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

func readBool(dir, iface, key string) (bool, error) {
	p := sysctlPath(dir, iface, key)
	b, err := os.ReadFile(p)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

func writeSysctl(dir, iface, key, val string) error {
	p := sysctlPath(dir, iface, key)
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}
