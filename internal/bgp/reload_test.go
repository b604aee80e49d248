package bgp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

func TestPeerAPIGracefulRestartAndLimits(t *testing.T) {
	off := false
	cfg := Config{AS: 65001, RouterID: "10.0.0.1", GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 30 * time.Second}}.withDefaults()
	n := Neighbor{Address: "10.0.0.2", PeerAS: 65002, Families: []string{FamilyIPv4Unicast, FamilyIPv6Unicast},
		MaxPrefixes: MaxPrefixes{Limit: 10, Action: MaxPrefixRestart}}
	p := peerAPI(cfg, n, true)
	if gr := p.GracefulRestart; gr == nil || !gr.Enabled || gr.RestartTime != 30 || gr.DeferralTime != 60 || !gr.LocalRestarting {
		t.Errorf("graceful restart = %v", gr)
	}
	for _, af := range p.AfiSafis {
		if af.MpGracefulRestart == nil || !af.MpGracefulRestart.Config.Enabled {
			t.Errorf("family %v without per-family graceful restart", af.Config.Family)
		}
		if af.PrefixLimits == nil || af.PrefixLimits.MaxPrefixes != 10 {
			t.Errorf("family %v prefix limit = %v", af.Config.Family, af.PrefixLimits)
		}
	}
	n.GracefulRestart = &off
	n.MaxPrefixes.Action = MaxPrefixWarn
	p = peerAPI(cfg, n, true)
	if p.GracefulRestart != nil {
		t.Errorf("neighbour override off: graceful restart = %v", p.GracefulRestart)
	}
	for _, af := range p.AfiSafis {
		if af.PrefixLimits != nil || af.MpGracefulRestart != nil {
			t.Errorf("warn/GR off: GoBGP limit %v, GR %v", af.PrefixLimits, af.MpGracefulRestart)
		}
	}
}

func TestListMatches(t *testing.T) {
	c := Config{PrefixLists: []PrefixList{{Name: "l", Entries: []PrefixEntry{{Prefix: "10.88.0.0/16", LE: 24}, {Prefix: "2001:db8::/32", GE: 48, LE: 64}}}}}
	for p, want := range map[string]bool{
		"10.88.1.0/24": true, "10.88.0.0/16": true, "10.88.1.0/25": false, "10.89.0.0/24": false,
		"2001:db8:1::/48": true, "2001:db8::/32": false, "2001:db8:1:2::/64": true,
	} {
		if got := c.listMatches("l", netip.MustParsePrefix(p)); got != want {
			t.Errorf("listMatches(%s) = %v, want %v", p, got, want)
		}
		if c.listMatches("other", netip.MustParsePrefix(p)) {
			t.Errorf("unknown list matched %s", p)
		}
	}
}

// TestReloadInProcess drives Reload against a real (in-process) GoBGP with
// passive neighbours, so no session or root is needed.
func TestReloadInProcess(t *testing.T) {
	base := Config{
		AS: 65001, RouterID: "10.77.0.1", ListenPort: -1,
		PrefixLists: []PrefixList{{Name: "out", Entries: []PrefixEntry{{Prefix: "198.51.100.0/24"}}}},
		Neighbors: []Neighbor{
			{Address: "192.0.2.1", PeerAS: 65002, Families: []string{FamilyIPv4Unicast}, Passive: true},
			{Address: "192.0.2.2", PeerAS: 65003, Families: []string{FamilyIPv4Unicast}, Passive: true},
		},
		Networks: []string{"198.51.100.0/24"},
	}
	sp, ctx := startTestSpeaker(t, base)
	peers := func() []string {
		var out []string
		_ = sp.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { out = append(out, p.Conf.NeighborAddress) })
		slices.Sort(out)
		return out
	}

	next := base
	next.Neighbors = []Neighbor{base.Neighbors[0], {Address: "192.0.2.3", PeerAS: 65004, Families: []string{FamilyIPv4Unicast}, Passive: true, Export: "out"}}
	next.Neighbors[0].Export = "out" // policy only: not a session change
	next.Networks = []string{"203.0.113.0/24"}
	sum, err := sp.Reload(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Added, []string{"192.0.2.3"}) || !slices.Equal(sum.Removed, []string{"192.0.2.2"}) ||
		!slices.Equal(sum.Unchanged, []string{"192.0.2.1"}) || len(sum.Changed) != 0 || !sum.PoliciesChanged {
		t.Errorf("summary: %s", sum)
	}
	if got := peers(); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.3"}) {
		t.Errorf("peers after reload = %v", got)
	}
	if got := sp.Announced(); len(got) != 1 || got[0].String() != "203.0.113.0/24" {
		t.Errorf("announced after reload = %v", got)
	}

	// Rejected: nothing changes.
	bad := next
	bad.RouterID = "10.77.0.9"
	bad.Networks = []string{"192.0.2.128/25"}
	if _, err := sp.Reload(ctx, bad); err == nil || !strings.Contains(err.Error(), "bgp.router_id") {
		t.Errorf("router_id change: err = %v", err)
	}
	invalid := next
	invalid.Neighbors = append(slices.Clone(next.Neighbors), Neighbor{Address: "192.0.2.9"})
	if _, err := sp.Reload(ctx, invalid); err == nil || !strings.Contains(err.Error(), "bgp.neighbors[2].peer_as") {
		t.Errorf("invalid neighbour: err = %v", err)
	}
	if got := peers(); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.3"}) {
		t.Errorf("peers after rejected reloads = %v", got)
	}
	if got := sp.Announced(); len(got) != 1 || got[0].String() != "203.0.113.0/24" {
		t.Errorf("announced after rejected reloads = %v", got)
	}

	// Redistribution follows the filter, also across a reload.
	next.Redistribute.Static = RedistributeSource{Enabled: true, PrefixList: "out"}
	if _, err := sp.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := sp.Redistribute(ctx, RedistributeStatic, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("10.0.0.0/8")}); err != nil {
		t.Fatal(err)
	}
	if got := sp.Announced(); len(got) != 2 || got[0].String() != "198.51.100.0/24" {
		t.Errorf("announced with redistribution = %v", got)
	}
	next.Redistribute.Static.Enabled = false
	if _, err := sp.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got := sp.Announced(); len(got) != 1 || got[0].String() != "203.0.113.0/24" {
		t.Errorf("announced after turning redistribution off = %v", got)
	}
}
