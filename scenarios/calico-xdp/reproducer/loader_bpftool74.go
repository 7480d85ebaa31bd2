//go:build calico_bpftool74

package main

import (
	"encoding/binary"
	"unsafe"
)

// The loader Calico ships from v3.27.4 / v3.28.1 (calico#8880, backports
// #8940/#8939): bpftool v7.4, whose libbpf probes what the kernel's BTF
// checker accepts and sanitises the object's BTF to match before loading
// it, and creates BTF-defined maps without BTF when the kernel refuses the
// BTF anyway ("BTF is optional, ignoring").
const loaderName = "bpftool v7.4"

const btfOptionalForBTFMaps = true

// sanitizeBTF does libbpf's bpf_object__sanitize_btf for the one feature
// filter.o needs and 5.4 lacks: BTF function linkage (Linux 5.6). Where the
// kernel refuses a global FUNC, every FUNC is made static, as libbpf does.
func sanitizeBTF(b *btfObject) []string {
	if kernelAcceptsFuncLinkage() {
		return nil
	}
	rewritten := 0
	for _, t := range b.types {
		if t.kind == kindFunc && t.vlen != 0 {
			binary.LittleEndian.PutUint32(b.raw[t.at+4:], kindFunc<<24)
			rewritten++
		}
	}
	if rewritten == 0 {
		return nil
	}
	return []string{"kernel lacks BTF function linkage: FUNC linkage made static, as libbpf does"}
}

// kernelAcceptsFuncLinkage loads the smallest BTF with a global FUNC (an
// int, a prototype returning it, a FUNC of linkage 1), as libbpf's
// probe_kern_btf_func_global does.
func kernelAcceptsFuncLinkage() bool {
	strs := []byte("\x00int\x00f\x00")
	var types []byte
	put := func(v ...uint32) {
		for _, x := range v {
			types = binary.LittleEndian.AppendUint32(types, x)
		}
	}
	put(1, kindInt<<24, 4, 32)   // [1] int: 4 bytes, 32 bits
	put(0, kindFuncProto<<24, 1) // [2] int (void)
	put(5, kindFunc<<24|1, 2)    // [3] global func f of [2]
	header := make([]byte, 24)
	binary.LittleEndian.PutUint16(header, 0xeb9f)
	header[2] = 1 // version
	binary.LittleEndian.PutUint32(header[4:], 24)
	binary.LittleEndian.PutUint32(header[8:], 0)
	binary.LittleEndian.PutUint32(header[12:], uint32(len(types)))
	binary.LittleEndian.PutUint32(header[16:], uint32(len(types)))
	binary.LittleEndian.PutUint32(header[20:], uint32(len(strs)))
	raw := append(append(header, types...), strs...)
	attr := struct {
		btf                  uint64
		logBuf               uint64
		size, logSize, level uint32
	}{btf: uint64(uintptr(unsafe.Pointer(&raw[0]))), size: uint32(len(raw))}
	fd, err := bpf(cmdBTFLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return false
	}
	closeFD(fd)
	return true
}
