package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// limitState is one neighbour's max-prefix state.
type limitState struct {
	// tripped: the session was torn down for the limit and is held down.
	tripped bool
	// warned: the "warn" action logged the current excess already.
	warned map[string]bool
	// reenable is the pending "restart" timer.
	reenable *time.Timer
}

func (s *Speaker) limitStateLocked(a netip.Addr) *limitState {
	st := s.limits[a]
	if st == nil {
		st = &limitState{warned: map[string]bool{}}
		s.limits[a] = st
	}
	return st
}

// neighbor returns the configured neighbour with address a.
func (s *Speaker) neighborLocked(a netip.Addr) (Neighbor, bool) {
	for _, n := range s.cfg.Neighbors {
		if na, err := netip.ParseAddr(n.Address); err == nil && na == a {
			return n, true
		}
	}
	return Neighbor{}, false
}

// onPrefixLimit runs in GoBGP's goroutines right after it sent the Cease
// NOTIFICATION (subcode 1, maximum number of prefixes reached) for a
// neighbour with the teardown or restart action. GoBGP on its own would
// reconnect after its idle hold time and trip again, so the session is
// disabled: for good (teardown) or for restart_after (restart). The GoBGP
// calls go through its management loop, which may be the caller: they run
// in their own goroutine.
func (s *Speaker) onPrefixLimit(neighbor, family string) {
	a, err := netip.ParseAddr(neighbor)
	if err != nil {
		return
	}
	a = a.Unmap()
	s.mu.Lock()
	n, ok := s.neighborLocked(a)
	if !ok || s.stopped || n.MaxPrefixes.Limit == 0 || n.MaxPrefixes.Action == MaxPrefixWarn {
		s.mu.Unlock()
		return
	}
	st := s.limitStateLocked(a)
	if st.tripped {
		s.mu.Unlock()
		return
	}
	st.tripped = true
	mp := n.MaxPrefixes
	s.mu.Unlock()

	if mp.Action == MaxPrefixRestart {
		s.log.Warn("max-prefix limit exceeded: session torn down, re-enabled later",
			"neighbor", a, "peer_as", n.PeerAS, "family", family, "limit", mp.Limit,
			"action", mp.Action, "restart_after", mp.RestartAfter)
	} else {
		s.log.Warn("max-prefix limit exceeded: session torn down and kept down until the neighbour's config changes or the daemon restarts",
			"neighbor", a, "peer_as", n.PeerAS, "family", family, "limit", mp.Limit, "action", mp.Action)
	}
	go func() {
		// GoBGP logs before it sends the NOTIFICATION: let it go out
		// first, so that the peer learns why (it reconnects only after
		// its idle hold time, 5 s).
		time.Sleep(500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.srv.DisablePeer(ctx, &api.DisablePeerRequest{
			Address: a.String(), Communication: "maximum number of prefixes reached",
		}); err != nil {
			s.log.Error("max-prefix: disabling neighbour", "neighbor", a, "err", err)
		}
		if mp.Action != MaxPrefixRestart {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped || s.limits[a] != st {
			return // reloaded or stopped meanwhile
		}
		st.reenable = time.AfterFunc(mp.RestartAfter, func() { s.reenable(a, st) })
	}()
}

// reenable ends the hold-down of the restart action.
func (s *Speaker) reenable(a netip.Addr, st *limitState) {
	s.mu.Lock()
	if s.stopped || s.limits[a] != st {
		s.mu.Unlock()
		return
	}
	st.tripped = false
	st.reenable = nil
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: a.String()}); err != nil {
		s.log.Error("max-prefix: re-enabling neighbour", "neighbor", a, "err", err)
		return
	}
	s.log.Info("max-prefix: restart_after passed, session re-enabled", "neighbor", a)
}

// forgetLimit drops a neighbour's max-prefix state (removed or changed by
// a reload, which re-adds it enabled).
func (s *Speaker) forgetLimit(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.limits[a]; st != nil && st.reenable != nil {
		st.reenable.Stop()
	}
	delete(s.limits, a)
}

// limitPoll is how often the "warn" action looks at the counters.
const limitPoll = time.Second

// watchLimits implements the "warn" action: GoBGP has no limit that only
// logs, so the received counters are polled and an excess is logged once
// (again after it went away and came back).
func (s *Speaker) watchLimits(ctx context.Context) {
	t := time.NewTicker(limitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		warn := map[netip.Addr]Neighbor{}
		for _, n := range s.cfg.Neighbors {
			if n.MaxPrefixes.Limit > 0 && n.MaxPrefixes.Action == MaxPrefixWarn {
				a, _ := netip.ParseAddr(n.Address)
				warn[a] = n
			}
		}
		s.mu.Unlock()
		if len(warn) == 0 {
			continue
		}
		type count struct {
			a      netip.Addr
			family string
			n      uint64
		}
		var counts []count
		err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.Conf == nil {
				return
			}
			a, err := netip.ParseAddr(p.Conf.NeighborAddress)
			if err != nil {
				return
			}
			if _, ok := warn[a.Unmap()]; !ok {
				return
			}
			for _, af := range p.AfiSafis {
				if af.State == nil || af.State.Family == nil {
					continue
				}
				fam := familyName(af.State.Family)
				counts = append(counts, count{a.Unmap(), fam, af.State.Received})
			}
		})
		if err != nil {
			continue
		}
		for _, c := range counts {
			n := warn[c.a]
			s.mu.Lock()
			st := s.limitStateLocked(c.a)
			over := c.n > uint64(n.MaxPrefixes.Limit)
			first := over && !st.warned[c.family]
			st.warned[c.family] = over
			s.mu.Unlock()
			if first {
				s.log.Warn("max-prefix limit exceeded: still accepting (action warn)",
					"neighbor", c.a, "peer_as", n.PeerAS, "family", c.family, "limit", n.MaxPrefixes.Limit,
					"received", c.n, "action", MaxPrefixWarn)
			}
		}
	}
}
