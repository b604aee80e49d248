package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/flowspec"
	"github.com/xrouter/xrouter/internal/testbed"
)

// FlowSpec from real peers (issue 12): BIRD 2 and gobgpd originate rules,
// xrouter judges them per neighbour, and the local API's GET
// /flowspec/bgp shows the verdicts, which the tests read as an operator
// would.

// fsRuleView and fsPeerView mirror the API's JSON.
type fsRuleView struct {
	Family   string         `json:"family"`
	NLRI     string         `json:"nlri"`
	Accepted bool           `json:"accepted"`
	Reason   string         `json:"reason"`
	Rule     *flowspec.Rule `json:"rule"`
}

type fsPeerView struct {
	Peer   string       `json:"peer"`
	Source string       `json:"source"`
	Rules  []fsRuleView `json:"rules"`
}

// readFlowSpec asks the daemon's API socket for GET /flowspec/bgp and
// returns the rules by neighbour.
func readFlowSpec(t *testing.T, sock string) map[string][]fsRuleView {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := cl.Get("http://xrouter/flowspec/bgp")
	if err != nil {
		t.Fatalf("GET /flowspec/bgp: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /flowspec/bgp: %s: %s", resp.Status, body)
	}
	var peers []fsPeerView
	if err := json.Unmarshal(body, &peers); err != nil {
		t.Fatalf("GET /flowspec/bgp: %v: %s", err, body)
	}
	out := map[string][]fsRuleView{}
	for _, p := range peers {
		out[p.Peer] = p.Rules
	}
	return out
}

// fsRule finds the rule whose NLRI text is nlri.
func fsRule(rules []fsRuleView, nlri string) (fsRuleView, bool) {
	for _, r := range rules {
		if r.NLRI == nlri {
			return r, true
		}
	}
	return fsRuleView{}, false
}

func fsDump(v map[string][]fsRuleView) string {
	var b strings.Builder
	for p, rs := range v {
		for _, r := range rs {
			fmt.Fprintf(&b, "  %s %s [%s] accepted=%v %s\n", p, r.Family, r.NLRI, r.Accepted, r.Reason)
		}
	}
	return b.String()
}

// waitFlowSpec polls the API until cond holds for the view.
func waitFlowSpec(t *testing.T, sock string, timeout time.Duration, what string, cond func(map[string][]fsRuleView) bool) map[string][]fsRuleView {
	t.Helper()
	var v map[string][]fsRuleView
	if !waitFor(timeout, func() bool { v = readFlowSpec(t, sock); return cond(v) }) {
		t.Fatalf("%s: not within %s; /flowspec/bgp:\n%s", what, timeout, fsDump(v))
	}
	return v
}

// fsRouterBGP is the router's bgp section for the FlowSpec tests: the dst
// host's speaker over IPv4 (unicast and FlowSpec) and, with v6, over IPv6.
func fsRouterBGP(v4Import, v6Import string) string {
	s := bgpHead + `  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 32}, {prefix: "fd00:99::/32", le: 128}]
    - name: fs-dst
      entries: [{prefix: 10.99.0.0/16, le: 32}, {prefix: 10.98.0.0/16, le: 32}, {prefix: "fd00:99::/32", le: 128}]
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast, ipv4-flowspec]
      hold_time: 9s
      import: from-peer
` + v4Import
	if v6Import != "" {
		s += `    - address: fd00:201:2::2
      peer_as: 65002
      families: [ipv6-unicast, ipv6-flowspec]
      hold_time: 9s
      import: from-peer
` + v6Import
	}
	return s
}

// Extended communities as BIRD writes them, (generic, high, low):
// traffic-rate 0 (drop), traffic-rate 1000 bytes/s (float32 0x447a0000),
// traffic-marking DSCP 46, and redirect to VRF 65002:9.
const (
	birdDrop     = "bgp_ext_community.add((generic, 0x80060000, 0));"
	birdRate1000 = "bgp_ext_community.add((generic, 0x80060000, 0x447a0000));"
	birdMark46   = "bgp_ext_community.add((generic, 0x80090000, 0x2e));"
	birdRedirect = "bgp_ext_community.add((generic, 0x8008fdea, 9));"
)

