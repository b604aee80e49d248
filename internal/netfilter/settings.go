package netfilter

import (
	"fmt"
	"slices"
	"strings"
)

// Mode is dataplane.netfilter: what the fast path does while netfilter has
// rules it would skip.
type Mode string

// The modes.
const (
	// Respect hands every packet of an affected family to the kernel, so
	// that its netfilter rules, conntrack and NAT see it (the default).
	Respect Mode = "respect"
	// Bypass forwards in XDP regardless: the rules are skipped for
	// forwarded traffic. An explicit opt-out.
	Bypass Mode = "bypass"
)

// Modes are the accepted values, in the order errors list them.
var Modes = []string{string(Respect), string(Bypass)}

// Validate checks the value; the error names the key.
func (m Mode) Validate() error {
	if !slices.Contains(Modes, string(m)) {
		return fmt.Errorf("key \"dataplane.netfilter\": unknown value %q (want %s)", string(m), strings.Join(Modes, " or "))
	}
	return nil
}

// Warnings are what `xrouter config check` and the daemon's start say about
// the setting.
func (m Mode) Warnings() []string {
	if m == Bypass {
		return []string{"dataplane.netfilter is bypass: forwarded packets skip nftables/iptables rules on the prerouting, forward and postrouting hooks (and netdev hooks), conntrack and NAT"}
	}
	return nil
}
