/* Calico 3.26's way: a legacy map definition in SEC("maps"). The object
 * still carries BTF (-g), but a loader may ignore BTF the kernel refuses. */
#include "prefilter.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") calico_prefilter_v4 = {
	.type = BPF_MAP_TYPE_LPM_TRIE,
	.key_size = sizeof(struct cidr_key),
	.value_size = sizeof(__u32),
	.max_entries = 65535,
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("xdp")
int calico_prefilter(struct xdp_md *ctx)
{
	return prefilter(ctx, &calico_prefilter_v4);
}

char _license[] SEC("license") = "GPL";
