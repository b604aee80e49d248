// SPDX-License-Identifier: GPL-2.0
/* xrouter fast path: forward IPv4 and IPv6 between attached interfaces using
 * the kernel's own FIB and neighbour table (bpf_fib_lookup), and a devmap for
 * the redirect. Anything the kernel would treat in any way other than a plain
 * forward is handed to it with XDP_PASS and counted with its reason, so the
 * kernel stays the authority (ICMP errors, local delivery, fragmentation,
 * neighbour resolution). A forwarded frame leaves exactly as kernel
 * forwarding would emit it: TTL/hop limit - 1, the kernel's incremental IPv4
 * checksum update, the neighbour's and the egress device's MAC addresses, and
 * trailing L2 padding trimmed. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xrouter.h"

#define AF_INET 2
#define AF_INET6 10

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

char __license[] SEC("license") = "GPL";

/* Egress ports: ifindex -> ifindex. Only frames whose FIB egress is in here
 * are redirected. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, XR_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_devmap SEC(".maps");

/* Ingress ports: ifindex -> the interface's MAC, so that frames the kernel
 * would drop as PACKET_OTHERHOST are not forwarded. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XR_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct xr_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_ports SEC(".maps");

/* The same entries for ifindexes below XR_PORT_SLOTS, as an array the
 * verifier inlines (no hashing per packet); an entry in use has
 * XR_PORT_PRESENT in its flags. Not pinned: user space fills it from
 * xr_ports at load and keeps both in step. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XR_PORT_SLOTS);
	__type(key, __u32);
	__type(value, struct xr_port);
} xr_port_tab SEC(".maps");

/* Filter in front of xr_local4 (one entry): most sources are not local, and
 * a clear bit says so without a hash lookup. User space sets the bits before
 * it adds addresses and clears them after it removes them. Not pinned:
 * rebuilt from xr_local4 at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_local4_filter);
} xr_local4_filter SEC(".maps");

/* The namespace's own IPv4 addresses: the kernel drops a packet to be
 * forwarded whose source is one of them (fib_validate_source). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XR_MAX_LOCAL4);
	__type(key, __be32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_local4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XR_OUTCOME_MAX);
	__type(key, __u32);
	__type(value, struct xr_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_stats SEC(".maps");

/* Next-hop cache, IPv6 (IPv4 is xr_nh_cache4). Not pinned: its size is
 * configurable, and a new program starts empty. Keyed by ingress and
 * destination; values per CPU with one shared LRU list. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, XR_NH_CACHE_DEFAULT);
	__type(key, struct xr_nh_key);
	__type(value, struct xr_nh_entry);
} xr_nh_cache SEC(".maps");

/* The IPv4 half of the cache, with an 8-byte key; the same size as
 * xr_nh_cache. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, XR_NH_CACHE_DEFAULT);
	__type(key, struct xr_nh_key4);
	__type(value, struct xr_nh_entry);
} xr_nh_cache4 SEC(".maps");

/* Per-CPU front cache for IPv4 (one entry of XR_L0_SLOTS slots, direct
 * mapped by a hash of ingress and destination): a hit here saves the LRU
 * map's hashing and bucket walk. A slot is a copy of an xr_nh_cache4 entry
 * that hit, with the same generation, so the same bump ends both. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_l0);
} xr_nh_l0 SEC(".maps");

/* Generation, lease and policy flags; pinned, so a restarted daemon goes on
 * counting from the old generation and the old program's entries die. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_cache_cfg);
	/* User space writes it through a mapping, field by field with
	 * word-sized stores, the generation last: a map update is a memcpy
	 * that the program could see half done. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_cache_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_cache_pcpu);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_cache_stats SEC(".maps");

/* Prefixes whose route is multipath (or uses a nexthop object): their
 * destinations are never cached. User space fills them before it bumps. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XR_MPATH_MAX);
	__type(key, struct xr_lpm4);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_mpath4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XR_MPATH_MAX);
	__type(key, struct xr_lpm6);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xr_mpath6 SEC(".maps");

/* Admission filter: a destination is inserted on its second sighting; a
 * slot holds a tag of the last destination hashed to it. Shared by the
 * CPUs; a lost race only delays or hastens one insertion. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XR_SEEN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xr_cache_seen SEC(".maps");

/* Forces the enums into BTF so bpf2go emits it for the Go side. */
const enum xr_outcome xr_outcome_unused __attribute__((unused));
const enum xr_port_flags xr_port_flags_unused __attribute__((unused));
const enum xr_cache_flags xr_cache_flags_unused __attribute__((unused));

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

