package dataplane

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFwdCacheRecycledEntryPrivileged reproduces, without the race, what an
// LRU element left behind when another CPU evicted it and reused it for
// destination B while this CPU was refreshing its copy for destination A:
// B's element holding A's next hop under the current generation. A packet
// to B must take the full lookup and leave with B's next hop, and the entry
// must then serve B.
func TestFwdCacheRecycledEntryPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	for _, tc := range []struct {
		name    string
		a, b    netip.Addr
		frame   func(netip.Addr) []byte
		recycle func(t *testing.T) // copies A's entry to B's key
	}{
		{"ipv4", remote4, small4, udp4To, func(t *testing.T) {
			var k fwdXrNhKey4
			var v []fwdXrNhEntry
			it := e.dp.objs.XrNhCache4.Iterate()
			if !it.Next(&k, &v) {
				t.Fatalf("no IPv4 cache entry after two packets to %s (%v)", remote4, it.Err())
			}
			b := small4.As4()
			k.Dst = binary.NativeEndian.Uint32(b[:])
			if err := e.dp.objs.XrNhCache4.Put(&k, v); err != nil {
				t.Fatal(err)
			}
		}},
		{"ipv6", remote6, small6, udp6To, func(t *testing.T) {
			var k fwdXrNhKey
			var v []fwdXrNhEntry
			it := e.dp.objs.XrNhCache.Iterate()
			if !it.Next(&k, &v) {
				t.Fatalf("no IPv6 cache entry after two packets to %s (%v)", remote6, it.Err())
			}
			k.Dst = small6.As16()
			if err := e.dp.objs.XrNhCache.Put(&k, v); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := fwdCase{frame: tc.frame(tc.a), outcome: Forwarded, egress: devDst}
			b := fwdCase{frame: tc.frame(tc.b), outcome: Forwarded, egress: devMTU}
			e.check(t, a) // first sighting
			e.check(t, a) // inserted
			tc.recycle(t)
			h := e.cacheStats(t)
			e.check(t, b)
			if d := e.cacheStats(t).sub(h); d.Hit != 0 || d.Miss != 1 || d.Insert != 1 {
				t.Errorf("B with A's entry in its element: cache %+v, want a miss that rewrites it", d)
			}
			h = e.cacheStats(t)
			e.check(t, b)
			if d := e.cacheStats(t).sub(h); d.Hit != 1 {
				t.Errorf("B after the rewrite: cache %+v, want a hit", d)
			}
			e.check(t, a) // A's own entry is untouched
		})
	}
}

// TestFwdHopsSeenPrivileged: forwarded frames that took the full lookup
// note their next hop (egress and MAC) once per epoch (cache hits do not:
// every entry is looked up again within dataplane.cache.max_age); frames the
// fast path does not forward note nothing.
func TestFwdHopsSeenPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	if hops, err := e.dp.NextHopsSeen(); err != nil || len(hops) != 0 {
		t.Fatalf("first call: %v, %v; want nothing (it turns the table on)", hops, err)
	}
	for range 3 { // first sighting, insertion, cache hit
		e.check(t, fwdCase{frame: udp4To(remote4), outcome: Forwarded, egress: devDst})
		e.check(t, fwdCase{frame: udp6To(remote6), outcome: Forwarded, egress: devDst})
		e.check(t, fwdCase{frame: udp4To(small4), outcome: Forwarded, egress: devMTU})
	}
	e.check(t, fwdCase{frame: udp4To(noNeigh4), outcome: PassNoNeigh})
	hops, err := e.dp.NextHopsSeen()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, h := range hops {
		got[fmt.Sprintf("%d %d %s", h.Ifindex, h.Family, h.MAC)] = true
	}
	want := map[string]bool{
		fmt.Sprintf("%d %d %s", e.ifindex[devDst], unix.AF_INET, peerMAC[devDst]):  true,
		fmt.Sprintf("%d %d %s", e.ifindex[devDst], unix.AF_INET6, peerMAC[devDst]): true,
		fmt.Sprintf("%d %d %s", e.ifindex[devMTU], unix.AF_INET, peerMAC[devMTU]):  true,
	}
	if !maps.Equal(got, want) {
		t.Errorf("next hops seen %v, want %v", got, want)
	}
	if hops, err := e.dp.NextHopsSeen(); err != nil || len(hops) != 0 {
		t.Errorf("an epoch without traffic: %v, %v; want nothing", hops, err)
	}
}
