/* SPDX-License-Identifier: GPL-2.0 */
/* The next-hop cache in front of bpf_fib_lookup (see docs/architecture.md,
 * "Next-hop cache"). A packet first asks cache_lookup; on a miss it takes the
 * full lookup, and once it is known to be forwarded, cache_store remembers
 * the next hop. Two levels: for IPv4 a small per-CPU front cache (xr_nh_l0),
 * then the LRU maps (xr_nh_cache4, xr_nh_cache). Entries carry the
 * generation they were written under; user space bumps the generation to
 * invalidate them all at once. */
#ifndef XROUTER_NH_CACHE_H
#define XROUTER_NH_CACHE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xrouter.h"
#include "maps.h"

/* The next hop a packet leaves by: from the cache or from bpf_fib_lookup.
 * macs is the new Ethernet destination then source, as on the wire. */
struct xr_nh {
	__u32 ifindex;
	__u32 macs[3];
};

/* What the cache lookup left for the store after a miss. */
struct cache_ctx {
	struct xr_cache_pcpu *pc; /* NULL: the cache is not in use for this packet */
	struct xr_nh_entry *e;    /* an existing entry to refresh in place */
	__u64 gen;
	int key_ok;               /* e was written for this key */
};

/* The destination as four words (IPv4: the address, then zeroes). */
struct xr_dst {
	__u32 w[4];
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

static __always_inline int cache_hit(struct xr_cache_pcpu *pc)
{
	pc->hit++;
	pc->win_hits++;
	cache_window(pc);
	return 1;
}

/* Whether the cache may be consulted for this packet: a generation is set,
 * the hit-ratio window does not bypass it, the family's policy flag is
 * clear and the lease holds. Returns this CPU's cache counters and the
 * generation, or NULL. */
static __always_inline struct xr_cache_pcpu *cache_begin(__u32 bypass_flag, __u64 *gen)
{
	struct xr_cache_cfg *cfg;
	struct xr_cache_pcpu *pc;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&xr_cache_gen, &zero);
	if (!cfg)
		return NULL;
	/* The generation once, before the flags and the lease: user space
	 * writes it after them, so flags read after a new generation are
	 * the new flags (x86 keeps loads and stores in order). */
	*gen = *(volatile __u64 *)&cfg->gen;
	if (!*gen)
		return NULL;
	asm volatile("" ::: "memory");
	pc = bpf_map_lookup_elem(&xr_cache_stats, &zero);
	if (!pc)
		return NULL;
	if (pc->bypass_left) {
		pc->bypass_left--;
		pc->bypass++;
		return NULL;
	}
	if ((*(volatile __u32 *)&cfg->flags & bypass_flag) ||
	    bpf_ktime_get_coarse_ns() > *(volatile __u64 *)&cfg->lease_ns) {
		pc->bypass++;
		return NULL;
	}
	return pc;
}

/* The front cache (IPv4 only): one direct-mapped slot per hash of ingress
 * and destination. Returns 1 with nh filled when the slot holds this key
 * under this generation and allows this length. *slot is the key's slot
 * either way (NULL if the map is missing), for the LRU level to refill. */
static __always_inline int l0_lookup(struct xr_nh_key4 *k4, __u64 gen, __u32 tot_len,
				     struct xr_nh *nh, struct xr_l0_slot **slot)
{
	__u32 zero = 0;
	struct xr_l0 *l0 = bpf_map_lookup_elem(&xr_nh_l0, &zero);
	struct xr_l0_slot *s;
	__u32 i;

	if (!l0)
		return 0;
	i = ((k4->dst ^ k4->ifindex * XR_HASH_C1) * XR_HASH_GOLDEN) >> (32 - XR_L0_SLOT_BITS);
	s = &l0->slot[i & (XR_L0_SLOTS - 1)];
	*slot = s;
	if (s->gen != gen || s->dst != k4->dst || s->ingress != k4->ifindex || tot_len > s->ok_len)
		return 0;
	nh->ifindex = s->ifindex;
	nh->macs[0] = s->macs[0];
	nh->macs[1] = s->macs[1];
	nh->macs[2] = s->macs[2];
	/* Only this CPU writes the slot, generation last; a run that
	 * interrupted the write (a preempted BPF_PROG_RUN) left it 0. */
	asm volatile("" ::: "memory");
	return s->gen == gen;
}

/* Copies an LRU entry that hit (and its ok_len) to the key's front-cache
 * slot, the generation last. */
