package fib

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// batchWindow is how many route requests are sent in one sendmsg before
// their acknowledgements are read. The kernel handles every message of a
// sendmsg before the call returns and queues one ack per message, so the
// window bounds the acks waiting in the receive buffer (about 1 KiB of
// buffer each); the buffer is sized for it.
const batchWindow = 512

// batchBytes caps the bytes of one sendmsg (the kernel rejects a message
// larger than the send buffer).
const batchBytes = 96 << 10

// sockBuf is the send and receive buffer size we ask for.
const sockBuf = 8 << 20

// routeSocket is one NETLINK_ROUTE socket on which route requests are sent
// in batches, every one with NLM_F_ACK, and their outcomes matched to them by
// sequence number. It is not safe for concurrent use.
type routeSocket struct {
	fd   int
	seq  uint32
	sbuf []byte
	rbuf []byte
}

// openRouteSocket opens the socket in the namespace at nsPath (empty: the
// calling thread's).
func openRouteSocket(nsPath string) (*routeSocket, error) {
	fd, err := socketIn(nsPath)
	if err != nil {
		return nil, err
	}
	// Acks for errors carry only the header (not the request echoed back),
	// and the kernel's error text (extended ack) when it has one.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	setBuffers(fd)
	return &routeSocket{fd: fd, seq: 1, rbuf: make([]byte, 1<<20)}, nil
}

// socketIn opens a NETLINK_ROUTE socket in the namespace at nsPath (a
// socket belongs to the namespace it was created in), bound to no
// multicast group.
func socketIn(nsPath string) (int, error) {
	fd := -1
	err := kernel.InNamespace(nsPath, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE); err != nil {
			fd = -1
			return fmt.Errorf("opening netlink socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("binding netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

func setBuffers(fd int) {
	for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], sockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], sockBuf)
		}
	}
}

func (s *routeSocket) close() { unix.Close(s.fd) }

// routeMsg is one request: a replace (Kernel set) or a delete.
type routeMsg struct {
	prefix netip.Prefix
	kernel []Nexthop // nil: delete
	// nhid, when not 0, is the nexthop object the route uses instead of
	// kernel's gateways (which then only say it is a replace).
	nhid uint32
}

// exchange sends msgs in batches and returns the outcome of each: nil, or
// the kernel's error. An ack lost to a receive buffer overrun is reported
// as ENOBUFS (transient: the request may or may not have been applied, and
// replace and delete are both safe to repeat).
func (s *routeSocket) exchange(rc routeConf, msgs []routeMsg, errs []error) {
	s.exchangeFn(len(msgs), func(b []byte, i int, seq uint32) []byte {
		return appendRouteMsg(b, rc, msgs[i], seq)
	}, errs)
}

// exchangeFn is exchange for any n requests, request i appended to the
// batch by appendMsg with its sequence number.
func (s *routeSocket) exchangeFn(n int, appendMsg func(b []byte, i int, seq uint32) []byte, errs []error) {
	for start := 0; start < n; {
		s.sbuf = s.sbuf[:0]
		first := s.seq
		end := start
		for end < n && end-start < batchWindow && len(s.sbuf) < batchBytes {
			s.sbuf = appendMsg(s.sbuf, end, s.seq)
			s.seq++
			end++
		}
		for i := start; i < end; i++ {
			errs[i] = errPending
		}
		if err := s.send(); err != nil {
			for i := start; i < end; i++ {
				errs[i] = err
			}
			start = end
			continue
		}
		s.collect(first, end-start, start, errs)
		start = end
	}
}

// errPending marks a request whose ack has not arrived.
var errPending = errors.New("no acknowledgement")

func (s *routeSocket) send() error {
	for {
		_, err := unix.Write(s.fd, s.sbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sending route requests: %w", err)
		}
		return nil
	}
}

// collect reads the acks of n requests with sequence numbers first.. and
// stores their outcomes at errs[base+i].
func (s *routeSocket) collect(first uint32, n, base int, errs []error) {
	got := 0
	flags := 0
	for got < n {
		m, _, err := unix.Recvfrom(s.fd, s.rbuf, flags)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOBUFS {
			// Acks were dropped. Everything the kernel will ever send for
			// this batch is queued already (it handles a sendmsg
			// synchronously): drain without blocking, then give up on the
			// rest.
			flags = unix.MSG_DONTWAIT
			continue
		}
		if err == unix.EAGAIN && flags != 0 {
			break
		}
		if err != nil {
			for i := range n {
				if errs[base+i] == errPending {
					errs[base+i] = fmt.Errorf("reading route acks: %w", err)
				}
			}
			return
		}
		b := s.rbuf[:m]
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			msg := b[:l]
			b = b[min(nlmAlign(l), len(b)):]
			if typ != unix.NLMSG_ERROR || l < unix.SizeofNlMsghdr+4 {
				continue
			}
			d := seq - first // wraps correctly
			if d >= uint32(n) || errs[base+int(d)] != errPending {
				continue // an ack of an earlier, abandoned batch
			}
			i := int(d)
			got++
			errno := -int32(binary.NativeEndian.Uint32(msg[16:20]))
			if errno == 0 {
				errs[base+i] = nil
				continue
			}
			errs[base+i] = kernelError(syscall.Errno(errno), msg)
		}
	}
	for i := range n {
		if errs[base+i] == errPending {
			errs[base+i] = fmt.Errorf("route request acknowledgement lost: %w", syscall.ENOBUFS)
		}
	}
}