/* The first four bytes of TCP, UDP, UDP-Lite and SCTP are the ports; they
 * give the kernel's multipath hash the entropy it has on the slow path.
 * l4_len is what the IP header says the payload holds. Returns 0, or -1
 * when such a header is cut short. */
static __always_inline int l4_ports(void *l4, void *data_end, __u32 l4_len, __u8 proto,
				    __be16 *sport, __be16 *dport)
{
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__be16 *ports = l4;

		if (l4_len < 4 || (void *)(ports + 2) > data_end)
			return -1;
		*sport = ports[0];
		*dport = ports[1];
		return 0;
	}
	default:
		return 0;
	}
}

/* ICMP errors are hashed by the kernel on the embedded header, so that they
 * follow their flow across ECMP paths; the fast path hashes on the outer
 * header, so it leaves them to the kernel. */
static __always_inline int icmp4_special(__u8 type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/* ICMPv6 errors (type < 128) as above, and neighbour discovery (133-137),
 * which proxy NDP may claim. */
static __always_inline int icmp6_special(__u8 type)
{
	return type < 128 || (type >= 133 && type <= 137);
}

static __always_inline int ipv4_martian(__be32 saddr, __be32 daddr)
{
	__u8 s = ((__u8 *)&saddr)[0], d = ((__u8 *)&daddr)[0];

	/* ip_route_input_slow: multicast, limited broadcast, 0/8, 127/8 */
	if ((s & 0xf0) == 0xe0 || saddr == 0xffffffff || s == 0 || s == 127)
		return 1;
	if ((d & 0xf0) == 0xe0 || daddr == 0xffffffff || d == 0 || d == 127)
		return 1;
	return 0;
}

static __always_inline int ipv6_special_addr(const struct in6_addr *a)
{
	__u32 w0 = bpf_ntohl(a->in6_u.u6_addr32[0]);

	if ((w0 >> 24) == 0xff) /* multicast */
		return 1;
	if ((w0 & 0xffc00000) == 0xfe800000) /* link-local */
		return 1;
	if (w0 == 0 && a->in6_u.u6_addr32[1] == 0) {
		__u32 w2 = bpf_ntohl(a->in6_u.u6_addr32[2]);
		__u32 w3 = bpf_ntohl(a->in6_u.u6_addr32[3]);

		if (w2 == 0xffff) /* v4-mapped */
			return 1;
		if (w2 == 0 && (w3 == 0 || w3 == 1)) /* unspecified, loopback */
			return 1;
	}
	return 0;
}

static __always_inline int ipv6_ext_header(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
	case 253: /* experimental */
	case 254:
		return 1;
	default:
		return 0;
	}
}

/* The kernel's ip_decrease_ttl(), so the checksum bytes match exactly. */
static __always_inline void ipv4_decrease_ttl(struct iphdr *iph)
{
	__u32 check = iph->check;

	check += bpf_htons(0x0100);
	iph->check = (__u16)(check + (check >= 0xffff));
	iph->ttl--;
}

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

/* Frames may carry L2 padding past the IP packet; the kernel trims it before
 * forwarding, so do the same. Returns 0, or -1 if the frame could not be
 * trimmed. Invalidates every packet pointer. */
static __always_inline int trim(struct xdp_md *ctx, __u64 frame_len, __u64 want)
{
	if (frame_len == want)
		return 0;
	return bpf_xdp_adjust_tail(ctx, -(int)(frame_len - want)) ? -1 : 0;
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
		return -XR_PASS_NOT_IN_DEVMAP;
	return 0;
}

/* The next hop a packet leaves by: from the cache or from bpf_fib_lookup.
 * macs is the new Ethernet destination then source, as on the wire. */
struct xr_nh {
	__u32 ifindex;
	__u32 macs[3];
};

static __always_inline void nh_from_fib(struct xr_nh *nh, struct bpf_fib_lookup *p)
{
	nh->ifindex = p->ifindex;
	__builtin_memcpy(nh->macs, p->dmac, ETH_ALEN);
	__builtin_memcpy((__u8 *)nh->macs + ETH_ALEN, p->smac, ETH_ALEN);
}

static __always_inline void rewrite_macs(struct ethhdr *eth, struct xr_nh *nh)
{
	__u32 *w = (__u32 *)eth;

	w[0] = nh->macs[0];
	w[1] = nh->macs[1];
	w[2] = nh->macs[2];
}

