// SPDX-License-Identifier: GPL-2.0
/* xrouter fast path: forward IPv4 and IPv6 between attached interfaces using
 * the kernel's own FIB and neighbour table (bpf_fib_lookup), and a devmap for
 * the redirect. Anything the kernel would treat in any way other than a plain
 * forward is handed to it with XDP_PASS and counted with its reason, so the
 * kernel stays the authority (ICMP errors, local delivery, fragmentation,
 * neighbour resolution). A forwarded frame leaves exactly as kernel
 * forwarding would emit it: TTL/hop limit - 1, the kernel's incremental IPv4
 * checksum update, the neighbour's and the egress device's MAC addresses, and
 * trailing L2 padding trimmed.
 *
 * The file reads in the order a packet goes: parse, checks, lookup (the
 * next-hop cache in nh_cache.h, then bpf_fib_lookup), rewrite, redirect; the
 * per-packet functions that tie them together come last. The maps are in
 * maps.h, their layouts in xrouter.h. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xrouter.h"
#include "maps.h"
#include "nh_cache.h"
#include "flowspec.h"

/* IPv4 frag_off: more fragments, and the fragment offset (net/ip.h). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* IPv4 addresses the kernel never forwards (ip_route_input_slow), tested on
 * the first byte of the address as stored (network order). */
#define IPV4_MCAST_MASK 0xf0 /* 224.0.0.0/4 */
#define IPV4_MCAST_NET 0xe0
#define IPV4_THIS_NET 0      /* 0.0.0.0/8 */
#define IPV4_LOOPBACK_NET 127 /* 127.0.0.0/8 */
#define IPV4_BROADCAST 0xffffffff

/* IPv6 addresses, tested on their first word (host order). */
#define IPV6_MCAST_BYTE 0xff          /* ff00::/8, the first byte */
#define IPV6_LINKLOCAL_MASK 0xffc00000 /* fe80::/10 */
#define IPV6_LINKLOCAL_NET 0xfe800000
#define IPV6_V4MAPPED_W2 0x0000ffff   /* ::ffff:0:0/96, the third word */

/* ICMP error types (linux/icmp.h, which the BPF build cannot include: it
 * pulls in libc's socket headers). */
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* ICMPv6 neighbour discovery: router solicitation to redirect (the
 * kernel's NDISC_ROUTER_SOLICITATION .. NDISC_REDIRECT in net/ndisc.h). */
#define NDISC_FIRST 133
#define NDISC_LAST 137

/* IPv6 extension headers with no name in the uapi headers (RFC 7045). */
#define IPPROTO_HIP 139
#define IPPROTO_SHIM6 140
#define IPPROTO_EXP1 253 /* experimentation and testing (RFC 3692) */
#define IPPROTO_EXP2 254

/* The four bytes the flow dissector takes as ports, and where AH's SPI
 * starts. */
#define L4_PORTS_LEN 4
#define AH_SPI_OFF 4

/* IPv4 maximum MTU (net/ip.h IP_MAX_MTU): what a route MTU is capped at. */
#define IP_MAX_MTU 0xfff0

/* The IPv6 header's first word without the version: traffic class and flow
 * label, what bpf_fib_lookup takes as flowinfo. */
#define IPV6_FLOWINFO_MASK (IPV6_FLOWINFO_PRIORITY | IPV6_FLOWINFO_FLOWLABEL)

char __license[] SEC("license") = "GPL";

/* Forces the enums into BTF so bpf2go emits it for the Go side. */
const enum xr_outcome xr_outcome_unused __attribute__((unused));
const enum xr_port_flags xr_port_flags_unused __attribute__((unused));
const enum xr_cache_flags xr_cache_flags_unused __attribute__((unused));
const enum xr_nf_flags xr_nf_flags_unused __attribute__((unused));
const enum xr_fib_flags xr_fib_flags_unused __attribute__((unused));
const enum xr_fs_comp xr_fs_comp_unused __attribute__((unused));
const enum xr_fs_action xr_fs_action_unused __attribute__((unused));
const enum xr_fs_bitop_flags xr_fs_bitop_flags_unused __attribute__((unused));

static __always_inline int count(enum xr_outcome o, __u64 len, int verdict)
{
	__u32 key = o;
	struct xr_counter *c = bpf_map_lookup_elem(&xr_stats, &key);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
	return verdict;
}

#define PASS(o) count((o), len, XDP_PASS)

/* ---- parse ---- */

/* The ports of the kernel's multipath hash (policy 1) and of port-matching
 * policy rules are what its flow dissector reads (proto_ports_offset,
 * __skb_flow_get_ports): the first four bytes of TCP, UDP, UDP-Lite, SCTP,
 * DCCP and ESP (there the SPI), bytes 4-7 of AH (its SPI), and zeroes when
 * the packet ends before them (the kernel forwards such a packet all the
 * same). l4_len is what the IP header says the payload holds. Returns 0, or
 * -1 when the IP header claims bytes the frame's first buffer does not
 * hold. */
static __always_inline int l4_ports(void *l4, void *data_end, __u32 l4_len, __u8 proto,
				    __be16 *sport, __be16 *dport)
{
	__be16 *ports = l4;

	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
	case IPPROTO_ESP:
		break;
	case IPPROTO_AH:
		if (l4_len < AH_SPI_OFF + L4_PORTS_LEN)
			return 0;
		ports += AH_SPI_OFF / sizeof(*ports);
		if ((void *)(ports + 2) > data_end)
			return -1;
		*sport = ports[0];
		*dport = ports[1];
		return 0;
	default:
		return 0;
	}
	if (l4_len < L4_PORTS_LEN)
		return 0;
	if ((void *)(ports + 2) > data_end)
		return -1;
	*sport = ports[0];
	*dport = ports[1];
	return 0;
}

