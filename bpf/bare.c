// SPDX-License-Identifier: GPL-2.0
/* Benchmark reference points for the router's ingress interface.
 *
 * bare_redirect: the least an XDP forwarder can do — no parsing, no lookup,
 * no TTL: rewrite both MAC addresses to fixed values and redirect through a
 * devmap to one fixed egress. The upper bound for any XDP forwarder on this
 * harness.
 *
 * bare_drop: count and drop. The ceiling of the harness itself (generator
 * plus one veth hop), counted at the router's ingress.
 *
 * Both count the frames they see per CPU. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "GPL";

/* Set by the loader: the MACs a redirected frame leaves with. */
volatile const __u8 dmac[ETH_ALEN];
volatile const __u8 smac[ETH_ALEN];

/* Key 0: the egress ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bare_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bare_seen SEC(".maps");

static __always_inline void seen(void)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&bare_seen, &key);

	if (v)
		(*v)++;
}

SEC("xdp")
int bare_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	seen();
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, (const void *)dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, (const void *)smac, ETH_ALEN);
	return bpf_redirect_map(&bare_tx, 0, XDP_DROP);
}

SEC("xdp")
int bare_drop(struct xdp_md *ctx)
{
	seen();
	return XDP_DROP;
}