// TestFlowSpecBIRDPrivileged: BIRD 2 on the dst host sends flow4 and flow6
// rules from its static protocols over flowspec channels, with the
// unicast routes they protect. xrouter accepts what flowspec_import allows
// and the RFC 8955 validation passes, and rejects, with the reason, a rule
// whose action the policy does not allow, one with a redirect, one
// outside the policy's prefixes, one without destination, one whose
// destination has no unicast route, and an IPv6 rule with a prefix
// offset (which GoBGP cannot decode). Withdrawing the rules empties the set at once; withdrawing the
// unicast route invalidates the rule it covered, and its return validates
// it again.
func TestFlowSpecBIRDPrivileged(t *testing.T) {
	tp := newTopo(t)
	bird := startBIRD(t, tp.Dst, `router id 10.201.2.2;
protocol device {}
flow4 table ft4;
flow6 table ft6;
protocol static st4 { ipv4; route 10.99.5.0/24 blackhole; }
protocol static st6 { ipv6; route fd00:99:5::/48 blackhole; }
protocol static fs4 {
	flow4 { table ft4; };
	route flow4 { dst 10.99.5.0/24; proto = 17; dport = 5000; } { `+birdDrop+` };
	route flow4 { dst 10.99.5.0/25; proto = 6; } { `+birdRate1000+` };
	route flow4 { dst 10.99.5.128/25; } { `+birdMark46+` };
	route flow4 { dst 10.98.1.0/24; } { `+birdDrop+` };
	route flow4 { dst 192.0.2.0/24; } { `+birdDrop+` };
	route flow4 { dst 10.99.5.7/32; } { `+birdRedirect+` };
	route flow4 { proto = 1; } { `+birdDrop+` };
}
protocol static fs6 {
	flow6 { table ft6; };
	route flow6 { dst fd00:99:5::/48; next header = 17; sport > 1023; } { `+birdDrop+` };
	# An attribute set of its own, hence an UPDATE of its own: GoBGP
	# v3.37 decodes IPv6 prefix components as if the offset were 0, so
	# it reads too far and would garble the rules after it.
	route flow6 { dst ::1:0:0/96 offset 64; } { `+birdRate1000+` };
}
protocol bgp xr {
	local 10.201.2.2 as 65002;
	neighbor 10.201.2.1 as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
	ipv4 { import none; export where proto = "st4"; };
	flow4 { table ft4; import none; export all; };
}
protocol bgp xr6 {
	local fd00:201:2::2 as 65002;
	neighbor fd00:201:2::1 as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
	ipv6 { import none; export where proto = "st6"; };
	flow6 { table ft6; import none; export all; };
}
`)
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, fsRouterBGP(
		"      flowspec_import: {prefix_list: fs-dst, actions: [drop, mark]}\n",
		"      flowspec_import: {prefix_list: fs-dst}\n"))
	d := startDaemon(t, tp.Router, cfgPath)

	const (
		udpDrop  = "dst 10.99.5.0/24 proto =17 dport =5000"
		tcpRate  = "dst 10.99.5.0/25 proto =6"
		mark     = "dst 10.99.5.128/25"
		noRoute  = "dst 10.98.1.0/24"
		outside  = "dst 192.0.2.0/24"
		redirect = "dst 10.99.5.7/32"
		noDst    = "proto =1"
		v6Drop   = "dst fd00:99:5::/48 proto =17 sport >1023"
	)
	v := waitFlowSpec(t, sock, 30*time.Second, "7 IPv4 and 2 IPv6 rules, the good ones accepted", func(v map[string][]fsRuleView) bool {
		a, ok1 := fsRule(v[dst4], udpDrop)
		b, ok2 := fsRule(v[dst6], v6Drop)
		return len(v[dst4]) == 7 && len(v[dst6]) == 2 && ok1 && a.Accepted && ok2 && b.Accepted
	})
	t.Logf("/flowspec/bgp:\n%s", fsDump(v))
	for _, tc := range []struct {
		peer, nlri string
		reason     string // "" accepted
	}{
		{dst4, udpDrop, ""},
		{dst4, tcpRate, "action rate-limit not allowed"},
		{dst4, mark, ""},
		{dst4, noRoute, "no unicast route covers 10.98.1.0/24"},
		{dst4, outside, "does not match flowspec_import.prefix_list"},
		{dst4, redirect, "unsupported action: redirect to VRF 65002:9"},
		{dst4, noDst, "no destination prefix"},
		{dst6, v6Drop, ""},
		{dst6, "unknown", "GoBGP could not decode"},
	} {
		r, ok := fsRule(v[tc.peer], tc.nlri)
		switch {
		case !ok:
			t.Errorf("%s: no rule %q", tc.peer, tc.nlri)
		case tc.reason == "" && !r.Accepted:
			t.Errorf("%s %q rejected: %s", tc.peer, tc.nlri, r.Reason)
		case tc.reason != "" && (r.Accepted || !strings.Contains(r.Reason, tc.reason)):
			t.Errorf("%s %q: accepted %v, reason %q; want rejected with %q", tc.peer, tc.nlri, r.Accepted, r.Reason, tc.reason)
		}
	}
	if r, _ := fsRule(v[dst4], udpDrop); r.Rule == nil || !r.Rule.Action.RateLimited || r.Rule.Action.Rate != 0 ||
		r.Rule.Match.Dst.String() != "10.99.5.0/24" || len(r.Rule.Match.DstPort) != 1 || r.Rule.Match.DstPort[0].Value != 5000 || r.Rule.Source != "peer "+dst4 {
		t.Errorf("drop rule converted to %+v", r.Rule)
	}
	if r, _ := fsRule(v[dst4], mark); r.Rule == nil || !r.Rule.Action.MarkDSCP || r.Rule.Action.DSCP != 46 || r.Rule.Action.RateLimited {
		t.Errorf("marking rule converted to %+v", r.Rule)
	}
	if !strings.Contains(d.Log.String(), "FlowSpec rule rejected") {
		t.Error("no rejection logged")
	}

	// The unicast route goes: its rules are invalid; back: valid again.
	bird.birdc("disable", "st4")
	waitFlowSpec(t, sock, 10*time.Second, "rules invalid without their unicast route", func(v map[string][]fsRuleView) bool {
		r, _ := fsRule(v[dst4], udpDrop)
		return !r.Accepted && strings.Contains(r.Reason, "no unicast route covers 10.99.5.0/24")
	})
	bird.birdc("enable", "st4")
	waitFlowSpec(t, sock, 10*time.Second, "rules valid again with their unicast route", func(v map[string][]fsRuleView) bool {
		r, _ := fsRule(v[dst4], udpDrop)
		m, _ := fsRule(v[dst4], mark)
		return r.Accepted && m.Accepted
	})

	// Withdrawal: every IPv4 rule goes at once, the IPv6 ones stay.
	if out := bird.birdc("disable", "fs4"); !strings.Contains(out, "disabled") {
		t.Fatalf("birdc disable fs4: %s", out)
	}
	start := time.Now()
	waitFlowSpec(t, sock, 5*time.Second, "IPv4 rules withdrawn", func(v map[string][]fsRuleView) bool {
		return len(v[dst4]) == 0 && len(v[dst6]) == 2
	})
	t.Logf("IPv4 rules gone %s after birdc disable fs4 (polled every 100 ms)", time.Since(start).Round(time.Millisecond))
	if !d.running() {
		t.Fatal("daemon exited")
	}
}