/* ---- checks: what the kernel would not simply forward ---- */

/* The header's ones' complement sum over five 32-bit words (the end-around
 * carries fold into the same 16-bit sum as ten 16-bit words). */
static __always_inline int ipv4_csum_ok(struct iphdr *iph)
{
	__u32 *w = (__u32 *)iph;
	__u64 sum = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static __always_inline int ipv4_martian(__be32 saddr, __be32 daddr)
{
	__u8 s = ((__u8 *)&saddr)[0], d = ((__u8 *)&daddr)[0];

	if ((s & IPV4_MCAST_MASK) == IPV4_MCAST_NET || saddr == IPV4_BROADCAST ||
	    s == IPV4_THIS_NET || s == IPV4_LOOPBACK_NET)
		return 1;
	if ((d & IPV4_MCAST_MASK) == IPV4_MCAST_NET || daddr == IPV4_BROADCAST ||
	    d == IPV4_THIS_NET || d == IPV4_LOOPBACK_NET)
		return 1;
	return 0;
}

/* Multicast, link-local, v4-mapped, unspecified and loopback. */
static __always_inline int ipv6_special_addr(const struct in6_addr *a)
{
	__u32 w0 = bpf_ntohl(a->in6_u.u6_addr32[0]);

	if ((w0 >> 24) == IPV6_MCAST_BYTE)
		return 1;
	if ((w0 & IPV6_LINKLOCAL_MASK) == IPV6_LINKLOCAL_NET)
		return 1;
	if (w0 == 0 && a->in6_u.u6_addr32[1] == 0) {
		__u32 w2 = bpf_ntohl(a->in6_u.u6_addr32[2]);
		__u32 w3 = bpf_ntohl(a->in6_u.u6_addr32[3]);

		if (w2 == IPV6_V4MAPPED_W2)
			return 1;
		if (w2 == 0 && (w3 == 0 || w3 == 1)) /* ::, ::1 */
			return 1;
	}
	return 0;
}

static __always_inline int ipv6_ext_header(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_ESP:
	case IPPROTO_AH:
	case IPPROTO_DSTOPTS:
	case IPPROTO_MH:
	case IPPROTO_HIP:
	case IPPROTO_SHIM6:
	case IPPROTO_EXP1:
	case IPPROTO_EXP2:
		return 1;
	default:
		return 0;
	}
}

/* ICMP errors are hashed by the kernel on the embedded header, so that they
 * follow their flow across ECMP paths; the fast path hashes on the outer
 * header, so it leaves them to the kernel. */
