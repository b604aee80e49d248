package netnstests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

// The failover benchmark's traffic: a prober in the source namespace sends
// one UDP datagram to each sampled destination per round; a sink on each
// upstream's link (AF_PACKET, so it sees every frame whatever its
// destination) records which upstream each (round, sample) reached.

// Bits of probe arrivals.
const (
	viaA uint8 = 1
	viaB uint8 = 2
)

// probeMagic starts every probe's payload: magic, round (4 bytes), sample (4).
var probeMagic = []byte("xrfb")

type prober struct {
	dsts     []netip.Addr
	interval time.Duration

	mu    sync.Mutex
	sent  []time.Time // per round
	got   [][]uint8   // per round, per sample: viaA|viaB
	extra int         // arrivals of unknown rounds/samples
	// cutA: arrivals at A count as lost while set (the link is cut in
	// A's namespace after the sink's tap); cutArr counts them.
	cutA   bool
	cutArr int
}

func newProber(dsts []netip.Addr, interval time.Duration) *prober {
	return &prober{dsts: dsts, interval: interval}
}

// setCut marks A's link as cut or not (see cutA).
func (p *prober) setCut(on bool) {
	p.mu.Lock()
	p.cutA = on
	p.mu.Unlock()
}

// run sends rounds from ns until ctx ends; it returns at once.
func (p *prober) run(t *testing.T, ctx context.Context, ns *testbed.Netns) {
	t.Helper()
	var c4, c6 *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		if c4, err = net.ListenUDP("udp4", nil); err != nil {
			return err
		}
		c6, err = net.ListenUDP("udp6", nil)
		return err
	}); err != nil {
		t.Fatalf("prober sockets: %v", err)
	}
	_ = c4.SetWriteBuffer(4 << 20)
	_ = c6.SetWriteBuffer(4 << 20)
	done := make(chan struct{})
	t.Cleanup(func() { <-done; c4.Close(); c6.Close() })
	go func() {
		defer close(done)
		buf := make([]byte, 32)
		copy(buf, probeMagic)
		tk := time.NewTicker(p.interval)
		defer tk.Stop()
		for round := 0; ; round++ {
			p.mu.Lock()
			p.sent = append(p.sent, time.Now())
			p.got = append(p.got, make([]uint8, len(p.dsts)))
			p.mu.Unlock()
			binary.BigEndian.PutUint32(buf[4:], uint32(round))
			for i, d := range p.dsts {
				binary.BigEndian.PutUint32(buf[8:], uint32(i))
				c := c4
				if d.Is6() {
					c = c6
				}
				// Errors (no route, a full buffer) are losses, seen as such.
				_, _ = c.WriteToUDPAddrPort(buf, netip.AddrPortFrom(d, udpPort))
			}
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
}

// sink taps dev in ns with an AF_PACKET socket and records probes as
// arriving via bit. It runs until the test ends.
func (p *prober) sink(t *testing.T, ns *testbed.Netns, dev string, bit uint8) {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	var fd int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	}); err != nil {
		t.Fatalf("netns %s: AF_PACKET socket on %s: %v", ns.Name(), dev, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			pl := probePayload(buf[:n])
			if len(pl) < 12 || string(pl[:4]) != string(probeMagic) {
				continue
			}
			round, idx := int(binary.BigEndian.Uint32(pl[4:])), int(binary.BigEndian.Uint32(pl[8:]))
			p.mu.Lock()
			switch {
			case round >= len(p.got) || idx >= len(p.dsts):
				p.extra++
			case bit == viaA && p.cutA:
				p.cutArr++
			default:
				p.got[round][idx] |= bit
			}
			p.mu.Unlock()
		}
	}()
}

// probePayload is the UDP payload of an IPv4 or IPv6 packet (no IPv6
// extension headers), or nil.
func probePayload(b []byte) []byte {
	if len(b) < 1 {
		return nil
	}
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		if len(b) < ihl+8 || b[9] != unix.IPPROTO_UDP {
			return nil
		}
		return b[ihl+8:]
	case 6:
		if len(b) < 48 || b[6] != unix.IPPROTO_UDP {
			return nil
		}
		return b[48:]
	}
	return nil
}

// correctLocked counts the samples of round r that arrived via want.
func (p *prober) correctLocked(r int, want uint8) int {
	n := 0
	for _, g := range p.got[r] {
		if g&want != 0 {
			n++
		}
	}
	return n
}

