package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/netfilter"
	"github.com/xrouter/xrouter/internal/sysctl"
)

// StatusReport is what `xrouter status` shows and the API's /status serves.
type StatusReport struct {
	PinPath    string            `json:"pin_path"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Cache      *CacheStatus      `json:"cache,omitempty"`
	Netfilter  *NetfilterStatus  `json:"netfilter,omitempty"`
	// NetfilterSummary is the netfilter state in words, for the text output.
	NetfilterSummary []string `json:"netfilter_summary,omitempty"`
	// Notes are what the fast path leaves to the kernel by design (tc).
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
}

// NetfilterStatus is what the program does for netfilter (its flags,
// pinned) and the rules that make it so (read from the kernel now).
type NetfilterStatus struct {
	Mode  netfilter.Mode          `json:"mode"` // the daemon's
	Pass  dataplane.NetfilterPass `json:"to_kernel"`
	Rules netfilter.Report        `json:"rules"`
}

// CacheStatus is the next-hop cache's control block as the program sees it.
type CacheStatus struct {
	dataplane.CacheState
	// Active: a generation is set and its lease has not run out.
	Active bool `json:"active"`
}

// InterfaceStatus is one attached interface and its forwarding sysctls.
type InterfaceStatus struct {
	devmap.Status
	Forwarding *sysctl.Forwarding `json:"forwarding,omitempty"`
}

// CollectStatus reads the pins and the kernel: what `status` shows, and the
// API's /status. Without the rights to open the pins it returns an error
// that is os.ErrPermission, so that the caller can ask the daemon instead.
func CollectStatus(pin string, matches func(string) bool) (StatusReport, error) {
	// Without the rights to open pins, Inspect would report every link as
	// unreadable: say so instead, so that the caller can ask the daemon.
	if _, err := dataplane.ReadPinnedStats(pin); errors.Is(err, os.ErrPermission) {
		return StatusReport{}, err
	}
	st, err := devmap.Inspect(pin)
	if err != nil {
		return StatusReport{}, err
	}
	rep := StatusReport{PinPath: pin, Notes: []string{}, Warnings: []string{}}
	ports := map[string]bool{}
	for _, s := range st {
		is := InterfaceStatus{Status: s}
		ports[s.Name] = true
		rep.Notes = append(rep.Notes, prefixed(s.Name, s.Notes)...)
		rep.Warnings = append(rep.Warnings, prefixed(s.Name, s.Warnings)...)
		if s.Name != "?" {
			if f, err := sysctl.CheckForwarding(s.Name); err == nil {
				is.Forwarding = &f
				rep.Warnings = append(rep.Warnings, f.Problems()...)
			}
		}
		rep.Interfaces = append(rep.Interfaces, is)
	}
	rep.Cache = readCacheStatus(pin)
	nf, nfLines, nfWarns := readNetfilterStatus(pin, func(dev string) bool {
		return ports[dev] || matches(dev)
	})
	rep.Netfilter, rep.NetfilterSummary = nf, nfLines
	rep.Warnings = append(rep.Warnings, nfWarns...)
	if len(st) == 0 {
		rep.Warnings = append(rep.Warnings, "no interface is attached under "+pin)
	}
	return rep, nil
}

// readNetfilterStatus reads the pinned flags and scans the ruleset; the
// lines are for the text output, the warnings where flags and rules
// disagree (a stopped daemon, bypass).
func readNetfilterStatus(pin string, managed func(string) bool) (*NetfilterStatus, []string, []string) {
	pass, err := dataplane.ReadPinnedNetfilter(pin)
	if err != nil {
		return nil, nil, nil
	}
	// The daemon's mode, as it recorded it (this command's config may
	// not be the daemon's).
	mode := netfilter.Respect
	if pass.Bypass {
		mode = netfilter.Bypass
	}
	st := &NetfilterStatus{Mode: mode, Pass: pass, Rules: netfilter.Scan(managed)}
	var lines, warns []string
	rules4, rules6 := st.Rules.Pass()
	for _, f := range []struct {
		name         string
		ipv6, passed bool
		rules        bool
	}{{"IPv4", false, pass.IPv4, rules4}, {"IPv6", true, pass.IPv6, rules6}} {
		reason := st.Rules.Reason(f.ipv6)
		switch {
		case f.passed && f.rules:
			lines = append(lines, fmt.Sprintf("netfilter: %s: %s traffic goes to the kernel (dataplane.netfilter: %s)", reason, f.name, mode))
		case f.passed:
			lines = append(lines, fmt.Sprintf("netfilter: %s traffic goes to the kernel; no rules that need it now (the daemon follows changes)", f.name))
		case f.rules && mode == netfilter.Bypass:
			warns = append(warns, fmt.Sprintf("netfilter: %s: forwarded %s traffic skips it (dataplane.netfilter: bypass)", reason, f.name))
		case f.rules:
			warns = append(warns, fmt.Sprintf("netfilter: %s: forwarded %s traffic skips it: the daemon has not applied it (is `xrouter run` running?)", reason, f.name))
		default:
			lines = append(lines, fmt.Sprintf("netfilter: no rules XDP would skip for %s: fast path", f.name))
		}
	}
	return st, lines, warns
}

func readCacheStatus(pin string) *CacheStatus {
	st, err := dataplane.ReadPinnedCacheState(pin)
	if err != nil {
		return nil
	}
	return &CacheStatus{CacheState: st, Active: st.Generation != 0 && st.LeaseNs > dataplane.MonotonicCoarseNs()}
}

func prefixed(name string, ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = name + ": " + strings.TrimSpace(w)
	}
	return out
}