static __always_inline int icmp4_special(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
	       type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* ICMPv6 errors as above, and neighbour discovery, which proxy NDP may
 * claim. */
static __always_inline int icmp6_special(__u8 type)
{
	return type <= ICMPV6_ERRMSG_MAX || (type >= NDISC_FIRST && type <= NDISC_LAST);
}

/* Whether addr is one of the namespace's own: the filter's bit first (a
 * multiplicative hash of the address; the same in user space), then, only
 * when the bit is set, the hash map. */
static __always_inline int ipv4_local(__be32 addr)
{
	__u32 zero = 0, bit = ((__u32)addr * XR_HASH_GOLDEN) >> (32 - XR_LOCAL4_FILTER_LOG2);
	struct xr_local4_filter *f;

	f = bpf_map_lookup_elem(&xr_local4_filter, &zero);
	if (f && !(f->words[(bit / 64) & (XR_LOCAL4_FILTER_BITS / 64 - 1)] & (1ull << (bit % 64))))
		return 0;
	return bpf_map_lookup_elem(&xr_local4, &addr) != NULL;
}

/* The kernel validates the source of every IPv4 packet it forwards
 * (fib_validate_source), and bpf_fib_lookup checks none of it. With
 * rp_filter off and no reason for more (XR_PORT_SRC_FULL clear), a local
 * source address is a martian unless accept_local. Otherwise the kernel
 * looks the source up as a destination, with the packet's egress as the
 * input interface (flowi4_iif = the forward route's device), no output
 * interface, the DSCP, and the protocol and swapped ports that port rules
 * match on: the reverse lookup here passes the same, so that ip rules
 * (iif, oif, ipproto, sport, dport, tos) pick the same table. Then:
 * - no route: accepted, unless rp_filter;
 * - a local route: a martian unless accept_local; broadcast, multicast,
 *   anycast: a martian;
 * - a unicast route through the ingress device: accepted;
 * - any other unicast route: a martian with strict rp_filter, and with
 *   loose rp_filter when the ingress has no IPv4 address; accepted
 *   otherwise.
 * bpf_fib_lookup answers NOT_FWDED both for local/broadcast routes and for
 * no route, and picks one path of a multipath route, so whenever its answer
 * cannot prove the source acceptable the packet goes to the kernel, which is
 * always safe. Returns 0 when the source is acceptable. */
static __always_inline int ipv4_source_bad(struct xdp_md *ctx, struct iphdr *iph, __u16 flags,
					   __u32 ingress, __u32 egress, __be16 sport, __be16 dport)
{
	struct bpf_fib_lookup r;
	int rc;

	if (!(flags & (XR_PORT_RPF_STRICT | XR_PORT_RPF_LOOSE | XR_PORT_SRC_FULL))) {
		if (flags & XR_PORT_ACCEPT_LOCAL)
			return 0;
		return ipv4_local(iph->saddr);
	}
	__builtin_memset(&r, 0, sizeof(r));
	r.family = AF_INET;
	r.tos = iph->tos;
	r.l4_protocol = iph->protocol;
	r.sport = dport;
	r.dport = sport;
	r.ipv4_src = iph->daddr;
	r.ipv4_dst = iph->saddr;
	r.ifindex = egress;
	rc = bpf_fib_lookup(ctx, &r, sizeof(r), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (!(flags & (XR_PORT_RPF_STRICT | XR_PORT_RPF_LOOSE)))
		/* A unicast route, or a failed lookup (blackhole, unreachable,
		 * prohibit routes): accepted. */
		return rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_BLACKHOLE &&
		       rc != BPF_FIB_LKUP_RET_UNREACHABLE && rc != BPF_FIB_LKUP_RET_PROHIBIT;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return 1;
	if (r.ifindex == ingress)
		return 0;
	return (flags & XR_PORT_RPF_STRICT) || (flags & XR_PORT_NO_ADDR4);
}

/* A packet with TTL <= 1 goes to the kernel either way; the reason is
 * ttl_exceeded only when the kernel would forward it (and so send Time
 * Exceeded), not when it is for this host. */
static __always_inline int expires(int rc, __u8 ttl)
{
	return ttl <= 1 && (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH ||
			    rc == BPF_FIB_LKUP_RET_FRAG_NEEDED);
}

/* ---- what kernel forwarding adds to the lookup's result ---- */

static __always_inline struct xr_fib_cfg *fib_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xr_fib, &zero);
}

