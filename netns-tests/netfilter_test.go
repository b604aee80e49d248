package netnstests

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Second addresses of the dst host, which the forward-hook rule drops.
var (
	blocked4 = "10.201.2.3"
	blocked6 = "fd00:201:2::3"
)

// fwTable is the firewall these tests install in the router: an inet table
// (so both families) with a forward chain that drops what goes to the
// blocked addresses. Built over netlink: the nft binary is not needed.
var fwTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: "xrnt_fw"}

func addFirewall(t *testing.T, router *testbed.Netns) {
	t.Helper()
	addFirewallFor(t, router, netip.MustParseAddr(blocked4), netip.MustParseAddr(blocked6))
}

// addFirewallFor installs fwTable, dropping forwarded packets to a4 and a6.
func addFirewallFor(t *testing.T, router *testbed.Netns, a4, a6 netip.Addr) {
	t.Helper()
	daddr := func(proto byte, off uint32, a netip.Addr) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(a.BitLen() / 8)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	}
	nft(t, router, func(c *nftables.Conn) {
		c.AddTable(fwTable)
		fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: fwTable, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: fwTable, Chain: fwd, Exprs: daddr(unix.NFPROTO_IPV4, 16, a4)})
		c.AddRule(&nftables.Rule{Table: fwTable, Chain: fwd, Exprs: daddr(unix.NFPROTO_IPV6, 24, a6)})
	})
}

func nft(t *testing.T, ns *testbed.Netns, fn func(c *nftables.Conn)) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		fn(c)
		return c.Flush()
	}); err != nil {
		t.Fatalf("nftables in %s: %v", ns.Name(), err)
	}
}

// firewallTopo is the line with the blocked addresses on the dst host, their
// neighbour entries resolved in the router (by the router's own pings, which
// the forward hook does not see: otherwise the dropped packets would never
// resolve them, and XDP would leave them to the kernel as no_neigh), a
// receiver per address and a sender per family.
type firewallTopo struct {
	*topo
	recv map[string]*udpReceiver
	send map[string]*udpSender
}

func newFirewallTopo(t *testing.T) *firewallTopo {
	t.Helper()
	tp := newTopo(t)
	tp.Dst.IP(t, "addr", "add", blocked4+"/24", "dev", testbed.LineDstDev)
	tp.Dst.IP(t, "addr", "add", blocked6+"/64", "dev", testbed.LineDstDev, "nodad")
	for _, a := range []string{dst4, blocked4, dst6, blocked6} {
		pingOK(t, tp.Router, a, 1)
	}
	warmUp(t, tp.Src, dst4, dst6)
	ft := &firewallTopo{topo: tp, recv: map[string]*udpReceiver{}, send: map[string]*udpSender{
		"udp4": newUDPSender(t, tp.Src, "udp4"), "udp6": newUDPSender(t, tp.Src, "udp6"),
	}}
	for _, a := range []string{dst4, blocked4, dst6, blocked6} {
		ft.recv[a] = listenUDP(t, tp.Dst, a)
	}
	return ft
}

