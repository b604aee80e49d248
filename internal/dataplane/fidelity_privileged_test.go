package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// learnPMTU makes the router learn a PMTU exception for dst, the way it does
// when an ICMP Fragmentation Needed (mtu) quotes a packet it sent there: the
// message is sent to the router's own address from inside its namespace, and
// icmp_err → ipv4_update_pmtu records the exception on dst's next hop. It
// returns `ip route get dst`, which shows the exception's mtu.
func (e *fwdEnv) learnPMTU(t *testing.T, dst netip.Addr, mtu uint16) string {
	t.Helper()
	inner := ip4(func(h *ipv4Hdr) { h.Src, h.Dst, h.Proto = routerOwn4, dst, protoICMP }).marshal(icmp(8, 0, echoBody()))
	msg := []byte{3, 4, 0, 0, 0, 0, 0, 0} // destination unreachable, fragmentation needed
	binary.BigEndian.PutUint16(msg[6:], mtu)
	msg = append(msg, inner[:ipv4Len+8]...)
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	err := e.router.Do(func() error {
		c, err := net.ListenPacket("ip4:icmp", routerOwn4.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo(msg, &net.IPAddr{IP: routerOwn4.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return e.router.IP(t, "route", "get", dst.String())
}

// TestFwdPMTUExceptionPrivileged: a PMTU exception the router learned for a
// destination (ICMP Fragmentation Needed) makes bpf_fib_lookup answer
// FRAG_NEEDED (ip_mtu_from_fib_result), but IPv4 forwarding ignores it
// (ip_dst_mtu_maybe_forward with forwarding = true: only with
// ip_forward_use_pmtu or a locked mtu) and forwards the packet up to the
// device's MTU. The fast path must forward it too, not count it
// frag_needed. With ip_forward_use_pmtu = 1 forwarding honours the
// exception; an mtu below min_pmtu makes a locked exception of min_pmtu,
// which forwarding honours too. Fails against bpf/fwd.c before this test.
func TestFwdPMTUExceptionPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	dst, locked := mustAddr("10.99.1.7"), mustAddr("10.99.1.8")
	if got := e.learnPMTU(t, dst, 1300); !strings.Contains(got, "mtu 1300") {
		t.Fatalf("no PMTU exception learned: ip route get %s: %s", dst, got)
	}
	if got := e.learnPMTU(t, locked, 300); !strings.Contains(got, "mtu lock 552") {
		t.Fatalf("no locked PMTU exception learned: ip route get %s: %s", locked, got)
	}
	for _, c := range []fwdCase{
		{name: "under the exception", frame: udp4Sized(dst, 1300), outcome: Forwarded, egress: devDst},
		{name: "over the exception", frame: udp4Sized(dst, 1400), outcome: Forwarded, egress: devDst},
		{name: "over the exception, at the device mtu", frame: udp4Sized(dst, 1500), outcome: Forwarded, egress: devDst},
		{name: "over the device mtu", frame: udp4Sized(dst, 1501), outcome: PassFragNeeded},
		{name: "over a locked exception", frame: udp4Sized(locked, 600), outcome: PassFragNeeded},
		{name: "under a locked exception", frame: udp4Sized(locked, 552), outcome: Forwarded, egress: devDst},
	} {
		t.Run(c.name, func(t *testing.T) { e.check(t, c) })
	}
	// ip_forward_use_pmtu = 1 (what internal/nhcache then writes).
	e.router.Sysctl(t, "net.ipv4.ip_forward_use_pmtu", "1")
	e.setFIB(t, FIBConfig{IgnorePMTU4: false, MinPMTU4: 552})
	t.Run("use_pmtu, over the exception", func(t *testing.T) {
		e.check(t, fwdCase{frame: udp4Sized(dst, 1400), outcome: PassFragNeeded})
	})
}

// TestFwdECMPPolicyPrivileged: under fib_multipath_hash_policy 2 (inner
// headers) or 3 (custom fields) the kernel's hash of a forwarded packet
// differs from the one bpf_fib_lookup computes from its flow, so packets to
// a multipath destination go to the kernel (ecmp_hash); single-path
// destinations are unaffected. Under policies 0 and 1 they are forwarded.
func TestFwdECMPPolicyPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	mp4, mp6 := mustAddr("10.93.1.1"), mustAddr("fd00:93::1")
	// Two next hops behind r-dst with the same MAC: either way the frame
	// leaves the same.
	gw4, gw6 := mustAddr("10.201.2.4"), mustAddr("fd00:201:2::4")
	e.router.AddNeigh(t, devDst, gw4, peerMAC[devDst])
	e.router.AddNeigh(t, devDst, gw6, peerMAC[devDst])
	e.router.IP(t, "route", "add", "10.93.0.0/16", "nexthop", "via", dstHost4.String(), "nexthop", "via", gw4.String())
	e.router.IP(t, "route", "add", "fd00:93::/48", "nexthop", "via", dstHost6.String(), "nexthop", "via", gw6.String())
	for _, p := range []string{"10.93.0.0/16", "fd00:93::/48"} {
		if err := e.dp.AddMultipath(netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	fwd := []fwdCase{
		{name: "ipv4 multipath", frame: udp4To(mp4), outcome: Forwarded, egress: devDst},
		{name: "ipv6 multipath", frame: udp6To(mp6), outcome: Forwarded, egress: devDst},
		{name: "ipv4 single path", frame: udp4To(remote4), outcome: Forwarded, egress: devDst},
	}
	for _, c := range fwd {
		t.Run("policy 1, "+c.name, func(t *testing.T) { e.check(t, c) })
	}
	e.setFIB(t, FIBConfig{IgnorePMTU4: true, MinPMTU4: 552, ECMPKernel4: true, ECMPKernel6: true})
	for _, c := range []fwdCase{
		{name: "ipv4 multipath", frame: udp4To(mp4), outcome: PassECMPHash},
		{name: "ipv6 multipath", frame: udp6To(mp6), outcome: PassECMPHash},
		fwd[2],
	} {
		t.Run("policy 2, "+c.name, func(t *testing.T) { e.check(t, c) })
	}
}