// netlinkError is an errno with the kernel's explanation (extended ack).
type netlinkError struct {
	errno syscall.Errno
	msg   string
}

func (e *netlinkError) Error() string {
	if e.msg == "" {
		return e.errno.Error()
	}
	return e.errno.Error() + ": " + e.msg
}

func (e *netlinkError) Unwrap() error { return e.errno }

// kernelError reads the extended ack's message from an error ack sent with
// NETLINK_CAP_ACK (header, error, the request's header, then attributes).
func kernelError(errno syscall.Errno, msg []byte) error {
	e := &netlinkError{errno: errno}
	flags := binary.NativeEndian.Uint16(msg[6:8])
	off := unix.SizeofNlMsghdr + 4 + unix.SizeofNlMsghdr
	if flags&unix.NLM_F_ACK_TLVS == 0 || len(msg) < off {
		return e
	}
	for b := msg[off:]; len(b) >= 4; {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4])
		if l < 4 || l > len(b) {
			break
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			v := b[4:l]
			for len(v) > 0 && v[len(v)-1] == 0 {
				v = v[:len(v)-1]
			}
			e.msg = string(v)
		}
		b = b[min(rtaAlign(l), len(b)):]
	}
	return e
}

// routeConf is how our routes look apart from prefix and next hops.
type routeConf struct {
	table  uint32
	metric uint32
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// appendRouteMsg appends one RTM_NEWROUTE (replace) or RTM_DELROUTE.
//
// A delete names the route exactly: table, protocol, metric, type and
// destination, no next hop (so every next hop of a multipath route goes).
// A replace matches an existing route on table, destination, TOS and metric
// only: our own metric keeps it off an operator's route for the prefix.
func appendRouteMsg(b []byte, rc routeConf, m routeMsg, seq uint32) []byte {
	start := len(b)
	typ, flags := uint16(unix.RTM_DELROUTE), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	if m.kernel != nil {
		typ = unix.RTM_NEWROUTE
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set at the end
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel

	addr := m.prefix.Addr()
	family := byte(unix.AF_INET)
	if addr.Is6() {
		family = unix.AF_INET6
	}
	table := byte(unix.RT_TABLE_UNSPEC)
	if rc.table < 256 {
		table = byte(rc.table)
	}
	scope := byte(unix.RT_SCOPE_UNIVERSE)
	if m.kernel == nil {
		scope = unix.RT_SCOPE_NOWHERE // a delete: any scope
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	b = append(b, family, byte(m.prefix.Bits()), 0, 0, table, ProtocolBGP, scope, unix.RTN_UNICAST)
	b = binary.NativeEndian.AppendUint32(b, 0)

	b = appendAttrU32(b, unix.RTA_TABLE, rc.table)
	b = appendAttr(b, unix.RTA_DST, addr.AsSlice())
	b = appendAttrU32(b, unix.RTA_PRIORITY, rc.metric)
	switch {
	case m.nhid != 0:
		b = appendAttrU32(b, rtaNHID, m.nhid)
	case len(m.kernel) == 1:
		b = appendAttr(b, unix.RTA_GATEWAY, m.kernel[0].Gateway.AsSlice())
		b = appendAttrU32(b, unix.RTA_OIF, uint32(m.kernel[0].LinkIndex))
	case len(m.kernel) > 1:
		mp := len(b)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint16(b, unix.RTA_MULTIPATH)
		for _, nh := range m.kernel {
			gw := nh.Gateway.AsSlice()
			// struct rtnexthop: len, flags, hops, ifindex; then RTA_GATEWAY.
			b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtNexthop+rtaAlign(4+len(gw))))
			b = append(b, 0, 0)
			b = binary.NativeEndian.AppendUint32(b, uint32(nh.LinkIndex))
			b = appendAttr(b, unix.RTA_GATEWAY, gw)
		}
		binary.NativeEndian.PutUint16(b[mp:], uint16(len(b)-mp))
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for range rtaAlign(len(v)) - len(v) {
		b = append(b, 0)
	}
	return b
}

func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, 8)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.NativeEndian.AppendUint32(b, v)
}
