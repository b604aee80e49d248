package dataplane

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// enableCache turns the next-hop cache on at generation gen with a lease
// far in the future, as the daemon does.
func (e *fwdEnv) enableCache(t testing.TB, gen uint64) {
	t.Helper()
	e.pinCPU = true
	e.setCache(t, CacheState{Generation: gen, LeaseNs: MonotonicCoarseNs() + uint64(time.Hour)})
}

func (e *fwdEnv) setCache(t testing.TB, s CacheState) {
	t.Helper()
	if err := e.dp.SetCacheState(s); err != nil {
		t.Fatal(err)
	}
}

func (e *fwdEnv) cacheStats(t testing.TB) CacheStats {
	t.Helper()
	s, err := e.dp.CacheStats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *fwdEnv) cacheEntries(t testing.TB) int {
	t.Helper()
	n, err := e.dp.CacheEntries()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (s CacheStats) sub(b CacheStats) CacheStats {
	return CacheStats{s.Hit - b.Hit, s.Miss - b.Miss, s.Insert - b.Insert, s.Bypass - b.Bypass, s.Uncacheable - b.Uncacheable, s.AdmitSkip - b.AdmitSkip}
}

// TestFwdCachePrivileged runs every table case with the cache on, three
// times each: first sighting (full lookup, not inserted), second (inserted),
// third (served from the cache where the case is forwarded). Every run must
// give the same verdict, counter and byte-identical output as without the
// cache.
func TestFwdCachePrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	before := e.cacheStats(t)
	for _, c := range slices.Concat(fwdCases(), localSourceCases()) {
		t.Run(c.name, func(t *testing.T) {
			for i := range 3 {
				h := e.cacheStats(t)
				e.check(t, c)
				d := e.cacheStats(t).sub(h)
				if t.Failed() {
					t.Fatalf("run %d of 3 (cache %+v)", i+1, d)
				}
				if c.outcome == Forwarded && i == 2 && d.Hit != 1 {
					t.Errorf("third run: cache %+v, want a hit", d)
				}
				// TTL expiry and source checks come after the
				// cache, like after the FIB lookup.
				if c.outcome != Forwarded && c.outcome != PassTTLExceeded && c.outcome != PassMartian && d.Hit != 0 {
					t.Errorf("run %d: a packet that is not forwarded hit the cache: %+v", i+1, d)
				}
			}
		})
	}
	d := e.cacheStats(t).sub(before)
	if d.Hit == 0 || d.Insert == 0 || d.AdmitSkip == 0 {
		t.Errorf("cache counters %+v: want hits, inserts and first sightings", d)
	}
}

// TestFwdCacheRPFilterPrivileged: the source checks stay per packet, so a
// spoofed source is caught even when its destination is cached.
func TestFwdCacheRPFilterPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	e.router.Sysctl(t, "net.ipv4.conf.all.rp_filter", "1")
	e.setFlags(t, PortFlags{RPFilter: 1})
	good := fwdCase{frame: udp4To(remote4), outcome: Forwarded, egress: devDst}
	for range 3 {
		e.check(t, good)
	}
	spoofed := frame4(ip4(func(h *ipv4Hdr) { h.Src = mustAddr("10.99.7.7") }), udp(1, 2, payload(18)))
	h := e.cacheStats(t)
	e.check(t, fwdCase{frame: spoofed, outcome: PassMartian})
	if d := e.cacheStats(t).sub(h); d.Hit != 1 {
		t.Errorf("cache %+v: the destination should have hit, the source still be refused", d)
	}
	e.check(t, fwdCase{frame: frame4(ip4(func(h *ipv4Hdr) { h.Src = routerOwn4 }), udp(1, 2, payload(18))), outcome: PassMartian})
}

// TestFwdCacheAdmissionPrivileged: a destination is inserted on its second
// sighting only.
func TestFwdCacheAdmissionPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 7)
	c := fwdCase{frame: udp4To(mustAddr("10.99.3.3")), outcome: Forwarded, egress: devDst}
	want := []CacheStats{{Miss: 1, AdmitSkip: 1}, {Miss: 1, Insert: 1}, {Hit: 1}, {Hit: 1}}
	for i, w := range want {
		h := e.cacheStats(t)
		e.check(t, c)
		if d := e.cacheStats(t).sub(h); d != w {
			t.Errorf("sighting %d: cache %+v, want %+v", i+1, d, w)
		}
		if n, wantN := e.cacheEntries(t), min(i, 1); n != wantN {
			t.Errorf("sighting %d: %d cache entries, want %d", i+1, n, wantN)
		}
	}
}

