package netnstests

import (
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// TestFeedShape checks what the failover benchmark's feeder sends (no
// network): the diverse feed has about one attribute set per three
// prefixes with many single-NLRI UPDATEs, the packed feed fills UPDATEs,
// both carry every prefix exactly once, and B's AS paths are one longer.
func TestFeedShape(t *testing.T) {
	type shape struct {
		updates, single, v4, v6 int
		pathLen                 map[int]int
	}
	measure := func(c feedConfig) shape {
		s := shape{pathLen: map[int]int{}}
		seen := map[string]bool{}
		_, _, _, err := sendFeedTable(c, func(b []byte, _ bool) error {
			if len(b) == 0 {
				return nil
			}
			if len(b) > 4096 {
				t.Fatalf("UPDATE of %d bytes", len(b))
			}
			m, err := bgp.ParseBGPMessage(b)
			if err != nil {
				t.Fatalf("feeder sent an unparsable message: %v", err)
			}
			u := m.Body.(*bgp.BGPUpdate)
			n := len(u.NLRI)
			for _, p := range u.NLRI {
				seen[p.String()] = true
			}
			s.v4 += len(u.NLRI)
			for _, a := range u.PathAttributes {
				switch a := a.(type) {
				case *bgp.PathAttributeMpReachNLRI:
					n += len(a.Value)
					s.v6 += len(a.Value)
					for _, p := range a.Value {
						seen[p.String()] = true
					}
				case *bgp.PathAttributeAsPath:
					s.pathLen[a.Value[0].ASLen()]++
				}
			}
			s.updates++
			if n == 1 {
				s.single++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != c.N4+c.N6 || s.v4 != c.N4 || s.v6 != c.N6 {
			t.Fatalf("sent %d IPv4 and %d IPv6 NLRI, %d distinct; want %d and %d", s.v4, s.v6, len(seen), c.N4, c.N6)
		}
		return s
	}
	a := feedConfig{Local: "10.0.0.1", NextHop6: "fd00::1", AS: 65101, N4: 30000, N6: 6000}
	b := a
	b.AS, b.Prepend = 65102, 1
	sa, sb := measure(a), measure(b)
	ratio := float64(a.N4+a.N6) / float64(sa.updates)
	t.Logf("diverse: %d UPDATEs for %d prefixes (%.2f per UPDATE), %d with one NLRI", sa.updates, a.N4+a.N6, ratio, sa.single)
	if ratio < 2.5 || ratio > 4 || sa.single < sa.updates/3 {
		t.Errorf("diverse feed: %.2f prefixes per UPDATE, %d of %d single-NLRI; want about 3.2 and at least a third", ratio, sa.single, sa.updates)
	}
	if sa.updates != sb.updates {
		t.Errorf("A sent %d UPDATEs, B %d: the groups differ", sa.updates, sb.updates)
	}
	for l, n := range sa.pathLen {
		if sb.pathLen[l+1] != n {
			t.Errorf("A has %d paths of length %d, B %d of length %d", n, l, sb.pathLen[l+1], l+1)
		}
	}
	p := a
	p.Packed = true
	sp := measure(p)
	t.Logf("packed: %d UPDATEs for %d prefixes", sp.updates, p.N4+p.N6)
	if per := float64(p.N4+p.N6) / float64(sp.updates); per < 400 {
		t.Errorf("packed feed: %.0f prefixes per UPDATE, want hundreds", per)
	}
}