/* What the cache lookup left for the store after a miss. */
struct cache_ctx {
	struct xr_cache_pcpu *pc; /* NULL: the cache is not in use for this packet */
	struct xr_nh_entry *e;    /* an existing entry to refresh in place */
	__u64 gen;
};

static __always_inline void cache_window(struct xr_cache_pcpu *pc)
{
	if (pc->win_lookups < XR_WIN)
		return;
	if (pc->win_hits * XR_WIN_MIN_DIV < pc->win_lookups)
		pc->bypass_left = XR_WIN_BYPASS;
	pc->win_lookups = 0;
	pc->win_hits = 0;
}

/* Looks the destination up in the next-hop cache. Returns 1 on a hit (nh
 * filled), 0 otherwise; after a miss, c tells cache_store what to do after
 * the full lookup (c->pc stays NULL when the cache was not consulted). */
static __always_inline int cache_lookup(struct cache_ctx *c, void *map, void *k, __u32 tot_len,
					__u32 bypass_flag, struct xr_nh *nh, struct xr_nh_key4 *k4)
{
	struct xr_l0_slot *s = NULL;
	struct xr_cache_cfg *cfg;
	struct xr_cache_pcpu *pc;
	struct xr_nh_entry *e;
	__u32 zero = 0;
	__u64 gen;

	c->pc = NULL;
	c->e = NULL;
	cfg = bpf_map_lookup_elem(&xr_cache_gen, &zero);
	if (!cfg)
		return 0;
	/* The generation once, before the flags and the lease: user space
	 * writes it after them, so flags read after a new generation are
	 * the new flags (x86 keeps loads and stores in order). */
	gen = *(volatile __u64 *)&cfg->gen;
	if (!gen)
		return 0;
	asm volatile("" ::: "memory");
	pc = bpf_map_lookup_elem(&xr_cache_stats, &zero);
	if (!pc)
		return 0;
	if (pc->bypass_left) {
		pc->bypass_left--;
		pc->bypass++;
		return 0;
	}
	if ((*(volatile __u32 *)&cfg->flags & bypass_flag) ||
	    bpf_ktime_get_coarse_ns() > *(volatile __u64 *)&cfg->lease_ns) {
		pc->bypass++;
		return 0;
	}
	pc->win_lookups++;
	if (k4) {
		struct xr_l0 *l0 = bpf_map_lookup_elem(&xr_nh_l0, &zero);

		if (l0) {
			__u32 i = ((k4->dst ^ k4->ifindex * 0x85ebca6bu) * 0x9e3779b1u) >> 28;

			s = &l0->slot[i & (XR_L0_SLOTS - 1)];
			if (s->gen == gen && s->dst == k4->dst && s->ingress == k4->ifindex &&
			    tot_len <= s->ok_len) {
				nh->ifindex = s->ifindex;
				nh->macs[0] = s->macs[0];
				nh->macs[1] = s->macs[1];
				nh->macs[2] = s->macs[2];
				/* Only this CPU writes the slot, generation
				 * last; a run that interrupted the write (a
				 * preempted BPF_PROG_RUN) left it 0. */
				asm volatile("" ::: "memory");
				if (s->gen == gen) {
					pc->hit++;
					pc->win_hits++;
					cache_window(pc);
					return 1;
				}
			}
		}
	}
	e = bpf_map_lookup_elem(map, k);
	if (e && e->gen == gen && tot_len <= e->ok_len) {
		nh->ifindex = e->ifindex;
		__builtin_memcpy(nh->macs, e->macs, sizeof(nh->macs));
		asm volatile("" ::: "memory");
		/* An LRU element can be evicted and reused by another CPU
		 * while we read it; the reuse zeroes this CPU's copy. Only
		 * zeroes can be torn in, so a copy whose generation still
		 * holds afterwards and with no zero word is the entry. (A
		 * next hop whose MAC words are zero is simply never served
		 * from the cache.) */
		if (e->gen == gen && nh->ifindex && nh->macs[0] && nh->macs[1] && nh->macs[2]) {
			if (s) {
				/* Copy the entry (and its ok_len) to the front
				 * cache, the generation last. */
				s->gen = 0;
				asm volatile("" ::: "memory");
				s->ingress = k4->ifindex;
				s->dst = k4->dst;
				s->ifindex = nh->ifindex;
				s->ok_len = e->ok_len;
				s->macs[0] = nh->macs[0];
				s->macs[1] = nh->macs[1];
				s->macs[2] = nh->macs[2];
				asm volatile("" ::: "memory");
				if (e->gen == gen)
					s->gen = gen;
			}
			pc->hit++;
			pc->win_hits++;
			cache_window(pc);
			return 1;
		}
	}
	pc->miss++;
	/* The window measures whether destinations repeat: an entry that is
	 * only stale (a bump) or short (MTU) counts, so that a bump does not
	 * switch the cache off while it refills. */
	if (e)
		pc->win_hits++;
	cache_window(pc);
	c->gen = gen;
	c->pc = pc;
	c->e = e;
	return 0;
}