/* Kernel forwarding honours a route's mtu metric (ip_dst_mtu_maybe_forward
 * and ip6_dst_mtu_maybe_forward with forwarding = true), bpf_fib_lookup
 * only a locked one. xr_rmtu4/6 hold, per prefix with such a route, a bound
 * for every route the kernel may pick for a destination under it; packets
 * longer go to the kernel (ICMP Fragmentation Needed / Packet Too Big, or
 * fragmentation). Packets no longer than the smallest bound skip the trie.
 * A missing configuration (never) checks every packet. */
static __always_inline int over_route_mtu(struct xr_fib_cfg *cfg, __u8 family, struct xr_dst *d,
					  __u32 tot_len)
{
	__u32 *mtu;

	if (family == AF_INET) {
		struct xr_lpm4 l = {.prefixlen = 32};

		if (cfg && tot_len <= cfg->rmtu_min4)
			return 0;
		__builtin_memcpy(l.addr, d->w, 4);
		mtu = bpf_map_lookup_elem(&xr_rmtu4, &l);
	} else {
		struct xr_lpm6 l = {.prefixlen = 128};

		if (cfg && tot_len <= cfg->rmtu_min6)
			return 0;
		__builtin_memcpy(l.addr, d->w, 16);
		mtu = bpf_map_lookup_elem(&xr_rmtu6, &l);
	}
	return mtu && tot_len > *mtu;
}

/* Under a multipath hash policy the fast path does not reproduce, the
 * kernel picks the next hop of a multipath destination. */
static __always_inline int ecmp_kernel(struct xr_fib_cfg *cfg, __u32 flag, __u8 family,
				       struct xr_dst *d)
{
	return cfg && (cfg->flags & flag) && multipath(family, d);
}

/* ---- lookup (after the next-hop cache, nh_cache.h) ---- */

static __always_inline void fib_params4(struct bpf_fib_lookup *p, struct iphdr *iph, __u16 tot_len,
					__be16 sport, __be16 dport, __u32 ingress)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET;
	p->tos = iph->tos;
	p->l4_protocol = iph->protocol;
	p->sport = sport;
	p->dport = dport;
	p->tot_len = tot_len;
	p->ipv4_src = iph->saddr;
	p->ipv4_dst = iph->daddr;
	p->ifindex = ingress;
}

/* bpf_fib_lookup said FRAG_NEEDED with mtu the exception's or the device's.
 * It applies the next hop's PMTU exception (ip_mtu_from_fib_result), which
 * IPv4 forwarding ignores unless ip_forward_use_pmtu is set or the
 * exception is locked (below min_pmtu: its mtu is then at most min_pmtu).
 * So when the kernel would ignore it, look up again without the MTU check
 * (tot_len 0) and check the egress device's MTU, as the kernel does.
 * Returns the lookup's result, FRAG_NEEDED if the device is too small. */