static __always_inline void l0_fill(struct xr_l0_slot *s, struct xr_nh_key4 *k4,
				    struct xr_nh_entry *e, struct xr_nh *nh, __u64 gen)
{
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

/* Whether this CPU's copy e was written for the key (ingress, d). IPv4
 * compares one address word (the map holds IPv4 keys only). */
static __always_inline int entry_key_ok(struct xr_nh_entry *e, __u32 ingress, __u8 family,
					struct xr_dst *d)
{
	if (e->key_ingress != ingress || e->key_dst[0] != d->w[0])
		return 0;
	if (family == AF_INET)
		return 1;
	return e->key_dst[1] == d->w[1] && e->key_dst[2] == d->w[2] && e->key_dst[3] == d->w[3];
}

/* The LRU level. Returns 1 with nh filled when this CPU's copy of the entry
 * was written for this key, holds under this generation and allows this
 * length. *entry is this CPU's copy either way (NULL when the key is not
 * cached), *key_ok whether it was written for this key. */
static __always_inline int lru_lookup(void *map, void *k, __u32 ingress, __u8 family,
				      struct xr_dst *d, __u64 gen, __u32 tot_len,
				      struct xr_nh *nh, struct xr_nh_entry **entry, int *key_ok)
{
	struct xr_nh_entry *e = bpf_map_lookup_elem(map, k);

	*entry = e;
	*key_ok = 0;
	if (!e)
		return 0;
	/* An element another CPU evicted and reused while this CPU was
	 * refreshing its copy through an old pointer holds a next hop for
	 * another key: the key it was written for says so. */
	*key_ok = entry_key_ok(e, ingress, family, d);
	if (!*key_ok || e->gen != gen || tot_len > e->ok_len)
		return 0;
	nh->ifindex = e->ifindex;
	__builtin_memcpy(nh->macs, e->macs, sizeof(nh->macs));
	asm volatile("" ::: "memory");
	/* An LRU element can be evicted and reused by another CPU while we
	 * read it; the reuse zeroes this CPU's copy. Only zeroes can be torn
	 * in, so a copy whose generation still holds afterwards and with no
	 * zero word is the entry. (A next hop whose MAC words are zero is
	 * simply never served from the cache.) */
	return e->gen == gen && nh->ifindex && nh->macs[0] && nh->macs[1] && nh->macs[2];
}

/* Looks the destination up in the next-hop cache: the front cache (when k4
 * is given), then the LRU map. Returns 1 on a hit (nh filled), 0 otherwise;
 * after a miss, c tells cache_store what to do after the full lookup (c->pc
 * stays NULL when the cache was not consulted). */
static __always_inline int cache_lookup(struct cache_ctx *c, void *map, void *k, __u32 ingress,
					__u8 family, struct xr_dst *d, __u32 tot_len,
					__u32 bypass_flag, struct xr_nh *nh, struct xr_nh_key4 *k4)
{
	struct xr_l0_slot *s = NULL;
	struct xr_cache_pcpu *pc;
	struct xr_nh_entry *e;
	__u64 gen;

	c->pc = NULL;
	c->e = NULL;
	c->key_ok = 0;
	pc = cache_begin(bypass_flag, &gen);
	if (!pc)
		return 0;
	pc->win_lookups++;
	if (k4 && l0_lookup(k4, gen, tot_len, nh, &s))
		return cache_hit(pc);
	if (lru_lookup(map, k, ingress, family, d, gen, tot_len, nh, &e, &c->key_ok)) {
		if (s)
			l0_fill(s, k4, e, nh, gen);
		return cache_hit(pc);
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
	__u32 h = ingress * XR_HASH_GOLDEN;
	__u32 slot, tag, *seen;

	/* Fold the words, then murmur3's finaliser: the address bits that
	 * vary most sit in the high half of IPv4's word. */
	h = (h ^ d->w[0]) * XR_HASH_C1;
	h = (h ^ d->w[1]) * XR_HASH_C2;
	h = (h ^ d->w[2]) * XR_HASH_C1;
	h = (h ^ d->w[3] ^ family) * XR_HASH_C2;
	h ^= h >> 16;
	h *= XR_HASH_C1;
	h ^= h >> 13;
	h *= XR_HASH_C2;
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
	if (e && c->key_ok && e->gen == c->gen && e->ifindex == nh->ifindex &&
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
		/* Stale, another next hop, or written for another key: refresh
		 * this CPU's copy in place, the key first and the generation
		 * last. If another CPU reuses the element for another key
		 * meanwhile, its zeroing leaves either a generation of 0 or a
		 * key that is not the new owner's, so no hit. */
		e->gen = 0;
		asm volatile("" ::: "memory");
		e->key_ingress = ingress;
		e->key_dst[0] = d->w[0];
		e->key_dst[1] = d->w[1];
		e->key_dst[2] = d->w[2];
		e->key_dst[3] = d->w[3];
		e->ifindex = nh->ifindex;
		e->ok_len = tot_len;
		__builtin_memcpy(e->macs, nh->macs, sizeof(e->macs));
		asm volatile("" ::: "memory");
		e->gen = c->gen;
		return;
	}
	struct xr_nh_entry v = {.gen = c->gen, .ifindex = nh->ifindex, .ok_len = tot_len,
				.key_ingress = ingress,
				.key_dst = {d->w[0], d->w[1], d->w[2], d->w[3]}};

	__builtin_memcpy(v.macs, nh->macs, sizeof(v.macs));
	bpf_map_update_elem(map, k, &v, BPF_ANY);
}

#endif