// TestFwdCacheGenerationPrivileged: an entry of another generation is a
// miss; the route change becomes visible exactly when user space bumps.
func TestFwdCacheGenerationPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	dst := mustAddr("10.99.4.4")
	before := fwdCase{frame: udp4To(dst), outcome: Forwarded, egress: devDst}
	for range 3 {
		e.check(t, before)
	}
	// The route moves to another port. Until the bump, the cache still
	// answers (this is what the daemon's event-driven bump is for).
	e.router.IP(t, "route", "replace", "10.99.4.0/24", "via", "10.202.3.2")
	h := e.cacheStats(t)
	e.check(t, before)
	if d := e.cacheStats(t).sub(h); d.Hit != 1 {
		t.Fatalf("cache %+v: want a (stale) hit before the bump", d)
	}
	e.enableCache(t, 2)
	after := fwdCase{frame: udp4To(dst), outcome: Forwarded, egress: devMTU}
	h = e.cacheStats(t)
	e.check(t, after)
	if d := e.cacheStats(t).sub(h); d.Hit != 0 || d.Miss != 1 || d.Insert != 1 {
		t.Errorf("first packet after the bump: cache %+v, want a miss refreshing the entry", d)
	}
	h = e.cacheStats(t)
	e.check(t, after)
	if d := e.cacheStats(t).sub(h); d.Hit != 1 {
		t.Errorf("second packet after the bump: cache %+v, want a hit", d)
	}
	// Generation 0 turns the cache off: no counter moves.
	e.setCache(t, CacheState{LeaseNs: MonotonicCoarseNs() + uint64(time.Hour)})
	h = e.cacheStats(t)
	e.check(t, after)
	if d := e.cacheStats(t).sub(h); d != (CacheStats{}) {
		t.Errorf("generation 0: cache %+v, want untouched", d)
	}
}

// TestFwdCacheMultipathPrivileged: destinations under a multipath prefix are
// never inserted, so the kernel's per-flow hash picks each flow's path.
func TestFwdCacheMultipathPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.router.IP(t, "route", "add", "10.93.0.0/16", "nexthop", "via", dstHost4.String(), "nexthop", "via", "10.202.3.2")
	e.router.IP(t, "-6", "route", "add", "fd00:93::/48", "nexthop", "via", dstHost6.String(), "nexthop", "via", "fd00:202:3::2")
	for _, p := range []string{"10.93.0.0/16", "fd00:93::/48"} {
		if err := e.dp.AddMultipath(mustPrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	e.enableCache(t, 1)
	for _, dst := range []string{"10.93.1.1", "fd00:93::1"} {
		d := mustAddr(dst)
		for sport := range uint16(16) {
			var f []byte
			if d.Is4() {
				f = frame4(ip4(to4(d)), udp(1000+sport, 53, payload(18)))
			} else {
				f = frame6(ip6(to6(d)), udp(1000+sport, 53, payload(18)))
			}
			verdict, out, err := e.run(devSrc, f)
			if err != nil || verdict != xdpRedirect {
				t.Fatalf("%s: verdict %d, err %v", dst, verdict, err)
			}
			_ = out
		}
	}
	if n := e.cacheEntries(t); n != 0 {
		t.Errorf("%d cache entries for multipath destinations, want 0", n)
	}
	// One first sighting per destination, then every lookup is found
	// multipath.
	if s := e.cacheStats(t); s.Uncacheable != 30 || s.AdmitSkip != 2 || s.Hit != 0 || s.Insert != 0 {
		t.Errorf("cache %+v: want 2 first sightings, 30 uncacheable, no insert, no hit", s)
	}
}

// TestFwdCacheMTUPrivileged: a packet longer than the longest one the FIB
// accepted for a cached destination takes the full lookup, so the kernel
// still sees what is too big; one that fits raises the cached length.
func TestFwdCacheMTUPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	short := fwdCase{frame: udp4Sized(small4, 500), outcome: Forwarded, egress: devMTU}
	for range 3 {
		e.check(t, short)
	}
	for _, c := range []struct {
		fc   fwdCase
		want CacheStats
	}{
		{fwdCase{frame: udp4Sized(small4, smallMTU+1), outcome: PassFragNeeded}, CacheStats{Miss: 1}},
		{fwdCase{frame: udp4Sized(small4, smallMTU), outcome: Forwarded, egress: devMTU}, CacheStats{Miss: 1}},
		{fwdCase{frame: udp4Sized(small4, smallMTU), outcome: Forwarded, egress: devMTU}, CacheStats{Hit: 1}},
		{fwdCase{frame: udp4Sized(small4, 600), outcome: Forwarded, egress: devMTU}, CacheStats{Hit: 1}},
		{fwdCase{frame: udp4Sized(small4, smallMTU+1), outcome: PassFragNeeded}, CacheStats{Miss: 1}},
		{fwdCase{frame: udp6Sized(small6, 400), outcome: Forwarded, egress: devMTU}, CacheStats{Miss: 1, AdmitSkip: 1}},
		{fwdCase{frame: udp6Sized(small6, 400), outcome: Forwarded, egress: devMTU}, CacheStats{Miss: 1, Insert: 1}},
		{fwdCase{frame: udp6Sized(small6, smallMTU+1), outcome: PassFragNeeded}, CacheStats{Miss: 1}},
		{fwdCase{frame: udp6Sized(small6, 400), outcome: Forwarded, egress: devMTU}, CacheStats{Hit: 1}},
	} {
		h := e.cacheStats(t)
		e.check(t, c.fc)
		if d := e.cacheStats(t).sub(h); d != c.want {
			t.Errorf("%d bytes: cache %+v, want %+v", len(c.fc.frame), d, c.want)
		}
	}
	// Lowering the MTU (an event the daemon bumps on) is seen at once.
	e.router.SetMTU(t, devMTU, 1000)
	e.enableCache(t, 2)
	e.check(t, fwdCase{frame: udp4Sized(small4, 1100), outcome: PassFragNeeded})
}

