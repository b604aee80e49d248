package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// fsFind looks a destination up in a destination index the way
// bpf/flowspec.h fs_list does: the list of the longest rule prefix that
// covers it, and whether the bitmap let it through at all.
func fsFind(f *fwdXrFsFilter, table map[uint32]fwdXrFsDst, a netip.Addr) (fwdXrFsList, bool) {
	w, words := addrWords(a)
	for i := range f.Nlen {
		h := fsFilterHash(&w, &f.Mask[i], words, i)
		b := h >> 16
		if f.Hits[b] == 0 {
			continue
		}
		for j := range uint32(fsProbes) {
			e, ok := table[(fsSlot(h)+j)%fsDstSlots]
			if !ok {
				break
			}
			same := e.Len == i+1
			for k := range words {
				same = same && e.Addr[k] == w[k]&f.Mask[i][k]
			}
			if same {
				return e.List, true
			}
		}
	}
	return fwdXrFsList{}, false
}

// The destination index finds, for random addresses, the list of the
// longest covering rule prefix, at the full rule count of a bank, and
// nothing for addresses no rule covers.
func TestFlowspecIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, v6 := range []bool{false, true} {
		lists := map[netip.Prefix]fwdXrFsList{}
		var pfxs []netip.Prefix
		for len(lists) < flowspecMaxPrefixes {
			var a netip.Addr
			bits := []int{32, 28, 24, 16}[rng.IntN(4)]
			if v6 {
				var b [16]byte
				b[0], b[1], b[15] = 0x20, 0x01, byte(rng.IntN(256))
				b[2], b[3], b[4] = byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))
				a = netip.AddrFrom16(b)
				bits = []int{128, 64, 56, 48}[rng.IntN(4)]
			} else {
				a = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			}
			p, _ := a.Prefix(bits)
			if _, ok := lists[p]; !ok {
				lists[p] = fwdXrFsList{Start: uint32(len(lists)), N: 1}
				pfxs = append(pfxs, p)
			}
		}
		f, table := fsIndexOf(lists)
		if f.All != 0 || f.Trie != 0 || f.Nlen != 4 {
			t.Fatalf("v6 %v: all %d, trie %d, %d lengths; want the index on, 4 lengths", v6, f.All, f.Trie, f.Nlen)
		}
		longest := func(a netip.Addr) (netip.Prefix, bool) {
			var best netip.Prefix
			for _, p := range pfxs {
				if p.Contains(a) && (!best.IsValid() || p.Bits() > best.Bits()) {
					best = p
				}
			}
			return best, best.IsValid()
		}
		misses := 0
		for i := range 3000 {
			var a netip.Addr
			if i%2 == 0 { // inside a rule prefix
				p := pfxs[rng.IntN(len(pfxs))]
				b := p.Addr().AsSlice()
				b[len(b)-1] ^= byte(rng.IntN(256)) >> (p.Bits() % 8)
				a, _ = netip.AddrFromSlice(b)
				if p.Bits() == len(b)*8 {
					a = p.Addr()
				}
			} else if v6 {
				a = netip.AddrFrom16([16]byte{0x20, 0x02, byte(rng.IntN(256)), 15: 1})
			} else {
				a = netip.AddrFrom4([4]byte{byte(224 + rng.IntN(16)), byte(rng.IntN(256)), 0, 1})
			}
			want, covered := longest(a)
			got, found := fsFind(f, table, a)
			switch {
			case covered && (!found || got != lists[want]):
				t.Errorf("%s: found %v (%v), want %s's list %v", a, got, found, want, lists[want])
			case !covered && found:
				t.Errorf("%s: no rule covers it, found %v", a, got)
			case !covered:
				misses++
			}
		}
		if misses == 0 {
			t.Errorf("v6 %v: no uncovered address tried", v6)
		}
	}
}

// A rule with no destination, or more distinct destination lengths than
// the filter holds, turns the index off: every packet goes to the trie.
func TestFlowspecIndexOff(t *testing.T) {
	def := map[netip.Prefix]fwdXrFsList{netip.MustParsePrefix("0.0.0.0/0"): {N: 1}, netip.MustParsePrefix("10.0.0.0/8"): {N: 2}}
	if f, _ := fsIndexOf(def); f.All != 1 {
		t.Error("a default prefix with rules: the index is on")
	}
	empty := map[netip.Prefix]fwdXrFsList{netip.MustParsePrefix("0.0.0.0/0"): {}, netip.MustParsePrefix("10.0.0.0/8"): {N: 2}}
	if f, _ := fsIndexOf(empty); f.All != 0 || f.Nlen != 1 {
		t.Errorf("only the empty default list besides a /8: all %d, %d lengths", f.All, f.Nlen)
	}
	many := map[netip.Prefix]fwdXrFsList{}
	for bits := 20; bits <= 28; bits++ {
		many[netip.PrefixFrom(netip.MustParseAddr("10.1.0.0"), bits)] = fwdXrFsList{N: 1}
	}
	if f, _ := fsIndexOf(many); f.All != 1 {
		t.Error("9 distinct lengths: the index is on")
	}
}
