package bgp

import (
	"context"
	"fmt"
	"net/netip"
)

// Kinds of kernel routes Redistribute takes.
const (
	RedistributeConnected = sourceConnected
	RedistributeStatic    = sourceStatic
)

// Redistribute sets the kernel routes of one kind (RedistributeConnected
// or RedistributeStatic) that exist now; those the kind's prefix list
// matches are announced, and any announced earlier and no longer given (or
// no longer matching) are withdrawn. The daemon calls it with the full set
// whenever the kernel's routes change. Paths still go through each
// neighbour's export policy.
func (s *Speaker) Redistribute(ctx context.Context, kind string, prefixes []netip.Prefix) error {
	if kind != sourceConnected && kind != sourceStatic {
		return fmt.Errorf("redistribute: unknown kind %q", kind)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.kernel[kind] = prefixes
	return s.redistributeLocked(ctx, kind, prefixes)
}

// redistributeLocked brings the paths of one kind to the filtered set.
// Call with opMu held.
func (s *Speaker) redistributeLocked(ctx context.Context, kind string, prefixes []netip.Prefix) error {
	cfg := s.config()
	src := cfg.Redistribute.Connected
	if kind == sourceStatic {
		src = cfg.Redistribute.Static
	}
	want := map[netip.Prefix]bool{}
	if src.Enabled {
		for _, p := range prefixes {
			if cfg.listMatches(src.PrefixList, p.Masked()) {
				want[p.Masked()] = true
			}
		}
	}
	var firstErr error
	for p, srcs := range s.local {
		if srcs[kind] && !want[p] {
			if err := s.withdraw(ctx, p, kind); err != nil && firstErr == nil {
				firstErr = err
			} else if err == nil {
				s.log.Info("redistribution: withdrawn", "kind", kind, "prefix", p)
			}
		}
	}
	for p := range want {
		if !s.local[p][kind] {
			if err := s.announce(ctx, p, kind); err != nil && firstErr == nil {
				firstErr = err
			} else if err == nil {
				s.log.Info("redistribution: announced", "kind", kind, "prefix", p)
			}
		}
	}
	return firstErr
}

// listMatches reports whether the named prefix list matches p.
func (c Config) listMatches(name string, p netip.Prefix) bool {
	for _, pl := range c.PrefixLists {
		if pl.Name != name {
			continue
		}
		for _, e := range pl.Entries {
			ep, err := parsePrefix(e.Prefix)
			if err != nil || ep.Addr().Is4() != p.Addr().Is4() {
				continue
			}
			ge, le := e.lengths(ep)
			if p.Bits() >= ge && p.Bits() <= le && ep.Contains(p.Addr()) {
				return true
			}
		}
	}
	return false
}