// startGoBGPD runs gobgpd (Debian's gobgpd package) in ns with a TOML
// config; its gRPC API listens on 127.0.0.1:50051 of that namespace only.
func startGoBGPD(t *testing.T, ns *testbed.Netns, conf string) *peerProc {
	t.Helper()
	for _, tool := range []string{"gobgpd", "gobgp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package gobgpd)", tool)
		}
	}
	path := filepath.Join(t.TempDir(), "gobgpd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPeerProc(t, "gobgpd", ns, "gobgpd", "-f", path, "--api-hosts", "127.0.0.1:50051", "--pprof-disable")
	if !waitFor(10*time.Second, func() bool {
		_, err := gobgpCLI(ns, "global")
		return err == nil || !p.running()
	}) || !p.running() {
		t.Fatalf("gobgpd did not come up; log:\n%s", p.Log.String())
	}
	return p
}

// gobgpCLI runs GoBGP's own CLI against the gobgpd in ns.
func gobgpCLI(ns *testbed.Netns, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name(), "gobgp", "-u", "127.0.0.1", "-p", "50051"}, args...)...).CombinedOutput()
	return string(out), err
}

func mustGoBGP(t *testing.T, ns *testbed.Netns, args ...string) {
	t.Helper()
	if out, err := gobgpCLI(ns, args...); err != nil {
		t.Fatalf("gobgp %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// gobgpdFlowSpecConf is the dst host's gobgpd: one neighbour, the router,
// with IPv4 unicast and FlowSpec.
const gobgpdFlowSpecConf = `[global.config]
  as = 65002
  router-id = "10.201.2.2"
  local-address-list = ["10.201.2.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.201.2.1"
    peer-as = 65001
  [neighbors.timers.config]
    hold-time = 9
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-flowspec"
`

// TestFlowSpecGoBGPPrivileged: gobgpd on the dst host originates FlowSpec
// rules with GoBGP's own CLI (`gobgp global rib -a ipv4-flowspec add match
// ... then rate-limit 0`). xrouter accepts the drop rule, rejects the
// redirect; deleting the rule with the CLI removes it at once; and a
// reload that takes the neighbour's flowspec_import away rejects every
// rule of this eBGP neighbour (RFC 8212), without resetting its session.
func TestFlowSpecGoBGPPrivileged(t *testing.T) {
	tp := newTopo(t)
	startGoBGPD(t, tp.Dst, gobgpdFlowSpecConf)
	withPolicy := fsRouterBGP("      flowspec_import: {prefix_list: fs-dst}\n", "")
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, withPolicy)
	d := startDaemon(t, tp.Router, cfgPath)
	if !waitFor(30*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State == "established" }) {
		t.Fatalf("session with gobgpd not established: %+v", readPeers(t, cfgPath))
	}

	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4", "add", "10.99.7.0/24")
	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "add", "match", "destination", "10.99.7.0/24",
		"protocol", "udp", "destination-port", "==53", "then", "rate-limit", "0")
	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "add", "match", "destination", "10.99.7.0/25",
		"then", "redirect", "65002:9")
	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "add", "match", "destination", "10.99.7.128/25",
		"then", "rate-limit", "125000")
	const (
		drop     = "dst 10.99.7.0/24 proto =17 dport =53"
		redirect = "dst 10.99.7.0/25"
		rate     = "dst 10.99.7.128/25"
	)
	v := waitFlowSpec(t, sock, 20*time.Second, "the three rules judged", func(v map[string][]fsRuleView) bool {
		r, _ := fsRule(v[dst4], drop)
		return len(v[dst4]) == 3 && r.Accepted
	})
	t.Logf("/flowspec/bgp:\n%s", fsDump(v))
	if r, _ := fsRule(v[dst4], redirect); r.Accepted || !strings.Contains(r.Reason, "unsupported action: redirect to VRF 65002:9") {
		t.Errorf("redirect rule: %+v", r)
	}
	if r, _ := fsRule(v[dst4], rate); !r.Accepted || r.Rule == nil || !r.Rule.Action.RateLimited || r.Rule.Action.Rate != 125000 {
		t.Errorf("rate-limit rule: %+v %+v", r, r.Rule)
	}

	// The CLI deletes the drop rule: gone at once.
	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "del", "match", "destination", "10.99.7.0/24",
		"protocol", "udp", "destination-port", "==53")
	start := time.Now()
	waitFlowSpec(t, sock, 5*time.Second, "the drop rule withdrawn", func(v map[string][]fsRuleView) bool {
		_, ok := fsRule(v[dst4], drop)
		return !ok && len(v[dst4]) == 2
	})
	t.Logf("drop rule gone %s after gobgp ... del (polled every 100 ms)", time.Since(start).Round(time.Millisecond))

	// RFC 8212: no flowspec_import for an eBGP neighbour, nothing accepted.
	replaceConfig(t, cfgPath, routerConfigText(tp, lineRouterIfaces, sock, fsRouterBGP("", "")))
	if got := d.sighup(t, "config reloaded", "config reload rejected"); got != "config reloaded" {
		t.Fatalf("reload: %s", got)
	}
	waitFlowSpec(t, sock, 10*time.Second, "every rule rejected without flowspec_import", func(v map[string][]fsRuleView) bool {
		for _, r := range v[dst4] {
			if r.Accepted || (!strings.Contains(r.Reason, "RFC 8212") && !strings.Contains(r.Reason, "unsupported")) {
				return false
			}
		}
		return len(v[dst4]) == 2
	})
	if p := readPeers(t, cfgPath)[dst4]; p.State != "established" {
		t.Errorf("session after the reload: %+v", p)
	}
	// And back: accepted again.
	replaceConfig(t, cfgPath, routerConfigText(tp, lineRouterIfaces, sock, withPolicy))
	d.sighup(t, "config reloaded", "config reload rejected")
	waitFlowSpec(t, sock, 10*time.Second, "rate-limit rule accepted again", func(v map[string][]fsRuleView) bool {
		r, _ := fsRule(v[dst4], rate)
		return r.Accepted
	})
}

