package netnstests

// The next-hop cache under eviction pressure from two CPUs: a tiny cache,
// many destinations each behind its own next hop with its own MAC, traffic
// generated on both CPUs at once. An LRU element that one CPU evicts and
// reuses while the other CPU is refreshing its copy must never make a frame
// leave with another destination's MAC.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/loadgen"
	"github.com/xrouter/xrouter/internal/testbed"
)

// macCheck counts IPv4 UDP frames to one port arriving on a device and
// compares each frame's destination MAC with the one expected for its
// destination address.
type macCheck struct {
	want    map[netip.Addr]string
	checked atomic.Uint64
	bad     atomic.Uint64
	mu      sync.Mutex
	first   []string // the first few mismatches
}

func startMACCheck(t *testing.T, ns *testbed.Netns, dev string, port uint16, want map[netip.Addr]string) *macCheck {
	t.Helper()
	fd := openPacketSocket(t, ns, dev, unix.ETH_P_IP)
	c := &macCheck{want: want}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
			if err != nil || n < 14+20+8 {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			b := buf[:min(n, len(buf))]
			ip := b[14:]
			ihl := int(ip[0]&0xf) * 4
			if ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+8 || binary.BigEndian.Uint16(ip[ihl+2:]) != port {
				continue
			}
			dst := netip.AddrFrom4([4]byte(ip[16:20]))
			w, ok := c.want[dst]
			if !ok {
				continue
			}
			c.checked.Add(1)
			if got := net.HardwareAddr(b[:6]).String(); got != w {
				if c.bad.Add(1) <= 5 {
					c.mu.Lock()
					c.first = append(c.first, fmt.Sprintf("%s went to %s, its neighbour is %s", dst, got, w))
					c.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd)
	})
	return c
}

// TestCacheEvictionRacePrivileged: a 16-entry cache, 64 destinations in
// random order from both CPUs; every frame that reaches the dst link must
// carry the MAC `ip route get` and `ip neigh` give for its destination.
func TestCacheEvictionRacePrivileged(t *testing.T) {
	const (
		ndst  = 64
		dport = 9
	)
	tp := newTopo(t)
	var batch strings.Builder
	dsts := make([]netip.Addr, ndst)
	for i := range ndst {
		dsts[i] = netip.AddrFrom4([4]byte{10, 210, 0, byte(i + 1)})
		hop := fmt.Sprintf("10.201.2.%d", 100+i)
		fmt.Fprintf(&batch, "neigh replace %s dev %s lladdr 02:00:00:01:00:%02x nud permanent\n", hop, testbed.LineRouterDstDev, i)
		fmt.Fprintf(&batch, "route replace %s/32 via %s dev %s\n", dsts[i], hop, testbed.LineRouterDstDev)
	}
	bf := filepath.Join(t.TempDir(), "routes.batch")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tp.Router.IP(t, "-batch", bf)

	cfgPath := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra:      "  cache:\n    enabled: true\n    size: 16\n    max_age: 30s\n",
	})
	d := startDaemon(t, tp.Router, cfgPath)
	r := &cacheRouter{tp: tp, d: d}
	waitFor(5*time.Second, func() bool { return r.cacheState(t).Generation != 0 })
	if r.cacheState(t).Generation == 0 {
		t.Fatalf("the cache never got a generation")
	}

	// What the kernel would send each destination to.
	want := map[netip.Addr]string{}
	for _, a := range dsts {
		mac := r.kernelHop(t, a.String(), 0)
		if mac == "" {
			t.Fatalf("the kernel does not forward %s on the dst link", a)
		}
		want[a] = mac
	}
	chk := startMACCheck(t, tp.Dst, testbed.LineDstDev, dport, want)

	g, err := loadgen.LoadGenerator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Configure(loadgen.Traffic{
		DstMAC: tp.RouterSrc.MAC, SrcMAC: tp.SrcPort.MAC,
		Src: tp.SrcPort.Addr4.Addr(), Dsts: dsts, Random: true,
		SportBase: 1000, Dport: dport, TTL: 64,
	}); err != nil {
		t.Fatal(err)
	}

	// One generator thread per CPU, each in the src namespace; the
	// router's XDP program runs on the CPU that sent the frame.
	const runFor = 8 * time.Second
	deadline := time.Now().Add(runFor)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for cpu := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tp.Src.Enter(); err != nil { // the thread dies with the goroutine
				errs <- err
				return
			}
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- fmt.Errorf("pinning to CPU %d: %w", cpu, err)
				return
			}
			for time.Now().Before(deadline) && chk.bad.Load() == 0 {
				if err := g.Run(tp.SrcPort.Index, 64, 50000, 64); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	fwd, err := loadgen.PinnedPerCPU(filepath.Join(tp.Pin, "xr_stats"), uint32(dataplane.Forwarded))
	if err != nil {
		t.Fatal(err)
	}
	cs := r.cacheStats(t)
	sent, _, _ := g.Counts()
	t.Logf("sent %d frames; forwarded per CPU %v; cache %+v; %d frames checked at the dst host, %d with a wrong MAC",
		sent, fwd, cs, chk.checked.Load(), chk.bad.Load())
	if n := chk.bad.Load(); n > 0 {
		chk.mu.Lock()
		defer chk.mu.Unlock()
		t.Fatalf("%d frames left with another destination's MAC, e.g.:\n%s", n, strings.Join(chk.first, "\n"))
	}
	if len(fwd) < 2 || fwd[0] == 0 || fwd[1] == 0 {
		t.Fatalf("the fast path did not forward on both CPUs: %v", fwd)
	}
	if chk.checked.Load() < 10000 || cs.Hit == 0 || cs.Insert == 0 {
		t.Fatalf("too little checked: %d frames, cache %+v", chk.checked.Load(), cs)
	}
}

