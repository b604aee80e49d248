/* SPDX-License-Identifier: GPL-2.0 */
/* Shared definitions of the xrouter data plane: outcome indices, map value
 * layouts and sizes. bpf2go generates the Go side of the enums and structs
 * (internal/dataplane/gen.go lists them). */
#ifndef XROUTER_H
#define XROUTER_H

#include <linux/types.h>

/* Address families (linux/socket.h; the BPF build has no libc headers). */
#define AF_INET 2
#define AF_INET6 10

/* Multiplicative hashing: 2^32 divided by the golden ratio (Knuth), and the
 * two multipliers of murmur3's 32-bit finaliser. */
#define XR_HASH_GOLDEN 0x9e3779b1u
#define XR_HASH_C1 0x85ebca6bu
#define XR_HASH_C2 0xc2b2ae35u

/* The local-address filter has 2^XR_LOCAL4_FILTER_LOG2 bits, indexed by the
 * top bits of XR_HASH_GOLDEN times the address (internal/dataplane's
 * local4Bit computes the same). */
#define XR_LOCAL4_FILTER_LOG2 16
#define XR_LOCAL4_FILTER_BITS (1 << XR_LOCAL4_FILTER_LOG2)

/* Every packet the program sees ends in exactly one outcome. XR_FORWARDED is
 * the fast path; XR_FLOWSPEC_DROP and XR_FLOWSPEC_RATE are FlowSpec drops;
 * every other outcome is an XDP_PASS to the kernel with the reason the fast
 * path declined the packet. Append only: the numbers are part of the pinned
 * stats map's layout. bpf2go generates the values for Go; the short names
 * and the operator's help text are in internal/dataplane/outcome.go, whose
 * tests check that every value has them. */
enum xr_outcome {
	XR_FORWARDED = 0,
	XR_PASS_NOT_IP,
	XR_PASS_MALFORMED,
	XR_PASS_IP_OPTIONS,
	XR_PASS_FRAGMENT,
	XR_PASS_TTL_EXCEEDED,
	XR_PASS_L2_NOT_FOR_US,
	XR_PASS_MARTIAN,
	XR_PASS_ICMP_SPECIAL,
	XR_PASS_NOT_FWDED,
	XR_PASS_FWD_DISABLED,
	XR_PASS_BLACKHOLE,
	XR_PASS_UNREACHABLE,
	XR_PASS_PROHIBIT,
	XR_PASS_UNSUPP_LWT,
	XR_PASS_NO_NEIGH,
	XR_PASS_FRAG_NEEDED,
	XR_PASS_LOOKUP_OTHER,
	XR_PASS_NOT_IN_DEVMAP,
	XR_PASS_HAIRPIN,
	XR_PASS_INGRESS_UNKNOWN,
	XR_PASS_NETFILTER,
	XR_PASS_IPV6_DISABLED,
	XR_PASS_TC_INGRESS,
	XR_PASS_TC_EGRESS,
	XR_PASS_NO_XDP_XMIT,
	XR_PASS_ROUTE_MTU,
	XR_PASS_ECMP_HASH,
	/* Dropped by the FlowSpec classifier (flowspec.h): a traffic-rate 0
	 * rule, and a packet over its rule's traffic-rate. These two are
	 * XDP_DROP, not passes. */
	XR_FLOWSPEC_DROP,
	XR_FLOWSPEC_RATE,
	XR_OUTCOME_MAX,
};

/* Per-CPU counter of one outcome. */
struct xr_counter {
	__u64 packets;
	__u64 bytes;
};

/* What the program needs to know about an attached interface. The flags
 * carry the interface's sysctls that bpf_fib_lookup does not look at; user
 * space keeps them in step. */
struct xr_port {
	__u8 mac[6];
	__u16 flags;
};

