/* SPDX-License-Identifier: GPL-2.0 */
/* The FlowSpec classifier (RFC 8955/8956), run on every well-formed IP
 * packet before the forwarding checks while rules of its family are
 * installed (docs/architecture.md, "FlowSpec classifier").
 *
 * Candidates: an LPM trie keyed by bank, family and destination gives the
 * list of rules whose destination prefix covers the packet's (user space
 * builds one list per distinct rule destination, holding every rule whose
 * prefix covers it, in RFC 8955 §5.1 order). A hash map of the rule
 * destinations answers first, so a packet no rule names skips the trie.
 * Each list entry carries a summary of its rule (protocol and destination
 * port ranges) that screens packets without loading the rule; the first
 * rule whose components all match wins. Its
 * action: drop, a shared token bucket, or a DSCP rewrite, then the packet
 * goes on to forwarding. */
#ifndef XROUTER_FLOWSPEC_H
#define XROUTER_FLOWSPEC_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xrouter.h"
#include "maps.h"

/* RFC 8955 fragment bits. */
#define FS_FRAG_DF 1
#define FS_FRAG_ISF 2
#define FS_FRAG_FF 4
#define FS_FRAG_LF 8

#define FS_IP_DF 0x4000
#define FS_IP_MF 0x2000
#define FS_IP_OFFSET 0x1fff

/* The packet as the rules see it. */
struct fs_pkt {
	__u32 src[4];
	__u32 have; /* enum xr_fs_comp: which of the fields below the packet has */
	__u16 proto;
	__u16 sport, dport;
	__u16 icmp_type, icmp_code;
	__u16 tcp_flags;
	__u16 len;
	__u16 dscp;
	__u16 frag;
	__u16 pad;
};

struct fs_walk {
	struct fs_pkt *p;
	__u32 start;
	__u32 slot; /* the matching rule's slot, or ~0 */
};

static __always_inline int fs_num(const struct xr_fs_num *n, __u16 v)
{
	int ok = 0;

#pragma unroll
	for (int i = 0; i < XR_FS_RANGES; i++)
		ok |= v >= n->lo[i] && v <= n->hi[i];
	return ok;
}

/* RFC 8955 §4.2.1.2 terms, AND binding tighter than OR. */
static __always_inline int fs_bits(const struct xr_fs_bitop *t, __u16 v)
{
	int res = 0, grp = 1;

#pragma unroll
	for (int i = 0; i < XR_FS_BITOPS; i++) {
		__u16 f = t[i].flags, m = t[i].value;
		int r;

		if (!(f & XR_FS_BIT_USED))
			break;
		r = (f & XR_FS_BIT_MATCH) ? (v & m) == m : (v & m) != 0;
		if (f & XR_FS_BIT_NOT)
			r = !r;
		if (i > 0 && !(f & XR_FS_BIT_AND)) {
			res |= grp;
			grp = r;
		} else {
			grp &= r;
		}
	}
	return res | grp;
}

/* A global function: the verifier checks it once, on its own, instead of
 * along every path of its callers (inline, its branches multiply the
 * walk's states past the verifier's limit). */
__noinline int fs_rule_matches(const struct xr_fs_rule *r, const struct fs_pkt *p)
{
	__u32 need;

	if (!r || !p)
		return 0;
	need = r->need;

	/* A component the packet does not have (ports of ICMP, anything of
	 * the transport header in a later fragment) never matches. */
	if (need & ~p->have & ~(XR_FS_SRC | XR_FS_PROTO | XR_FS_PKTLEN | XR_FS_DSCP | XR_FS_FRAG))
		return 0;
	if (need & XR_FS_SRC) {
		if ((p->src[0] & r->src_mask[0]) != r->src[0] || (p->src[1] & r->src_mask[1]) != r->src[1] ||
		    (p->src[2] & r->src_mask[2]) != r->src[2] || (p->src[3] & r->src_mask[3]) != r->src[3])
			return 0;
	}
	if ((need & XR_FS_PROTO) && !fs_num(&r->proto, p->proto))
		return 0;
	if ((need & XR_FS_PORT) && !fs_num(&r->port, p->sport) && !fs_num(&r->port, p->dport))
		return 0;
	if ((need & XR_FS_DPORT) && !fs_num(&r->dport, p->dport))
		return 0;
	if ((need & XR_FS_SPORT) && !fs_num(&r->sport, p->sport))
		return 0;
	if ((need & XR_FS_ICMP_TYPE) && !fs_num(&r->icmp_type, p->icmp_type))
		return 0;
	if ((need & XR_FS_ICMP_CODE) && !fs_num(&r->icmp_code, p->icmp_code))
		return 0;
	if ((need & XR_FS_TCP_FLAGS) && !fs_bits(r->tcp_flags, p->tcp_flags))
		return 0;
	if ((need & XR_FS_PKTLEN) && !fs_num(&r->pktlen, p->len))
		return 0;
	if ((need & XR_FS_DSCP) && !fs_num(&r->dscp_m, p->dscp))
		return 0;
	if ((need & XR_FS_FRAG) && !fs_bits(r->frag, p->frag))
		return 0;
	return 1;
}

