/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the fast path, in one place: the ports, the local addresses,
 * the outcome counters and the next-hop cache. Layouts are in xrouter.h;
 * internal/dataplane reaches the maps by these names. */
#ifndef XROUTER_MAPS_H
#define XROUTER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xrouter.h"

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

/* Route MTUs: prefixes of kernel routes (any table) with an mtu metric ->
 * the smallest mtu among that prefix and every covering one (so the value
 * found for a destination bounds whatever route the kernel picks). Kernel
 * forwarding honours the metric; bpf_fib_lookup only when it is locked.
 * Not pinned: user space fills them at load, before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XR_RMTU_MAX);
	__type(key, struct xr_lpm4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} xr_rmtu4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XR_RMTU_MAX);
	__type(key, struct xr_lpm6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} xr_rmtu6 SEC(".maps");

/* The namespace-wide forwarding settings (one struct xr_fib_cfg). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_fib_cfg);
} xr_fib SEC(".maps");

/* Admission filter: a destination is inserted on its second sighting; a
 * slot holds a tag of the last destination hashed to it. Shared by the
 * CPUs; a lost race only delays or hastens one insertion. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XR_SEEN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xr_cache_seen SEC(".maps");

/* Next hops the fast path used (see struct xr_hop_table), per CPU, and the
 * epoch user space sets (one word, 0: off). Not pinned: a new program starts
 * a new table and the daemon sets the epoch at start. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xr_hop_table);
} xr_hops_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xr_hop_epoch SEC(".maps");

/* FlowSpec classifier (flowspec.h). Not pinned: the daemon installs its
 * rules into a new program's maps. Two banks each; the live one is
 * XR_NF_FS_BANK in xr_cache_gen's nf word. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * XR_FS_PREFIXES);
	__type(key, struct xr_fs_key);
	__type(value, struct xr_fs_list);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} xr_fs_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct xr_fs_filter);
} xr_fs_filters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * XR_FS_DST_SLOTS);
	__type(key, __u32);
	__type(value, struct xr_fs_dst);
} xr_fs_dsts SEC(".maps");

/* Rule slots (bank * XR_FS_RULES + i) with their summaries, list after
 * list. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XR_FS_CANDS);
	__type(key, __u32);
	__type(value, struct xr_fs_cand);
} xr_fs_cands SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XR_FS_RULES);
	__type(key, __u32);
	__type(value, struct xr_fs_rule);
} xr_fs_rules SEC(".maps");

/* Per rule id (not slot): packets and bytes matched, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XR_FS_RULES);
	__type(key, __u32);
	__type(value, struct xr_counter);
} xr_fs_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XR_FS_RULES);
	__type(key, __u32);
	__type(value, struct xr_fs_bucket);
} xr_fs_buckets SEC(".maps");

#endif
