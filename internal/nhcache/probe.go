package nhcache

// Neighbour confirmation for next hops the fast path uses.
//
// Kernel forwarding calls neigh_event_send each time it sends through a
// neighbour entry: that records the use, and a STALE entry goes to DELAY,
// then PROBE, then FAILED when the neighbour no longer answers (after which
// the next packet resolves it again). XDP forwarding never does, so a next
// hop that went away or changed its MAC would be sent to forever. The
// Prober reads the fast path's table of next hops in use every second and
// asks the kernel for the same neigh_event_send (RTM_NEWNEIGH with NTF_USE)
// on their entries; the neighbour state machine then runs as with kernel
// forwarding, and its outcome (a new MAC, FAILED) reaches the cache through
// the invalidator's neighbour events.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// ProbeInterval is how often the Prober confirms the next hops in use. The
// kernel records a use per packet; a second is far below its timers
// (delay_first_probe_time 5 s, base_reachable_time 30 s), so the states
// move as they would with kernel forwarding, at most a second later.
const ProbeInterval = time.Second

// maxUses bounds the requests per round (a router with more next hops in
// use than this confirms the rest a round later).
const maxUses = 4096

// Prober confirms the neighbours of the next hops the fast path uses.
type Prober struct {
	dp  *dataplane.Dataplane
	log *slog.Logger
}

// NewProber returns a Prober for dp's program.
func NewProber(dp *dataplane.Dataplane, log *slog.Logger) *Prober {
	return &Prober{dp: dp, log: log}
}

// Run confirms the next hops in use every ProbeInterval until ctx ends.
func (p *Prober) Run(ctx context.Context) error {
	if _, err := p.dp.NextHopsSeen(); err != nil { // turns the table on
		return err
	}
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := p.Round(); err != nil {
			p.log.Warn("confirming next hops in use", "err", err)
		} else if n > 0 {
			p.log.Debug("confirmed next hops in use", "neighbours", n)
		}
	}
}

// usable is the states neigh_event_send acts on or refreshes: not the
// static ones (PERMANENT, NOARP), not those being resolved or failed.
const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE

type hopKey struct {
	ifindex int32
	family  uint8
	mac     string
}

// Round reads the next hops used since the last round and sends NTF_USE for
// their neighbour entries. It returns how many entries it confirmed.
func (p *Prober) Round() (int, error) {
	hops, err := p.dp.NextHopsSeen()
	if err != nil || len(hops) == 0 {
		return 0, err
	}
	used := map[hopKey]bool{}
	for _, h := range hops {
		used[hopKey{int32(h.Ifindex), h.Family, string(h.MAC)}] = true
	}
	neighs, err := listNeighs()
	if err != nil {
		return 0, err
	}
	var todo []neighUse
	for i := range neighs {
		u, ok := neighUseOf(&neighs[i])
		if !ok || u.state&usable == 0 || !used[hopKey{u.ifindex, u.family, u.lladdr}] {
			continue
		}
		todo = append(todo, u)
		if len(todo) == maxUses {
			break
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	return sendUses(todo)
}

// neighUse is a neighbour entry to confirm.
type neighUse struct {
	family  uint8
	ifindex int32
	state   uint16
	addr    netip.Addr
	lladdr  string
}

// neighUseOf is the entry n, when it is an IP neighbour with an Ethernet
// address.
func neighUseOf(n *netlink.Neigh) (neighUse, bool) {
	u := neighUse{family: uint8(n.Family), ifindex: int32(n.LinkIndex), state: uint16(n.State), lladdr: string(n.HardwareAddr)}
	if u.family != unix.AF_INET && u.family != unix.AF_INET6 {
		return neighUse{}, false
	}
	if ip, ok := netip.AddrFromSlice(n.IP); ok {
		u.addr = ip
	}
	return u, u.addr.IsValid() && len(u.lladdr) == 6
}

// sendUses sends one RTM_NEWNEIGH with NTF_USE per entry (NLM_F_REPLACE
// without NLM_F_CREATE: an entry deleted meanwhile is not recreated) and
// waits for each acknowledgement. An entry gone meanwhile (ENOENT) is not
// an error.
func sendUses(us []neighUse) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("netlink bind: %w", err)
	}
	buf := make([]byte, 8192)
	done := 0
	var errs []error
	for i, u := range us {
		if err := unix.Sendto(fd, useRequest(u, uint32(i+1)), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return done, fmt.Errorf("neighbour %s: %w", u.addr, err)
		}
		err := readAck(fd, buf, uint32(i+1))
		switch {
		case err == nil:
			done++
		case errors.Is(err, unix.ENOENT):
		default:
			errs = append(errs, fmt.Errorf("neighbour %s on ifindex %d: %w", u.addr, u.ifindex, err))
		}
	}
	return done, errors.Join(errs...)
}

// useRequest is RTM_NEWNEIGH for u with NTF_USE: the kernel's
// neigh_event_send on the entry, as if a packet had been sent through it.
func useRequest(u neighUse, seq uint32) []byte {
	addr := u.addr.AsSlice()
	attrLen := unix.SizeofRtAttr + len(addr)
	n := unix.SizeofNlMsghdr + unix.SizeofNdMsg + (attrLen+3)&^3
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], unix.RTM_NEWNEIGH)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_REPLACE)
	binary.NativeEndian.PutUint32(b[8:], seq)
	nd := b[unix.SizeofNlMsghdr:]
	nd[0] = u.family
	binary.NativeEndian.PutUint32(nd[4:], uint32(u.ifindex))
	binary.NativeEndian.PutUint16(nd[8:], u.state)
	nd[10] = unix.NTF_USE
	at := nd[unix.SizeofNdMsg:]
	binary.NativeEndian.PutUint16(at[0:], uint16(attrLen))
	binary.NativeEndian.PutUint16(at[2:], unix.NDA_DST)
	copy(at[unix.SizeofRtAttr:], addr)
	return b
}

// readAck waits for the acknowledgement of request seq.
func readAck(fd int, buf []byte, seq uint32) error {
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return syscall.Errno(-code)
			}
			return nil
		}
	}
}

// String is for logs and tests.
func (u neighUse) String() string {
	return fmt.Sprintf("%s lladdr %s ifindex %d state %#x", u.addr, net.HardwareAddr(u.lladdr), u.ifindex, u.state)
}
