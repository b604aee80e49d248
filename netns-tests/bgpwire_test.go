package netnstests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// A minimal BGP-4 speaker (RFC 4271) for feeding xrouter messages no real
// implementation sends: it completes the OPEN exchange for IPv4 unicast
// with four-octet AS numbers, keeps the session alive, and writes UPDATEs
// byte by byte as the test builds them.

const (
	bgpOpen         = 1
	bgpUpdate       = 2
	bgpNotification = 3
	bgpKeepalive    = 4
)

// rawSpeaker is the peer side of one session.
type rawSpeaker struct {
	conn net.Conn
	as   uint32

	wmu  sync.Mutex // one writer at a time: the keepalive loop and the test
	mu   sync.Mutex
	got  []rawMsg // every message xrouter sent, in order
	rerr error    // why reading stopped
	done chan struct{}
}

type rawMsg struct {
	typ  byte
	body []byte
}

// bgpMessage frames a body with the marker, length and type.
func bgpMessage(typ byte, body []byte) []byte {
	m := bytes.Repeat([]byte{0xff}, 16)
	m = binary.BigEndian.AppendUint16(m, uint16(19+len(body)))
	m = append(m, typ)
	return append(m, body...)
}

func readBGPMessage(r io.Reader) (rawMsg, error) {
	hdr := make([]byte, 19)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return rawMsg{}, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < 19 || n > 4096 {
		return rawMsg{}, fmt.Errorf("BGP message length %d", n)
	}
	body := make([]byte, n-19)
	if _, err := io.ReadFull(r, body); err != nil {
		return rawMsg{}, err
	}
	return rawMsg{typ: hdr[18], body: body}, nil
}

// acceptRawSpeaker waits for xrouter to connect to ln, runs the OPEN
// exchange (AS as, hold time hold, router id id) and then keeps the session
// up with a KEEPALIVE every second, recording everything xrouter sends,
// until the test ends.
func acceptRawSpeaker(t *testing.T, ln net.Listener, as uint32, hold uint16, id netip.Addr) *rawSpeaker {
	t.Helper()
	return acceptRawSpeakerCaps(t, ln, as, hold, id, nil)
}

// acceptRawSpeakerCaps is acceptRawSpeaker with more capabilities in the
// OPEN (each a complete capability: code, length, value).
func acceptRawSpeakerCaps(t *testing.T, ln net.Listener, as uint32, hold uint16, id netip.Addr, extraCaps []byte) *rawSpeaker {
	t.Helper()
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(20 * time.Second))
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("raw BGP speaker: xrouter did not connect: %v", err)
	}
	s := &rawSpeaker{conn: conn, as: as, done: make(chan struct{})}
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	m, err := readBGPMessage(conn)
	if err != nil || m.typ != bgpOpen {
		t.Fatalf("raw BGP speaker: want xrouter's OPEN, got type %d, %v", m.typ, err)
	}
	// OPEN: version 4, AS_TRANS in the 2-octet field, hold time, id, and
	// the capabilities: multiprotocol IPv4 unicast, four-octet AS.
	caps := []byte{
		1, 4, 0, 1, 0, 1, // MP-BGP: AFI 1, SAFI 1
		65, 4, 0, 0, 0, 0, // four-octet AS
	}
	binary.BigEndian.PutUint32(caps[8:], as)
	caps = append(caps, extraCaps...)
	open := []byte{4, 0x5b, 0xa0} // AS_TRANS 23456
	open = binary.BigEndian.AppendUint16(open, hold)
	open = append(open, id.AsSlice()...)
	open = append(open, byte(2+len(caps)), 2, byte(len(caps)))
	open = append(open, caps...)
	s.write(t, bgpMessage(bgpOpen, open))
	s.write(t, bgpMessage(bgpKeepalive, nil))
	m, err = readBGPMessage(conn)
	if err != nil || m.typ != bgpKeepalive {
		t.Fatalf("raw BGP speaker: want xrouter's KEEPALIVE after the OPENs, got type %d (%x), %v", m.typ, m.body, err)
	}
	_ = conn.SetDeadline(time.Time{})

	go func() {
		defer close(s.done)
		for {
			m, err := readBGPMessage(conn)
			s.mu.Lock()
			if err != nil {
				s.rerr = err
				s.mu.Unlock()
				return
			}
			s.got = append(s.got, m)
			s.mu.Unlock()
		}
	}()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
				s.wmu.Lock()
				_, err := conn.Write(bgpMessage(bgpKeepalive, nil))
				s.wmu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	return s
}