enum xr_port_flags {
	XR_PORT_RPF_STRICT = 1,   /* rp_filter = 1 (max of all and the interface) */
	XR_PORT_RPF_LOOSE = 2,    /* rp_filter = 2 */
	XR_PORT_ACCEPT_LOCAL = 4, /* accept_local: local source addresses allowed */
	XR_PORT_NO_FWD6 = 8,      /* the kernel would not forward IPv6 (all.forwarding = 0) */
	/* rp_filter = 0, yet the kernel validates the source with a reverse
	 * lookup (fib_validate_source's full check): custom local routes or
	 * custom rules (unless accept_local), or route realms. */
	XR_PORT_SRC_FULL = 0x10,
	XR_PORT_NO_ADDR4 = 0x20,      /* no IPv4 address: loose rp_filter rejects what strict does */
	XR_PORT_NO_IPV6 = 0x40,       /* disable_ipv6: the kernel drops IPv6 in and out */
	XR_PORT_EGRESS6_CHECK = 0x80, /* some port has NO_IPV6: check the egress port */
	/* tc (internal/devmap/tc.go): filters or tcx programs on ingress; every
	 * packet arriving here goes to the kernel, which runs them. */
	XR_PORT_TC_INGRESS = 0x100,
	/* tc on egress (a qdisc the operator set, egress filters or tcx
	 * programs): the port is kept out of the devmap, so packets routed to
	 * it go to the kernel; the flag only names the reason. */
	XR_PORT_TC_EGRESS = 0x200,
	/* The device cannot transmit XDP frames (no NETDEV_XDP_ACT_NDO_XMIT):
	 * kept out of the devmap; the flag names the reason. */
	XR_PORT_NO_XDP_XMIT = 0x400,
	XR_PORT_PRESENT = 0x8000, /* set in every xr_port_tab entry in use */
};

/* Bitmap filter in front of xr_local4: bit xr_local4_bit(addr) is set for
 * every address in xr_local4 (a clear bit means "not local", exactly). */
struct xr_local4_filter {
	__u64 words[XR_LOCAL4_FILTER_BITS / 64];
};

/* Next-hop cache (see docs/architecture.md, "Next-hop cache"). */

/* The one entry of the xr_cache_gen map, written by user space only. Entries of
 * another generation are misses; generation 0 turns the cache off. Past
 * lease_ns (CLOCK_MONOTONIC_COARSE) the cache is bypassed: a daemon that
 * died can no longer bump, so its cache must not outlive it. */
struct xr_cache_cfg {
	__u64 gen;
	__u64 bumps;    /* how often user space bumped (for status) */
	__u64 lease_ns; /* bypass after this time */
	__u32 flags;    /* enum xr_cache_flags */
	/* enum xr_nf_flags: not the cache's, but read by every packet all the
	 * same (an inlined array lookup). Written by its own word-sized store,
	 * apart from the cache's fields. */
	__u32 nf;
};

enum xr_cache_flags {
	XR_CACHE_BYPASS4 = 1, /* IPv4 lookups depend on more than the destination */
	XR_CACHE_BYPASS6 = 2, /* IPv6 lookups depend on more than the destination */
};

/* Netfilter rules the fast path would skip (forward, prerouting or
 * postrouting hooks, netdev hooks): while set, every well-formed packet of
 * the family goes to the kernel (XR_PASS_NETFILTER). internal/netfilter
 * decides, dataplane.netfilter says whether to respect it. */
enum xr_nf_flags {
	XR_NF_PASS4 = 1,
	XR_NF_PASS6 = 2,
	XR_NF_BYPASS = 4, /* for status only: the daemon runs with dataplane.netfilter: bypass */
	/* Not netfilter's: the FlowSpec classifier (flowspec.h) shares the
	 * word so that a packet reads one value for both. FS4/FS6: rules of
	 * the family are installed; BANK: which half of the rule maps is
	 * live. internal/dataplane writes the word in one store. */
	XR_NF_FS4 = 0x10,
	XR_NF_FS6 = 0x20,
	XR_NF_FS_BANK = 0x40,
};

/* IPv4 entries have their own map with this shorter key (a cheaper hash
 * and compare per lookup). */
struct xr_nh_key4 {
	__u32 ifindex; /* ingress */
	__be32 dst;
};

