package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// maxLinearFrame is the longest frame BPF_PROG_RUN hands to a program
// without XDP multi-buffer support in one piece: a 4 KiB page less 256 bytes
// of headroom and 320 of skb_shared_info. Longer input is cut to this size
// (the rest goes to fragments the program cannot see), so the counters see a
// different length; a driver never gives such a frame to this program.
const maxLinearFrame = 3520

// fuzzDevs are the ingress interfaces a fuzz input can pick by index.
var fuzzDevs = []string{devSrc, devDst, devMTU, devNoDM, devOff, devUnk}

// FuzzFwd feeds arbitrary frames to the program on any of the router's
// interfaces. Whatever the input, the program passes the frame untouched or
// redirects it, counts exactly one outcome, and a redirected frame is the
// frame kernel forwarding would send: a valid IPv4 or IPv6 packet with the
// TTL or hop limit one less, addressed to a neighbour out of another port.
// Without -fuzz it runs the table cases as its seed corpus.
func FuzzFwd(f *testing.F) {
	e := newFwdEnv(f)
	for _, c := range slices.Concat(fwdCases(), localSourceCases()) {
		dev := c.dev
		if dev == "" {
			dev = devSrc
		}
		f.Add(uint8(slices.Index(fuzzDevs, dev)), c.frame)
	}

	f.Fuzz(func(t *testing.T, port uint8, in []byte) {
		if len(in) > maxLinearFrame {
			t.Skip("longer than a single-buffer XDP frame")
		}
		dev := fuzzDevs[int(port)%len(fuzzDevs)]
		before := e.stats(t)
		verdict, out, err := e.run(dev, in)
		got := delta(before, e.stats(t))
		if err != nil {
			// BPF_PROG_RUN refuses frames without an Ethernet header
			// before the program runs.
			if errors.Is(err, unix.EINVAL) && len(in) < ethLen && len(got) == 0 {
				return
			}
			t.Fatalf("BPF_PROG_RUN on %d bytes: %v", len(in), err)
		}
		if len(got) != 1 {
			t.Fatalf("counters moved %v, want exactly one outcome", named(got))
		}
		var outcome Outcome
		for o, c := range got {
			outcome = o
			if c.Packets != 1 || c.Bytes != uint64(len(in)) {
				t.Fatalf("counter %s moved by %+v, want 1 packet of %d bytes", o, c, len(in))
			}
		}

		switch verdict {
		case xdpPass:
			if outcome == Forwarded {
				t.Fatalf("passed, but counted as forwarded")
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("passed frame was changed\n got %x\nwant %x", out, in)
			}
		case xdpRedirect:
			if outcome != Forwarded {
				t.Fatalf("redirected, but counted as %s", outcome)
			}
			checkRedirected(t, dev, in, out)
		default:
			t.Fatalf("verdict %d, want pass or redirect", verdict)
		}
	})
}

// checkRedirected checks a redirected frame on its own terms (headers,
// checksum, TTL) and then against the kernel's forwarded frame.
func checkRedirected(t *testing.T, ingress string, in, out []byte) {
	t.Helper()
	if !bytes.Equal(in[:6], routerMAC[ingress]) {
		t.Fatalf("forwarded a frame not addressed to %s's MAC: %x", ingress, in[:6])
	}
	egress := ""
	for dev, mac := range routerMAC {
		if bytes.Equal(out[6:12], mac) {
			egress = dev
		}
	}
	if egress == "" || egress == ingress || !bytes.Equal(out[:6], peerMAC[egress]) {
		t.Fatalf("MACs %x -> %x: not from another port to its neighbour", out[6:12], out[:6])
	}
	switch binary.BigEndian.Uint16(out[12:]) {
	case etherTypeIPv4:
		ip := out[ethLen:]
		if len(ip) < ipv4Len || ip[0] != 0x45 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			t.Fatalf("not an option-less IPv4 packet filling the frame: %x", ip)
		}
		if checksum(ip[:ipv4Len]) != 0 {
			t.Fatalf("bad IPv4 header checksum: %x", ip[:ipv4Len])
		}
		if ip[8]+1 != in[ethLen+8] || ip[8] == 0 {
			t.Fatalf("TTL %d, input TTL %d", ip[8], in[ethLen+8])
		}
	case etherTypeIPv6:
		ip := out[ethLen:]
		if len(ip) < ipv6Len || ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:]))+ipv6Len != len(ip) {
			t.Fatalf("not an IPv6 packet filling the frame: %x", ip)
		}
		if ip[7]+1 != in[ethLen+7] || ip[7] == 0 {
			t.Fatalf("hop limit %d, input hop limit %d", ip[7], in[ethLen+7])
		}
	default:
		t.Fatalf("redirected a frame of ethertype %#04x", binary.BigEndian.Uint16(out[12:]))
	}
	if want := forwarded(in, peerMAC[egress], routerMAC[egress]); !bytes.Equal(out, want) {
		t.Fatalf("output differs from kernel forwarding\n got %x\nwant %x", out, want)
	}
}