// TestFlowSpecMaxPrefixPrivileged: BIRD sends 100,000 flow4 rules to a
// neighbour whose max_prefixes limit is 1,000: the limit trips for the
// ipv4-flowspec family (logged with the family), the session is torn down
// and held down, its rules are gone from the view, and the daemon stays
// up.
func TestFlowSpecMaxPrefixPrivileged(t *testing.T) {
	tp := newTopo(t)
	var conf strings.Builder
	const n = 100000
	// 65,536 host routes fit in 10.99/16; the rest vary the port.
	conf.WriteString(`router id 10.201.2.2;
protocol device {}
flow4 table ft4;
protocol static st4 { ipv4; route 10.99.0.0/16 blackhole; }
protocol static fs4 {
	flow4 { table ft4; };
`)
	for i := range n {
		fmt.Fprintf(&conf, "\troute flow4 { dst 10.99.%d.%d/32; dport = %d; };\n", i/256%256, i%256, 1+i/65536)
	}
	conf.WriteString(`}
protocol bgp xr {
	local 10.201.2.2 as 65002;
	neighbor 10.201.2.1 as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
	ipv4 { import none; export where proto = "st4"; };
	flow4 { table ft4; import none; export all; };
}
`)
	startBIRD(t, tp.Dst, conf.String())
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, fsRouterBGP(`      flowspec_import: {prefix_list: fs-dst}
      max_prefixes: {limit: 1000, action: teardown}
`, ""))
	d := startDaemon(t, tp.Router, cfgPath)
	d.waitLog(t, "max-prefix limit exceeded", 60*time.Second)
	line := lastLogLine(d.Log.String(), "max-prefix limit exceeded")
	t.Logf("%s", line)
	for _, want := range []string{"neighbor=10.201.2.2", "limit=1000", "family=ipv4-flowspec"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q", want)
		}
	}
	if !waitFor(10*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State != "established" }) {
		t.Fatalf("session still established after the limit: %+v", readPeers(t, cfgPath))
	}
	waitFlowSpec(t, sock, 10*time.Second, "no rule left from the torn-down session", func(v map[string][]fsRuleView) bool {
		return len(v[dst4]) == 0
	})
	if p := readPeers(t, cfgPath)[dst4]; p.HeldDown != "max-prefix" {
		t.Errorf("peer %+v, want held down for max-prefix", p)
	}
	if !d.running() {
		t.Fatal("daemon exited")
	}
}

