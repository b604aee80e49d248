package dataplane

import (
	"testing"
)

// TestFwdNetfilterPrivileged: while netfilter has rules on a hook the fast
// path would skip, the family's packets go to the kernel, counted as
// netfilter; the other family keeps the fast path, and what the kernel
// drops before its netfilter hooks (ip_rcv's header checks, frames for
// other hosts) keeps its own reason. Fails on a program without the
// netfilter flags (everything forwarded).
func TestFwdNetfilterPrivileged(t *testing.T) {
	e := newFwdEnv(t)
	set := func(n NetfilterPass) {
		t.Helper()
		if err := e.dp.SetNetfilter(n); err != nil {
			t.Fatal(err)
		}
		got, err := e.dp.Netfilter()
		if err != nil || got != n {
			t.Fatalf("Netfilter() = %+v, %v; want %+v", got, err, n)
		}
	}
	udp4 := udp4To(remote4)
	udp6 := udp6To(remote6)
	badSum := mutate(udp4, func(b []byte) { b[ethLen+11] ^= 0x5a })
	shortLen6 := frame6(ip6(func(h *ipv6Hdr) { h.PayloadLen = 27 }), udp(1, 2, payload(18)))
	options := frame4(ip4(func(h *ipv4Hdr) { h.Options = []byte{1, 1, 1, 0} }), udp(1, 2, payload(14)))
	for _, step := range []struct {
		name  string
		nf    NetfilterPass
		cases []fwdCase
	}{
		{"ipv4 respected", NetfilterPass{IPv4: true}, []fwdCase{
			{name: "ipv4 udp", frame: udp4, outcome: PassNetfilter},
			{name: "ipv4 ttl 1", frame: frame4(ip4(func(h *ipv4Hdr) { h.TTL = 1 }), udp(1, 2, payload(18))), outcome: PassNetfilter},
			{name: "ipv4 bad checksum", frame: badSum, outcome: PassMalformed},
			{name: "ipv4 options", frame: options, outcome: PassIPOptions},
			{name: "ipv4 other host's mac", frame: withDstMAC(peerMAC[devDst], udp4), outcome: PassL2NotForUs},
			{name: "ipv6 udp", frame: udp6, outcome: Forwarded, egress: devDst},
		}},
		{"ipv6 respected", NetfilterPass{IPv6: true}, []fwdCase{
			{name: "ipv4 udp", frame: udp4, outcome: Forwarded, egress: devDst},
			{name: "ipv6 udp", frame: udp6, outcome: PassNetfilter},
			{name: "ipv6 payload beyond frame", frame: shortLen6, outcome: PassMalformed},
		}},
		{"both", NetfilterPass{IPv4: true, IPv6: true}, []fwdCase{
			{name: "ipv4 udp", frame: udp4, outcome: PassNetfilter},
			{name: "ipv6 udp", frame: udp6, outcome: PassNetfilter},
		}},
		{"cleared, bypass recorded", NetfilterPass{Bypass: true}, []fwdCase{
			{name: "ipv4 udp", frame: udp4, outcome: Forwarded, egress: devDst},
			{name: "ipv6 udp", frame: udp6, outcome: Forwarded, egress: devDst},
		}},
	} {
		set(step.nf)
		for _, c := range step.cases {
			t.Run(step.name+"/"+c.name, func(t *testing.T) { e.check(t, c) })
		}
	}
}

// TestNetfilterFlagsApartFromCache: the cache's writer and the netfilter
// writer share the control block but not a word.
func TestNetfilterFlagsApartFromCachePrivileged(t *testing.T) {
	e := newFwdEnv(t)
	if err := e.dp.SetNetfilter(NetfilterPass{IPv6: true}); err != nil {
		t.Fatal(err)
	}
	e.setCache(t, CacheState{Generation: 7, Bypass4: true, Bypass6: true})
	if n, err := ReadPinnedNetfilter(e.pinDir); err != nil || n != (NetfilterPass{IPv6: true}) {
		t.Fatalf("netfilter flags after a cache update: %+v, %v", n, err)
	}
	if err := e.dp.SetNetfilter(NetfilterPass{IPv4: true}); err != nil {
		t.Fatal(err)
	}
	st, err := e.dp.CacheState()
	if err != nil || st.Generation != 7 || !st.Bypass4 || !st.Bypass6 {
		t.Fatalf("cache state after a netfilter update: %+v, %v", st, err)
	}
}
