//go:build !calico_bpftool74

package main

// The loader Calico shipped up to v3.27.3 / v3.28.0: bpftool v5.3 and the
// libbpf it embeds. It hands the kernel the object's BTF as the object
// carries it (no sanitising for older kernels), and a BTF-defined map cannot
// be created when that BTF is refused.
const loaderName = "bpftool v5.3"

// btfOptionalForBTFMaps: whether a refused BTF still lets BTF-defined maps
// be created (without type ids).
const btfOptionalForBTFMaps = false

// sanitizeBTF rewrites what the kernel cannot take; this loader does not.
func sanitizeBTF(*btfObject) []string { return nil }