// burst sends n datagrams of stream id to each address and returns how
// many arrived at each, after waiting for the allowed ones (or 2 s).
func (ft *firewallTopo) burst(t *testing.T, id uint32, n int) map[string]int {
	t.Helper()
	for _, a := range []string{dst4, blocked4, dst6, blocked6} {
		fam := "udp4"
		if strings.Contains(a, ":") {
			fam = "udp6"
		}
		if err := ft.send[fam].send(a, id, n, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(2*time.Second, func() bool { return ft.recv[dst4].count(id) == n && ft.recv[dst6].count(id) == n })
	time.Sleep(100 * time.Millisecond) // stragglers to the blocked addresses
	got := map[string]int{}
	for a, r := range ft.recv {
		got[a] = r.count(id)
	}
	return got
}

// statusNetfilter is the netfilter part of `xrouter status --json`.
type statusNetfilter struct {
	Netfilter *struct {
		Mode     string `json:"mode"`
		ToKernel struct {
			IPv4 bool `json:"ipv4"`
			IPv6 bool `json:"ipv6"`
		} `json:"to_kernel"`
		Rules struct {
			IPv4 []struct {
				Table string `json:"table"`
				Chain string `json:"chain"`
				Hook  string `json:"hook"`
			} `json:"ipv4"`
		} `json:"rules"`
	} `json:"netfilter"`
	Warnings []string `json:"warnings"`
}

func readStatusNetfilter(t *testing.T, ns *testbed.Netns, pin string) (statusNetfilter, string) {
	t.Helper()
	out, stderr, err := xr("status", "--json", "--netns", ns.Name(), "--pin-path", pin)
	if err != nil {
		t.Fatalf("xrouter status --json: %v: %s", err, stderr)
	}
	var s statusNetfilter
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("parsing xrouter status --json: %v\n%s", err, out)
	}
	text, stderr, err := xr("status", "--netns", ns.Name(), "--pin-path", pin)
	if err != nil {
		t.Fatalf("xrouter status: %v: %s", err, stderr)
	}
	return s, text
}

// TestNetfilterForwardRuleRespectedPrivileged: a forward-hook firewall in
// the router drops exactly the same packets with xrouter running as
// without it: the family's traffic goes to the kernel (outcome netfilter),
// the daemon says so in its log and in status. When the table is deleted,
// the fast path comes back within a bounded time. On a data plane that
// ignores netfilter (before issue 9) the blocked addresses receive every
// datagram once xrouter runs.
func TestNetfilterForwardRuleRespectedPrivileged(t *testing.T) {
	ft := newFirewallTopo(t)
	addFirewall(t, ft.Router)
	const n = 50

	// Without xrouter: the kernel forwards and the rule drops.
	without := ft.burst(t, 1, n)
	want := map[string]int{dst4: n, dst6: n, blocked4: 0, blocked6: 0}
	if !equalCounts(without, want) {
		t.Fatalf("without xrouter, arrivals %v; want %v (the testbed's firewall does not work)", without, want)
	}

	d := startDaemon(t, ft.Router, ft.defaultConfig(t))
	d.waitLog(t, "IPv4 traffic goes to the kernel", 5*time.Second)
	d.waitLog(t, "IPv6 traffic goes to the kernel", 5*time.Second)
	before := readStats(t, ft.Pin)
	with := ft.burst(t, 2, n)
	growth := readStats(t, ft.Pin).sub(before)
	t.Logf("with xrouter: arrivals %v, stats growth %v", with, growth)
	if !equalCounts(with, without) {
		t.Errorf("with xrouter, arrivals %v; without, %v: the firewall was bypassed", with, without)
	}
	if growth["netfilter"] < 4*n {
		t.Errorf("netfilter outcome grew by %d, want at least %d", growth["netfilter"], 4*n)
	}
	if growth["forwarded"] != 0 {
		t.Errorf("forwarded grew by %d while the firewall exists, want 0", growth["forwarded"])
	}
	st, text := readStatusNetfilter(t, ft.Router, ft.Pin)
	if nf := st.Netfilter; nf == nil || !nf.ToKernel.IPv4 || !nf.ToKernel.IPv6 || nf.Mode != "respect" ||
		len(nf.Rules.IPv4) != 1 || nf.Rules.IPv4[0].Table != "xrnt_fw" || nf.Rules.IPv4[0].Chain != "forward" {
		t.Errorf("status --json netfilter: %+v", st.Netfilter)
	}
	if !strings.Contains(text, "table inet xrnt_fw chain forward") || !strings.Contains(text, "IPv4 traffic goes to the kernel (dataplane.netfilter: respect)") {
		t.Errorf("status does not explain the slow path:\n%s", text)
	}

	// The table goes: the fast path comes back, without a restart.
	nft(t, ft.Router, func(c *nftables.Conn) { c.DelTable(fwTable) })
	deleted := time.Now()
	d.waitLog(t, "IPv4 fast path back", 5*time.Second)
	d.waitLog(t, "IPv6 fast path back", 5*time.Second)
	t.Logf("fast path back %s after the table was deleted", time.Since(deleted).Round(time.Millisecond))
	before = readStats(t, ft.Pin)
	after := ft.burst(t, 3, n)
	growth = readStats(t, ft.Pin).sub(before)
	t.Logf("after the table was deleted: arrivals %v, stats growth %v", after, growth)
	if want := (map[string]int{dst4: n, dst6: n, blocked4: n, blocked6: n}); !equalCounts(after, want) {
		t.Errorf("after the table was deleted, arrivals %v; want %v", after, want)
	}
	if growth["forwarded"] < 4*n || growth["netfilter"] != 0 {
		t.Errorf("after the table was deleted: forwarded +%d (want >= %d), netfilter +%d (want 0)", growth["forwarded"], 4*n, growth["netfilter"])
	}
}

// TestNetfilterBypassPrivileged documents the opt-out: with
// dataplane.netfilter: bypass the fast path forwards everything and the
// forward-hook rule is skipped, with a warning in the log and in status.
func TestNetfilterBypassPrivileged(t *testing.T) {
	ft := newFirewallTopo(t)
	addFirewall(t, ft.Router)
	const n = 50
	d := startDaemon(t, ft.Router, writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        ft.Pin,
		Extra:      "  netfilter: bypass\n",
	}))
	d.waitLog(t, "dataplane.netfilter is bypass", 5*time.Second)
	before := readStats(t, ft.Pin)
	got := ft.burst(t, 1, n)
	growth := readStats(t, ft.Pin).sub(before)
	t.Logf("bypass: arrivals %v, stats growth %v", got, growth)
	if want := (map[string]int{dst4: n, dst6: n, blocked4: n, blocked6: n}); !equalCounts(got, want) {
		t.Errorf("bypass: arrivals %v; want %v (the rule skipped)", got, want)
	}
	if growth["forwarded"] != 4*n || growth["netfilter"] != 0 {
		t.Errorf("bypass: forwarded +%d (want %d), netfilter +%d (want 0)", growth["forwarded"], 4*n, growth["netfilter"])
	}
	st, _ := readStatusNetfilter(t, ft.Router, ft.Pin)
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "skips it (dataplane.netfilter: bypass)") {
		t.Errorf("status warnings %q do not mention the skipped rule", st.Warnings)
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}