/* The destination as four words (IPv4: the address, then zeroes). */
struct xr_dst {
	__u32 w[4];
};

static __always_inline int multipath(__u8 family, struct xr_dst *d)
{
	if (family == AF_INET) {
		struct xr_lpm4 l = {.prefixlen = 32};

		__builtin_memcpy(l.addr, d->w, 4);
		return bpf_map_lookup_elem(&xr_mpath4, &l) != NULL;
	}
	struct xr_lpm6 l = {.prefixlen = 128};

	__builtin_memcpy(l.addr, d->w, 16);
	return bpf_map_lookup_elem(&xr_mpath6, &l) != NULL;
}

/* Admission: 1 when the destination was the last one seen in its slot
 * (second sighting), else remembers it and returns 0. */
static __always_inline int admit(__u32 ingress, __u8 family, struct xr_dst *d)
{
	__u32 h = ingress * 0x9e3779b1;
	__u32 slot, tag, *seen;

	/* Fold the words, then murmur3's finaliser: the address bits that
	 * vary most sit in the high half of IPv4's word. */
	h = (h ^ d->w[0]) * 0x85ebca6b;
	h = (h ^ d->w[1]) * 0xc2b2ae35;
	h = (h ^ d->w[2]) * 0x85ebca6b;
	h = (h ^ d->w[3] ^ family) * 0xc2b2ae35;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	slot = h & (XR_SEEN_SLOTS - 1);
	tag = h | 1;
	seen = bpf_map_lookup_elem(&xr_cache_seen, &slot);
	if (!seen)
		return 0;
	if (*seen == tag)
		return 1;
	*seen = tag;
	return 0;
}

/* After a successful full lookup of a packet that is being forwarded:
 * remember the next hop, unless the destination is multipath (the kernel
 * hashes each flow) or seen for the first time. */
static __always_inline void cache_store(struct cache_ctx *c, void *map, void *k, __u32 ingress,
					__u8 family, struct xr_dst *d, __u32 tot_len, struct xr_nh *nh)
{
	struct xr_cache_pcpu *pc = c->pc;
	struct xr_nh_entry *e = c->e;

	if (!pc)
		return;
	if (e && e->gen == c->gen && e->ifindex == nh->ifindex &&
	    ((__u32 *)e->macs)[0] == nh->macs[0] && ((__u32 *)e->macs)[1] == nh->macs[1] &&
	    ((__u32 *)e->macs)[2] == nh->macs[2]) {
		/* Same next hop, longer packet: the MTU allows this length. */
		if (tot_len > e->ok_len)
			e->ok_len = tot_len;
		return;
	}
	/* A new key: only on its second sighting (checked before the
	 * multipath trie, the dearer lookup). */
	if (!e && !admit(ingress, family, d)) {
		pc->admit_skip++;
		return;
	}
	if (multipath(family, d)) {
		/* Not a repeat the cache can serve: traffic to multipath
		 * routes alone lets the window switch the cache lookups off. */
		pc->uncacheable++;
		return;
	}
	if (!e)
		pc->win_hits++; /* a repeat: counts for the window */
	pc->insert++;
	if (e) {
		/* Stale, or another next hop: refresh this CPU's copy in place,
		 * the generation last. */
		e->gen = 0;
		e->ifindex = nh->ifindex;
		e->ok_len = tot_len;
		__builtin_memcpy(e->macs, nh->macs, sizeof(e->macs));
		e->gen = c->gen;
		return;
	}
	struct xr_nh_entry v = {.gen = c->gen, .ifindex = nh->ifindex, .ok_len = tot_len};

	__builtin_memcpy(v.macs, nh->macs, sizeof(v.macs));
	bpf_map_update_elem(map, k, &v, BPF_ANY);
}

/* Whether addr is one of the namespace's own: the filter's bit first (a
 * multiplicative hash of the address; the same in user space), then, only
 * when the bit is set, the hash map. */