struct xr_nh_key {
	__u32 ifindex; /* ingress */
	__u8 family;
	__u8 pad[3];
	__u8 dst[16];
};

/* One CPU's copy of a cached next hop. macs is the Ethernet header's first
 * 12 bytes (destination, then source), so the rewrite is three 4-byte
 * stores. ok_len is the largest IP total length bpf_fib_lookup accepted
 * for this destination: longer packets take the full lookup (MTU). */
struct xr_nh_entry {
	__u64 gen;
	__u32 ifindex; /* egress */
	__u32 ok_len;
	__u8 macs[12];
	/* The key this copy was written for, checked on every hit: another
	 * CPU may evict the element and reuse it for another key while this
	 * CPU refreshes its copy through a pointer it took before. */
	__u32 key_ingress;
	__u32 key_dst[4]; /* IPv4: the address, then zeroes */
};

/* A slot of the per-CPU front cache for IPv4 (xr_nh_l0): a copy of a
 * cache entry that hit, with its key. Only this CPU writes it. */
struct xr_l0_slot {
	__u64 gen;
	__u32 ingress;
	__be32 dst;
	__u32 ifindex; /* egress */
	__u32 ok_len;
	__u32 macs[3];
	__u32 pad;
};

#define XR_L0_SLOT_BITS 4
#define XR_L0_SLOTS (1 << XR_L0_SLOT_BITS)

struct xr_l0 {
	struct xr_l0_slot slot[XR_L0_SLOTS];
};

/* Per-CPU cache counters and the hit-ratio window (one entry). */
struct xr_cache_pcpu {
	__u64 hit;         /* forwarded from the cache */
	__u64 miss;        /* looked up in the cache, not usable */
	__u64 insert;      /* entries written (new, refreshed, or longer ok_len not counted) */
	__u64 bypass;      /* cache not consulted: policy flag, lease, low hit ratio */
	__u64 uncacheable; /* lookup succeeded (and admitted) but the destination is multipath */
	__u64 admit_skip;  /* first sighting of a destination: not inserted */
	__u64 spare[2];
	__u32 win_lookups;
	__u32 win_hits;
	__u32 bypass_left;
	__u32 pad;
};

/* What kernel forwarding does that bpf_fib_lookup does not, for the whole
 * namespace (one entry of xr_fib, written by user space only; see
 * docs/architecture.md, "Fidelity"). All zero (a program before user space
 * wrote it) is the safe side: every packet longer than 0 looks up the route
 * MTU tries, and no PMTU exception is second-guessed. */
struct xr_fib_cfg {
	__u32 rmtu_min4; /* smallest value in xr_rmtu4; packets up to it skip the trie */
	__u32 rmtu_min6; /* the same for xr_rmtu6 */
	__u32 min_pmtu;  /* net.ipv4.route.min_pmtu: locked PMTU exceptions are at or below */
	__u32 flags;     /* enum xr_fib_flags */
};

enum xr_fib_flags {
	/* The multipath hash policy is one the fast path does not reproduce
	 * (2: inner headers, 3: custom fields): destinations under a
	 * multipath prefix go to the kernel. */
	XR_FIB_ECMP_KERNEL4 = 1,
	XR_FIB_ECMP_KERNEL6 = 2,
	/* net.ipv4.ip_forward_use_pmtu = 0: kernel forwarding ignores
	 * (unlocked) PMTU exceptions, which bpf_fib_lookup applies. */
	XR_FIB_IGNORE_PMTU4 = 4,
};

struct xr_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct xr_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

#define XR_NH_CACHE_DEFAULT 65536
#define XR_SEEN_SLOTS 65536 /* admission filter, power of two */
#define XR_MPATH_MAX 65536  /* multipath prefixes per family */
#define XR_RMTU_MAX 65536   /* prefixes of routes with an mtu metric, per family */
/* Hit-ratio window: every XR_WIN lookups, if fewer than 1/XR_WIN_MIN_DIV
 * were repeats (a hit, a stale or short entry, or an admitted second
 * sighting), the cache is bypassed for the next XR_WIN_BYPASS packets. */
