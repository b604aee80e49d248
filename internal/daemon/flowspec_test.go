package daemon

import (
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/flowspec"
)

// staticDrop is flowspec.rules with one rule: drop UDP to dst.
func staticDrop(dst string) flowspec.Settings {
	zero := 0.0
	return flowspec.Settings{Rules: []flowspec.StaticRule{{
		Match:  flowspec.StaticMatch{Destination: dst, Protocol: []string{"udp"}},
		Action: flowspec.StaticAction{Rate: &zero},
	}}}
}

// bgpRule is a rule as the speaker hands it over: count TCP to dst.
func bgpRule(t *testing.T, dst string) flowspec.Rule {
	t.Helper()
	r, err := flowspec.StaticRule{Match: flowspec.StaticMatch{Destination: dst, Protocol: []string{"tcp"}}}.Rule()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFlowspecStart: the config's rules are in the classifier after the
// program is loaded and before any interface is attached; the speaker
// knows where its peers' rules go before it starts, and they join the
// config's.
func TestFlowspecStart(t *testing.T) {
	g := newRig(t)
	g.cfg.Flowspec = staticDrop("192.0.2.0/24")
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	inOrder(t, g.r.events(), "dp.attach", "dp.flowspec config", "dp.attached", "bgp.onflowspec", "bgp.start")

	g.sp.onFS("peer 10.0.0.2", []flowspec.Rule{bgpRule(t, "198.51.100.0/24")})
	present(t, g.r.events(), "dp.flowspec config,peer 10.0.0.2")
	g.sp.onFS("peer 10.0.0.2", nil) // withdrawn
	if evs := g.r.events(); evs[len(evs)-1] != "dp.flowspec config" {
		t.Errorf("after the peer withdrew: %q, want only the config's rule left", evs[len(evs)-1])
	}
}

// TestFlowspecBadStatic: static rules that do not convert fail Start
// before anything is attached.
func TestFlowspecBadStatic(t *testing.T) {
	g := newRig(t)
	g.cfg.Flowspec = staticDrop("not-a-prefix")
	d := g.daemon(t)
	err := d.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "config test.yaml") {
		t.Fatalf("Start: err = %v, want one naming the config", err)
	}
	absent(t, g.r.events(), "dp.attached", "bgp.start")
	_ = d.Stop()
}

// TestReloadFlowspec: a reload installs the new config's rules; if the
// speaker refuses the bgp part, the running config's rules are back.
func TestReloadFlowspec(t *testing.T) {
	g := newRig(t)
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	rules := func() []string {
		st, _ := d.dp.FlowspecStats()
		var m []string
		for _, s := range st {
			m = append(m, s.Rule.Match.String())
		}
		return m
	}
	if len(rules()) != 0 {
		t.Fatalf("rules at start: %q, want none", rules())
	}
	one := *g.cfg
	one.Flowspec = staticDrop("192.0.2.0/24")
	if err := d.Reload(&one); err != nil {
		t.Fatal(err)
	}
	want := rules()
	if len(want) != 1 || !strings.Contains(want[0], "192.0.2.0/24") {
		t.Fatalf("rules after reload: %q, want the one of 192.0.2.0/24", want)
	}

	g.sp.reloadErr = errors.New("neighbour 10.0.0.9: bad")
	two := one
	two.Flowspec = staticDrop("203.0.113.0/24")
	if err := d.Reload(&two); err == nil {
		t.Fatal("the speaker refused but Reload did not fail")
	}
	if got := rules(); !slices.Equal(got, want) {
		t.Errorf("rules after a refused reload: %q, want the running config's %q", got, want)
	}

	g.sp.reloadErr = nil
	bad := one
	bad.Flowspec = staticDrop("not-a-prefix")
	n := len(g.sp.reloaded)
	if err := d.Reload(&bad); err == nil || !strings.Contains(err.Error(), "config test.yaml") {
		t.Errorf("a bad rule: err = %v, want one naming the config", err)
	}
	if len(g.sp.reloaded) != n {
		t.Error("a config with a bad flowspec rule reached the speaker")
	}
}

// TestAPIFlowspec: /flowspec lists the installed rules in classifier
// order with their counters; /flowspec/bgp is the speaker's view.
func TestAPIFlowspec(t *testing.T) {
	g := newRig(t)
	g.cfg.Flowspec = staticDrop("192.0.2.0/24")
	d := g.daemon(t)
	g.start(t, d)
	defer d.Stop()
	g.sp.onFS("peer 10.0.0.2", []flowspec.Rule{bgpRule(t, "198.51.100.0/24")})
	srv := httptest.NewServer(d.ctl.handler())
	defer srv.Close()
	var rows []FlowspecRow
	getJSON(t, srv.URL+"/flowspec", &rows)
	if len(rows) != 2 || rows[0].Rule != 1 || rows[1].Rule != 2 || rows[1].Packets != 20 {
		t.Fatalf("/flowspec = %+v, want 2 numbered rules with counters", rows)
	}
	srcs := []string{rows[0].Source, rows[1].Source}
	slices.Sort(srcs)
	if !slices.Equal(srcs, []string{"config", "peer 10.0.0.2"}) {
		t.Errorf("/flowspec sources %q", srcs)
	}
	var view []bgp.FlowSpecPeerView
	getJSON(t, srv.URL+"/flowspec/bgp", &view)
	if len(view) != 1 || view[0].Source != "peer 10.0.0.2" || len(view[0].Rules) != 1 {
		t.Errorf("/flowspec/bgp = %+v", view)
	}

	off := &control{}
	srv2 := httptest.NewServer(off.handler())
	defer srv2.Close()
	var none []FlowspecRow
	getJSON(t, srv2.URL+"/flowspec", &none)
	var noneBGP []bgp.FlowSpecPeerView
	getJSON(t, srv2.URL+"/flowspec/bgp", &noneBGP)
	if none == nil || len(none) != 0 || noneBGP == nil || len(noneBGP) != 0 {
		t.Errorf("without rules or BGP: %#v %#v, want [] []", none, noneBGP)
	}
}