/* Whether a packet can match the candidate's rule, from the summary alone. */
static __always_inline int fs_cand_ok(const struct xr_fs_cand *c, const struct fs_pkt *p)
{
	return !(c->need_have & ~p->have) && (p->src[0] & c->src_mask0) == c->src0 && p->proto >= c->proto_lo && p->proto <= c->proto_hi &&
	       p->dport >= c->dport_lo && p->dport <= c->dport_hi;
}

static long fs_walk_one(__u32 i, void *arg)
{
	struct fs_walk *w = arg;
	__u32 idx = w->start + i;
	struct xr_fs_cand *c;
	struct xr_fs_rule *r;

	c = bpf_map_lookup_elem(&xr_fs_cands, &idx);
	if (!c)
		return 1;
	if (!fs_cand_ok(c, w->p))
		return 0;
	if (!c->exact) {
		r = bpf_map_lookup_elem(&xr_fs_rules, &c->slot);
		if (!r)
			return 1;
		if (!fs_rule_matches(r, w->p))
			return 0;
	}
	w->slot = c->slot;
	return 1;
}

/* Reads the transport fields at l4 (the first fragment or a whole
 * packet): ports of TCP and UDP, ICMP type and code of the family's ICMP,
 * TCP flags. l4_len is what the IP header says follows. */
static __always_inline void fs_l4(struct fs_pkt *p, void *l4, void *data_end, __u32 l4_len,
				  __u8 icmp_proto)
{
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		__be16 *ports = l4;

		if (l4_len < 4 || (void *)(ports + 2) > data_end)
			return;
		p->sport = bpf_ntohs(ports[0]);
		p->dport = bpf_ntohs(ports[1]);
		p->have |= XR_FS_PORT | XR_FS_DPORT | XR_FS_SPORT;
		if (p->proto == IPPROTO_TCP) {
			__u8 *b = l4;

			/* Bytes 12-13: data offset (ignored), reserved bits, flags. */
			if (l4_len < 14 || (void *)(b + 14) > data_end)
				return;
			p->tcp_flags = ((__u16)(b[12] & 0x0f) << 8) | b[13];
			p->have |= XR_FS_TCP_FLAGS;
		}
	} else if (p->proto == icmp_proto) {
		__u8 *b = l4;

		if (l4_len < 2 || (void *)(b + 2) > data_end)
			return;
		p->icmp_type = b[0];
		p->icmp_code = b[1];
		p->have |= XR_FS_ICMP_TYPE | XR_FS_ICMP_CODE;
	}
}

/* The destination index's hash of an address masked to one of the
 * filter's lengths (l, its index): internal/dataplane's fsFilterHash.
 * Multiplicative: the hit map takes the upper 16 bits, the table the
 * lower 16 mixed once more. */
static __always_inline __u32 fs_hash(const __u32 *a, const __u32 *m, int words, __u32 l)
{
	__u32 h = (a[0] & m[0]) ^ ((l + 1) * 0x9e3779b9u);

	if (words > 1) {
		h = h * 0x85ebca6bu ^ (a[1] & m[1]);
		h = h * 0x85ebca6bu ^ (a[2] & m[2]);
		h = h * 0x85ebca6bu ^ (a[3] & m[3]);
	}
	return h * 0xc2b2ae35u;
}

/* The home slot in the destination table of a prefix with hash h. */
static __always_inline __u32 fs_slot(__u32 h)
{
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	return h >> 16;
}

/* Whether table slot e holds address a (words long) at length index l. */
static __always_inline int fs_dst_is(const struct xr_fs_dst *e, const __u32 *a, const __u32 *m, int words,
				     __u32 l)
{
	if (e->len != l + 1 || e->addr[0] != (a[0] & m[0]))
		return 0;
	return words == 1 || (e->addr[1] == (a[1] & m[1]) && e->addr[2] == (a[2] & m[2]) &&
			      e->addr[3] == (a[3] & m[3]));
}

/* The candidate list for a destination (words: 1 for IPv4, 4 for IPv6),
 * or NULL when no rule's destination covers it. */
