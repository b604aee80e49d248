package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/flowspec"
	"github.com/xrouter/xrouter/internal/metrics"
	"github.com/xrouter/xrouter/internal/netfilter"
	"github.com/xrouter/xrouter/internal/nhcache"
	"github.com/xrouter/xrouter/internal/sysctl"
)

// xdpPlane is the real data plane: the program and maps (dataplane), the
// next-hop cache's invalidator, the netfilter watcher, the interfaces
// (devmap) and the neighbour prober.
type xdpPlane struct {
	s       devmap.Settings
	log     *slog.Logger
	adopted bool

	dp  *dataplane.Dataplane
	inv *nhcache.Invalidator
	nfw *netfilter.Watcher
	mgr *devmap.Manager
}

func newXDPPlane(s devmap.Settings, log *slog.Logger) dataPlane {
	return &xdpPlane{s: s, log: log}
}

func (x *xdpPlane) Adopted() bool { return x.adopted }

// Attach loads the program, calls loaded, fills the program from the
// kernel and attaches it. The next-hop cache stays off until the
// invalidator follows the kernel's events (Watch).
func (x *xdpPlane) Attach(loaded func() error) (err error) {
	s := x.s
	if err := devmap.EnsureBpffs(s.PinPath); err != nil {
		return err
	}
	// A failed start must leave nothing behind; but pins an earlier run
	// left are a data plane still forwarding, and stay.
	x.adopted = pinned(s.PinPath)
	defer func() {
		if err != nil && !x.adopted {
			_, _ = devmap.Detach(s.PinPath)
		}
	}()
	if x.dp, err = dataplane.LoadWith(s.PinPath, s.Cache); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			x.dp.Close()
		}
	}()
	if err := loaded(); err != nil {
		return err
	}
	x.inv, err = nhcache.NewInvalidator(s.Cache, x.dp, x.log)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			x.inv.Stop()
		}
	}()
	// Netfilter is read before anything is attached, so that no packet
	// skips a firewall rule that is already there.
	x.checkNetfilter()
	// Route MTUs and the forwarding sysctls are in the program before it
	// is attached; the invalidator keeps them current from then on.
	if err := x.inv.SyncFIB(); err != nil {
		return err
	}
	return x.attachPorts()
}

func (x *xdpPlane) checkNetfilter() {
	s := x.s
	for _, w := range s.Netfilter.Warnings() {
		x.log.Warn(w)
	}
	x.nfw = netfilter.New(netfilter.Config{
		Mode:    s.Netfilter,
		Managed: s.Matches,
		Apply: func(ipv4, ipv6 bool) error {
			return x.dp.SetNetfilter(dataplane.NetfilterPass{IPv4: ipv4, IPv6: ipv6, Bypass: s.Netfilter == netfilter.Bypass})
		},
	}, x.log)
	x.nfw.Check()
}

func (x *xdpPlane) attachPorts() error {
	s := x.s
	x.mgr = devmap.New(s, devmap.Hooks{
		OnAttach:       func(name string) { checkForwarding(name, s.ManageForwarding, x.log) },
		OnEgressChange: func() { x.inv.Bump("devmap") },
	}, x.dp, x.log)
	if err := x.mgr.Start(); err != nil {
		return fmt.Errorf("attaching data plane: %w", err)
	}
	for _, p := range x.mgr.Ports() {
		checkForwarding(p.Name, s.ManageForwarding, x.log)
	}
	return nil
}

// Watch starts the invalidator, the netfilter watcher and the neighbour
// prober (XDP forwarding does not confirm neighbours; the prober makes
// their state machine run for the next hops in use, as kernel forwarding
// does), then logs what the pins' inspection warns about.
func (x *xdpPlane) Watch(ctx context.Context) (wait func()) {
	invDone := make(chan error, 1)
	go func() { invDone <- x.inv.Run(ctx) }()
	nfDone := make(chan error, 1)
	go func() { nfDone <- x.nfw.Run(ctx) }()
	probeDone := make(chan error, 1)
	go func() { probeDone <- nhcache.NewProber(x.dp, x.log).Run(ctx) }()
	reportWarnings(x.s.PinPath, x.log)
	return func() {
		for _, w := range []struct {
			name string
			done chan error
		}{{"netfilter watcher", nfDone}, {"neighbour confirmation", probeDone}, {"next-hop cache invalidator", invDone}} {
			if err := <-w.done; err != nil {
				x.log.Warn(w.name, "err", err)
			}
		}
	}
}

func (x *xdpPlane) Metrics() http.Handler {
	cache := func() (dataplane.CacheStats, dataplane.CacheState, error) {
		s, err := x.dp.CacheStats()
		return s, x.inv.State(), err
	}
	return metrics.Handler(metrics.NewCollector(x.dp.Stats, x.mgr.Ports), metrics.NewCacheCollector(cache),
		metrics.NewFlowspecCollector(x.dp.FlowspecStats))
}

// errNotLoaded is the answer of the FlowSpec methods before Attach.
var errNotLoaded = errors.New("the data plane is not loaded yet")

func (x *xdpPlane) SetFlowspec(rules []flowspec.Rule) error {
	if x.dp == nil {
		return errNotLoaded
	}
	return x.dp.SetFlowspec(rules)
}

func (x *xdpPlane) FlowspecStats() ([]dataplane.FlowspecRuleStats, error) {
	if x.dp == nil {
		return nil, errNotLoaded
	}
	return x.dp.FlowspecStats()
}

func (x *xdpPlane) Run(ctx context.Context) error { return x.mgr.Run(ctx, x.s.ResyncInterval) }

func (x *xdpPlane) Resync() {
	x.mgr.Resync()
	reportWarnings(x.s.PinPath, x.log)
}

func (x *xdpPlane) Ports() int { return len(x.mgr.Ports()) }

// Close releases the interfaces, turns the next-hop cache off (nobody
// invalidates it any more) and closes the maps.
func (x *xdpPlane) Close(detach bool) {
	x.mgr.Close(detach)
	if detach {
		x.dp.Close()
		if _, err := devmap.Detach(x.s.PinPath); err != nil {
			x.log.Warn("removing pins", "err", err)
		}
		x.log.Info("data plane detached")
	} else {
		x.log.Info("data plane left forwarding; the next `xrouter run` adopts it", "pin_path", x.s.PinPath)
	}
	x.inv.Stop()
	x.dp.Close()
}

// pinned reports whether an earlier run left a data plane in pinPath.
func pinned(pinPath string) bool {
	_, err := os.Stat(filepath.Join(pinPath, dataplane.StatsMapName))
	return err == nil
}

func checkForwarding(iface string, manage bool, log *slog.Logger) {
	f, err := sysctl.CheckForwarding(iface)
	if err != nil {
		log.Warn("cannot read forwarding sysctls", "interface", iface, "err", err)
		return
	}
	probs := f.Problems()
	if len(probs) == 0 {
		return
	}
	if manage {
		if err := sysctl.EnableForwarding(iface); err != nil {
			log.Error("enabling forwarding", "interface", iface, "err", err)
			return
		}
		log.Info("enabled forwarding (dataplane.manage_forwarding)", "interface", iface)
		return
	}
	for _, p := range probs {
		log.Warn("forwarding disabled; set dataplane.manage_forwarding or the sysctl", "interface", iface, "problem", p)
	}
}

func reportWarnings(pinPath string, log *slog.Logger) {
	st, err := devmap.Inspect(pinPath)
	if err != nil {
		log.Warn("inspecting data plane", "err", err)
		return
	}
	for _, s := range st {
		for _, w := range s.Warnings {
			log.Warn(w, "interface", s.Name)
		}
	}
}