// mpReachFlow4 is an MP_REACH_NLRI attribute for IPv4 FlowSpec (AFI 1,
// SAFI 133, no next hop) carrying the NLRI given as bytes (each with its
// length octet).
func mpReachFlow4(nlri ...[]byte) []byte {
	v := []byte{0, 1, 133, 0, 0}
	for _, n := range nlri {
		v = append(v, byte(len(n)))
		v = append(v, n...)
	}
	return append([]byte{0x90, 14, byte(len(v) >> 8), byte(len(v))}, v...)
}

// extCommDrop is EXTENDED_COMMUNITIES with traffic-rate 0.
var extCommDrop = []byte{0xc0, 16, 8, 0x80, 0x06, 0, 0, 0, 0, 0, 0}

// TestFlowSpecMalformedNLRIPrivileged: a raw peer sends a good IPv4
// FlowSpec rule, then UPDATEs whose FlowSpec NLRI break RFC 8955. GoBGP
// decodes what it can: components out of order are sorted (same meaning),
// an unknown component type reaches xrouter as "unknown" and the rule is
// rejected whole; the daemon stays up and the session too. A component
// value running past the NLRI made GoBGP v3.37 panic and end the daemon;
// with tools/gobgppatch's bounds checks the component decodes as unknown
// and the rule is rejected like the one before.
func TestFlowSpecMalformedNLRIPrivileged(t *testing.T) {
	tp := newTopo(t)
	peerAddr := netip.MustParseAddr(dst4)
	var ln net.Listener
	if err := tp.Dst.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dst4, "179"))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", tp.Dst.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, fsRouterBGP("      flowspec_import: {prefix_list: fs-dst}\n", ""))
	d := startDaemon(t, tp.Router, cfgPath)
	peer := acceptRawSpeakerCaps(t, ln, 65002, 9, peerAddr, []byte{1, 4, 0, 1, 0, 133})
	if !waitFor(10*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State == "established" }) {
		t.Fatalf("session not established: %+v", readPeers(t, cfgPath))
	}
	base := [][]byte{attrOrigin(0), attrASPath(65002)}
	peer.write(t, bgpMessage(bgpUpdate, updateBody(append(base, attrNextHop(peerAddr)), -1, "10.99.9.0/24")))
	good := []byte{1, 24, 10, 99, 9, 3, 0x81, 17} // dst 10.99.9.0/24, proto =17
	peer.write(t, bgpMessage(bgpUpdate, updateBody(append(base, mpReachFlow4(good), extCommDrop), -1)))
	waitFlowSpec(t, sock, 10*time.Second, "the good rule accepted", func(v map[string][]fsRuleView) bool {
		r, _ := fsRule(v[dst4], "dst 10.99.9.0/24 proto =17")
		return r.Accepted
	})

	// Rules that may be accepted: the good one, and sorted ones.
	allowed := map[string]bool{"dst 10.99.9.0/24 proto =17": true}
	for _, tc := range []struct {
		name string
		nlri [][]byte
		// want: a rule of the same UPDATE that must be accepted.
		want string
		// sorted: GoBGP sorts components out of order (RFC 8955 4.2 wants
		// them increasing) instead of rejecting them; the rule it makes is
		// the sorted one, with the same meaning.
		sorted string
	}{
		{"components out of order", [][]byte{{3, 0x81, 6, 1, 24, 10, 99, 9}}, "", "dst 10.99.9.0/24 proto =6"},
		// Unknown component type 200: the rule is rejected whole.
		{"unknown component type", [][]byte{{1, 24, 10, 99, 9, 200, 0x81, 1}}, "", ""},
		// proto's operator says an 8-octet value; the NLRI ends first.
		{"value past the NLRI", [][]byte{{1, 24, 10, 99, 9, 3, 0xb1, 17}}, "", ""},
		// The same with a good NLRI after it in the UPDATE: the bad one's
		// value may not be read from the next one's bytes.
		{"value past its NLRI into the next", [][]byte{{3, 0xb1, 17}, {1, 24, 10, 99, 9, 3, 0x81, 1}},
			"dst 10.99.9.0/24 proto =1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []string{tc.sorted, tc.want} {
				if r != "" {
					allowed[r] = true
				}
			}
			peer.write(t, bgpMessage(bgpUpdate, updateBody(append(base, mpReachFlow4(tc.nlri...), extCommDrop), -1)))
			time.Sleep(time.Second)
			if !d.running() {
				t.Fatalf("daemon exited: %v", d.Err())
			}
			v := readFlowSpec(t, sock)
			if r, _ := fsRule(v[dst4], tc.want); tc.want != "" && !r.Accepted {
				t.Errorf("the good rule %q in the same UPDATE was not accepted:\n%s", tc.want, fsDump(v))
			}
			for _, r := range v[dst4] {
				if r.Accepted && !allowed[r.NLRI] {
					t.Errorf("malformed rule accepted: %+v", r)
				}
			}
			code, sub, reset := peer.notification()
			t.Logf("session reset %v (NOTIFICATION code %d subcode %d); /flowspec/bgp:\n%s", reset, code, sub, fsDump(v))
			if reset {
				waitFlowSpec(t, sock, 5*time.Second, "no rule after the reset", func(v map[string][]fsRuleView) bool { return len(v[dst4]) == 0 })
				t.SkipNow() // the session is gone: the cases after this need none
			}
		})
	}
}

