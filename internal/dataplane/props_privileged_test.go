package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// randomIPv4 is a random valid IPv4 packet from a host behind r-src to the
// remote network behind r-dst, with a correct header checksum.
func randomIPv4(rng *rand.Rand) ipv4Hdr {
	h := ipv4Hdr{
		TOS: uint8(rng.IntN(256)),
		ID:  uint16(rng.IntN(1 << 16)),
		TTL: uint8(2 + rng.IntN(254)),
		// 172.16/12 is neither martian nor one of the router's addresses.
		Src: netip.AddrFrom4([4]byte{172, byte(16 + rng.IntN(16)), byte(rng.IntN(256)), byte(rng.IntN(256))}),
		Dst: netip.AddrFrom4([4]byte{10, 99, byte(rng.IntN(256)), byte(rng.IntN(256))}),
	}
	if rng.IntN(2) == 0 {
		h.FragOff = 0x4000 // DF
	}
	return h
}

func randomL4(rng *rand.Rand, h *ipv4Hdr) []byte {
	switch rng.IntN(4) {
	case 0:
		h.Proto = protoTCP
		return tcp(uint16(rng.IntN(1<<16)), uint16(rng.IntN(1<<16)), payload(rng.IntN(64)))
	case 1:
		h.Proto = protoICMP
		return icmp(uint8(8*rng.IntN(2)), 0, echoBody())
	case 2:
		h.Proto = 47
		return payload(4 + rng.IntN(64))
	default:
		h.Proto = protoUDP
		return udp(uint16(rng.IntN(1<<16)), uint16(rng.IntN(1<<16)), payload(rng.IntN(64)))
	}
}

// withChecksum sets h.ID so that h's header checksum is target: the checksum
// is the complement of a one's complement sum, so the ID that gives it is
// ~target minus the sum of the rest.
func withChecksum(t *testing.T, h ipv4Hdr, l4 []byte, target uint16) ipv4Hdr {
	t.Helper()
	h.ID = 0
	rest := binary.BigEndian.Uint16(h.marshal(l4)[10:]) // ~sum without ID
	s := uint32(^target) + uint32(rest)
	h.ID = uint16(s&0xffff + s>>16)
	if got := binary.BigEndian.Uint16(h.marshal(l4)[10:]); got != target {
		t.Fatalf("building a header with checksum %#04x: got %#04x", target, got)
	}
	return h
}

// TestFwdIPv4ChecksumPrivileged checks the program's incremental checksum
// update against a full recomputation, on random headers and on the
// checksums where one's complement arithmetic wraps.
func TestFwdIPv4ChecksumPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	rng := rand.New(rand.NewPCG(1, 2))

	var frames [][]byte
	for _, target := range []uint16{0x0000, 0x0001, 0x00ff, 0x0100, 0xfe00, 0xfeff, 0xff00, 0xfffe} {
		h := randomIPv4(rng)
		l4 := randomL4(rng, &h)
		frames = append(frames, frame4(withChecksum(t, h, l4, target), l4))
	}
	for range 2000 {
		h := randomIPv4(rng)
		frames = append(frames, frame4(h, randomL4(rng, &h)))
	}

	for _, in := range frames {
		verdict, out, err := e.run(devSrc, in)
		if err != nil {
			t.Fatal(err)
		}
		if verdict != xdpRedirect {
			t.Fatalf("verdict %d, want redirect, for %x", verdict, in)
		}
		hdr := append([]byte(nil), out[ethLen:ethLen+ipv4Len]...)
		got := binary.BigEndian.Uint16(hdr[10:])
		binary.BigEndian.PutUint16(hdr[10:], 0)
		if want := checksum(hdr); got != want {
			t.Errorf("checksum %#04x, full recomputation %#04x, for input %x", got, want, in[ethLen:ethLen+ipv4Len])
		}
		if want := forwarded(in, peerMAC[devDst], routerMAC[devDst]); !bytes.Equal(out, want) {
			t.Errorf("output frame differs\n got %x\nwant %x", out, want)
		}
	}
}

// TestFwdTruncatedPrivileged cuts valid, forwardable frames at every length:
// none may be forwarded or crash, and every one the kernel lets the program
// see counts as malformed. BPF_PROG_RUN refuses frames shorter than an
// Ethernet header before the program runs.
func TestFwdTruncatedPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	for _, c := range fwdCases() {
		if c.outcome != Forwarded || c.egress != devDst {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			// Trailing padding may be cut without harm; cut the packet.
			full := forwardedLen(c.frame)
			for n := range full {
				in := c.frame[:n]
				before := e.stats(t)
				verdict, out, err := e.run(devSrc, in)
				got := delta(before, e.stats(t))
				if n < ethLen {
					if !errors.Is(err, unix.EINVAL) || len(got) != 0 {
						t.Errorf("%d bytes: error %v, counters %v; want EINVAL before the program runs", n, err, named(got))
					}
					continue
				}
				if err != nil {
					t.Fatalf("%d bytes: %v", n, err)
				}
				if verdict != xdpPass || len(got) != 1 || got[PassMalformed].Packets != 1 || !bytes.Equal(out, in) {
					t.Errorf("%d bytes: verdict %d, counters %v, frame changed %v; want pass, malformed, unchanged",
						n, verdict, named(got), !bytes.Equal(out, in))
				}
			}
		})
	}
}

// forwardedLen is the length of a frame without trailing padding.
func forwardedLen(frame []byte) int {
	return len(forwarded(frame, peerMAC[devDst], routerMAC[devDst]))
}
