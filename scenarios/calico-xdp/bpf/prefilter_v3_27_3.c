/* Calico 3.27.3's way (projectcalico/calico#8610): a BTF-defined map in
 * SEC(".maps"). A loader must load the object's BTF to read the map. */
#include "prefilter.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct cidr_key);
	__type(value, __u32);
	__uint(max_entries, 65535);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} calico_prefilter_v4 SEC(".maps");

SEC("xdp")
int calico_prefilter(struct xdp_md *ctx)
{
	return prefilter(ctx, &calico_prefilter_v4);
}

char _license[] SEC("license") = "GPL";