#define XR_WIN 512
#define XR_WIN_MIN_DIV 8
#define XR_WIN_BYPASS 16384

#define XR_MAX_PORTS 1024
/* Ingress ifindexes below this are looked up in the xr_port_tab array
 * (inlined by the verifier); larger ones in the xr_ports hash. */
#define XR_PORT_SLOTS 4096
#define XR_MAX_LOCAL4 4096

/* Next hops in use, for the daemon's neighbour confirmation (kernel
 * forwarding calls neigh_event_send on every use of a neighbour entry; XDP
 * forwarding does not, so a dead next hop would never be probed). Per CPU,
 * one direct-mapped table: a slot holds the egress, the destination MAC
 * (mac[0]: its first 4 bytes as read from the frame; mac[1]: the last 2 in
 * its low half, the address family above) and the epoch in which it was
 * last written. The program
 * writes a slot only when it holds another next hop or an older epoch, so
 * at most once per epoch per next hop; user space moves the epoch (about
 * every second) and reads the table. Epoch 0: not in use. */
#define XR_HOP_SEEN_BITS 9
#define XR_HOP_SEEN_SLOTS (1 << XR_HOP_SEEN_BITS)

struct xr_hop_seen {
	__u32 ifindex; /* egress */
	__u32 mac[2];
	__u32 epoch;
};

struct xr_hop_table {
	struct xr_hop_seen slot[XR_HOP_SEEN_SLOTS];
};

/* FlowSpec classifier (flowspec.h; docs/architecture.md, "FlowSpec
 * classifier"). The rule maps have two banks, each of XR_FS_RULES rule
 * slots and XR_FS_CANDS candidate slots; user space fills the idle bank
 * and flips XR_NF_FS_BANK. */
#define XR_FS_RULES 16384 /* rules per bank */
#define XR_FS_CANDS 262144 /* candidate list entries per bank */
#define XR_FS_PREFIXES 16384 /* destination prefixes per bank */
#define XR_FS_RANGES 4 /* value ranges per numeric component */
#define XR_FS_BITOPS 4 /* terms per bitmask component */
#define XR_FS_MAX_CANDS 16384 /* longest candidate list (the loop's bound) */

/* LPM key: bank, family, then the destination address; prefixlen counts
 * the 16 bits of bank and family too. */
struct xr_fs_key {
	__u32 prefixlen;
	__u8 bank;
	__u8 family;
	__u8 addr[16];
};

/* The candidate list of the longest rule destination prefix covering a
 * packet's destination: xr_fs_cands[start, start + n), in rule order.
 * ports: every rule of the list names a few single destination or source
 * ports (or either-port values), and dports and sports have the bit
 * (xr_fs_port_bit) of each: a packet whose destination port's bit is not
 * in dports and whose source port's bit is not in sports matches none of
 * the list's rules, and the walk is skipped. */
struct xr_fs_list {
	__u32 start;
	__u32 n;
	__u32 ports;
	__u32 pad;
	__u64 dports;
	__u64 sports;
};

/* A port's bit in xr_fs_list's port sets: internal/dataplane's fsPortBit. */
static __always_inline __u64 xr_fs_port_bit(__u16 port)
{
	return 1ull << (((__u32)port * 0x9e3779b1u) >> 26);
}

/* A candidate list entry: the rule's slot and a summary of it that rejects
 * most packets without loading the rule. A packet can match only if it
 * has every property in need_have (enum xr_fs_comp), the first word of
 * its source masked by src_mask0 is src0, its protocol is in [proto_lo,
 * proto_hi] and its destination port (0 without ports) in [dport_lo,
 * dport_hi]. exact: the rule has nothing more than that (its destination,
 * a source prefix within the first word, one protocol range, one
 * destination port range), so passing is matching. */
struct xr_fs_cand {
	__u32 slot;
	__u32 src0;
	__u32 src_mask0;
	__u16 dport_lo;
	__u16 dport_hi;
	__u16 need_have;
	__u8 proto_lo;
	__u8 proto_hi;
	__u8 exact;
	__u8 pad[3];
};

