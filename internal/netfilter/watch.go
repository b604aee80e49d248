package netfilter

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/nftables"
)

// DefaultRecheck is how often the ruleset is read again regardless of
// notifications: iptables-legacy sends none, and a lost notification
// (a full socket buffer) must not leave the data plane wrong for long.
const DefaultRecheck = 30 * time.Second

// settle is how long the watcher waits after a notification for more of the
// same burst (nft -f, iptables-restore) before it reads the ruleset.
const settle = 50 * time.Millisecond

// Scan reads the namespace's ruleset and classifies it. A ruleset that
// cannot be read is reported in Err (and then counts for both families).
func Scan(managed func(dev string) bool) Report {
	var chains []Chain
	nft, err := scanNftables()
	if err != nil {
		return Report{IPv4: []Chain{}, IPv6: []Chain{}, Err: err.Error()}
	}
	chains = append(chains, nft...)
	legacy, err := scanLegacy()
	if err != nil {
		return Report{IPv4: []Chain{}, IPv6: []Chain{}, Err: err.Error()}
	}
	chains = append(chains, legacy...)
	return Classify(chains, managed)
}

// Config is what the watcher needs from the daemon.
type Config struct {
	Mode Mode
	// Recheck is the safety-net period (0: DefaultRecheck).
	Recheck time.Duration
	// Managed says whether an interface is one of the data plane's ports
	// (nil: every interface counts).
	Managed func(dev string) bool
	// Apply tells the data plane which families go to the kernel.
	Apply func(ipv4, ipv6 bool) error
}

// Watcher keeps the data plane's netfilter flags in step with the ruleset.
type Watcher struct {
	cfg  Config
	log  *slog.Logger
	scan func() Report

	mu      sync.Mutex
	report  Report
	applied bool
	pass    [2]bool // what was last applied, IPv4 and IPv6
	warned  [2]string
}

// New makes a watcher; Check or Run start it.
func New(cfg Config, log *slog.Logger) *Watcher {
	if cfg.Recheck <= 0 {
		cfg.Recheck = DefaultRecheck
	}
	w := &Watcher{cfg: cfg, log: log}
	w.scan = func() Report { return Scan(cfg.Managed) }
	return w
}

// Report is the last scan's result.
func (w *Watcher) Report() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.report
}

// Check reads the ruleset now, sets the data plane's flags and logs each
// family turning on or off. In bypass mode the flags stay clear and the
// rules found are logged as skipped.
func (w *Watcher) Check() Report {
	r := w.scan()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.report = r
	want := [2]bool{}
	want[0], want[1] = r.Pass()
	if r.Err != "" {
		w.log.Error("cannot read the netfilter ruleset", "err", r.Err)
	}
	names := [2]string{"IPv4", "IPv6"}
	if w.cfg.Mode == Bypass {
		for i := range want {
			reason := r.Reason(i == 1)
			if reason != "" && reason != w.warned[i] {
				w.log.Warn("dataplane.netfilter is bypass: forwarded packets skip netfilter rules", "family", names[i], "rules", reason)
			}
			w.warned[i] = reason
		}
		want = [2]bool{}
	}
	if w.applied && want == w.pass {
		return r
	}
	if err := w.cfg.Apply(want[0], want[1]); err != nil {
		w.log.Error("setting the data plane's netfilter flags", "err", err)
		w.applied = false
		return r
	}
	for i := range want {
		switch {
		case want[i] && (!w.applied || !w.pass[i]):
			w.log.Warn("netfilter rules on hooks XDP would skip: "+names[i]+" traffic goes to the kernel (dataplane.netfilter: respect)", "family", names[i], "rules", r.Reason(i == 1))
		case !want[i] && w.applied && w.pass[i]:
			w.log.Info("no netfilter rules on hooks XDP would skip any more: "+names[i]+" fast path back", "family", names[i])
		}
	}
	w.pass, w.applied = want, true
	return r
}

// Run follows nftables notifications (NFNLGRP_NFTABLES) and checks again
// after each change, and every Recheck regardless, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	tick := time.NewTicker(w.cfg.Recheck)
	defer tick.Stop()
	var mon *nftables.Monitor
	var events chan *nftables.MonitorEvents
	subscribe := func() {
		conn, err := nftables.New()
		if err == nil {
			mon = nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
			events, err = conn.AddGenerationalMonitor(mon)
		}
		if err != nil {
			w.log.Warn("cannot follow nftables changes; re-checking periodically only", "every", w.cfg.Recheck, "err", err)
			mon, events = nil, nil
		}
	}
	unsubscribe := func() {
		if mon != nil {
			_ = mon.Close()
			go func(ch chan *nftables.MonitorEvents) {
				for range ch { // drain, so that the monitor goroutine ends
				}
			}(events)
		}
		mon, events = nil, nil
	}
	defer unsubscribe()
	subscribe()
	w.Check() // anything between the caller's first check and the subscription
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok || (ev != nil && ev.GeneratedBy != nil && ev.GeneratedBy.Error != nil) {
				// The subscription broke (a lost notification, most
				// likely): subscribe again and read everything.
				unsubscribe()
				subscribe()
				w.Check()
				continue
			}
			w.drain(ctx, events)
			w.Check()
		case <-tick.C:
			if mon == nil {
				subscribe()
			}
			w.Check()
		}
	}
}

// drain swallows the rest of a burst of notifications.
func (w *Watcher) drain(ctx context.Context, events chan *nftables.MonitorEvents) {
	t := time.NewTimer(settle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		}
	}
}