static __always_inline int fib_ignoring_pmtu4(struct xdp_md *ctx, struct bpf_fib_lookup *p,
					      struct xr_fib_cfg *cfg, struct iphdr *iph,
					      __u16 tot_len, __be16 sport, __be16 dport,
					      __u32 ingress)
{
	__u32 mtu_len = tot_len;
	int rc;

	if (!cfg || !(cfg->flags & XR_FIB_IGNORE_PMTU4) || p->mtu_result <= cfg->min_pmtu)
		return BPF_FIB_LKUP_RET_FRAG_NEEDED;
	fib_params4(p, iph, 0, sport, dport, ingress);
	rc = bpf_fib_lookup(ctx, p, sizeof(*p), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return rc;
	if (bpf_check_mtu(ctx, p->ifindex, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return BPF_FIB_LKUP_RET_FRAG_NEEDED;
	return rc;
}

static __always_inline enum xr_outcome lookup_outcome(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return XR_PASS_NOT_FWDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return XR_PASS_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
		return XR_PASS_BLACKHOLE;
	case BPF_FIB_LKUP_RET_UNREACHABLE:
		return XR_PASS_UNREACHABLE;
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return XR_PASS_PROHIBIT;
	case BPF_FIB_LKUP_RET_UNSUPP_LWT:
		return XR_PASS_UNSUPP_LWT;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return XR_PASS_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return XR_PASS_FRAG_NEEDED;
	default:
		return XR_PASS_LOOKUP_OTHER;
	}
}

static __always_inline void nh_from_fib(struct xr_nh *nh, struct bpf_fib_lookup *p)
{
	nh->ifindex = p->ifindex;
	__builtin_memcpy(nh->macs, p->dmac, ETH_ALEN);
	__builtin_memcpy((__u8 *)nh->macs + ETH_ALEN, p->smac, ETH_ALEN);
}

/* ---- rewrite ---- */

/* The kernel's ip_decrease_ttl(), so the checksum bytes match exactly: the
 * TTL is the high byte of the 16-bit word it shares with the protocol, so
 * one less TTL is 0x0100 more in the checksum. */
static __always_inline void ipv4_decrease_ttl(struct iphdr *iph)
{
	__u32 check = iph->check;

	check += bpf_htons(0x0100);
	iph->check = (__u16)(check + (check >= 0xffff));
	iph->ttl--;
}

static __always_inline void rewrite_macs(struct ethhdr *eth, struct xr_nh *nh)
{
	__u32 *w = (__u32 *)eth;

	w[0] = nh->macs[0];
	w[1] = nh->macs[1];
	w[2] = nh->macs[2];
}

/* Frames may carry L2 padding past the IP packet; the kernel trims it before
 * forwarding, so do the same. Returns 0, or -1 if the frame could not be
 * trimmed. Invalidates every packet pointer. */
static __always_inline int trim(struct xdp_md *ctx, __u64 frame_len, __u64 want)
{
	if (frame_len == want)
		return 0;
	return bpf_xdp_adjust_tail(ctx, -(int)(frame_len - want)) ? -1 : 0;
}

/* ---- redirect ---- */

/* The port entry of ifindex, or NULL when xrouter does not manage it. */
static __always_inline struct xr_port *port_of(__u32 ifindex)
{
	struct xr_port *p;

	if (ifindex < XR_PORT_SLOTS) {
		p = bpf_map_lookup_elem(&xr_port_tab, &ifindex);
		if (!p || !(p->flags & XR_PORT_PRESENT))
			return NULL;
		return p;
	}
	return bpf_map_lookup_elem(&xr_ports, &ifindex);
}

/* Why egress is not in the devmap. User space keeps a port out of it for
 * tc on egress or when it cannot transmit XDP frames, and says which in
 * the port's flags; only this path, never a forwarded packet, reads them. */
static __always_inline enum xr_outcome not_redirectable(__u32 egress)
{
	struct xr_port *p = port_of(egress);

	if (p) {
		if (p->flags & XR_PORT_TC_EGRESS)
			return XR_PASS_TC_EGRESS;
		if (p->flags & XR_PORT_NO_XDP_XMIT)
			return XR_PASS_NO_XDP_XMIT;
	}
	return XR_PASS_NOT_IN_DEVMAP;
}

/* Sets up the redirect to egress. bpf_redirect_map looks the devmap up
 * itself and, with XDP_PASS as its flags, returns XDP_PASS when egress is
 * not there, so no separate lookup is needed; the redirect takes effect only
 * if the program then returns XDP_REDIRECT. */
static __always_inline int redirect(__u32 egress, __u32 ingress)
{
	if (egress == ingress)
		return -XR_PASS_HAIRPIN;
	if (bpf_redirect_map(&xr_devmap, egress, XDP_PASS) != XDP_REDIRECT)
		return -not_redirectable(egress);
	return 0;
}

/* Notes the next hop a forwarded frame leaves by, for the daemon's
 * neighbour confirmation: two inlined array lookups and a compare; a write
 * only when the slot holds another next hop or an older epoch. Called only
 * for frames that took the full lookup, not for cache hits: every cache
 * entry is looked up again at least every dataplane.cache.max_age (the
 * generation timer), so a next hop in use is still noted that often, and a
 * hit pays nothing for it. */
static __always_inline void hop_seen(struct xr_nh *nh, __u8 family)
{
	__u32 zero = 0, *epoch, e, i, w1;
	struct xr_hop_table *t;
	struct xr_hop_seen *s;

	epoch = bpf_map_lookup_elem(&xr_hop_epoch, &zero);
	if (!epoch)
		return;
	e = *(volatile __u32 *)epoch;
	if (!e)
		return;
	t = bpf_map_lookup_elem(&xr_hops_seen, &zero);
	if (!t)
		return;
	/* The destination MAC's last two bytes, then the family. */
	w1 = (nh->macs[1] & 0xffff) | (__u32)family << 16;
	i = (((nh->ifindex * XR_HASH_C1) ^ nh->macs[0]) * XR_HASH_C2 ^ w1) * XR_HASH_GOLDEN;
	s = &t->slot[(i >> (32 - XR_HOP_SEEN_BITS)) & (XR_HOP_SEEN_SLOTS - 1)];
	if (s->epoch == e && s->ifindex == nh->ifindex && s->mac[0] == nh->macs[0] && s->mac[1] == w1)
		return;
	s->ifindex = nh->ifindex;
	s->mac[0] = nh->macs[0];
	s->mac[1] = w1;
	s->epoch = e;
}

/* ---- per packet ---- */

static __always_inline int fwd_ipv4(struct xdp_md *ctx, __u64 len, __u16 flags, __u32 nf)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);
	__u32 ingress = ctx->ingress_ifindex;
	struct bpf_fib_lookup p;
	struct cache_ctx c;
	struct xr_fib_cfg *cfg;
	struct xr_nh_key4 k;
	struct xr_dst d;
	struct xr_nh nh;
	__be16 sport = 0, dport = 0;
	__u16 tot_len;
	int rc, looked;

	if ((void *)(iph + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (iph->version != 4 || iph->ihl < 5)
		return PASS(XR_PASS_MALFORMED);
	/* FlowSpec rules apply to every IPv4 packet whose header is whole,
	 * options or not, before anything may hand it to the kernel. */
	if (nf & XR_NF_FS4) {
		__u16 tl = bpf_ntohs(iph->tot_len);

		if (tl >= iph->ihl * 4 && sizeof(*eth) + tl <= len) {
			rc = flowspec4(iph, data_end, tl, len, nf);
			if (rc >= 0)
				return count(rc, len, XDP_DROP);
		}
	}
	if (iph->ihl != 5)
		return PASS(XR_PASS_IP_OPTIONS);
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || sizeof(*eth) + tot_len > len)
		return PASS(XR_PASS_MALFORMED);
	if (!ipv4_csum_ok(iph))
		return PASS(XR_PASS_MALFORMED);
	/* Past ip_rcv's own checks (above) the kernel hands the packet to its
	 * prerouting hook: with rules there (or on forward, postrouting) the
	 * kernel must forward it. */
	if (nf & XR_NF_PASS4)
		return PASS(XR_PASS_NETFILTER);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return PASS(XR_PASS_FRAGMENT);
	if (ipv4_martian(iph->saddr, iph->daddr))
		return PASS(XR_PASS_MARTIAN);

	/* An ICMP message with no bytes at all is forwarded by the kernel and
	 * hashed on the outer header like any other. */
	if (iph->protocol == IPPROTO_ICMP && tot_len > sizeof(*iph)) {
		__u8 *type = (void *)(iph + 1);

		if ((void *)(type + 1) > data_end)
			return PASS(XR_PASS_MALFORMED);
		if (icmp4_special(*type))
			return PASS(XR_PASS_ICMP_SPECIAL);
	} else if (iph->protocol != IPPROTO_ICMP &&
		   l4_ports(iph + 1, data_end, tot_len - sizeof(*iph), iph->protocol, &sport, &dport)) {
		return PASS(XR_PASS_MALFORMED);
	}

	cfg = fib_cfg();
	k.ifindex = ingress;
	k.dst = iph->daddr;
	d.w[0] = k.dst;
	d.w[1] = 0;
	d.w[2] = 0;
	d.w[3] = 0;
	looked = !cache_lookup(&c, &xr_nh_cache4, &k, ingress, AF_INET, &d, tot_len, XR_CACHE_BYPASS4, &nh, &k);
	if (looked) {
		fib_params4(&p, iph, tot_len, sport, dport, ingress);
		rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			rc = fib_ignoring_pmtu4(ctx, &p, cfg, iph, tot_len, sport, dport, ingress);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
			if (expires(rc, iph->ttl))
				return PASS(XR_PASS_TTL_EXCEEDED);
			return PASS(lookup_outcome(rc));
		}
		nh_from_fib(&nh, &p);
	}
	/* Found (in the cache or the FIB): forwarding would expire it. */
	if (iph->ttl <= 1)
		return PASS(XR_PASS_TTL_EXCEEDED);
	if (ipv4_source_bad(ctx, iph, flags, ingress, nh.ifindex, sport, dport))
		return PASS(XR_PASS_MARTIAN);
	if (over_route_mtu(cfg, AF_INET, &d, tot_len))
		return PASS(XR_PASS_ROUTE_MTU);
	if (ecmp_kernel(cfg, XR_FIB_ECMP_KERNEL4, AF_INET, &d))
		return PASS(XR_PASS_ECMP_HASH);
	rc = redirect(nh.ifindex, ingress);
	if (rc)
		return PASS(-rc);
	if (c.pc)
		cache_store(&c, &xr_nh_cache4, &k, ingress, AF_INET, &d, tot_len, &nh);
	if (looked)
		hop_seen(&nh, AF_INET);

	ipv4_decrease_ttl(iph);
	rewrite_macs(eth, &nh);
	if (trim(ctx, len, sizeof(*eth) + tot_len))
		return PASS(XR_PASS_MALFORMED);
	return count(XR_FORWARDED, len, XDP_REDIRECT);
}