/* The destination index, one per bank and family (index bank * 2 +
 * (family == AF_INET6)), in front of the LPM trie. Each rule destination
 * prefix is hashed at its own length (nlen distinct lengths, longest
 * first): a map of the hashes (a byte each, for fewer instructions
 * than a bit) answers "no rule here" for most
 * packets no rule names, and an open-addressing table (xr_fs_dsts, the
 * hash, mixed, as home slot; at most XR_FS_PROBES slots from it)
 * gives the candidate list of the longest prefix that covers the
 * destination. all: neither is used, every packet goes to the trie (a
 * rule with no destination, or more distinct lengths than
 * XR_FS_FILTER_LENS); trie: the bitmap is used, the table is not (a prefix
 * found no slot within XR_FS_PROBES). */
#define XR_FS_FILTER_LENS 8
#define XR_FS_FILTER_BITS 65536
#define XR_FS_DST_SLOTS 65536 /* table slots per bank and family */
#define XR_FS_PROBES 16
struct xr_fs_filter {
	__u32 all;
	__u32 trie;
	__u32 nlen;
	__u32 pad;
	__u32 mask[XR_FS_FILTER_LENS][4]; /* each length's mask over the address words */
	__u8 hits[XR_FS_FILTER_BITS];
};

/* A destination table slot: a rule destination prefix (masked address
 * words, and its length's index in the filter plus one; 0: empty) and its
 * candidate list. */
struct xr_fs_dst {
	__u32 addr[4];
	__u32 len;
	struct xr_fs_list list;
	__u32 pad;
};

/* Components a rule has (need) and packet properties (have). */
enum xr_fs_comp {
	XR_FS_SRC = 1,
	XR_FS_PROTO = 2,
	XR_FS_PORT = 4,
	XR_FS_DPORT = 8,
	XR_FS_SPORT = 0x10,
	XR_FS_ICMP_TYPE = 0x20,
	XR_FS_ICMP_CODE = 0x40,
	XR_FS_TCP_FLAGS = 0x80,
	XR_FS_PKTLEN = 0x100,
	XR_FS_DSCP = 0x200,
	XR_FS_FRAG = 0x400,
};

enum xr_fs_action {
	XR_FS_ACT_DROP = 1, /* traffic-rate 0 */
	XR_FS_ACT_RATE = 2, /* traffic-rate > 0 */
	XR_FS_ACT_MARK = 4, /* traffic-marking */
};

/* A value in [lo, hi] of any range matches; unused ranges have lo > hi. */
struct xr_fs_num {
	__u16 lo[XR_FS_RANGES];
	__u16 hi[XR_FS_RANGES];
};

enum xr_fs_bitop_flags {
	XR_FS_BIT_USED = 1,
	XR_FS_BIT_AND = 2,
	XR_FS_BIT_NOT = 4,
	XR_FS_BIT_MATCH = 8,
};

struct xr_fs_bitop {
	__u16 value;
	__u16 flags; /* enum xr_fs_bitop_flags */
};

struct xr_fs_rule {
	__u32 id;   /* counter and bucket slot, stable while the rule stays */
	__u32 need; /* enum xr_fs_comp */
	__u32 src[4];
	__u32 src_mask[4];
	__u8 action; /* enum xr_fs_action */
	__u8 dscp;   /* the new DSCP for XR_FS_ACT_MARK */
	__u8 pad[6];
	__u64 ns_per_byte; /* XR_FS_ACT_RATE: 2^16 * 1e9 / bytes per second */
	__u64 burst_ns;    /* the bucket's depth in time */
	struct xr_fs_num proto, port, dport, sport, icmp_type, icmp_code, pktlen, dscp_m;
	struct xr_fs_bitop tcp_flags[XR_FS_BITOPS];
	struct xr_fs_bitop frag[XR_FS_BITOPS];
};

/* A rate-limited rule's bucket (GCRA: the time the bucket is next empty),
 * shared by the CPUs under the lock. */
struct xr_fs_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tat;
	__u64 over; /* packets over the rate (for user space) */
};

#endif