// settledRoundsLocked is the index past the last round old enough for its
// probes to have arrived.
func (p *prober) settledRoundsLocked() int {
	lag := time.Now().Add(-300 * time.Millisecond)
	i := len(p.sent)
	for i > 0 && p.sent[i-1].After(lag) {
		i--
	}
	return i
}

// stable reports whether every sample of every settled round sent in the
// last span (and after from) arrived via want.
func (p *prober) stable(from time.Time, span time.Duration, want uint8) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	end := p.settledRoundsLocked()
	if end == 0 || p.sent[end-1].Sub(from) < span {
		return false
	}
	lo := p.sent[end-1].Add(-span)
	for r := end - 1; r >= 0 && !p.sent[r].Before(lo); r-- {
		if p.correctLocked(r, want) != len(p.dsts) {
			return false
		}
	}
	return true
}

// phase is what one event did to forwarding.
type phase struct {
	Name      string
	Event     time.Time
	Converged time.Duration // event → first round from which every sample arrived via the new upstream
	SessionUp time.Duration // return phases: event → the feeder's session up (0: not applicable)
	Lost      int           // probes sent from the event to the end of the phase that arrived nowhere
	Sent      int           // probes sent in that span
	OK        bool
	Curve     [][2]float64 // (seconds since event, fraction of samples arriving via the new upstream)
}

// analyse reads the rounds from 1 s before event to end.
func (p *prober) analyse(name string, event, end time.Time, want uint8) phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	ph := phase{Name: name, Event: event}
	last := p.settledRoundsLocked()
	first := -1
	conv := -1
	for r := 0; r < last; r++ {
		if p.sent[r].After(end) {
			last = r
			break
		}
		if p.sent[r].Before(event.Add(-time.Second)) {
			continue
		}
		c := p.correctLocked(r, want)
		ph.Curve = append(ph.Curve, [2]float64{p.sent[r].Sub(event).Seconds(), float64(c) / float64(len(p.dsts))})
		if p.sent[r].Before(event) {
			continue
		}
		if first < 0 {
			first = r
		}
		for _, g := range p.got[r] {
			if g == 0 {
				ph.Lost++
			}
		}
		ph.Sent += len(p.dsts)
		if c == len(p.dsts) {
			if conv < 0 {
				conv = r
			}
		} else {
			conv = -1
		}
	}
	if conv >= 0 {
		ph.OK = true
		ph.Converged = p.sent[conv].Sub(event)
		if conv == first {
			ph.Converged = 0
		}
	}
	return ph
}

// sampleDests picks k of the table's prefixes, evenly spread, and returns
// one destination inside each (its first address + 1).
func sampleDests(n4, n6, k int) (dsts []netip.Addr, prefixes []netip.Prefix) {
	k4 := k
	if n4+n6 > 0 {
		k4 = int(float64(k)*float64(n4)/float64(n4+n6) + 0.5)
	}
	k4, k6 := min(k4, n4), min(k-k4, n6)
	pick := func(all []netip.Prefix, k int) {
		for i := range k {
			p := all[i*len(all)/k]
			prefixes = append(prefixes, p)
			dsts = append(dsts, p.Addr().Next())
		}
	}
	var p4, p6 []netip.Prefix
	genPrefixes4(n4, func(p netip.Prefix) { p4 = append(p4, p) })
	genPrefixes6(n6, func(p netip.Prefix) { p6 = append(p6, p) })
	pick(p4, k4)
	pick(p6, k6)
	return dsts, prefixes
}

func (ph phase) String() string {
	if !ph.OK {
		return fmt.Sprintf("%s: not converged; lost %d of %d", ph.Name, ph.Lost, ph.Sent)
	}
	return fmt.Sprintf("%s: converged in %.2f s (10%%/50%%/90%% of the samples at %s); lost %d of %d probes",
		ph.Name, ph.Converged.Seconds(), ph.quantiles(0.1, 0.5, 0.9), ph.Lost, ph.Sent)
}

// quantiles says when the curve first reached each fraction, in seconds
// after the event.
func (ph phase) quantiles(fs ...float64) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = "-"
		for _, pt := range ph.Curve {
			if pt[1] >= f {
				out[i] = fmt.Sprintf("%.1f", pt[0])
				break
			}
		}
	}
	return strings.Join(out, "/") + " s"
}
