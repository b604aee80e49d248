package netfilter

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// nftIn runs fn with an nftables connection inside ns.
func nftIn(t *testing.T, ns *testbed.Netns, fn func(c *nftables.Conn)) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		fn(c)
		return c.Flush()
	}); err != nil {
		t.Fatal(err)
	}
}

// dropRule is "drop" (an unconditional verdict) in chain c.
func dropRule(c *nftables.Conn, ch *nftables.Chain) {
	c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
}

func scanIn(t *testing.T, ns *testbed.Netns, managed func(string) bool) Report {
	t.Helper()
	var r Report
	if err := ns.Do(func() error { r = Scan(managed); return nil }); err != nil {
		t.Fatal(err)
	}
	if r.Err != "" {
		t.Fatalf("scan: %s", r.Err)
	}
	return r
}

// TestScanPrivileged reads real rulesets built over netlink in a fresh
// namespace.
func TestScanPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrnf-")
	ns.IP(t, "link", "add", "port0", "type", "veth", "peer", "name", "other0")
	pass := func(r Report) [2]bool { a, b := r.Pass(); return [2]bool{a, b} }
	managed := func(d string) bool { return d == "port0" }

	if got := pass(scanIn(t, ns, managed)); got != [2]bool{} {
		t.Fatalf("empty ruleset: pass %v", got)
	}
	// An inet filter table with an input chain (local traffic only) and an
	// empty forward chain with policy accept: nothing skipped.
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "filter"}
	var fwd *nftables.Chain
	nftIn(t, ns, func(c *nftables.Conn) {
		c.AddTable(inet)
		in := c.AddChain(&nftables.Chain{Name: "input", Table: inet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		dropRule(c, in)
		fwd = c.AddChain(&nftables.Chain{Name: "forward", Table: inet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	})
	if got := pass(scanIn(t, ns, managed)); got != [2]bool{} {
		t.Fatalf("input rules and an empty forward chain: pass %v", got)
	}
	nftIn(t, ns, func(c *nftables.Conn) { dropRule(c, fwd) })
	r := scanIn(t, ns, managed)
	if got := pass(r); got != [2]bool{true, true} {
		t.Fatalf("inet forward rule: pass %v", got)
	}
	if want := "table inet filter chain forward (hook forward, 1 rule, policy accept)"; r.Reason(false) != want {
		t.Errorf("reason %q, want %q", r.Reason(false), want)
	}
	nftIn(t, ns, func(c *nftables.Conn) { c.DelTable(inet) })

	// ip6 nat postrouting: IPv6 only.
	nat6 := &nftables.Table{Family: nftables.TableFamilyIPv6, Name: "nat"}
	nftIn(t, ns, func(c *nftables.Conn) {
		c.AddTable(nat6)
		post := c.AddChain(&nftables.Chain{Name: "post", Table: nat6, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		c.AddRule(&nftables.Rule{Table: nat6, Chain: post, Exprs: []expr.Any{&expr.Counter{}}})
	})
	if got := pass(scanIn(t, ns, managed)); got != [2]bool{false, true} {
		t.Fatalf("ip6 nat postrouting: pass %v", got)
	}
	nftIn(t, ns, func(c *nftables.Conn) { c.DelTable(nat6) })

	// ip forward with policy drop and no rule.
	ip := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "fw"}
	drop := nftables.ChainPolicyDrop
	nftIn(t, ns, func(c *nftables.Conn) {
		c.AddTable(ip)
		c.AddChain(&nftables.Chain{Name: "fwd", Table: ip, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	})
	if got := pass(scanIn(t, ns, managed)); got != [2]bool{true, false} {
		t.Fatalf("ip forward policy drop: pass %v", got)
	}
	nftIn(t, ns, func(c *nftables.Conn) { c.DelTable(ip) })

	// netdev ingress: counts on a port, not on another interface.
	nd := &nftables.Table{Family: nftables.TableFamilyNetdev, Name: "edge"}
	nftIn(t, ns, func(c *nftables.Conn) {
		c.AddTable(nd)
		ing := c.AddChain(&nftables.Chain{Name: "in", Table: nd, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter, Device: "other0"})
		c.AddRule(&nftables.Rule{Table: nd, Chain: ing, Exprs: []expr.Any{&expr.Counter{}}})
	})
	if got := pass(scanIn(t, ns, managed)); got != [2]bool{} {
		t.Fatalf("netdev ingress on another interface: pass %v", got)
	}
	r = scanIn(t, ns, func(d string) bool { return d == "other0" })
	if got := pass(r); got != [2]bool{true, true} {
		t.Fatalf("netdev ingress on a port: pass %v", got)
	}
	if want := "table netdev edge chain in (hook ingress on other0, 1 rule, policy accept)"; r.Reason(true) != want {
		t.Errorf("reason %q, want %q", r.Reason(true), want)
	}
}

// TestWatcherFollowsPrivileged: the watcher applies a change within a
// bounded time through nftables notifications (the periodic re-check is
// an hour here, so it cannot be what noticed).
func TestWatcherFollowsPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrnf-")
	var mu sync.Mutex
	applied := [2]bool{}
	w := New(Config{Mode: Respect, Recheck: time.Hour, Apply: func(a, b bool) error {
		mu.Lock()
		applied = [2]bool{a, b}
		mu.Unlock()
		return nil
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Do(func() error { return w.Run(ctx) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(want [2]bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := applied
			mu.Unlock()
			if got == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("applied %v after 5s, want %v", applied, want)
	}
	time.Sleep(200 * time.Millisecond) // subscribed
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}
	nftIn(t, ns, func(c *nftables.Conn) {
		c.AddTable(tb)
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		dropRule(c, ch)
	})
	waitFor([2]bool{true, false})
	nftIn(t, ns, func(c *nftables.Conn) { c.DelTable(tb) })
	waitFor([2]bool{false, false})
}

// TestLegacyLayoutPrivileged reads a real iptables-legacy table (the
// kernel creates filter, with policies accept and no rules, when asked for
// it in a fresh namespace), checking the getsockopt layouts against the
// running kernel, and that the table then counts for nothing.
func TestLegacyLayoutPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrnf-")
	for _, f := range legacyFamilies {
		var cs []Chain
		err := ns.Do(func() error {
			fd, err := unix.Socket(f.af, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			cs, err = readLegacyTable(fd, f, "filter")
			return err
		})
		if err != nil {
			t.Skipf("%s: no iptables-legacy filter table on this kernel: %v", f.family, err)
		}
		if len(cs) != 1 || cs[0].Name != "FORWARD" || cs[0].Rules != 0 || cs[0].Policy != "accept" {
			t.Fatalf("%s filter: got %+v, want FORWARD with no rules, policy accept", f.family, cs)
		}
	}
	r := scanIn(t, ns, nil)
	if a, b := r.Pass(); a || b {
		t.Errorf("empty legacy filter tables count: %+v", r)
	}
}