func (s *rawSpeaker) write(t *testing.T, msg []byte) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.conn.Write(msg); err != nil {
		t.Fatalf("raw BGP speaker: write: %v", err)
	}
}

// notification returns the first NOTIFICATION xrouter sent (code,
// subcode), if any.
func (s *rawSpeaker) notification() (code, subcode byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.got {
		if m.typ == bgpNotification && len(m.body) >= 2 {
			return m.body[0], m.body[1], true
		}
	}
	return 0, 0, false
}

func (s *rawSpeaker) closed() bool { return isClosed(s.done) }

// Path attributes (RFC 4271 4.3), well-known transitive: flags 0x40.
func attrOrigin(v byte) []byte { return []byte{0x40, 1, 1, v} }

func attrASPath(as uint32) []byte {
	a := []byte{0x40, 2, 6, 2, 1} // AS_SEQUENCE of one four-octet AS
	return binary.BigEndian.AppendUint32(a, as)
}

func attrNextHop(nh netip.Addr) []byte { return append([]byte{0x40, 3, 4}, nh.AsSlice()...) }

// updateBody builds an UPDATE body: no withdrawn routes, attrs verbatim
// (attrLen overrides the total path attribute length when not negative),
// then the NLRI.
func updateBody(attrs [][]byte, attrLen int, nlri ...string) []byte {
	var a []byte
	for _, x := range attrs {
		a = append(a, x...)
	}
	if attrLen < 0 {
		attrLen = len(a)
	}
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(attrLen))
	b = append(b, a...)
	for _, s := range nlri {
		p := netip.MustParsePrefix(s)
		b = append(b, byte(p.Bits()))
		b = append(b, p.Addr().AsSlice()[:(p.Bits()+7)/8]...)
	}
	return b
}

