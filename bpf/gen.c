// SPDX-License-Identifier: GPL-2.0
/* Benchmark traffic generator. Run with BPF_PROG_RUN in live-frames mode
 * (BPF_F_TEST_XDP_LIVE_FRAMES) and an ingress_ifindex in the source
 * namespace: every run writes a complete Ethernet/IP/UDP header into the
 * frame and returns XDP_TX, which sends the frame out of that veth to the
 * router. The kernel recycles frame pages without re-initialising them, so
 * nothing of the previous contents (including what the router rewrote) may
 * be relied on: every header byte is written every time.
 *
 * What varies per frame, as gen_cfg says: the destination (from gen_dsts,
 * in sequence or chosen at random), the UDP source port (nflows flows), and
 * whether the frame is a slow-path frame with TTL / hop limit 1, and (IPv4,
 * src_bits > 0) the low src_bits bits of the source address, from the PRNG:
 * spoofed sources, as in a flood. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

#define GEN_MAX_DSTS (1 << 20)

struct gen_cfg {
	__u8 dmac[6];      /* the router's ingress MAC */
	__u8 smac[6];      /* the source veth's MAC */
	__u8 src[16];      /* source address: IPv4 in the first 4 bytes */
	__u32 family;      /* 4 or 6 */
	__u32 ndst;        /* entries of gen_dsts in use, >= 1 */
	__u32 random;      /* 1: destination index from the PRNG, 0: in sequence */
	__u32 nflows;      /* UDP source ports sport_base .. sport_base+nflows-1 */
	__u32 slow_every;  /* every Nth frame has TTL 1 (0: none) */
	__u16 sport_base;
	__u16 dport;
	__u8 ttl;          /* TTL / hop limit of the other frames */
	__u8 src_bits;     /* IPv4: this many low bits of src random per frame */
	__u8 pad[2];
};

struct gen_dst {
	__u8 addr[16];     /* IPv4 in the first 4 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_MAX_DSTS);
	__type(key, __u32);
	__type(value, struct gen_dst);
} gen_dsts SEC(".maps");

enum gen_counter {
	GEN_SEQ = 0,   /* frames written (also the sequence number) */
	GEN_SLOW,      /* ... of which with TTL 1 */
	GEN_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GEN_MAX);
	__type(key, __u32);
	__type(value, __u64);
} gen_stats SEC(".maps");

/* Forces the structs into BTF so bpf2go emits Go types for them. */
const struct gen_cfg gen_cfg_unused __attribute__((unused));
const struct gen_dst gen_dst_unused __attribute__((unused));

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int xrouter_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, one = GEN_SLOW;
	struct gen_cfg *cfg;
	struct gen_dst *dst;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u64 *seqp, *slowp, seq;
	__u32 len = data_end - data, idx;
	__u8 ttl;

	cfg = bpf_map_lookup_elem(&gen_config, &zero);
	seqp = bpf_map_lookup_elem(&gen_stats, &zero);
	slowp = bpf_map_lookup_elem(&gen_stats, &one);
	if (!cfg || !seqp || !slowp || cfg->ndst == 0)
		return XDP_ABORTED;
	seq = (*seqp)++;

	if (cfg->random)
		idx = bpf_get_prandom_u32() % cfg->ndst;
	else
		idx = seq % cfg->ndst;
	dst = bpf_map_lookup_elem(&gen_dsts, &idx);
	if (!dst)
		return XDP_ABORTED;
	ttl = cfg->ttl;
	if (cfg->slow_every && seq % cfg->slow_every == 0) {
		ttl = 1;
		(*slowp)++;
	}

	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, cfg->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->smac, ETH_ALEN);

	if (cfg->family == 4) {
		struct iphdr *iph = (void *)(eth + 1);
		__u16 *w = (__u16 *)iph;
		__u32 sum = 0;

		udp = (void *)(iph + 1);
		if ((void *)(udp + 1) > data_end)
			return XDP_ABORTED;
		eth->h_proto = bpf_htons(ETH_P_IP);
		iph->version = 4;
		iph->ihl = 5;
		iph->tos = 0;
		iph->tot_len = bpf_htons(len - sizeof(*eth));
		iph->id = 0;
		iph->frag_off = bpf_htons(0x4000); /* DF */
		iph->ttl = ttl;
		iph->protocol = IPPROTO_UDP;
		iph->check = 0;
		__builtin_memcpy(&iph->saddr, cfg->src, 4);
		if (cfg->src_bits) {
			__u32 bits = cfg->src_bits < 32 ? cfg->src_bits : 32;
			__u32 mask = bits == 32 ? ~0u : (1u << bits) - 1;

			iph->saddr = bpf_htonl(bpf_ntohl(iph->saddr) | (bpf_get_prandom_u32() & mask));
		}
		__builtin_memcpy(&iph->daddr, dst->addr, 4);
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		iph->check = csum_fold(sum);
		udp->len = bpf_htons(len - sizeof(*eth) - sizeof(*iph));
		udp->check = 0; /* no checksum: allowed for UDP over IPv4 */
	} else {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		udp = (void *)(ip6h + 1);
		if ((void *)(udp + 1) > data_end)
			return XDP_ABORTED;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6h = bpf_htonl(0x60000000); /* version 6, no class or label */
		ip6h->payload_len = bpf_htons(len - sizeof(*eth) - sizeof(*ip6h));
		ip6h->nexthdr = IPPROTO_UDP;
		ip6h->hop_limit = ttl;
		__builtin_memcpy(&ip6h->saddr, cfg->src, 16);
		__builtin_memcpy(&ip6h->daddr, dst->addr, 16);
		udp->len = ip6h->payload_len;
		/* Not a valid checksum: forwarding (kernel or XDP) and the sink do
		 * not verify it, and nothing in the topology delivers these
		 * datagrams to a socket. Nonzero, since zero is invalid in IPv6. */
		udp->check = bpf_htons(0xffff);
	}
	udp->source = bpf_htons(cfg->sport_base + (__u16)(cfg->nflows ? seq % cfg->nflows : 0));
	udp->dest = bpf_htons(cfg->dport);
	return XDP_TX;
}
