package main

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/config"
)

// capNeed is a capability `run` needs, what for, and the capability the
// kernel also accepts in its place (CAP_SYS_ADMIN stands in for CAP_BPF
// and CAP_PERFMON, for older setups), or -1.
type capNeed struct {
	bit, alt  int
	name, why string
}

// neededCaps lists the capabilities `run` needs with cfg.
func neededCaps(cfg *config.Config) []capNeed {
	caps := []capNeed{
		{unix.CAP_BPF, unix.CAP_SYS_ADMIN, "CAP_BPF", "BPF maps and programs"},
		{unix.CAP_PERFMON, unix.CAP_SYS_ADMIN, "CAP_PERFMON", "the verifier accepts the fast path's pointer arithmetic only with it"},
		{unix.CAP_NET_ADMIN, -1, "CAP_NET_ADMIN", "XDP attach, devmap, routes"},
	}
	if p := cfg.BGP.ListenPort; cfg.BGP.AS != 0 && (p == 0 || p > 0 && p < 1024) {
		caps = append(caps, capNeed{unix.CAP_NET_BIND_SERVICE, -1, "CAP_NET_BIND_SERVICE", "the BGP listener on a port below 1024 (bgp.listen_port)"})
	}
	return caps
}

// checkCaps refuses to start, before anything is touched, when the process
// lacks a capability that run needs (a systemd unit or setpriv that cut
// too much). Without it the failure comes later and less clearly: without
// CAP_PERFMON, as a page of verifier log.
func checkCaps(cfg *config.Config) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	has := func(bit int) bool { return bit >= 0 && eff&(1<<uint(bit)) != 0 }
	var missing []string
	for _, c := range neededCaps(cfg) {
		if !has(c.bit) && !has(c.alt) {
			missing = append(missing, fmt.Sprintf("%s (%s)", c.name, c.why))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing capabilities: %s", strings.Join(missing, ", "))
	}
	return nil
}