// TestNeighbourMACChangePrivileged: the host behind the router changes its
// MAC while traffic flows, without telling anyone (no gratuitous ARP). With
// kernel forwarding the router's neighbour entry is used, goes to DELAY and
// PROBE, fails (the unicast probes go to the old MAC) and is resolved anew:
// traffic resumes within seconds. It must resume through xrouter as well,
// about as fast. The router's neighbour timers are shortened alike for both
// runs (base_reachable_time 2 s, delay_first_probe_time 2 s).
func TestNeighbourMACChangePrivileged(t *testing.T) {
	tp := newTopo(t)
	for key, val := range map[string]string{
		"net.ipv4.neigh." + testbed.LineRouterDstDev + ".base_reachable_time_ms": "2000",
		"net.ipv4.neigh." + testbed.LineRouterDstDev + ".delay_first_probe_time": "2",
	} {
		tp.Router.Sysctl(t, key, val)
	}
	recv := listenUDP(t, tp.Dst, dst4)
	snd := newUDPSender(t, tp.Src, "udp4")

	// resumeAfterMACChange sends a stream every 10 ms, changes the dst
	// host's MAC once it flows, and returns how long until datagrams
	// arrive again (or limit, with ok false).
	resumeAfterMACChange := func(id uint32, mac string, limit time.Duration, flowing func() bool) (time.Duration, bool) {
		stop := make(chan struct{})
		sent := make(chan error, 1)
		go func() {
			to := netip.AddrPortFrom(netip.MustParseAddr(dst4), udpPort)
			buf := make([]byte, 64)
			copy(buf, "xrnt")
			binary.BigEndian.PutUint32(buf[4:], id)
			for i := uint32(0); ; i++ {
				select {
				case <-stop:
					sent <- nil
					return
				case <-time.After(10 * time.Millisecond):
				}
				binary.BigEndian.PutUint32(buf[8:], i)
				if _, err := snd.conn.WriteToUDPAddrPort(buf, to); err != nil {
					sent <- err
					return
				}
			}
		}()
		defer func() {
			close(stop)
			if err := <-sent; err != nil {
				t.Errorf("sending: %v", err)
			}
		}()
		if !waitFor(10*time.Second, func() bool { return recv.count(id) > 100 && flowing() }) {
			t.Fatalf("stream %d does not flow: %d datagrams arrived", id, recv.count(id))
		}
		tp.Dst.IP(t, "link", "set", "dev", testbed.LineDstDev, "address", mac)
		t0 := time.Now()
		time.Sleep(100 * time.Millisecond) // datagrams already past the router
		before := recv.count(id)
		if waitFor(limit, func() bool { return recv.count(id) > before }) {
			return time.Since(t0), true
		}
		t.Logf("router neighbours: %s", tp.Router.IP(t, "neigh", "show", "dev", testbed.LineRouterDstDev))
		return time.Since(t0), false
	}

	pingOK(t, tp.Src, dst4, 2)
	kernel, ok := resumeAfterMACChange(1, "02:00:00:00:bb:01", 60*time.Second, func() bool { return true })
	if !ok {
		t.Fatalf("kernel forwarding: traffic did not resume within %s", kernel.Round(time.Millisecond))
	}

	startDaemon(t, tp.Router, tp.defaultConfig(t))
	fwdBefore := readStats(t, tp.Pin)["forwarded"]
	limit := min(3*kernel+5*time.Second, 60*time.Second)
	xdp, ok := resumeAfterMACChange(2, "02:00:00:00:bb:02", limit, func() bool {
		return readStats(t, tp.Pin)["forwarded"] > fwdBefore+100
	})
	t.Logf("traffic resumed after the MAC change: kernel forwarding %s, xrouter %s (limit %s)",
		kernel.Round(time.Millisecond), xdp.Round(time.Millisecond), limit.Round(time.Millisecond))
	if !ok {
		t.Fatalf("xrouter: traffic did not resume within %s; stats %s", limit.Round(time.Millisecond), readStats(t, tp.Pin))
	}
}
