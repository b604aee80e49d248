package devmap

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/netfilter"
)

// Modes are the accepted attach modes (dataplane.mode), in the order the
// error message lists them.
var Modes = []string{string(Auto), string(Native), string(Generic)}

// Settings is the dataplane section of the configuration: which
// interfaces the fast path forwards between and how it is attached and
// left. The config package decodes it under "dataplane"; the tags are the
// keys.
type Settings struct {
	// Interfaces is the explicit list of interfaces to forward between.
	Interfaces []string `mapstructure:"interfaces"`
	// InterfacePattern selects interfaces by shell glob (e.g. "eth*"),
	// including ones that appear while the daemon runs.
	InterfacePattern string `mapstructure:"interface_pattern"`
	// Mode is the XDP attach mode: auto, native or generic.
	Mode string `mapstructure:"mode"`
	// PinPath is the bpffs directory for the pinned maps and links.
	PinPath string `mapstructure:"pin_path"`
	// DetachOnExit removes the data plane when the daemon stops cleanly;
	// by default it keeps forwarding.
	DetachOnExit bool `mapstructure:"detach_on_exit"`
	// ManageForwarding lets xrouter enable the forwarding sysctls of the
	// attached interfaces; by default it only reports them.
	ManageForwarding bool `mapstructure:"manage_forwarding"`
	// ResyncInterval is how often the daemon re-lists interfaces to repair
	// what link events missed.
	ResyncInterval time.Duration `mapstructure:"resync_interval"`
	// Cache configures the fast path's next-hop cache.
	Cache dataplane.CacheSettings `mapstructure:"cache"`
	// Netfilter is respect (packets of a family that has netfilter rules
	// XDP would skip go to the kernel) or bypass (forward them anyway).
	Netfilter netfilter.Mode `mapstructure:"netfilter"`
}

// Validate checks the values without looking at the system; errors name
// the key.
func (s Settings) Validate() error {
	if !slices.Contains(Modes, s.Mode) {
		return fmt.Errorf("key \"dataplane.mode\": unknown mode %q (want one of %s)", s.Mode, strings.Join(Modes, ", "))
	}
	if s.InterfacePattern != "" {
		if _, err := filepath.Match(s.InterfacePattern, "x"); err != nil {
			return fmt.Errorf("key \"dataplane.interface_pattern\": bad pattern %q: %v", s.InterfacePattern, err)
		}
	}
	seen := map[string]bool{}
	for _, name := range s.Interfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
			return fmt.Errorf("key \"dataplane.interfaces\": %q is not a valid interface name", name)
		}
		if seen[name] {
			return fmt.Errorf("key \"dataplane.interfaces\": %q listed twice", name)
		}
		seen[name] = true
	}
	if !filepath.IsAbs(s.PinPath) || filepath.Clean(s.PinPath) == "/" {
		return fmt.Errorf("key \"dataplane.pin_path\": %q must be an absolute directory below a bpffs mount", s.PinPath)
	}
	if s.ResyncInterval < 0 {
		return fmt.Errorf("key \"dataplane.resync_interval\": %s is negative", s.ResyncInterval)
	}
	if err := s.Netfilter.Validate(); err != nil {
		return err
	}
	return s.Cache.Validate()
}

// Matches reports whether an interface name is selected.
func (s Settings) Matches(name string) bool {
	if slices.Contains(s.Interfaces, name) {
		return true
	}
	if s.InterfacePattern != "" {
		ok, _ := filepath.Match(s.InterfacePattern, name)
		return ok
	}
	return false
}
