package fib

import (
	"net/netip"
	"testing"
)

// TestPICPrivileged: routes with a backup share one protected object per
// (next hop, backup), distinct from the plain object of routes without
// one; Failover repoints that object to the backup (one replace, no route
// written) and leaves the others alone; the next wish of a route on it
// moves it to a plain object, and the protected object goes once unused.
func TestPICPrivileged(t *testing.T) {
	ns := routesNetns(t)
	w, err := NewKernelWriter(Settings{NexthopObjects: true}, "/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if !w.NexthopObjects() {
		t.Skip("nexthop objects off on this kernel")
	}
	r := NewRoutes(w, Settings{ResyncInterval: -1, PIC: true}, quiet())
	if !r.Protects() {
		t.Fatal("Protects() false with fib.pic and nexthop objects on")
	}
	stop := runRoutes(t, r)
	defer stop()

	a, b := netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")
	both, onlyA := nPrefixes(11, 200), nPrefixes(12, 100)
	for _, p := range both {
		r.SetProtected(p, a, b)
	}
	for _, p := range onlyA {
		r.Set(p, []netip.Addr{a})
	}
	eventually(t, "routes installed", func() bool { return r.Stats().Installed == len(both)+len(onlyA) })
	routes := listBGPRoutes(t, ns, "-4")
	prot, plain := routes["11.0.0.0/24"].NHID, routes["12.0.0.0/24"].NHID
	if prot == 0 || plain == 0 || prot == plain {
		t.Fatalf("protected route on object %d, plain route on %d: want two objects", prot, plain)
	}
	for _, p := range both {
		if id := routes[p.String()].NHID; id != prot {
			t.Fatalf("%s on object %d, want the protected %d", p, id, prot)
		}
	}
	if g := listNexthops(t, ns)[prot].Gateway; g != a.String() {
		t.Fatalf("protected object via %s before the failover, want %s", g, a)
	}

	replaces := r.Stats().Replaces
	r.Failover(a, true)
	eventually(t, "protected object repointed", func() bool { return listNexthops(t, ns)[prot].Gateway == b.String() })
	if g := listNexthops(t, ns)[plain].Gateway; g != a.String() {
		t.Errorf("plain object via %s after the failover, want %s still", g, a)
	}
	if n := r.Stats().Replaces - replaces; n != 0 {
		t.Errorf("%d routes written for the failover, want 0", n)
	}
	for _, ir := range r.Installed() {
		if ir.Prefix == both[3] && (ir.NHID != prot || ir.Kernel[0].Gateway != b || ir.Backup != b) {
			t.Errorf("installed state of %s after the failover: %+v, want on %d via %s", ir.Prefix, ir, prot, b)
		}
	}

	// BGP's new best paths: the overlap via b, the rest withdrawn.
	for _, p := range both {
		r.Set(p, []netip.Addr{b})
	}
	for _, p := range onlyA {
		r.Delete(p)
	}
	eventually(t, "routes moved to b's object", func() bool {
		rs := listBGPRoutes(t, ns, "-4")
		if len(rs) != len(both) {
			return false
		}
		for _, rt := range rs {
			if rt.NHID == prot || rt.Gateway != b.String() {
				return false
			}
		}
		return true
	})
	eventually(t, "protected object deleted", func() bool { _, ok := listNexthops(t, ns)[prot]; return !ok })

	// A back: protected again, on a new object via a.
	for _, p := range both {
		r.SetProtected(p, a, b)
	}
	eventually(t, "routes protected again", func() bool {
		rs := listBGPRoutes(t, ns, "-4")
		id := rs["11.0.0.0/24"].NHID
		return id != 0 && id != prot && listNexthops(t, ns)[id].Gateway == a.String() && rs["11.0.199.0/24"].NHID == id
	})
}
