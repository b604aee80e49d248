package fib

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// errDumpInterrupted is a dump the kernel marked inconsistent (the table
// changed while it was read): read it again.
var errDumpInterrupted = errors.New("dump interrupted by a change")

// dumpAttempts bounds how often an interrupted dump is read again.
const dumpAttempts = 10

// dump lists an rtnetlink table on the socket: a request of type typ with
// body (the family header), NLM_F_DUMP; f gets each reply message's type
// and body. Retried while changes interrupt it (f then sees the messages
// again: reset, called before each attempt, lets it start over).
func (s *routeSocket) dump(typ uint16, body []byte, reset func(), f func(typ uint16, b []byte)) error {
	var err error
	for range dumpAttempts {
		reset()
		if err = s.dumpOnce(typ, body, f); !errors.Is(err, errDumpInterrupted) {
			return err
		}
	}
	return err
}

func (s *routeSocket) dumpOnce(typ uint16, body []byte, f func(typ uint16, b []byte)) error {
	seq := s.seq
	s.seq++
	s.sbuf = s.sbuf[:0]
	s.sbuf = binary.NativeEndian.AppendUint32(s.sbuf, uint32(unix.SizeofNlMsghdr+len(body)))
	s.sbuf = binary.NativeEndian.AppendUint16(s.sbuf, typ)
	s.sbuf = binary.NativeEndian.AppendUint16(s.sbuf, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	s.sbuf = binary.NativeEndian.AppendUint32(s.sbuf, seq)
	s.sbuf = binary.NativeEndian.AppendUint32(s.sbuf, 0)
	s.sbuf = append(s.sbuf, body...)
	if err := s.send(); err != nil {
		return err
	}
	intr := false
	for {
		m, _, err := unix.Recvfrom(s.fd, s.rbuf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading dump: %w", err)
		}
		for b := s.rbuf[:m]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("reading dump: malformed message")
			}
			mtyp := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			mseq := binary.NativeEndian.Uint32(b[8:12])
			msg := b[:l]
			b = b[min(nlmAlign(l), len(b)):]
			if mseq != seq {
				continue // an ack of an earlier, abandoned batch
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch mtyp {
			case unix.NLMSG_DONE:
				if intr {
					return errDumpInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if l < unix.SizeofNlMsghdr+4 {
					return fmt.Errorf("reading dump: short error message")
				}
				errno := -int32(binary.NativeEndian.Uint32(msg[16:20]))
				if errno == 0 {
					return nil
				}
				return kernelError(syscall.Errno(errno), msg)
			default:
				f(mtyp, msg[unix.SizeofNlMsghdr:])
			}
		}
	}
}

// attrs calls f for each attribute (type without flags, value) of b.
func attrs(b []byte, f func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[4:l])
		b = b[min(rtaAlign(l), len(b)):]
	}
}

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from a type.
const nlaTypeMask = 0x3fff

// rtaNHID is RTA_NH_ID (a route on a nexthop object), and nhaFDB
// NHA_FDB, which x/sys/unix does not name.
const (
	rtaNHID = 30
	nhaFDB  = 11
)