// TestFlowSpecBGPDropsTrafficPrivileged is the whole chain: a rule that
// gobgpd's CLI originates reaches the XDP classifier, and the traffic it
// names is dropped while its neighbour's is forwarded; `xrouter flowspec`
// counts what was dropped under the peer's source; the CLI's withdrawal
// lets the traffic through again.
func TestFlowSpecBGPDropsTrafficPrivileged(t *testing.T) {
	tp := newTopo(t)
	const hit, miss = "10.99.7.5", "10.99.7.6"
	for _, a := range []string{hit, miss} {
		tp.Dst.IP(t, "addr", "add", a+"/32", "dev", "lo")
	}
	startGoBGPD(t, tp.Dst, gobgpdFlowSpecConf)
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, fsRouterBGP("      flowspec_import: {prefix_list: fs-dst}\n", ""))
	startDaemon(t, tp.Router, cfgPath)
	if !waitFor(30*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State == "established" }) {
		t.Fatalf("session with gobgpd not established: %+v", readPeers(t, cfgPath))
	}
	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4", "add", "10.99.7.0/24")
	if !waitFor(20*time.Second, func() bool {
		out, _ := tp.Router.IPExec("route", "show", "10.99.7.0/24")
		return strings.Contains(out, "via 10.201.2.2")
	}) {
		t.Fatal("10.99.7.0/24 from gobgpd not in the router's kernel FIB")
	}
	rHit, rMiss := listenUDP(t, tp.Dst, hit), listenUDP(t, tp.Dst, miss)
	snd := newUDPSender(t, tp.Src, "udp4")
	warmUp(t, tp.Src, dst4)
	const n = 100
	sendUDP(t, snd, rHit, hit, 1, n, time.Millisecond)
	sendUDP(t, snd, rMiss, miss, 1, n, time.Millisecond)

	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "add", "match", "destination", hit+"/32",
		"protocol", "udp", "destination-port", fmt.Sprintf("==%d", udpPort), "then", "rate-limit", "0")
	waitFlowSpec(t, sock, 20*time.Second, "the drop rule accepted", func(v map[string][]fsRuleView) bool {
		return len(v[dst4]) == 1 && v[dst4][0].Accepted
	})
	var row fsRow
	if !waitFor(5*time.Second, func() bool {
		for _, r := range flowspecRows(t, cfgPath) {
			if strings.Contains(r.Source, dst4) {
				row = r
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the rule from %s is not in `xrouter flowspec`: %+v", dst4, flowspecRows(t, cfgPath))
	}
	before := row.Packets
	if err := snd.send(hit, 2, n, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, snd, rMiss, miss, 2, n, time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if got := rHit.count(2); got != 0 {
		t.Errorf("%d of %d datagrams matching the BGP rule arrived, want none", got, n)
	}
	for _, r := range flowspecRows(t, cfgPath) {
		if strings.Contains(r.Source, dst4) {
			row = r
		}
	}
	if row.Packets-before != n {
		t.Errorf("rule %q from %s counted %d packets, want the %d sent", row.Match, row.Source, row.Packets-before, n)
	}

	mustGoBGP(t, tp.Dst, "global", "rib", "-a", "ipv4-flowspec", "del", "match", "destination", hit+"/32",
		"protocol", "udp", "destination-port", fmt.Sprintf("==%d", udpPort))
	if !waitFor(5*time.Second, func() bool { return len(flowspecRows(t, cfgPath)) == 0 }) {
		t.Fatalf("rule still installed after the withdrawal: %+v", flowspecRows(t, cfgPath))
	}
	sendUDP(t, snd, rHit, hit, 3, n, time.Millisecond)
}
