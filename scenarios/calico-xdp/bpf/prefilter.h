/* The body of Calico's XDP prefilter (felix/bpf-gpl/xdp/filter.c): drop
 * IPv4 packets whose source is in the blocked-CIDR LPM trie, pass the rest.
 * The two releases differ only in how the map is declared. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct cidr_key {
	__u32 prefixlen;
	__u32 addr;
};

static __always_inline int prefilter(struct xdp_md *ctx, void *blocked)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct cidr_key key = { .prefixlen = 32, .addr = ip->saddr };
	if (bpf_map_lookup_elem(blocked, &key))
		return XDP_DROP;
	return XDP_PASS;
}