// TestFwdCacheBypassPrivileged: the policy flag and an expired lease keep
// the program off the cache entirely; a low hit ratio turns the lookup off
// for a while.
func TestFwdCacheBypassPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.pinCPU = true
	c := fwdCase{frame: udp4To(remote4), outcome: Forwarded, egress: devDst}
	now := MonotonicCoarseNs()
	for _, s := range []CacheState{
		{Generation: 3, LeaseNs: now + uint64(time.Hour), Bypass4: true},
		{Generation: 3, LeaseNs: now - 1},
	} {
		e.setCache(t, s)
		for range 3 {
			h := e.cacheStats(t)
			e.check(t, c)
			if d := e.cacheStats(t).sub(h); d != (CacheStats{Bypass: 1}) {
				t.Errorf("state %+v: cache %+v, want one bypass", s, d)
			}
		}
	}
	// IPv6 is still cached while IPv4 is bypassed.
	e.setCache(t, CacheState{Generation: 4, LeaseNs: now + uint64(time.Hour), Bypass4: true})
	c6 := fwdCase{frame: udp6To(remote6), outcome: Forwarded, egress: devDst}
	for range 3 {
		e.check(t, c6)
	}
	if s := e.cacheStats(t); s.Hit != 1 {
		t.Errorf("cache %+v: want one IPv6 hit", s)
	}

	// All different destinations: after a window of misses the lookups
	// stop for a while (counted as bypass), and frames are still right.
	e.enableCache(t, 5)
	h := e.cacheStats(t)
	var frames [][]byte
	for i := range 2 * 512 {
		d := mustAddr("10.99.0.0").As4()
		d[2], d[3] = byte(i>>8), byte(i)
		frames = append(frames, udp4To(netip.AddrFrom4(d)))
	}
	// The window is per CPU: run them all on one.
	err := e.onCPU0(func() error {
		for i, in := range frames {
			verdict, out, err := e.runHere(devSrc, in, 1)
			if err != nil {
				return err
			}
			if verdict != xdpRedirect || !bytes.Equal(out, forwarded(in, peerMAC[devDst], routerMAC[devDst])) {
				t.Errorf("packet %d: verdict %d, or output differs", i, verdict)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d := e.cacheStats(t).sub(h)
	// The earlier lookups on this CPU may have filled part of the first
	// window.
	if d.Bypass < 500 || d.Miss+d.Bypass != 1024 || d.Hit != 0 {
		t.Errorf("1024 new destinations: cache %+v, want about 512 misses then 512 bypassed", d)
	}
}

// onCPU0 runs fn in the router namespace on a thread bound to CPU 0, so
// that per-CPU state (counters, the hit-ratio window, cache copies) is one.
func (e *fwdEnv) onCPU0(fn func() error) error {
	return e.router.Do(func() error {
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		return fn()
	})
}

// runHere is run for a caller already in the router namespace; repeat > 1
// runs the program on the same buffer that many times.
func (e *fwdEnv) runHere(dev string, frame []byte, repeat uint32) (uint32, []byte, error) {
	res, err := e.runResult(dev, frame, repeat)
	return res.Retval, res.DataOut, err
}

// runResult is runHere with everything the kernel reports.
func (e *fwdEnv) runResult(dev string, frame []byte, repeat uint32) (testbed.XDPResult, error) {
	res, err := testbed.RunXDP(testbed.XDPRun{
		ProgFD: e.dp.Program().FD(),
		Data:   frame,
		// Room for any growth, although the program only ever shrinks frames.
		DataOut: make([]byte, len(frame)+256),
		Ifindex: e.ifindex[dev],
		Repeat:  repeat,
		Restart: true,
	})
	runtime.KeepAlive(e.dp)
	return res, err
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestFwdCacheDevmapPrivileged: the devmap is checked on every hit too, so
// an egress leaving the devmap is never redirected to, bump or not.
func TestFwdCacheDevmapPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	c := fwdCase{frame: udp4To(remote4), outcome: Forwarded, egress: devDst}
	for range 3 {
		e.check(t, c)
	}
	if err := e.router.Do(func() error { return e.dp.DeleteEgress(e.ifindex[devDst]) }); err != nil {
		t.Fatal(err)
	}
	h := e.cacheStats(t)
	e.check(t, fwdCase{frame: udp4To(remote4), outcome: PassNotInDevmap})
	if d := e.cacheStats(t).sub(h); d.Hit != 1 {
		t.Errorf("cache %+v: want the (unbumped) entry to hit and the devmap check to refuse", d)
	}
}

// TestFwdCacheChecksumPrivileged is TestFwdIPv4ChecksumPrivileged with the
// cache on and few destinations, so most frames are served from the cache:
// the output must still be the kernel's frame, checksum included.
func TestFwdCacheChecksumPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	before := e.cacheStats(t)
	for range 2000 {
		h := randomIPv4(rng)
		h.Dst = netip.AddrFrom4([4]byte{10, 99, 0, byte(rng.IntN(16))})
		in := frame4(h, randomL4(rng, &h))
		verdict, out, err := e.run(devSrc, in)
		if err != nil {
			t.Fatal(err)
		}
		if want := forwarded(in, peerMAC[devDst], routerMAC[devDst]); verdict != xdpRedirect || !bytes.Equal(out, want) {
			t.Fatalf("verdict %d; output\n got %x\nwant %x", verdict, out, want)
		}
	}
	if d := e.cacheStats(t).sub(before); d.Hit < 1000 {
		t.Errorf("cache %+v: want most of 2000 frames to hit", d)
	}
}

// TestFwdCacheRefillAfterBumpPrivileged: after a bump every entry is stale;
// the window counts stale entries as repeats, so the cache refills instead
// of switching itself off.
func TestFwdCacheRefillAfterBumpPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	e.enableCache(t, 1)
	var frames [][]byte
	for i := range 600 {
		d := mustAddr("10.99.0.0").As4()
		d[2], d[3] = byte(i>>8), byte(i)
		frames = append(frames, udp4To(netip.AddrFrom4(d)))
	}
	pass := func() {
		t.Helper()
		err := e.onCPU0(func() error {
			for _, in := range frames {
				if v, _, err := e.runHere(devSrc, in, 1); err != nil || v != xdpRedirect {
					t.Errorf("verdict %d, err %v", v, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// All new at first: the first window finds no repeats and bypasses
	// the next 16384 packets; the window after that sees second sightings
	// and admits them.
	for range 30 {
		pass()
	}
	if n := e.cacheEntries(t); n != len(frames) {
		t.Fatalf("%d entries after warming, want %d; cache %+v", n, len(frames), e.cacheStats(t))
	}
	e.enableCache(t, 2)
	h := e.cacheStats(t)
	pass()
	pass()
	d := e.cacheStats(t).sub(h)
	if d.Bypass != 0 || d.Insert != uint64(len(frames)) || d.Hit != uint64(len(frames)) {
		t.Errorf("two passes after a bump: cache %+v, want %d refreshes then %d hits, no bypass", d, len(frames), len(frames))
	}
}