static __always_inline int fwd_ipv6(struct xdp_md *ctx, __u64 len, __u16 flags, __u32 nf)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6h = data + sizeof(*eth);
	__u32 ingress = ctx->ingress_ifindex;
	struct bpf_fib_lookup p;
	struct cache_ctx c;
	struct xr_fib_cfg *cfg;
	struct xr_nh_key k;
	struct xr_nh nh;
	__be16 sport = 0, dport = 0;
	__u32 tot_len;
	int rc, looked;

	/* ipv6_rcv drops everything on a device with disable_ipv6. */
	if (flags & XR_PORT_NO_IPV6)
		return PASS(XR_PASS_IPV6_DISABLED);
	if ((void *)(ip6h + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (ip6h->version != 6)
		return PASS(XR_PASS_MALFORMED);
	tot_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
	if (sizeof(*eth) + tot_len > len)
		return PASS(XR_PASS_MALFORMED);
	if (nf & XR_NF_FS6) {
		rc = flowspec6(ip6h, data_end, tot_len, len, nf);
		if (rc >= 0)
			return count(rc, len, XDP_DROP);
	}
	/* As for IPv4: what ipv6_rcv would accept meets netfilter next. */
	if (nf & XR_NF_PASS6)
		return PASS(XR_PASS_NETFILTER);
	if (ip6h->nexthdr == IPPROTO_FRAGMENT)
		return PASS(XR_PASS_FRAGMENT);
	if (ipv6_ext_header(ip6h->nexthdr))
		return PASS(XR_PASS_IP_OPTIONS);
	if (ipv6_special_addr(&ip6h->saddr) || ipv6_special_addr(&ip6h->daddr))
		return PASS(XR_PASS_MARTIAN);
	if (flags & XR_PORT_NO_FWD6)
		return PASS(XR_PASS_FWD_DISABLED);

	if (ip6h->nexthdr == IPPROTO_ICMPV6 && tot_len > sizeof(*ip6h)) {
		__u8 *type = (void *)(ip6h + 1);

		if ((void *)(type + 1) > data_end)
			return PASS(XR_PASS_MALFORMED);
		if (icmp6_special(*type))
			return PASS(XR_PASS_ICMP_SPECIAL);
	} else if (ip6h->nexthdr != IPPROTO_ICMPV6 &&
		   l4_ports(ip6h + 1, data_end, tot_len - sizeof(*ip6h), ip6h->nexthdr, &sport, &dport)) {
		return PASS(XR_PASS_MALFORMED);
	}

	cfg = fib_cfg();
	k.ifindex = ingress;
	k.family = AF_INET6;
	k.pad[0] = 0;
	k.pad[1] = 0;
	k.pad[2] = 0;
	__builtin_memcpy(k.dst, &ip6h->daddr, sizeof(k.dst));
	looked = !cache_lookup(&c, &xr_nh_cache, &k, ingress, AF_INET6, (struct xr_dst *)k.dst, tot_len,
			       XR_CACHE_BYPASS6, &nh, NULL);
	if (looked) {
		__builtin_memset(&p, 0, sizeof(p));
		p.family = AF_INET6;
		p.flowinfo = *(__be32 *)ip6h & bpf_htonl(IPV6_FLOWINFO_MASK);
		p.l4_protocol = ip6h->nexthdr;
		p.sport = sport;
		p.dport = dport;
		p.tot_len = tot_len;
		__builtin_memcpy(p.ipv6_src, &ip6h->saddr, sizeof(p.ipv6_src));
		__builtin_memcpy(p.ipv6_dst, &ip6h->daddr, sizeof(p.ipv6_dst));
		p.ifindex = ingress;
		rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
			if (expires(rc, ip6h->hop_limit))
				return PASS(XR_PASS_TTL_EXCEEDED);
			return PASS(lookup_outcome(rc));
		}
		nh_from_fib(&nh, &p);
	}
	/* Found (in the cache or the FIB): forwarding would expire it. */
	if (ip6h->hop_limit <= 1)
		return PASS(XR_PASS_TTL_EXCEEDED);
	/* ip6_output drops what would leave by a device with disable_ipv6. */
	if (flags & XR_PORT_EGRESS6_CHECK) {
		struct xr_port *out = port_of(nh.ifindex);

		if (out && (out->flags & XR_PORT_NO_IPV6))
			return PASS(XR_PASS_IPV6_DISABLED);
	}
	if (over_route_mtu(cfg, AF_INET6, (struct xr_dst *)k.dst, tot_len))
		return PASS(XR_PASS_ROUTE_MTU);
	if (ecmp_kernel(cfg, XR_FIB_ECMP_KERNEL6, AF_INET6, (struct xr_dst *)k.dst))
		return PASS(XR_PASS_ECMP_HASH);
	rc = redirect(nh.ifindex, ingress);
	if (rc)
		return PASS(-rc);
	cache_store(&c, &xr_nh_cache, &k, ingress, AF_INET6, (struct xr_dst *)k.dst, tot_len, &nh);
	if (looked)
		hop_seen(&nh, AF_INET6);

	ip6h->hop_limit--;
	rewrite_macs(eth, &nh);
	if (trim(ctx, len, sizeof(*eth) + tot_len))
		return PASS(XR_PASS_MALFORMED);
	return count(XR_FORWARDED, len, XDP_REDIRECT);
}

