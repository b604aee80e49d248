package bgp

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
)

// Names of the GoBGP objects this package creates.
const (
	importPolicy = "xrouter-import"
	exportPolicy = "xrouter-export"
	globalRIB    = "global"
)

// policies is what installPolicies gives GoBGP: defined sets first, then
// the two policies that refer to them.
type policies struct {
	sets   []*api.DefinedSet
	imp    *api.Policy
	export *api.Policy
}

// buildPolicies expresses the per-neighbour prefix lists and RFC 8212 as
// two global policies. Each neighbour gets its own statements, in order:
// accept what its list matches, then reject the rest of its routes (or
// accept them for iBGP without a list). Every configured neighbour is thus
// decided by its own statements; the default action (accept) only sees
// paths with no neighbour, our own networks on import.
func buildPolicies(cfg Config) policies {
	var out policies
	listFamilies := map[string][]string{} // prefix list → GoBGP prefix sets, one per family
	for _, pl := range cfg.PrefixLists {
		byFamily := map[bool][]*api.Prefix{}
		for _, e := range pl.Entries {
			p, _ := parsePrefix(e.Prefix) // validated
			ge, le := e.lengths(p)
			byFamily[p.Addr().Is4()] = append(byFamily[p.Addr().Is4()], &api.Prefix{
				IpPrefix: p.String(), MaskLengthMin: uint32(ge), MaskLengthMax: uint32(le),
			})
		}
		for _, v4 := range []bool{true, false} {
			if len(byFamily[v4]) == 0 {
				continue
			}
			name := fmt.Sprintf("pl-%s-v6", pl.Name)
			if v4 {
				name = fmt.Sprintf("pl-%s-v4", pl.Name)
			}
			out.sets = append(out.sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name, Prefixes: byFamily[v4]})
			listFamilies[pl.Name] = append(listFamilies[pl.Name], name)
		}
	}

	out.imp = &api.Policy{Name: importPolicy}
	out.export = &api.Policy{Name: exportPolicy}
	fsFamilies := []*api.Family{familyAPI(FamilyIPv4FlowSpec), familyAPI(FamilyIPv6FlowSpec)}
	for _, n := range cfg.Neighbors {
		if n.hasFlowSpec() {
			// xrouter applies FlowSpec rules, it does not propagate them.
			out.export.Statements = append(out.export.Statements, &api.Statement{
				Name:       "export-no-flowspec",
				Conditions: &api.Conditions{AfiSafiIn: fsFamilies},
				Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
			})
			break
		}
	}
	for _, n := range cfg.Neighbors {
		a, _ := netip.ParseAddr(n.Address) // validated
		nset := "nb-" + a.String()
		out.sets = append(out.sets, &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR, Name: nset,
			List: []string{netip.PrefixFrom(a, a.BitLen()).String()},
		})
		ebgp := n.ebgp(cfg.AS)
		if n.hasFlowSpec() {
			// FlowSpec paths all enter GoBGP's RIB (they are never
			// exported): flowspec_import, RFC 8212 and the validation are
			// applied to them per rule by flowspec.go, which can say why
			// it rejects one.
			out.imp.Statements = append(out.imp.Statements, &api.Statement{
				Name: "import-" + nset + "-flowspec",
				Conditions: &api.Conditions{
					NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset},
					AfiSafiIn:   fsFamilies,
				},
				Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
			})
		}
		out.imp.Statements = append(out.imp.Statements, neighbourStatements("import", nset, n.Import, listFamilies[n.Import], ebgp)...)
		out.export.Statements = append(out.export.Statements, neighbourStatements("export", nset, n.Export, listFamilies[n.Export], ebgp)...)
	}
	return out
}

func neighbourStatements(dir, nset, list string, sets []string, ebgp bool) []*api.Statement {
	var st []*api.Statement
	for _, ps := range sets {
		st = append(st, &api.Statement{
			Name: fmt.Sprintf("%s-%s-%s", dir, nset, ps),
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset},
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: ps},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		})
	}
	// The rest of this neighbour's routes: rejected when a list is given
	// (it did not match) and for eBGP without a list (RFC 8212).
	last := api.RouteAction_ACCEPT
	if list != "" || ebgp {
		last = api.RouteAction_REJECT
	}
	st = append(st, &api.Statement{
		Name:       fmt.Sprintf("%s-%s-rest", dir, nset),
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset}},
		Actions:    &api.Actions{RouteAction: last},
	})
	return st
}

func (s *Speaker) installPolicies(ctx context.Context) error {
	p := buildPolicies(s.cfg)
	for _, ds := range p.sets {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: ds}); err != nil {
			return fmt.Errorf("adding defined set %s: %w", ds.Name, err)
		}
	}
	for _, pol := range []struct {
		p   *api.Policy
		dir api.PolicyDirection
	}{{p.imp, api.PolicyDirection_IMPORT}, {p.export, api.PolicyDirection_EXPORT}} {
		// Assigned even without statements (no neighbours yet), so that a
		// reload adding neighbours only has to replace the policies.
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol.p}); err != nil {
			return fmt.Errorf("adding policy %s: %w", pol.p.Name, err)
		}
		if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name:          globalRIB,
			Direction:     pol.dir,
			Policies:      []*api.Policy{{Name: pol.p.Name}},
			DefaultAction: api.RouteAction_ACCEPT,
		}}); err != nil {
			return fmt.Errorf("assigning policy %s: %w", pol.p.Name, err)
		}
	}
	return nil
}
