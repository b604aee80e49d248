package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
)

// ReloadSummary says what a Reload changed.
type ReloadSummary struct {
	Added, Removed, Changed, Unchanged []string // neighbour addresses
	Announced, Withdrawn               []string // networks
	PoliciesChanged                    bool
}

// String is the summary as one log line.
func (r ReloadSummary) String() string {
	j := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprintf("neighbours added %s removed %s changed %s unchanged %s; networks announced %s withdrawn %s; policies changed %v",
		j(r.Added), j(r.Removed), j(r.Changed), j(r.Unchanged), j(r.Announced), j(r.Withdrawn), r.PoliciesChanged)
}

// restartKeys are the settings GoBGP takes only at start.
func restartKeys(cur, next Config) error {
	for _, k := range []struct {
		key       string
		cur, next any
	}{
		{"bgp.as", cur.AS, next.AS},
		{"bgp.router_id", cur.RouterID, next.RouterID},
		{"bgp.listen_port", cur.ListenPort, next.ListenPort},
		{"bgp.listen_addresses", cur.ListenAddresses, next.ListenAddresses},
		{"bgp.multipath", cur.Multipath, next.Multipath},
		{"bgp.grpc_address", cur.GRPCAddress, next.GRPCAddress},
		{"bgp.grpc_group", cur.GRPCGroup, next.GRPCGroup},
		{"bgp.grpc_tls", cur.GRPCTLS, next.GRPCTLS},
	} {
		if fmt.Sprint(k.cur) != fmt.Sprint(k.next) { // nil and empty lists alike
			return fmt.Errorf("%s: changing it needs a restart (%v → %v)", k.key, k.cur, k.next)
		}
	}
	return nil
}

// sessionView is what of a neighbour the session depends on: import and
// export are policy, applied by a soft reset; anything else re-creates the
// session.
type sessionView struct {
	Neighbor
	GR GracefulRestart
}

func session(cfg Config, n Neighbor) sessionView {
	v := sessionView{Neighbor: n}
	v.Import, v.Export = "", ""
	v.FlowSpecImport, v.FlowSpecValidation = FlowSpecImport{}, nil
	v.GracefulRestart = nil
	if n.grEnabled(cfg.GracefulRestart) {
		v.GR = cfg.GracefulRestart
		v.GR.Enabled = true
	}
	return v
}

// Reload applies next without touching what did not change: neighbours
// whose session settings are equal keep their sessions (policy changes
// reach them through a soft reset, which keeps the session up); removed
// neighbours are deleted, added ones added, changed ones re-created;
// networks are announced and withdrawn by difference, and redistributed
// kernel routes re-filtered. The whole of next is checked first: a config
// that fails validation, or that changes a setting GoBGP only takes at
// start (bgp.as, router_id, listen_port, listen_addresses, multipath,
// grpc_address), is rejected with nothing applied. Should GoBGP refuse a
// step after that (not expected for a validated config), the running
// config is applied back and the error returned.
func (s *Speaker) Reload(ctx context.Context, next Config) (ReloadSummary, error) {
	if err := next.Validate(); err != nil {
		return ReloadSummary{}, fmt.Errorf("bgp config: %w", err)
	}
	next = next.withDefaults()
	s.opMu.Lock()
	defer s.opMu.Unlock()
	cur := s.config()
	if err := restartKeys(cur, next); err != nil {
		return ReloadSummary{}, err
	}
	sum, err := s.apply(ctx, cur, next)
	if err != nil {
		if _, rerr := s.apply(ctx, next, cur); rerr != nil {
			return sum, fmt.Errorf("%w; going back to the running config failed too: %w", err, rerr)
		}
		return sum, fmt.Errorf("%w; the running config was applied back", err)
	}
	return sum, nil
}

