package netnstests

// The next-hop cache against the kernel: after every change that can alter
// a FIB lookup, the daemon moves the cache's generation, and the packets
// sent after that follow the kernel's new decision. The router's dst link
// carries several next hops as permanent neighbours with distinct MACs; a
// packet socket on the dst host sees which one each forwarded frame went to
// (frames to the other MACs are still received by the tap, then dropped by
// the host's stack), and `ip route get` in the router says which one the
// kernel picks.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/testbed"
)

// Next hops on the router's dst link: address → MAC (all behind dst0).
var cacheHops = []struct{ addr, mac string }{
	{"10.201.2.11", "02:00:00:00:aa:01"},
	{"10.201.2.12", "02:00:00:00:aa:02"},
	{"10.201.2.13", "02:00:00:00:aa:03"},
	{"10.201.2.14", "02:00:00:00:aa:04"},
}

// The same next hops' IPv6 addresses (MACs as above).
var cacheHops6 = []string{"fd00:201:2::11", "fd00:201:2::12", "fd00:201:2::13", "fd00:201:2::14"}

// frameSeen is one UDP frame of ours that reached the dst host's veth.
type frameSeen struct {
	id, seq  uint32
	sport    uint16
	dmac     string
	ipLen    int
	fragment bool
}

// capture records our UDP frames arriving on a device (any destination MAC).
type capture struct {
	mu     sync.Mutex
	frames []frameSeen
}

func startCapture(t *testing.T, ns *testbed.Netns, dev string) *capture {
	t.Helper()
	fd := openPacketSocket(t, ns, dev, unix.ETH_P_ALL)
	c := &capture{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if f, ok := parseOurs(buf[:n]); ok {
				c.mu.Lock()
				c.frames = append(c.frames, f)
				c.mu.Unlock()
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

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacketSocket opens an AF_PACKET socket in ns bound to dev for
// protocol proto (ETH_P_ALL, ETH_P_IP), with an 8 MiB receive buffer and a
// 100 ms receive timeout so that a reader loop can notice it should stop.
func openPacketSocket(t *testing.T, ns *testbed.Netns, dev string, proto uint16) int {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("netns %s: packet socket on %s: %v", ns.Name(), dev, err)
	}
	return fd
}

// parseOurs recognises an IPv4 or IPv6 UDP frame to udpPort carrying "xrnt".
func parseOurs(b []byte) (frameSeen, bool) {
	if len(b) < 14+40 {
		return frameSeen{}, false
	}
	f := frameSeen{dmac: net.HardwareAddr(b[:6]).String()}
	ip := b[14:]
	var udp []byte
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		ihl := int(ip[0]&0xf) * 4
		if ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+8 {
			return frameSeen{}, false
		}
		f.ipLen = int(binary.BigEndian.Uint16(ip[2:]))
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			// A fragment: the first one still has the UDP header.
			f.fragment = true
			if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
				return f, true
			}
		}
		udp = ip[ihl:]
	case 0x86dd:
		if ip[6] != unix.IPPROTO_UDP {
			return frameSeen{}, false
		}
		f.ipLen = int(binary.BigEndian.Uint16(ip[4:])) + 40
		udp = ip[40:]
	default:
		return frameSeen{}, false
	}
	if len(udp) < 8+12 || binary.BigEndian.Uint16(udp[2:]) != udpPort || string(udp[8:12]) != "xrnt" {
		return frameSeen{}, false
	}
	f.sport = binary.BigEndian.Uint16(udp)
	f.id, f.seq = binary.BigEndian.Uint32(udp[12:]), binary.BigEndian.Uint32(udp[16:])
	return f, true
}

// stream returns the frames of one stream id.
func (c *capture) stream(id uint32) []frameSeen {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []frameSeen
	for _, f := range c.frames {
		if f.id == id {
			out = append(out, f)
		}
	}
	return out
}

// cacheRouter is a running daemon on a Line with the next hops set up.
type cacheRouter struct {
	tp  *topo
	d   *daemon
	cap *capture
	id  uint32
}

