package netnstests

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"golang.org/x/sys/unix"
)

// The BGP feeder of the failover benchmark: a minimal speaker that dials
// the receiver, opens a session with ipv4-unicast and ipv6-unicast, and
// streams a generated table (GoBGP's packet library encodes the
// messages). It keeps no RIB, so it costs little memory next to the
// receiver, and it controls exactly how prefixes are packed into UPDATEs:
//
//   - diverse: prefixes are grouped into attribute sets (distinct AS path,
//     MED and communities), about one set per 3.2 prefixes, half of the
//     sets holding a single prefix; each set is one UPDATE, so many UPDATEs
//     carry one NLRI, as measured on public tables;
//   - packed: every prefix shares one attribute set and UPDATEs are filled
//     to the 4096-byte limit (what bench-fib's BIRD feeder sends).
//
// Two feeders built from the same config except AS and Prepend send the
// same prefixes with the same groups, transit ASes and origins; the one
// with more prepends loses on AS-path length.
//
// It runs in the test binary itself: TestMain calls runBGPFeed when
// XRNT_BGPFEED holds its config (JSON), and it is started with
// `ip netns exec NS env XRNT_BGPFEED=… TESTBINARY` so that kill -9 of its
// PID kills the speaker. It reports events on stdout, one per line:
// "XRFEED <event> <unix ns> [details]", events established, sent, eor,
// drained (the receiver's TCP acknowledged everything), down.

// feedEnv names the variable that turns the test binary into a feeder.
const feedEnv = "XRNT_BGPFEED"

type feedConfig struct {
	Local    string `json:"local"`     // IPv4 source address, also the IPv4 next hop
	NextHop6 string `json:"next_hop6"` // IPv6 next hop
	Peer     string `json:"peer"`      // the receiver's IPv4 address (port 179)
	AS       uint32 `json:"as"`
	RouterID string `json:"router_id"`
	Hold     uint16 `json:"hold"`    // hold time offered in OPEN (s)
	N4       int    `json:"n4"`      // IPv4 prefixes
	N6       int    `json:"n6"`      // IPv6 prefixes
	Packed   bool   `json:"packed"`  // one shared attribute set, full UPDATEs
	Prepend  int    `json:"prepend"` // extra copies of AS at the path's head
}

// feedMain runs the feeder if the environment asks for it; it reports
// whether it did (the process should then exit with the code).
func feedMain() (int, bool) {
	s := os.Getenv(feedEnv)
	if s == "" {
		return 0, false
	}
	var c feedConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		fmt.Fprintf(os.Stderr, "bgpfeed: %s: %v\n", feedEnv, err)
		return 2, true
	}
	runBGPFeed(c)
	return 0, true
}

func feedEvent(event string, details ...any) {
	fmt.Printf("XRFEED %s %d%s\n", event, time.Now().UnixNano(), fmt.Sprint(append([]any{""}, details...)...))
}

// runBGPFeed dials the peer until a session comes up, sends the table,
// then keeps the session; when it ends it dials again (1 s apart) and
// sends everything again.
func runBGPFeed(c feedConfig) {
	for {
		err := feedSession(c)
		feedEvent("down", " ", err)
		time.Sleep(time.Second)
	}
}

