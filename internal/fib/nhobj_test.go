package fib

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// objectWriter is a fakeWriter whose routes go on objects, one per
// next-hop set, with the ObjectWriter side of KernelWriter: it records
// which objects exist and deletes what Prune is told is unused.
type objectWriter struct {
	*fakeWriter
	omu     sync.Mutex
	ids     map[string]uint32 // next-hop set → object
	live    map[uint32]bool
	next    uint32
	pruned  []uint32
	byRoute map[netip.Prefix]uint32
}

func newObjectWriter() *objectWriter {
	return &objectWriter{fakeWriter: newFakeWriter(), ids: map[string]uint32{}, live: map[uint32]bool{},
		next: 100, byRoute: map[netip.Prefix]uint32{}}
}

func (w *objectWriter) Apply(ops []Op, res []Result) {
	w.fakeWriter.Apply(ops, res)
	w.omu.Lock()
	defer w.omu.Unlock()
	for i, op := range ops {
		if res[i].Err != nil {
			continue
		}
		if op.NextHops == nil {
			delete(w.byRoute, op.Prefix)
			continue
		}
		key := groupKey(op.NextHops)
		id, ok := w.ids[key]
		if !ok {
			w.next++
			id = w.next
			w.ids[key] = id
			w.live[id] = true
		}
		res[i].NHID = id
		w.byRoute[op.Prefix] = id
	}
}

func (w *objectWriter) Prune(used func(uint32) bool) {
	w.omu.Lock()
	defer w.omu.Unlock()
	for key, id := range w.ids {
		if !used(id) {
			for _, rid := range w.byRoute {
				if rid == id {
					panic("pruning an object a route in the kernel uses")
				}
			}
			delete(w.ids, key)
			delete(w.live, id)
			w.pruned = append(w.pruned, id)
		}
	}
}

func (w *objectWriter) Moved() map[uint32][]Nexthop { return nil }

func (w *objectWriter) liveIDs() []uint32 {
	w.omu.Lock()
	defer w.omu.Unlock()
	var out []uint32
	for id := range w.live {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// TestRoutesObjectReferences: an object is pruned once the last route
// using it is gone or has moved to another object, never before.
func TestRoutesObjectReferences(t *testing.T) {
	w := newObjectWriter()
	r := NewRoutes(w, Settings{ResyncInterval: -1}, quiet())
	start(t, r)
	r.Set(pfxA, []netip.Addr{nh1})
	r.Set(pfxB, []netip.Addr{nh1})
	r.Set(pfx6, []netip.Addr{nh6})
	eventually(t, "installed", func() bool { return r.Stats().Installed == 3 })
	if got := w.liveIDs(); len(got) != 2 {
		t.Fatalf("objects %v, want 2 (one per next-hop set)", got)
	}
	var idA uint32
	for _, ir := range r.Installed() {
		if ir.Prefix == pfxA {
			idA = ir.NHID
		}
	}
	if idA == 0 {
		t.Fatalf("installed %+v: no object id for %s", r.Installed(), pfxA)
	}
	// One of two routes moves away: the object stays.
	r.Set(pfxA, []netip.Addr{nh1, nh2})
	eventually(t, "moved", func() bool {
		for _, ir := range r.Installed() {
			if ir.Prefix == pfxA && len(ir.NextHops) == 2 {
				return true
			}
		}
		return false
	})
	if !slices.Contains(w.liveIDs(), idA) {
		t.Fatalf("object %d pruned while %s still uses it", idA, pfxB)
	}
	// The last one goes: pruned.
	r.Delete(pfxB)
	eventually(t, "object pruned", func() bool { return !slices.Contains(w.liveIDs(), idA) })
	if got := w.liveIDs(); len(got) != 2 {
		t.Errorf("objects %v, want 2 (the ECMP set and the IPv6 next hop)", got)
	}
}