func newCacheRouter(t *testing.T, extra string) *cacheRouter {
	t.Helper()
	tp := newTopo(t)
	for i, h := range cacheHops {
		tp.Router.IP(t, "neigh", "replace", h.addr, "dev", testbed.LineRouterDstDev, "lladdr", h.mac, "nud", "permanent")
		tp.Router.IP(t, "-6", "neigh", "replace", cacheHops6[i], "dev", testbed.LineRouterDstDev, "lladdr", h.mac, "nud", "permanent")
	}
	// A DF-less sender and a fixed path MTU: the MTU case compares sizes.
	cfgPath := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra:      "  cache:\n    enabled: true\n    max_age: 30s\n" + extra,
	})
	d := startDaemon(t, tp.Router, cfgPath)
	r := &cacheRouter{tp: tp, d: d, cap: startCapture(t, tp.Dst, testbed.LineDstDev), id: 1000}
	waitFor(5*time.Second, func() bool { return r.cacheState(t).Generation != 0 })
	if r.cacheState(t).Generation == 0 {
		t.Fatalf("the cache never got a generation; log:\n%s", d.Log.String())
	}
	// The src host's own neighbour (the router) must be resolved.
	pingOK(t, tp.Src, rtrSrc4, 2)
	pingOK(t, tp.Src, rtrSrc6, 2)
	return r
}