// apply brings GoBGP from cur to next. Call with opMu held.
func (s *Speaker) apply(ctx context.Context, cur, next Config) (ReloadSummary, error) {
	var sum ReloadSummary

	curN := map[netip.Addr]Neighbor{}
	for _, n := range cur.Neighbors {
		a, _ := netip.ParseAddr(n.Address)
		curN[a] = n
	}
	var add, del []Neighbor
	nextN := map[netip.Addr]bool{}
	for _, n := range next.Neighbors {
		a, _ := netip.ParseAddr(n.Address)
		nextN[a] = true
		old, ok := curN[a]
		switch {
		case !ok:
			add = append(add, n)
			sum.Added = append(sum.Added, a.String())
		case !reflect.DeepEqual(session(cur, old), session(next, n)):
			del = append(del, old)
			add = append(add, n)
			sum.Changed = append(sum.Changed, a.String())
		default:
			sum.Unchanged = append(sum.Unchanged, a.String())
		}
	}
	for a, n := range curN {
		if !nextN[a] {
			del = append(del, n)
			sum.Removed = append(sum.Removed, a.String())
		}
	}
	slices.Sort(sum.Removed)

	oldPol, newPol := buildPolicies(cur), buildPolicies(next)
	sum.PoliciesChanged = !reflect.DeepEqual(policyText(oldPol), policyText(newPol))

	var errs []error
	fail := func(err error) { errs = append(errs, err) }
	// Removed first: their statements go with the new policies.
	for _, n := range del {
		a, _ := netip.ParseAddr(n.Address)
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.Address}); err != nil {
			fail(fmt.Errorf("deleting neighbour %s: %w", n.Address, err))
		}
		s.forgetLimit(a)
	}
	// Policies before the added neighbours, so that a new eBGP neighbour
	// is never without its RFC 8212 statements.
	if sum.PoliciesChanged {
		if err := s.srv.SetPolicies(ctx, &api.SetPoliciesRequest{
			DefinedSets: newPol.sets, Policies: []*api.Policy{newPol.imp, newPol.export},
		}); err != nil {
			fail(fmt.Errorf("replacing policies: %w", err))
		}
	}
	s.mu.Lock()
	s.cfg = next
	s.mu.Unlock()
	// FlowSpec rules are judged again against the new policies.
	if err := s.startFlowSpec(ctx, next); err != nil {
		fail(err)
	}
	for _, n := range add {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerAPI(next, n, false)}); err != nil {
			fail(fmt.Errorf("adding neighbour %s (as %d): %w", n.Address, n.PeerAS, err))
		}
	}
	if sum.PoliciesChanged {
		for _, a := range sum.Unchanged {
			if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{
				Address: a, Soft: true, Direction: api.ResetPeerRequest_BOTH,
			}); err != nil {
				fail(fmt.Errorf("soft reset of neighbour %s for the new policies: %w", a, err))
			}
		}
	}

	want := map[netip.Prefix]bool{}
	for _, n := range next.Networks {
		p, _ := parsePrefix(n)
		want[p] = true
	}
	for p, srcs := range s.local {
		if srcs[sourceConfig] && !want[p] {
			if err := s.withdraw(ctx, p, sourceConfig); err != nil {
				fail(err)
			}
			sum.Withdrawn = append(sum.Withdrawn, p.String())
		}
	}
	for p := range want {
		if !s.local[p][sourceConfig] {
			if err := s.announce(ctx, p, sourceConfig); err != nil {
				fail(err)
			}
			sum.Announced = append(sum.Announced, p.String())
		}
	}
	slices.Sort(sum.Announced)
	slices.Sort(sum.Withdrawn)
	for _, src := range []string{sourceConnected, sourceStatic} {
		if err := s.redistributeLocked(ctx, src, s.kernel[src]); err != nil {
			fail(err)
		}
	}
	if len(errs) > 0 {
		return sum, fmt.Errorf("applying the reloaded bgp config: %w", joinErrs(errs))
	}
	return sum, nil
}

// policyText compares policies by content.
func policyText(p policies) string {
	var b strings.Builder
	for _, d := range p.sets {
		b.WriteString(d.String())
	}
	b.WriteString(p.imp.String())
	b.WriteString(p.export.String())
	return b.String()
}

func joinErrs(errs []error) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}
