// SPDX-License-Identifier: GPL-2.0
/* Test and benchmark sink: counts the IP frames that reach an interface and
 * how many of them arrived with the expected TTL / hop limit (that is, were
 * forwarded exactly once). Attached to the far side of a veth, it also makes
 * the veth accept frames redirected into its peer. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

enum sink_counter {
	SINK_IP = 0,      /* IPv4 and IPv6 frames seen */
	SINK_TTL_OK,      /* ... whose TTL / hop limit equals expect_ttl */
	SINK_BYTES,       /* bytes of the IP frames seen */
	SINK_MAX,
};

/* Set by the loader: the TTL a forwarded frame should carry, and what to do
 * with frames (XDP_PASS for functional tests, XDP_DROP for benchmarks). */
volatile const __u8 expect_ttl = 63;
volatile const __u32 verdict = XDP_PASS;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SINK_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sink_stats SEC(".maps");

static __always_inline void bump(__u32 key, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&sink_stats, &key);

	if (v)
		*v += by;
}

SEC("xdp")
int xrouter_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 ttl;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		ttl = iph->ttl;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return XDP_PASS;
		ttl = ip6h->hop_limit;
	} else {
		return XDP_PASS;
	}
	bump(SINK_IP, 1);
	bump(SINK_BYTES, data_end - data);
	if (ttl == expect_ttl)
		bump(SINK_TTL_OK, 1);
	return verdict;
}