static __always_inline int ipv4_local(__be32 addr)
{
	__u32 zero = 0, bit = ((__u32)addr * 0x9e3779b1u) >> (32 - 16);
	struct xr_local4_filter *f;

	f = bpf_map_lookup_elem(&xr_local4_filter, &zero);
	if (f && !(f->words[(bit / 64) & (XR_LOCAL4_FILTER_BITS / 64 - 1)] & (1ull << (bit % 64))))
		return 0;
	return bpf_map_lookup_elem(&xr_local4, &addr) != NULL;
}

/* The kernel validates the source of every IPv4 packet it forwards
 * (fib_validate_source): a local address is a martian unless accept_local;
 * with rp_filter, the source must route back out of the ingress interface
 * (strict) or route at all (loose). bpf_fib_lookup checks none of it. A
 * reverse lookup that cannot confirm the source leaves the packet to the
 * kernel, which is always safe. Returns 0 when the source is acceptable. */
static __always_inline int ipv4_source_bad(struct xdp_md *ctx, struct iphdr *iph,
					   __u16 flags, __u32 ingress)
{
	struct bpf_fib_lookup r;
	int rc;

	if (!(flags & (XR_PORT_RPF_STRICT | XR_PORT_RPF_LOOSE))) {
		if (flags & XR_PORT_ACCEPT_LOCAL)
			return 0;
		return ipv4_local(iph->saddr);
	}
	__builtin_memset(&r, 0, sizeof(r));
	r.family = AF_INET;
	r.tos = iph->tos;
	r.ipv4_src = iph->daddr;
	r.ipv4_dst = iph->saddr;
	r.ifindex = ingress;
	rc = bpf_fib_lookup(ctx, &r, sizeof(r), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return 1;
	if ((flags & XR_PORT_RPF_STRICT) && r.ifindex != ingress)
		return 1;
	return 0;
}

/* A packet with TTL <= 1 goes to the kernel either way; the reason is
 * ttl_exceeded only when the kernel would forward it (and so send Time
 * Exceeded), not when it is for this host. */
static __always_inline int expires(int rc, __u8 ttl)
{
	return ttl <= 1 && (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH ||
			    rc == BPF_FIB_LKUP_RET_FRAG_NEEDED);
}

static __always_inline int fwd_ipv4(struct xdp_md *ctx, __u64 len, __u16 flags)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);
	__u32 ingress = ctx->ingress_ifindex;
	struct bpf_fib_lookup p;
	struct cache_ctx c;
	struct xr_nh_key4 k;
	struct xr_nh nh;
	__be16 sport = 0, dport = 0;
	__u16 tot_len;
	int rc;

	if ((void *)(iph + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (iph->version != 4 || iph->ihl < 5)
		return PASS(XR_PASS_MALFORMED);
	if (iph->ihl != 5)
		return PASS(XR_PASS_IP_OPTIONS);
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || sizeof(*eth) + tot_len > len)
		return PASS(XR_PASS_MALFORMED);
	if (!ipv4_csum_ok(iph))
		return PASS(XR_PASS_MALFORMED);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return PASS(XR_PASS_FRAGMENT);
	if (ipv4_martian(iph->saddr, iph->daddr))
		return PASS(XR_PASS_MARTIAN);

	if (iph->protocol == IPPROTO_ICMP) {
		__u8 *type = (void *)(iph + 1);

		if ((void *)(type + 1) > data_end || tot_len < sizeof(*iph) + 1)
			return PASS(XR_PASS_MALFORMED);
		if (icmp4_special(*type))
			return PASS(XR_PASS_ICMP_SPECIAL);
	} else if (l4_ports(iph + 1, data_end, tot_len - sizeof(*iph), iph->protocol, &sport, &dport)) {
		return PASS(XR_PASS_MALFORMED);
	}

	k.ifindex = ingress;
	k.dst = iph->daddr;
	if (!cache_lookup(&c, &xr_nh_cache4, &k, tot_len, XR_CACHE_BYPASS4, &nh, &k)) {
		__builtin_memset(&p, 0, sizeof(p));
		p.family = AF_INET;
		p.tos = iph->tos;
		p.l4_protocol = iph->protocol;
		p.sport = sport;
		p.dport = dport;
		p.tot_len = tot_len;
		p.ipv4_src = iph->saddr;
		p.ipv4_dst = iph->daddr;
		p.ifindex = ingress;
		rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
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
	if (ipv4_source_bad(ctx, iph, flags, ingress))
		return PASS(XR_PASS_MARTIAN);
	rc = redirect(nh.ifindex, ingress);
	if (rc)
		return PASS(-rc);
	if (c.pc) {
		struct xr_dst d = {.w = {k.dst}};

		cache_store(&c, &xr_nh_cache4, &k, ingress, AF_INET, &d, tot_len, &nh);
	}

	ipv4_decrease_ttl(iph);
	rewrite_macs(eth, &nh);
	if (trim(ctx, len, sizeof(*eth) + tot_len))
		return PASS(XR_PASS_MALFORMED);
	return count(XR_FORWARDED, len, XDP_REDIRECT);
}

static __always_inline int fwd_ipv6(struct xdp_md *ctx, __u64 len, __u16 flags)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6h = data + sizeof(*eth);
	__u32 ingress = ctx->ingress_ifindex;
	struct bpf_fib_lookup p;
	struct cache_ctx c;
	struct xr_nh_key k;
	struct xr_nh nh;
	__be16 sport = 0, dport = 0;
	__u32 tot_len;
	int rc;

	if ((void *)(ip6h + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (ip6h->version != 6)
		return PASS(XR_PASS_MALFORMED);
	tot_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
	if (sizeof(*eth) + tot_len > len)
		return PASS(XR_PASS_MALFORMED);
	if (ip6h->nexthdr == 44)
		return PASS(XR_PASS_FRAGMENT);
	if (ipv6_ext_header(ip6h->nexthdr))
		return PASS(XR_PASS_IP_OPTIONS);
	if (ipv6_special_addr(&ip6h->saddr) || ipv6_special_addr(&ip6h->daddr))
		return PASS(XR_PASS_MARTIAN);
	if (flags & XR_PORT_NO_FWD6)
		return PASS(XR_PASS_FWD_DISABLED);

	if (ip6h->nexthdr == IPPROTO_ICMPV6) {
		__u8 *type = (void *)(ip6h + 1);

		if ((void *)(type + 1) > data_end || tot_len < sizeof(*ip6h) + 1)
			return PASS(XR_PASS_MALFORMED);
		if (icmp6_special(*type))
			return PASS(XR_PASS_ICMP_SPECIAL);
	} else if (l4_ports(ip6h + 1, data_end, tot_len - sizeof(*ip6h), ip6h->nexthdr, &sport, &dport)) {
		return PASS(XR_PASS_MALFORMED);
	}

	k.ifindex = ingress;
	k.family = AF_INET6;
	k.pad[0] = 0;
	k.pad[1] = 0;
	k.pad[2] = 0;
	__builtin_memcpy(k.dst, &ip6h->daddr, sizeof(k.dst));
	if (!cache_lookup(&c, &xr_nh_cache, &k, tot_len, XR_CACHE_BYPASS6, &nh, NULL)) {
		__builtin_memset(&p, 0, sizeof(p));
		p.family = AF_INET6;
		p.flowinfo = *(__be32 *)ip6h & bpf_htonl(0x0fffffff);
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
	rc = redirect(nh.ifindex, ingress);
	if (rc)
		return PASS(-rc);
	cache_store(&c, &xr_nh_cache, &k, ingress, AF_INET6, (struct xr_dst *)k.dst, tot_len, &nh);

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

	if ((void *)(eth + 1) > data_end)
		return PASS(XR_PASS_MALFORMED);
	if (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6))
		return PASS(XR_PASS_NOT_IP);

	/* The kernel forwards only frames addressed to the interface itself
	 * (PACKET_HOST); multicast, broadcast and other hosts' frames are not. */
	if (ingress < XR_PORT_SLOTS) {
		port = bpf_map_lookup_elem(&xr_port_tab, &ingress);
		if (!port || !(port->flags & XR_PORT_PRESENT))
			return PASS(XR_PASS_INGRESS_UNKNOWN);
	} else {
		port = bpf_map_lookup_elem(&xr_ports, &ingress);
		if (!port)
			return PASS(XR_PASS_INGRESS_UNKNOWN);
	}
	if (*(__u32 *)eth->h_dest != *(__u32 *)port->mac ||
	    *(__u16 *)(eth->h_dest + 4) != *(__u16 *)(port->mac + 4))
		return PASS(XR_PASS_L2_NOT_FOR_US);

	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return fwd_ipv4(ctx, len, port->flags);
	return fwd_ipv6(ctx, len, port->flags);
}