// TestMalformedUpdatePrivileged: a peer sends UPDATEs that break RFC 4271.
// GoBGP applies RFC 7606 (treat-as-withdraw is on for neighbours added
// through its API): an UPDATE with a bad ORIGIN value or a bad ORIGIN
// length withdraws the prefixes it carried and the session stays up; one
// whose total path attribute length runs past the message cannot be parsed
// at all, so the session is reset with a NOTIFICATION (RFC 7606 section 4).
// Each time the daemon logs it, stays up and keeps forwarding what it has.
func TestMalformedUpdatePrivileged(t *testing.T) {
	tp := newTopo(t)
	peerAddr := netip.MustParseAddr(dst4)
	addLoopback(t, tp.Dst, "10.99.5.1", "10.99.6.1", "10.99.8.1")
	var ln net.Listener
	if err := tp.Dst.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dst4, "179"))
		return err
	}); err != nil {
		t.Fatalf("raw BGP speaker: listen in %s: %v", tp.Dst.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })

	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, bgpHead+`  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 32}]
  neighbors:
    - {address: 10.201.2.2, peer_as: 65009, families: [ipv4-unicast], hold_time: 9s, import: from-peer}
`)
	d := startDaemon(t, tp.Router, cfgPath)
	peer := acceptRawSpeaker(t, ln, 65009, 9, peerAddr)
	if !waitFor(10*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State == "established" }) {
		t.Fatalf("session with the raw speaker not established: %+v", readPeers(t, cfgPath))
	}
	good := [][]byte{attrOrigin(0), attrASPath(65009), attrNextHop(peerAddr)}
	peer.write(t, bgpMessage(bgpUpdate, updateBody(good, -1, "10.99.5.0/24", "10.99.6.0/24", "10.99.8.0/24")))
	for _, p := range []string{"10.99.5.0/24", "10.99.6.0/24", "10.99.8.0/24"} {
		waitBGPRoute(t, tp.Router, p, 10*time.Second, dst4)
	}
	warmUp(t, tp.Src, "10.99.5.1")

	// stillGood checks what must survive a malformed UPDATE: the daemon,
	// the session (unless reset), 10.99.5.0/24 and its fast path.
	stillGood := func(t *testing.T) {
		t.Helper()
		if !d.running() {
			t.Fatalf("daemon exited: %v", d.Err())
		}
		if st := readPeers(t, cfgPath)[dst4].State; st != "established" {
			t.Errorf("session state %q, want established", st)
		}
		if code, sub, ok := peer.notification(); ok || peer.closed() {
			t.Errorf("session reset (NOTIFICATION %v: code %d subcode %d; connection closed %v), want it kept", ok, code, sub, peer.closed())
		}
		waitBGPRoute(t, tp.Router, "10.99.5.0/24", time.Second, dst4)
		g := measure(t, tp, func() { pingOK(t, tp.Src, "10.99.5.1", 20) })
		if g.stats["forwarded"] < 40 || g.kernel4 != 0 {
			t.Errorf("ping 10.99.5.1 ×20: forwarded +%d, kernel +%d; want >= 40 and 0 (%s)", g.stats["forwarded"], g.kernel4, g.stats)
		}
	}
	waitLogLine := func(t *testing.T, parts ...string) {
		t.Helper()
		var line string
		if !waitFor(5*time.Second, func() bool {
			for _, l := range strings.Split(d.Log.String(), "\n") {
				all := true
				for _, p := range parts {
					all = all && strings.Contains(l, p)
				}
				if all {
					line = l
					return true
				}
			}
			return false
		}) {
			t.Errorf("no log line with all of %q", parts)
			return
		}
		t.Logf("log: %s", line)
	}

	t.Run("bad_origin_value", func(t *testing.T) {
		bad := [][]byte{attrOrigin(9), attrASPath(65009), attrNextHop(peerAddr)}
		peer.write(t, bgpMessage(bgpUpdate, updateBody(bad, -1, "10.99.6.0/24")))
		waitBGPRoute(t, tp.Router, "10.99.6.0/24", 10*time.Second)
		waitLogLine(t, "level=WARN", "treated as withdraw", dst4, "invalid origin")
		stillGood(t)
	})

	t.Run("bad_origin_length", func(t *testing.T) {
		bad := [][]byte{{0x40, 1, 2, 0, 0}, attrASPath(65009), attrNextHop(peerAddr)}
		peer.write(t, bgpMessage(bgpUpdate, updateBody(bad, -1, "10.99.8.0/24")))
		waitBGPRoute(t, tp.Router, "10.99.8.0/24", 10*time.Second)
		waitLogLine(t, "level=WARN", "treated as withdraw", dst4, "Origin attribute length is incorrect")
		stillGood(t)
	})

	t.Run("attribute_length_past_message", func(t *testing.T) {
		peer.write(t, bgpMessage(bgpUpdate, updateBody(good, 200, "10.99.6.0/24")))
		if !waitFor(5*time.Second, func() bool { _, _, ok := peer.notification(); return ok }) {
			t.Fatal("no NOTIFICATION from xrouter within 5 s")
		}
		code, sub, _ := peer.notification()
		if code != 3 { // UPDATE Message Error
			t.Errorf("NOTIFICATION code %d subcode %d, want code 3 (UPDATE Message Error)", code, sub)
		}
		t.Logf("NOTIFICATION code %d subcode %d", code, sub)
		waitLogLine(t, "level=WARN", "Session will be reset", dst4)
		// The session is gone, and with it every route it brought.
		waitBGPRoute(t, tp.Router, "10.99.5.0/24", 5*time.Second)
		if !waitFor(5*time.Second, peer.closed) {
			t.Error("xrouter did not close the connection after its NOTIFICATION")
		}
		if st := readPeers(t, cfgPath)[dst4].State; st == "established" {
			t.Errorf("session state %q after the reset", st)
		}
		if !d.running() {
			t.Fatalf("daemon exited: %v", d.Err())
		}
		// The fast path still forwards between the connected subnets.
		g := measure(t, tp, func() { pingOK(t, tp.Src, dst4, 20) })
		if g.stats["forwarded"] < 40 {
			t.Errorf("ping %s ×20 after the reset: forwarded +%d, want >= 40 (%s)", dst4, g.stats["forwarded"], g.stats)
		}
	})
}