// cacheState reads the control block through the pins.
func (r *cacheRouter) cacheState(t *testing.T) dataplane.CacheState {
	t.Helper()
	st, err := dataplane.ReadPinnedCacheState(r.tp.Pin)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statusBumps reads the bump count as an operator does: xrouter status.
func (r *cacheRouter) statusBumps(t *testing.T) uint64 {
	t.Helper()
	out, stderr, err := xr("status", "--json", "--netns", r.tp.Router.Name(), "--pin-path", r.tp.Pin)
	if err != nil {
		t.Fatalf("xrouter status: %v: %s", err, stderr)
	}
	var doc struct {
		Cache *struct {
			Generation uint64 `json:"generation"`
			Bumps      uint64 `json:"bumps"`
			Active     bool   `json:"active"`
		} `json:"cache"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Cache == nil {
		t.Fatalf("xrouter status --json: no cache section (%v):\n%s", err, out)
	}
	if !doc.Cache.Active || doc.Cache.Generation == 0 {
		t.Fatalf("xrouter status: cache not active: %s", out)
	}
	return doc.Cache.Bumps
}

// waitBumped waits until xrouter status shows more bumps than before.
func (r *cacheRouter) waitBumped(t *testing.T, before uint64, what string) {
	t.Helper()
	if !waitFor(5*time.Second, func() bool { return r.statusBumps(t) > before }) {
		t.Fatalf("%s: the cache generation did not move within 5 s; log:\n%s", what, r.d.Log.String())
	}
}

// cacheStats reads the cache counters through xrouter stats --json.
func (r *cacheRouter) cacheStats(t *testing.T) dataplane.CacheStats {
	t.Helper()
	out, stderr, err := xr("stats", "--json", "--interval", "0", "--pin-path", r.tp.Pin)
	if err != nil {
		t.Fatalf("xrouter stats: %v: %s", err, stderr)
	}
	var doc struct {
		Cache *dataplane.CacheStats `json:"cache"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Cache == nil {
		t.Fatalf("xrouter stats --json: no cache section (%v):\n%s", err, out)
	}
	return *doc.Cache
}

// kernelHop is the kernel's decision for a UDP packet from the src host:
// the MAC the frame leaves with, or "" when the kernel would not send it
// on the dst link (no route, unreachable, no valid neighbour, forwarding
// off, ...).
func (r *cacheRouter) kernelHop(t *testing.T, dst string, sport uint16) string {
	t.Helper()
	from := src4
	if strings.Contains(dst, ":") {
		from = src6
	}
	out, err := r.tp.Router.IPExec("-j", "route", "get", dst, "from", from, "iif", testbed.LineRouterSrcDev,
		"ipproto", "udp", "sport", strconv.Itoa(int(sport)), "dport", strconv.Itoa(udpPort))
	if err != nil {
		return ""
	}
	var rs []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
		Type    string `json:"type"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
		t.Fatalf("ip -j route get %s: %v: %s", dst, err, out)
	}
	if rs[0].Dev != testbed.LineRouterDstDev || rs[0].Gateway == "" || (rs[0].Type != "" && rs[0].Type != "unicast") {
		return ""
	}
	var ns []struct {
		Dst    string   `json:"dst"`
		Lladdr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	nout := r.tp.Router.IP(t, "-j", "neigh", "show", "dev", testbed.LineRouterDstDev, "to", rs[0].Gateway)
	if err := json.Unmarshal([]byte(nout), &ns); err != nil {
		t.Fatalf("ip -j neigh show: %v: %s", err, nout)
	}
	for _, n := range ns {
		for _, s := range n.State {
			switch s {
			case "PERMANENT", "REACHABLE", "STALE", "DELAY", "PROBE", "NOARP":
				return n.Lladdr
			}
		}
	}
	return ""
}

// send sends n datagrams of a new stream to dst from sport (0: any), each
// carrying size bytes of UDP payload, and returns the stream id.
func (r *cacheRouter) send(t *testing.T, dst string, sport uint16, n, size int) uint32 {
	t.Helper()
	r.id++
	id := r.id
	family := "udp4"
	if strings.Contains(dst, ":") {
		family = "udp6"
	}
	var conn *net.UDPConn
	err := r.tp.Src.Do(func() error {
		var err error
		conn, err = net.ListenUDP(family, &net.UDPAddr{Port: int(sport)})
		return err
	})
	if err != nil {
		t.Fatalf("UDP socket in src: %v", err)
	}
	defer conn.Close()
	raw, _ := conn.SyscallConn()
	_ = raw.Control(func(fd uintptr) {
		// No DF: a too-big packet is fragmented by the router, so what
		// arrives shows the MTU the router applied.
		if family == "udp4" {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}
	})
	buf := make([]byte, max(size, 20))
	copy(buf, "xrnt")
	binary.BigEndian.PutUint32(buf[4:], id)
	to := netip.AddrPortFrom(netip.MustParseAddr(dst), udpPort)
	for i := range n {
		binary.BigEndian.PutUint32(buf[8:], uint32(i))
		if _, err := conn.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatalf("sending to %s: %v", to, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return id
}

// expect checks a stream against the kernel's decision: every datagram
// arrives with MAC want, or none arrives when want is "". maxIPLen bounds
// the frames' IP length (0: no bound).
func (r *cacheRouter) expect(t *testing.T, id uint32, n int, want string, maxIPLen int) {
	t.Helper()
	if want == "" {
		time.Sleep(150 * time.Millisecond)
		if got := r.cap.stream(id); len(got) != 0 {
			t.Fatalf("stream %d: the kernel would not send these on the dst link, but %d frames arrived (first to %s)", id, len(got), got[0].dmac)
		}
		return
	}
	seqs := map[uint32]bool{}
	waitFor(5*time.Second, func() bool {
		clear(seqs)
		for _, f := range r.cap.stream(id) {
			seqs[f.seq] = true
		}
		return len(seqs) >= n
	})
	frames := r.cap.stream(id)
	if len(seqs) < n {
		t.Fatalf("stream %d: %d of %d datagrams arrived; stats %s", id, len(seqs), n, readStats(t, r.tp.Pin))
	}
	for _, f := range frames {
		if f.dmac != want {
			t.Fatalf("stream %d datagram %d went to %s, the kernel sends to %s", id, f.seq, f.dmac, want)
		}
		if maxIPLen > 0 && f.ipLen > maxIPLen {
			t.Fatalf("stream %d datagram %d: %d-byte IP packet on a link with MTU %d", id, f.seq, f.ipLen, maxIPLen)
		}
	}
}

// settle sends enough packets to dst that the cache holds it (first
// sighting, insertion, hits) and checks they follow the kernel.
func (r *cacheRouter) settle(t *testing.T, dst string, size int) {
	t.Helper()
	want := r.kernelHop(t, dst, 0)
	id := r.send(t, dst, 0, 10, size)
	r.expect(t, id, 10, want, 0)
}

// TestCacheInvalidationPrivileged: after each invalidating change, once the
// daemon's generation moved (xrouter status), the very next packets follow
// the kernel's new decision, although the cache held the old one.
func TestCacheInvalidationPrivileged(t *testing.T) {
	r := newCacheRouter(t, "")
	rt := r.tp.Router
	const dst = "10.77.1.1"
	dev := testbed.LineRouterDstDev
	baseline := func(t *testing.T) {
		rt.IP(t, "link", "set", dev, "up")
		rt.IP(t, "link", "set", dev, "mtu", "1500")
		_, _ = rt.IPExec("addr", "add", "10.201.2.1/24", "dev", dev)
		for _, h := range cacheHops {
			rt.IP(t, "neigh", "replace", h.addr, "dev", dev, "lladdr", h.mac, "nud", "permanent")
		}
		rt.IP(t, "route", "replace", "10.77.0.0/16", "via", cacheHops[0].addr)
		_, _ = rt.IPExec("rule", "del", "to", "10.77.0.0/16", "lookup", "100")
		rt.Sysctl(t, "net.ipv4.conf."+testbed.LineRouterSrcDev+".forwarding", "1")
		waitFor(5*time.Second, func() bool {
			for _, p := range readStatus(t, rt, r.tp.Pin).Interfaces {
				if p.Name == dev && !p.Egress {
					return false
				}
			}
			return true
		})
		r.settle(t, dst, 1200)
	}
	cases := []struct {
		name   string
		change func(t *testing.T)
		mtu    int
	}{
		{"route replaced to another next hop", func(t *testing.T) {
			rt.IP(t, "route", "replace", "10.77.0.0/16", "via", cacheHops[1].addr)
		}, 0},
		{"neighbour lladdr changed", func(t *testing.T) {
			rt.IP(t, "neigh", "replace", cacheHops[0].addr, "dev", dev, "lladdr", "02:00:00:00:bb:01", "nud", "permanent")
		}, 0},
		{"neighbour deleted", func(t *testing.T) {
			rt.IP(t, "neigh", "del", cacheHops[0].addr, "dev", dev)
		}, 0},
		{"link down (leaves the devmap)", func(t *testing.T) {
			rt.IP(t, "link", "set", dev, "down")
		}, 0},
		{"address removed", func(t *testing.T) {
			rt.IP(t, "addr", "del", "10.201.2.1/24", "dev", dev)
		}, 0},
		{"MTU decreased", func(t *testing.T) {
			rt.IP(t, "link", "set", dev, "mtu", "1000")
		}, 1000},
		{"policy rule added", func(t *testing.T) {
			rt.IP(t, "route", "replace", "10.77.0.0/16", "via", cacheHops[2].addr, "table", "100")
			rt.IP(t, "rule", "add", "to", "10.77.0.0/16", "lookup", "100")
		}, 0},
		{"forwarding turned off on the ingress", func(t *testing.T) {
			rt.Sysctl(t, "net.ipv4.conf."+testbed.LineRouterSrcDev+".forwarding", "0")
		}, 0},
	}
	before := r.cacheStats(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			baseline(t)
			bumps := r.statusBumps(t)
			c.change(t)
			r.waitBumped(t, bumps, c.name)
			want := r.kernelHop(t, dst, 0)
			id := r.send(t, dst, 0, 10, 1200)
			r.expect(t, id, 10, want, c.mtu)
		})
	}
	d := r.cacheStats(t)
	if d.Hit <= before.Hit {
		t.Errorf("cache counters %+v: the cache was never hit, so the test proved nothing", d)
	}
}

// TestCacheFuzzPrivileged interleaves random route and neighbour changes
// (IPv4 and IPv6) with traffic and checks every delivered frame against the
// kernel's decision at that moment.
func TestCacheFuzzPrivileged(t *testing.T) {
	r := newCacheRouter(t, "")
	rt := r.tp.Router
	dev := testbed.LineRouterDstDev
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	// Next hops of both families; prefixes route via one of their own.
	type hop struct{ addr, mac string }
	hops := map[bool][]hop{} // by "is IPv6"
	for i, h := range cacheHops {
		hops[false] = append(hops[false], hop{h.addr, h.mac})
		hops[true] = append(hops[true], hop{cacheHops6[i], h.mac})
	}
	prefixes := []string{"10.77.0.0/16", "10.78.0.0/16", "fd00:77::/48", "fd00:78::/48"}
	via := map[string]string{}
	for _, p := range prefixes {
		h := hops[strings.Contains(p, ":")][0].addr
		rt.IP(t, "route", "replace", p, "via", h)
		via[p] = h
	}
	macs := []string{"02:00:00:00:aa:01", "02:00:00:00:aa:02", "02:00:00:00:cc:01", "02:00:00:00:cc:02"}
	// What the test set, so that it knows which commands change anything
	// (those must move the generation).
	lladdr := map[string]string{}
	for _, hs := range hops {
		for _, h := range hs {
			lladdr[h.addr] = h.mac
		}
	}
	start := time.Now()
	iterations := 0
	for i := 0; i < 200 && time.Since(start) < 18*time.Second; i++ {
		iterations++
		st := r.cacheState(t)
		var what string
		changed := false
		v6 := rng.IntN(2) == 1
		h := hops[v6][rng.IntN(len(hops[v6]))]
		switch rng.IntN(4) {
		case 0, 1:
			p := prefixes[rng.IntN(2)]
			if v6 {
				p = prefixes[2+rng.IntN(2)]
			}
			what = "route " + p + " via " + h.addr
			rt.IP(t, "route", "replace", p, "via", h.addr)
			changed, via[p] = via[p] != h.addr, h.addr
		case 2:
			m := macs[rng.IntN(len(macs))]
			what = "neigh " + h.addr + " lladdr " + m
			rt.IP(t, "neigh", "replace", h.addr, "dev", dev, "lladdr", m, "nud", "permanent")
			changed, lladdr[h.addr] = lladdr[h.addr] != m, m
		case 3:
			if lladdr[h.addr] != "" {
				what = "neigh del " + h.addr
				rt.IP(t, "neigh", "del", h.addr, "dev", dev)
				lladdr[h.addr] = ""
			} else {
				what = "neigh add " + h.addr
				rt.IP(t, "neigh", "replace", h.addr, "dev", dev, "lladdr", h.mac, "nud", "permanent")
				lladdr[h.addr] = h.mac
			}
			changed = true
		}
		if changed && !waitFor(2*time.Second, func() bool { return r.cacheState(t).Bumps > st.Bumps }) {
			t.Fatalf("%s: the cache generation did not move", what)
		}
		dst := fmt.Sprintf("10.%d.%d.%d", 77+rng.IntN(2), rng.IntN(4), 1+rng.IntN(4))
		if rng.IntN(2) == 1 {
			dst = fmt.Sprintf("fd00:%d:%d::%d", 77+rng.IntN(2), rng.IntN(4), 1+rng.IntN(4))
		}
		want := r.kernelHop(t, dst, 0)
		id := r.send(t, dst, 0, 5, 40)
		t.Run(fmt.Sprintf("%03d %s, to %s", i, what, dst), func(t *testing.T) {
			r.expect(t, id, 5, want, 0)
		})
		if t.Failed() {
			break
		}
	}
	s := r.cacheStats(t)
	t.Logf("%d iterations; cache %+v", iterations, s)
	if s.Hit == 0 {
		t.Errorf("no cache hit in %d iterations: the cache was not exercised", iterations)
	}
}

// TestCacheECMPPrivileged: flows to a 4-way multipath route take the next hop
// the kernel's multipath hash picks for each of them, and all four are
// used; the cache must not pin the destination to one.
func TestCacheECMPPrivileged(t *testing.T) {
	r := newCacheRouter(t, "metrics:\n  listen: 127.0.0.1:9479\n")
	rt := r.tp.Router
	rt.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1") // L4: ports count
	bumps := r.statusBumps(t)
	args := []string{"route", "replace", "10.79.0.0/16"}
	for _, h := range cacheHops {
		args = append(args, "nexthop", "via", h.addr, "dev", testbed.LineRouterDstDev)
	}
	rt.IP(t, args...)
	r.waitBumped(t, bumps, "multipath route")
	const dst = "10.79.1.1"
	used := map[string]int{}
	for sport := uint16(21000); sport < 21048; sport++ {
		want := r.kernelHop(t, dst, sport)
		if want == "" {
			t.Fatalf("sport %d: the kernel has no next hop", sport)
		}
		id := r.send(t, dst, sport, 4, 40)
		r.expect(t, id, 4, want, 0)
		used[want]++
	}
	if len(used) != len(cacheHops) {
		t.Errorf("flows used next hops %v, want all %d", used, len(cacheHops))
	}
	s := r.cacheStats(t)
	if s.Uncacheable == 0 {
		t.Errorf("cache %+v: multipath lookups should be counted uncacheable", s)
	}
	t.Logf("flows per next hop: %v; cache %+v", used, s)

	// The same counters on /metrics (served inside the router namespace).
	rt.IP(t, "link", "set", "lo", "up")
	var body string
	err := r.tp.Router.Do(func() error {
		// Dialled here: net/http would dial from another thread, outside
		// the namespace.
		conn, err := net.Dial("tcp", "127.0.0.1:9479")
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	if !regexp.MustCompile(`(?m)^xrouter_nh_cache_total\{event="uncacheable"\} [1-9]`).MatchString(body) ||
		!regexp.MustCompile(`(?m)^xrouter_nh_cache_generation [1-9]`).MatchString(body) {
		t.Errorf("/metrics lacks the cache counters:\n%s", body)
	}
}

// TestCacheIPv6Privileged: the same for IPv6: a route replaced, a
// neighbour's address changed, and a 4-way multipath route whose flows take
// the kernel's next hop each.
func TestCacheIPv6Privileged(t *testing.T) {
	r := newCacheRouter(t, "")
	rt := r.tp.Router
	dev := testbed.LineRouterDstDev
	const dst = "fd00:77::1"
	rt.IP(t, "-6", "route", "replace", "fd00:77::/48", "via", cacheHops6[0])
	for _, step := range []struct {
		name   string
		change func()
	}{
		{"route replaced", func() { rt.IP(t, "-6", "route", "replace", "fd00:77::/48", "via", cacheHops6[1]) }},
		{"neighbour lladdr changed", func() {
			rt.IP(t, "-6", "neigh", "replace", cacheHops6[1], "dev", dev, "lladdr", "02:00:00:00:bb:02", "nud", "permanent")
		}},
		{"neighbour deleted", func() { rt.IP(t, "-6", "neigh", "del", cacheHops6[1], "dev", dev) }},
	} {
		r.settle(t, dst, 100)
		bumps := r.statusBumps(t)
		step.change()
		r.waitBumped(t, bumps, step.name)
		want := r.kernelHop(t, dst, 0)
		id := r.send(t, dst, 0, 10, 100)
		t.Run(step.name, func(t *testing.T) { r.expect(t, id, 10, want, 0) })
	}

	rt.Sysctl(t, "net.ipv6.fib_multipath_hash_policy", "1")
	bumps := r.statusBumps(t)
	args := []string{"-6", "route", "replace", "fd00:79::/48"}
	for _, h := range cacheHops6 {
		args = append(args, "nexthop", "via", h, "dev", dev)
	}
	// The deleted neighbour back, so all four are usable.
	rt.IP(t, "-6", "neigh", "replace", cacheHops6[1], "dev", dev, "lladdr", cacheHops[1].mac, "nud", "permanent")
	rt.IP(t, args...)
	r.waitBumped(t, bumps, "multipath route")
	used := map[string]int{}
	for sport := uint16(22000); sport < 22032; sport++ {
		want := r.kernelHop(t, "fd00:79::1", sport)
		if want == "" {
			t.Fatalf("sport %d: the kernel has no next hop", sport)
		}
		id := r.send(t, "fd00:79::1", sport, 3, 40)
		r.expect(t, id, 3, want, 0)
		used[want]++
	}
	if len(used) != len(cacheHops6) {
		t.Errorf("flows used next hops %v, want all %d", used, len(cacheHops6))
	}
	if s := r.cacheStats(t); s.Hit == 0 || s.Uncacheable == 0 {
		t.Errorf("cache %+v: want hits (single-path) and uncacheable (multipath) lookups", s)
	}
}

// TestCacheDisabledPrivileged: dataplane.cache.enabled false keeps the
// generation at 0: the program never consults the cache, and forwarding is
// the plain lookup.
func TestCacheDisabledPrivileged(t *testing.T) {
	tp := newTopo(t)
	cfgPath := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra:      "  cache:\n    enabled: false\n",
	})
	d := startDaemon(t, tp.Router, cfgPath)
	d.waitLog(t, "next-hop cache disabled", 5*time.Second)
	s := newUDPSender(t, tp.Src, "udp4")
	rcv := listenUDP(t, tp.Dst, dst4)
	warmUp(t, tp.Src, dst4)
	g := measure(t, tp, func() { sendUDP(t, s, rcv, dst4, 1, 50, time.Millisecond) })
	if g.stats["forwarded"] < 50 {
		t.Errorf("forwarded %d of 50 on the fast path", g.stats["forwarded"])
	}
	st, err := dataplane.ReadPinnedCacheState(tp.Pin)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := dataplane.ReadPinnedCacheStats(tp.Pin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 0 || cs != (dataplane.CacheStats{}) {
		t.Errorf("cache disabled: state %+v, counters %+v; want generation 0 and no counter moved", st, cs)
	}
}

// TestCacheLeaseAndRestartPrivileged: a killed daemon cannot bump, so the
// program stops trusting the cache when the lease runs out and forwards by
// the kernel's current decision; a new daemon continues the generation
// numbers (an old program's entries never become valid again).
func TestCacheLeaseAndRestartPrivileged(t *testing.T) {
	tp := newTopo(t)
	rt := tp.Router
	for _, h := range cacheHops {
		rt.IP(t, "neigh", "replace", h.addr, "dev", testbed.LineRouterDstDev, "lladdr", h.mac, "nud", "permanent")
	}
	rt.IP(t, "route", "replace", "10.77.0.0/16", "via", cacheHops[0].addr)
	cfgPath := writeConfig(t, cfg{
		Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev},
		Pin:        tp.Pin,
		Extra:      "  cache:\n    max_age: 30s\n",
	})
	d := startDaemon(t, rt, cfgPath)
	r := &cacheRouter{tp: tp, d: d, cap: startCapture(t, tp.Dst, testbed.LineDstDev), id: 1000}
	waitFor(5*time.Second, func() bool { return r.cacheState(t).Generation != 0 })
	pingOK(t, tp.Src, rtrSrc4, 2)
	const dst = "10.77.1.1"
	r.settle(t, dst, 100)
	before := r.cacheState(t)

	if err := d.signal(t, syscall.SIGKILL); err == nil {
		t.Fatal("xrouter run exited cleanly on SIGKILL")
	}
	rt.IP(t, "route", "replace", "10.77.0.0/16", "via", cacheHops[1].addr)
	// At most 1 s after the last renewal.
	lease := time.Duration(r.cacheState(t).LeaseNs - dataplane.MonotonicCoarseNs())
	if lease > time.Second {
		t.Fatalf("lease %s left, longer than 1 s", lease)
	}
	time.Sleep(lease + 50*time.Millisecond)
	want := r.kernelHop(t, dst, 0)
	id := r.send(t, dst, 0, 10, 100)
	r.expect(t, id, 10, want, 0)
	if want != cacheHops[1].mac {
		t.Fatalf("kernel decision %s, want the new next hop %s", want, cacheHops[1].mac)
	}

	d2 := startDaemon(t, rt, cfgPath)
	r.d = d2
	waitFor(5*time.Second, func() bool { return r.cacheState(t).Generation != 0 })
	after := r.cacheState(t)
	if after.Generation <= before.Generation {
		t.Errorf("restarted daemon's generation %d, earlier run's %d: generations must not repeat", after.Generation, before.Generation)
	}
	r.settle(t, dst, 100)
	if err := d2.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xrouter run on SIGTERM: %v", err)
	}
	if st := r.cacheState(t); st.Generation != 0 {
		t.Errorf("after a clean stop the generation is %d, want 0 (nobody invalidates any more)", st.Generation)
	}
}