SEC("xdp")
int xrouter_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 len = data_end - data;
	__u32 ingress = ctx->ingress_ifindex;
	struct xr_port *port;
	struct xr_cache_cfg *cfg;
	__u32 zero = 0, nf = 0;

	if ((void *)(eth + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6))
		return PASS(XR_PASS_NOT_IP);

	/* The kernel forwards only frames addressed to the interface itself
	 * (PACKET_HOST); multicast, broadcast and other hosts' frames are not. */
	port = port_of(ingress);
	if (!port)
		return PASS(XR_PASS_INGRESS_UNKNOWN);
	/* XDP runs before tc ingress: where tc has filters, the kernel must
	 * see the packet (they may drop it, mark it, redirect it). */
	if (port->flags & XR_PORT_TC_INGRESS)
		return PASS(XR_PASS_TC_INGRESS);
	if (*(__u32 *)eth->h_dest != *(__u32 *)port->mac ||
	    *(__u16 *)(eth->h_dest + 4) != *(__u16 *)(port->mac + 4))
		return PASS(XR_PASS_L2_NOT_FOR_US);

	/* The netfilter flags: an array lookup the verifier inlines. */
	cfg = bpf_map_lookup_elem(&xr_cache_gen, &zero);
	if (cfg)
		nf = *(volatile __u32 *)&cfg->nf;

	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return fwd_ipv4(ctx, len, port->flags, nf);
	return fwd_ipv6(ctx, len, port->flags, nf);
}
