package loadgen

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestGeneratorSendsPrivileged sends live frames out of one veth end and
// counts them with the sink on the other: every frame arrives as IP with the
// TTL the generator wrote, also after the kernel recycled its pages, and the
// slow-path share is what was asked.
func TestGeneratorSendsPrivileged(t *testing.T) {
	a, la, lb, sink, g := sinkAndGenerator(t)
	for _, tc := range []struct {
		src, dst string
		frameLen int
	}{{"192.0.2.1", "198.18.0.1", 64}, {"2001:db8::1", "2001:db8:1::1", 64}, {"192.0.2.1", "198.18.0.1", 1500}} {
		tr := Traffic{
			DstMAC: lb.MAC, SrcMAC: la.MAC,
			Src:   netip.MustParseAddr(tc.src),
			Dsts:  []netip.Addr{netip.MustParseAddr(tc.dst)},
			Flows: 16, SportBase: 1000, Dport: 9, TTL: 64, SlowEvery: 10,
		}
		if err := g.Configure(tr); err != nil {
			t.Fatal(err)
		}
		before, _ := sink.Counts()
		f0, s0, _ := g.Counts()
		const n = 20000
		if err := a.Do(func() error { return g.Run(la.Index, tc.frameLen, n, 64) }); err != nil {
			t.Fatal(err)
		}
		after, _ := sink.Counts()
		f1, s1, _ := g.Counts()
		if f1-f0 < n || s1-s0 != (f1-f0)/10 {
			t.Errorf("%s len %d: generator counted %d frames, %d slow; want >= %d and a tenth slow", tc.dst, tc.frameLen, f1-f0, s1-s0, n)
		}
		// The namespace's own IPv6 chatter (router solicitations, MLD) may
		// add a frame or two, never with TTL 64.
		got, ok := after.IP-before.IP, after.TTLOK-before.TTLOK
		if got < f1-f0 || got > f1-f0+5 || ok != f1-f0-(s1-s0) {
			t.Errorf("%s len %d: sink saw %d IP frames, %d with TTL 64; generator wrote %d, %d slow", tc.dst, tc.frameLen, got, ok, f1-f0, s1-s0)
		}
		if bytes := after.Bytes - before.Bytes; bytes < (f1-f0)*uint64(tc.frameLen) || bytes > (f1-f0)*uint64(tc.frameLen)+5*200 {
			t.Errorf("%s len %d: sink saw %d bytes in %d frames", tc.dst, tc.frameLen, bytes, got)
		}
	}
}

// TestGeneratorInterruptPrivileged starts a run far longer than the test
// and ends it with Interrupt: the benchmark relies on this to measure over
// a window of its choosing.
func TestGeneratorInterruptPrivileged(t *testing.T) {
	a, la, lb, sink, g := sinkAndGenerator(t)
	if err := g.Configure(Traffic{DstMAC: lb.MAC, SrcMAC: la.MAC, Src: netip.MustParseAddr("192.0.2.1"),
		Dsts: []netip.Addr{netip.MustParseAddr("198.18.0.1")}, TTL: 64}); err != nil {
		t.Fatal(err)
	}
	tids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- a.Do(func() error {
			tids <- unix.Gettid()
			return g.Run(la.Index, 64, 1<<31, 64) // minutes at any rate this machine reaches
		})
	}()
	tid := <-tids
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	for {
		if err := Interrupt(tid); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("interrupted run: %v", err)
			}
			frames, _, _ := g.Counts()
			c, _ := sink.Counts()
			if frames == 0 || frames >= 1<<31 || c.TTLOK != frames {
				t.Fatalf("interrupted run sent %d frames, the sink saw %d", frames, c.TTLOK)
			}
			t.Logf("run stopped %s after the first signal, %d frames", time.Since(start).Round(time.Millisecond), frames)
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("run not interrupted within 5 s")
		}
	}
}

// sinkAndGenerator joins two new namespaces with a veth pair, attaches the
// counting sink to the peer end and loads a generator for the gen0 end in
// namespace a. Everything is released at the end of the test.
func sinkAndGenerator(t *testing.T) (a *testbed.Netns, la, lb testbed.Link, sink *Sink, g *Generator) {
	t.Helper()
	testbed.RequireRoot(t)
	a = testbed.NewNetns(t, "xrlg-a")
	b := testbed.NewNetns(t, "xrlg-b")
	la, lb = testbed.Veth(t, a, "gen0", b, "peer0")

	sink = SinkOn(t, b, lb.Name, 64, true)

	g, err := LoadGenerator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return a, la, lb, sink, g
}

// TestGeneratorSpoofsSourcesPrivileged checks SrcBits: the frames carry
// sources inside Src's /(32-SrcBits), many different ones, and a valid IPv4
// header checksum. The peer passes them to a packet socket that reads them.
func TestGeneratorSpoofsSourcesPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	a := testbed.NewNetns(t, "xrlg-a")
	b := testbed.NewNetns(t, "xrlg-b")
	la, lb := testbed.Veth(t, a, "gen0", b, "peer0")
	sink, err := LoadSink(64, false) // pass: the socket reads them
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	var fd int
	if err := b.Do(func() error {
		l, err := AttachXDP(sink.Program(), lb.Index)
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		proto := int(htons(unix.ETH_P_IP))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, proto); err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: lb.Index})
	}); err != nil {
		t.Fatal(err)
	}
	g, err := LoadGenerator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	spoof := netip.MustParsePrefix("100.64.0.0/16")
	if err := g.Configure(Traffic{DstMAC: lb.MAC, SrcMAC: la.MAC, Src: spoof.Addr(), SrcBits: 32 - spoof.Bits(),
		Dsts: []netip.Addr{netip.MustParseAddr("198.18.0.1")}, Dport: 53, TTL: 64}); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	if err := a.Do(func() error { return g.Run(la.Index, 64, n, 64) }); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	buf := make([]byte, 2048)
	got := 0
	for got < n {
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			break // timeout: fewer than n arrived, said below
		}
		got++
		h := buf[:k]
		if k < 20 || h[0] != 0x45 {
			t.Fatalf("frame %d: not an IPv4 header: % x", got, h)
		}
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(h[i])<<8 | uint32(h[i+1])
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		src := netip.AddrFrom4([4]byte(h[12:16]))
		if sum != 0xffff || !spoof.Contains(src) {
			t.Fatalf("frame %d: source %s (want inside %s), header checksum sum %#x (want 0xffff)", got, src, spoof, sum)
		}
		seen[src] = true
	}
	// 2000 draws from 65536 addresses: about 1970 distinct.
	if got < n || len(seen) < n*9/10 {
		t.Errorf("read %d of %d frames, %d distinct sources", got, n, len(seen))
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