func feedSession(c feedConfig) error {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.Local)}}
	conn, err := d.Dial("tcp", net.JoinHostPort(c.Peer, "179"))
	if err != nil {
		return err
	}
	defer conn.Close()
	tcp := conn.(*net.TCPConn)
	_ = tcp.SetWriteBuffer(4 << 20)

	var as2 uint16 = bgp.AS_TRANS
	if c.AS < 1<<16 {
		as2 = uint16(c.AS)
	}
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC),
		bgp.NewCapRouteRefresh(),
		bgp.NewCapFourOctetASNumber(c.AS),
	}
	open := bgp.NewBGPOpenMessage(as2, c.Hold, c.RouterID, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err := writeMsg(conn, open); err != nil {
		return err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	m, err := readMsg(r)
	if err != nil {
		return fmt.Errorf("waiting for OPEN: %w", err)
	}
	peerOpen, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		return fmt.Errorf("expected OPEN, got message type %d", m.Header.Type)
	}
	hold := time.Duration(min(c.Hold, peerOpen.HoldTime)) * time.Second
	if err := writeMsg(conn, bgp.NewBGPKeepAliveMessage()); err != nil {
		return err
	}
	if m, err = readMsg(r); err != nil {
		return fmt.Errorf("waiting for KEEPALIVE: %w", err)
	}
	if m.Header.Type != bgp.BGP_MSG_KEEPALIVE {
		return fmt.Errorf("expected KEEPALIVE, got message type %d", m.Header.Type)
	}
	feedEvent("established", " hold ", hold)

	// The writer: UPDATEs and keepalives share one buffered stream.
	var mu sync.Mutex
	w := bufio.NewWriterSize(conn, 256<<10)
	send := func(b []byte, flush bool) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := w.Write(b); err != nil {
			return err
		}
		if flush {
			return w.Flush()
		}
		return nil
	}
	done := make(chan struct{})
	errc := make(chan error, 3)
	defer close(done)
	ka, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	// Reader: anything the peer sends resets the hold timer; a
	// NOTIFICATION or an error ends the session.
	go func() {
		for {
			if hold > 0 {
				_ = conn.SetReadDeadline(time.Now().Add(hold))
			} else {
				_ = conn.SetReadDeadline(time.Time{})
			}
			m, err := readMsg(r)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					err = fmt.Errorf("hold timer expired (%s)", hold)
				}
				errc <- err
				return
			}
			if n, ok := m.Body.(*bgp.BGPNotification); ok {
				errc <- fmt.Errorf("NOTIFICATION %d/%d from the peer", n.ErrorCode, n.ErrorSubcode)
				return
			}
		}
	}()
	if hold > 0 {
		go func() {
			tk := time.NewTicker(hold / 3)
			defer tk.Stop()
			for {
				select {
				case <-done:
					return
				case <-tk.C:
					if err := send(ka, true); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	go func() {
		n4, n6, msgs, err := sendFeedTable(c, send)
		if err != nil {
			errc <- err
			return
		}
		feedEvent("sent", fmt.Sprintf(" v4 %d v6 %d updates %d", n4, n6, msgs))
		for _, f := range []bgp.RouteFamily{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
			b, _ := bgp.NewEndOfRib(f).Serialize()
			if err := send(b, true); err != nil {
				errc <- err
				return
			}
		}
		feedEvent("eor")
		// Until the receiver's TCP has acknowledged every byte.
		raw, err := tcp.SyscallConn()
		if err != nil {
			errc <- err
			return
		}
		for {
			var q int
			_ = raw.Control(func(fd uintptr) { q, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
			if q == 0 {
				feedEvent("drained")
				return
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return <-errc
}

func writeMsg(w io.Writer, m *bgp.BGPMessage) error {
	b, err := m.Serialize()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readMsg(r *bufio.Reader) (*bgp.BGPMessage, error) {
	hdr := make([]byte, bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	l := int(binary.BigEndian.Uint16(hdr[16:18]))
	if l < bgp.BGP_HEADER_LENGTH || l > 65535 {
		return nil, fmt.Errorf("bad BGP message length %d", l)
	}
	buf := make([]byte, l)
	copy(buf, hdr)
	if _, err := io.ReadFull(r, buf[bgp.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	m, err := bgp.ParseBGPMessage(buf)
	if err != nil {
		// An UPDATE we cannot parse is the receiver's business, not the
		// feeder's; only the type matters here.
		return &bgp.BGPMessage{Header: bgp.BGPHeader{Type: hdr[18]}}, nil
	}
	return m, nil
}

// feedGroup is one attribute set of the diverse feed.
type feedGroup struct {
	transit   []uint32
	med       uint32
	community []uint32
}

// feedGroups walks the group structure of the diverse feed: sizes with a
// mean of 3.2 (half the sets hold one prefix) and per-set attributes, the
// same sequence every run.
type feedGroups struct{ x uint32 }

func (g *feedGroups) rand() uint32 {
	g.x ^= g.x << 13
	g.x ^= g.x >> 17
	g.x ^= g.x << 5
	return g.x
}

func (g *feedGroups) next() (int, feedGroup) {
	var size int
	switch r := g.rand() % 100; {
	case r < 50:
		size = 1
	case r < 75:
		size = 2
	case r < 90:
		size = 4
	default:
		size = 8 + int(g.rand()%17)
	}
	var fg feedGroup
	hops := 1 + int(g.rand()%4)
	for range hops {
		fg.transit = append(fg.transit, 1000+g.rand()%60000)
	}
	fg.transit = append(fg.transit, 100000+g.rand()%300000) // origin, 4-byte
	fg.med = g.rand() % 1000
	for range g.rand() % 4 {
		fg.community = append(fg.community, (fg.transit[0]&0xffff)<<16|g.rand()%1000)
	}
	return size, fg
}

// sendFeedTable sends the IPv4 then the IPv6 table.
func sendFeedTable(c feedConfig, send func([]byte, bool) error) (n4, n6, msgs int, err error) {
	var p4 []netip.Prefix
	genPrefixes4(c.N4, func(p netip.Prefix) { p4 = append(p4, p) })
	var p6 []netip.Prefix
	genPrefixes6(c.N6, func(p netip.Prefix) { p6 = append(p6, p) })
	for _, tbl := range [][]netip.Prefix{p4, p6} {
		g := feedGroups{x: 2654435769}
		for i := 0; i < len(tbl); {
			size, fg := g.next()
			if c.Packed {
				size, fg = len(tbl), feedGroup{transit: []uint32{64999, 100001}}
			}
			path := make([]uint32, 0, 1+c.Prepend+len(fg.transit))
			for range 1 + c.Prepend {
				path = append(path, c.AS)
			}
			path = append(path, fg.transit...)
			attrs := []bgp.PathAttributeInterface{
				bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
				bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, path)}),
			}
			if !c.Packed {
				attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(fg.med))
				if len(fg.community) > 0 {
					attrs = append(attrs, bgp.NewPathAttributeCommunities(fg.community))
				}
			}
			// Room for NLRI in a 4096-byte message: header, lengths,
			// attributes (MP_REACH's fixed part for IPv6: 4 + 2 + 1 + 1 + 16 + 1 = 25).
			room := 4096 - 19 - 4 - 40 - 8*len(path) - 4*len(fg.community) - 30
			for size > 0 && i < len(tbl) {
				var nlri4 []*bgp.IPAddrPrefix
				var nlri6 []bgp.AddrPrefixInterface
				used := 0
				for size > 0 && i < len(tbl) && used+17 <= room {
					p := tbl[i]
					if p.Addr().Is4() {
						nlri4 = append(nlri4, bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()))
						n4++
					} else {
						nlri6 = append(nlri6, bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String()))
						n6++
					}
					used += 1 + (p.Bits()+7)/8
					i++
					size--
				}
				a := attrs
				if nlri4 != nil {
					a = append(a[:len(a):len(a)], bgp.NewPathAttributeNextHop(c.Local))
				} else {
					a = append(a[:len(a):len(a)], bgp.NewPathAttributeMpReachNLRI(c.NextHop6, nlri6))
				}
				b, err := bgp.NewBGPUpdateMessage(nil, a, nlri4).Serialize()
				if err != nil {
					return n4, n6, msgs, fmt.Errorf("encoding UPDATE: %w", err)
				}
				if err := send(b, false); err != nil {
					return n4, n6, msgs, err
				}
				msgs++
			}
		}
	}
	return n4, n6, msgs, send(nil, true)
}

// xorshift32 is the next state of Marsaglia's xorshift generator: the
// prefix generators' cheap, repeatable randomness.
func xorshift32(x uint32) uint32 {
	x ^= x << 13
	x ^= x >> 17
	return x ^ x<<5
}

// genPrefixes4 calls fn with n distinct IPv4 prefixes with a length mix
// like a full table's (about 60% /24, the rest /16 to /23), walking up
// from 11.0.0.0 in /24 steps, shorter prefixes covering the /24s after
// them as real aggregates do. The same table every run.
func genPrefixes4(n int, fn func(netip.Prefix)) {
	cur := uint32(11) << 24
	x := uint32(2463534242) // xorshift state
	for range n {
		x = xorshift32(x)
		var bits int
		switch r := x % 100; {
		case r < 60:
			bits = 24
		case r < 72:
			bits = 23
		case r < 84:
			bits = 22
		case r < 90:
			bits = 21
		case r < 95:
			bits = 20
		default:
			bits = 16 + int(x>>8)%4
		}
		// A prefix must be aligned: shorten it to what cur allows.
		for bits < 24 && cur&(1<<(32-bits)-1) != 0 {
			bits++
		}
		fn(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(cur >> 24), byte(cur >> 16), byte(cur >> 8), 0}), bits))
		cur += 256 << (x >> 28 & 1) // one or two /24s further
		if cur>>24 == 100 || cur>>24 == 127 {
			cur += 1 << 24
		}
	}
}

// genPrefixes6 calls fn with n distinct IPv6 prefixes: about half /48, the
// rest /32 to /47, walking up from 2a00::/16 in /48 steps.
func genPrefixes6(n int, fn func(netip.Prefix)) {
	cur := uint64(0x2a00) << 48 // the upper 64 bits
	x := uint32(88675123)
	for range n {
		x = xorshift32(x)
		var bits int
		switch r := x % 100; {
		case r < 50:
			bits = 48
		case r < 70:
			bits = 44
		case r < 85:
			bits = 40
		case r < 95:
			bits = 36
		default:
			bits = 32
		}
		for bits < 48 && cur&(1<<(64-bits)-1) != 0 {
			bits++
		}
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], cur)
		fn(netip.PrefixFrom(netip.AddrFrom16(a), bits))
		cur += 1 << 16 << (x >> 28 & 1)
	}
}