static __always_inline struct xr_fs_list *fs_list(__u8 bank, __u8 family, const __u32 *a)
{
	__u32 fi = bank * 2 + (family == AF_INET6);
	int words = family == AF_INET ? 1 : 4;
	struct xr_fs_filter *f;
	struct xr_fs_list *l;
	struct xr_fs_key k;

	f = bpf_map_lookup_elem(&xr_fs_filters, &fi);
	if (f && !f->all) {
		int hit = 0;

		/* Loops, not unrolled: the code stays small on the
		 * forwarding path it sits in. */
#pragma clang loop unroll(disable)
		for (__u32 i = 0; i < XR_FS_FILTER_LENS; i++) {
			__u32 h, b;

			if (i >= f->nlen)
				break;
			h = fs_hash(a, f->mask[i], words, i);
			b = h >> 16;
			if (!f->hits[b])
				continue;
			if (f->trie) {
				hit = 1;
				break;
			}
#pragma clang loop unroll(disable)
			for (__u32 j = 0; j < XR_FS_PROBES; j++) {
				__u32 idx = fi * XR_FS_DST_SLOTS + ((fs_slot(h) + j) % XR_FS_DST_SLOTS);
				struct xr_fs_dst *e = bpf_map_lookup_elem(&xr_fs_dsts, &idx);

				if (!e || !e->len)
					break;
				if (fs_dst_is(e, a, f->mask[i], words, i))
					return e->list.n ? &e->list : NULL;
			}
		}
		if (!hit)
			return NULL;
	}
	k.bank = bank;
	k.family = family;
	k.prefixlen = 16 + words * 32;
	__builtin_memcpy(k.addr, a, 4);
	if (words > 1)
		__builtin_memcpy(k.addr + 4, a + 1, 12);
	else
		__builtin_memset(k.addr + 4, 0, 12);
	l = bpf_map_lookup_elem(&xr_fs_trie, &k);
	if (!l || !l->n)
		return NULL;
	return l;
}

/* The first rule of the list that matches the packet: its slot, or ~0.
 * The first XR_FS_INLINE candidates are screened by their summaries in
 * line; the walk goes on through bpf_loop from the first one that passes
 * and is not exact, or past them. */
#define XR_FS_INLINE 8
static __always_inline __u32 fs_match(struct fs_pkt *p, const struct xr_fs_list *l)
{
	__u32 start = l->start, n = l->n, i;
	struct fs_walk w;

	if (l->ports && !(l->dports & xr_fs_port_bit(p->dport)) && !(l->sports & xr_fs_port_bit(p->sport)))
		return ~0u;
	if (n > XR_FS_MAX_CANDS)
		n = XR_FS_MAX_CANDS;
	for (i = 0; i < XR_FS_INLINE; i++) {
		__u32 idx = start + i;
		struct xr_fs_cand *c;

		if (i >= n)
			return ~0u;
		c = bpf_map_lookup_elem(&xr_fs_cands, &idx);
		if (!c)
			return ~0u;
		if (!fs_cand_ok(c, p))
			continue;
		if (c->exact)
			return c->slot;
		break;
	}
	if (i >= n)
		return ~0u;
	w.p = p;
	w.start = start + i;
	w.slot = ~0u;
	bpf_loop(n - i, fs_walk_one, &w, 0);
	return w.slot;
}

/* Whether a packet of len bytes conforms to the rule's rate: GCRA on a
 * bucket shared by the CPUs, under its lock. */
static __always_inline int fs_conform(struct xr_fs_rule *r, __u32 id, __u64 len)
{
	struct xr_fs_bucket *b = bpf_map_lookup_elem(&xr_fs_buckets, &id);
	__u64 now = bpf_ktime_get_ns(), cost = (len * r->ns_per_byte) >> 16, burst = r->burst_ns;
	__u64 tat;
	int ok = 0;

	if (!b)
		return 0;
	bpf_spin_lock(&b->lock);
	tat = b->tat;
	if (tat < now)
		tat = now;
	if (tat + cost - now <= burst) {
		b->tat = tat + cost;
		ok = 1;
	} else {
		b->over++;
	}
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* The kernel's ipv4_change_dsfield arithmetic, so the checksum bytes are
 * the ones the kernel would write. */
static __always_inline void fs_mark4(struct iphdr *iph, __u8 dscp)
{
	__u8 tos = (dscp << 2) | (iph->tos & 3);
	__u32 check = bpf_ntohs(iph->check);

	check += iph->tos;
	if ((check + 1) >> 16)
		check = (check + 1) & 0xffff;
	check -= tos;
	check += check >> 16;
	iph->check = bpf_htons(check);
	iph->tos = tos;
}

static __always_inline void fs_mark6(struct ipv6hdr *ip6h, __u8 dscp)
{
	__u32 *w = (__u32 *)ip6h, v = bpf_ntohl(*w);

	v = (v & ~(0x3fu << 22)) | ((__u32)dscp << 22);
	*w = bpf_htonl(v);
}

/* The matched rule's counters and action. Returns -1 to go on forwarding,
 * otherwise the outcome that drops the packet. */
static __always_inline int fs_act(__u32 slot, __u64 len, void *iph, __u8 family)
{
	struct xr_fs_rule *r = bpf_map_lookup_elem(&xr_fs_rules, &slot);
	struct xr_counter *c;
	__u32 id;

	if (!r)
		return -1;
	id = r->id;
	c = bpf_map_lookup_elem(&xr_fs_stats, &id);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
	if (r->action & XR_FS_ACT_DROP)
		return XR_FLOWSPEC_DROP;
	if ((r->action & XR_FS_ACT_RATE) && !fs_conform(r, id, len))
		return XR_FLOWSPEC_RATE;
	if (r->action & XR_FS_ACT_MARK) {
		if (family == AF_INET)
			fs_mark4(iph, r->dscp);
		else
			fs_mark6(iph, r->dscp);
	}
	return -1;
}

/* IPv4: iph's fixed header and tot_len are known good. */
static __always_inline int flowspec4(struct iphdr *iph, void *data_end, __u16 tot_len, __u64 len,
				     __u32 nf)
{
	__u32 a[1] = {iph->daddr};
	struct xr_fs_list *l = fs_list(!!(nf & XR_NF_FS_BANK), AF_INET, a);
	struct fs_pkt p = {};
	__u16 fo = bpf_ntohs(iph->frag_off);
	__u32 slot, ihl = (iph->ihl & 0xf) * 4;

	if (!l)
		return -1;
	p.src[0] = iph->saddr;
	p.proto = iph->protocol;
	p.len = tot_len;
	p.dscp = iph->tos >> 2;
	if (fo & FS_IP_DF)
		p.frag |= FS_FRAG_DF;
	if (fo & (FS_IP_MF | FS_IP_OFFSET))
		p.frag |= FS_FRAG_ISF;
	if ((fo & FS_IP_MF) && !(fo & FS_IP_OFFSET))
		p.frag |= FS_FRAG_FF;
	if (!(fo & FS_IP_MF) && (fo & FS_IP_OFFSET))
		p.frag |= FS_FRAG_LF;
	if (!(fo & FS_IP_OFFSET) && ihl >= sizeof(*iph) && ihl <= 60 && tot_len >= ihl)
		fs_l4(&p, (void *)iph + ihl, data_end, tot_len - ihl, IPPROTO_ICMP);
	slot = fs_match(&p, l);
	if (slot == ~0u)
		return -1;
	return fs_act(slot, len, iph, AF_INET);
}

/* IPv6: the fixed header is known good. The upper-layer protocol is the
 * fixed header's next header, or the fragment header's when that comes
 * first; other extension headers are not walked (their next header value
 * is the protocol, and the packet has no ports). */
static __always_inline int flowspec6(struct ipv6hdr *ip6h, void *data_end, __u32 tot_len, __u64 len,
				     __u32 nf)
{
	struct fs_pkt p = {};
	void *l4 = ip6h + 1;
	__u32 l4_len = tot_len - sizeof(*ip6h), slot, a[4];
	__u32 w0 = bpf_ntohl(*(__u32 *)ip6h);
	struct xr_fs_list *l;
	int first = 1;

	__builtin_memcpy(a, &ip6h->daddr, 16);
	l = fs_list(!!(nf & XR_NF_FS_BANK), AF_INET6, a);
	if (!l)
		return -1;
	__builtin_memcpy(p.src, &ip6h->saddr, 16);
	p.proto = ip6h->nexthdr;
	p.len = tot_len;
	p.dscp = (w0 >> 22) & 0x3f;
	if (p.proto == IPPROTO_FRAGMENT) {
		struct frag_hdr {
			__u8 nexthdr;
			__u8 reserved;
			__be16 frag_off;
			__be32 id;
		} *fh = l4;
		__u16 fo;

		if ((void *)(fh + 1) > data_end || l4_len < sizeof(*fh))
			return -1;
		fo = bpf_ntohs(fh->frag_off);
		p.proto = fh->nexthdr;
		p.frag = FS_FRAG_ISF;
		if (fo & 1) {
			if (!(fo & ~7))
				p.frag |= FS_FRAG_FF;
		} else {
			p.frag |= FS_FRAG_LF;
		}
		first = !(fo & ~7);
		l4 = fh + 1;
		l4_len -= sizeof(*fh);
	}
	if (first)
		fs_l4(&p, l4, data_end, l4_len, IPPROTO_ICMPV6);
	slot = fs_match(&p, l);
	if (slot == ~0u)
		return -1;
	return fs_act(slot, len, ip6h, AF_INET6);
}

#endif
