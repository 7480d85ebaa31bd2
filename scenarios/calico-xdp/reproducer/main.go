// Command reproducer follows Felix's XDP prefilter path: load the release's
// filter object the way the release's bpftool/libbpf does (loader_*.go, by
// build tag: v5.3 hands the kernel the BTF as the object carries it and needs
// it for BTF-defined maps; v7.4 sanitises it for the kernel and treats it as
// optional), create the blocked-CIDR LPM trie, load the XDP program with a
// verifier log, and attach it to a veth in native or generic mode.
//
// Calico 3.27.3 moved the prefilter's map to a BTF-defined map
// (projectcalico/calico#8610); on 5.4 kernels its BTF is refused (a global
// function's linkage is newer than 5.4's BTF) and the object cannot load
// (projectcalico/calico#8856); v3.27.4 ships bpftool v7.4 (calico#8880),
// whose libbpf sanitises the BTF. With XDP off (FelixConfiguration
// xdpEnabled: false) Felix never loads it.
package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

const (
	sysBPF       = 321
	cmdMapCreate = 0
	cmdProgLoad  = 5
	cmdBTFLoad   = 18
	progTypeXDP  = 6
	pseudoMapFD  = 1
)

func main() {
	object := flag.String("object", "", "the release's filter object")
	mode := flag.String("attach", "native", "native | generic")
	flag.Parse()
	if os.Getenv("CALICO_XDP_ENABLED") == "false" {
		fmt.Println("XDP disabled (FelixConfiguration xdpEnabled: false): prefilter not loaded; iptables handles the blocked CIDRs")
		return
	}
	// As bpftool does: before Linux 5.11 maps are charged to RLIMIT_MEMLOCK.
	unlimited := syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)}
	if err := syscall.Setrlimit(8 /* RLIMIT_MEMLOCK */, &unlimited); err != nil {
		fmt.Fprintf(os.Stderr, "raising RLIMIT_MEMLOCK: %v\n", err)
	}
	prog, btfNote, err := load(*object)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to load BPF program (%s): %v\n", *object, err)
		os.Exit(1)
	}
	fmt.Printf("loaded prefilter with %s (%s)\n", loaderName, btfNote)
	if err := attach(prog, *mode); err != nil {
		fmt.Fprintf(os.Stderr, "failed to attach XDP program in %s mode: %v\n", *mode, err)
		os.Exit(1)
	}
	fmt.Printf("XDP prefilter attached in %s mode\n", *mode)
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	fd, _, errno := syscall.Syscall(sysBPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func closeFD(fd int) { syscall.Close(fd) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// logText is the kernel log's last line: where the kernel says what it refused.
func logText(buf []byte) string {
	text := strings.TrimSpace(string(bytes.TrimRight(buf, "\x00")))
	lines := strings.Split(text, "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func load(path string) (int, string, error) {
	file, err := elf.Open(path)
	if err != nil {
		return -1, "", err
	}
	defer file.Close()
	symbols, err := file.Symbols()
	if err != nil {
		return -1, "", err
	}
	sectionSize := map[string]uint32{}
	for _, s := range file.Sections {
		sectionSize[s.Name] = uint32(s.Size)
	}
	symbolValue := map[string]uint32{}
	for _, s := range symbols {
		symbolValue[s.Name] = uint32(s.Value)
	}

	// BTF: DATASECs finalised, then sanitised as far as the loader does.
	btfFD := -1
	var btf *btfObject
	note := "object has no BTF"
	if section := file.Section(".BTF"); section != nil {
		raw, err := section.Data()
		if err != nil {
			return -1, "", err
		}
		if btf, err = parseBTF(raw); err != nil {
			return -1, "", err
		}
		btf.finalizeDatasecs(sectionSize, symbolValue)
		sanitized := sanitizeBTF(btf)
		logBuf := make([]byte, 64*1024)
		attr := struct {
			btf                  uint64
			logBuf               uint64
			size, logSize, level uint32
		}{uint64(uintptr(unsafe.Pointer(&btf.raw[0]))), uint64(uintptr(unsafe.Pointer(&logBuf[0]))), uint32(len(btf.raw)), uint32(len(logBuf)), 1}
		fd, err := bpf(cmdBTFLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		switch {
		case err == nil:
			btfFD, note = fd, "BTF loaded"
		case file.Section(".maps") != nil && !btfOptionalForBTFMaps:
			return -1, "", fmt.Errorf("Error loading .BTF into kernel: %v: %s", err, logText(logBuf))
		default:
			note = fmt.Sprintf("kernel refused the BTF (%v: %s); optional, ignored", err, logText(logBuf))
		}
		for _, s := range sanitized {
			note += "; " + s
		}
	}

	// Maps: legacy SEC("maps") structs, or BTF-defined SEC(".maps").
	var defs []mapDef
	if section := file.Section("maps"); section != nil {
		data, err := section.Data()
		if err != nil {
			return -1, "", err
		}
		for _, s := range symbols {
			if int(s.Section) < len(file.Sections) && file.Sections[s.Section] == section {
				at := data[s.Value:]
				defs = append(defs, mapDef{
					name: s.Name, mapType: binary.LittleEndian.Uint32(at), keySize: binary.LittleEndian.Uint32(at[4:]),
					valueSize: binary.LittleEndian.Uint32(at[8:]), maxEntries: binary.LittleEndian.Uint32(at[12:]),
					flags: binary.LittleEndian.Uint32(at[16:]),
				})
			}
		}
	}
	if btf != nil && file.Section(".maps") != nil {
		btfDefs, err := btf.btfMaps()
		if err != nil {
			return -1, "", err
		}
		defs = append(defs, btfDefs...)
	}
	mapFDs := map[string]int{}
	for _, m := range defs {
		var name [16]byte
		copy(name[:15], m.name)
		attr := struct {
			mapType, keySize, valueSize, maxEntries, flags, innerFD, numaNode uint32
			name                                                              [16]byte
			ifindex, btfFD, btfKey, btfValue                                  uint32
		}{mapType: m.mapType, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: m.flags, name: name}
		if m.btfDefined && btfFD >= 0 {
			attr.btfFD, attr.btfKey, attr.btfValue = uint32(btfFD), m.btfKey, m.btfValue
		}
		fd, err := bpf(cmdMapCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		if err != nil {
			return -1, "", fmt.Errorf("creating map %s: %v", m.name, err)
		}
		mapFDs[m.name] = fd
	}

	// The program, with its map references relocated to the map fds.
	section := file.Section("xdp")
	if section == nil {
		return -1, "", fmt.Errorf("no xdp section")
	}
	insns, err := section.Data()
	if err != nil {
		return -1, "", err
	}
	if rel := file.Section(".relxdp"); rel != nil {
		data, err := rel.Data()
		if err != nil {
			return -1, "", err
		}
		for i := 0; i+16 <= len(data); i += 16 {
			offset := binary.LittleEndian.Uint64(data[i:])
			symbol := symbols[binary.LittleEndian.Uint64(data[i+8:])>>32-1]
			fd, ok := mapFDs[symbol.Name]
			if !ok {
				return -1, "", fmt.Errorf("relocation against unknown map %s", symbol.Name)
			}
			insns[offset+1] = insns[offset+1]&0x0f | pseudoMapFD<<4
			binary.LittleEndian.PutUint32(insns[offset+4:], uint32(fd))
		}
	}
	license := cstr("GPL")
	logBuf := make([]byte, 256*1024)
	var progName [16]byte
	copy(progName[:], "calico_prefilte")
	attr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		logLevel, logSize uint32
		logBuf            uint64
		kernVersion       uint32
		progFlags         uint32
		name              [16]byte
	}{progType: progTypeXDP, insnCnt: uint32(len(insns) / 8), insns: uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license: uint64(uintptr(unsafe.Pointer(&license[0]))), logLevel: 1, logSize: uint32(len(logBuf)),
		logBuf: uint64(uintptr(unsafe.Pointer(&logBuf[0]))), name: progName}
	fd, err := bpf(cmdProgLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, "", fmt.Errorf("verifier rejected calico_prefilter: %v: %s", err, logText(logBuf))
	}
	return fd, note, nil
}

func attach(prog int, mode string) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "cali-xdp0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "cali-xdp1"}); err != nil {
		return fmt.Errorf("creating a veth: %w", err)
	}
	link, err := netlink.LinkByName("cali-xdp0")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return err
	}
	flags := nl.XDP_FLAGS_DRV_MODE
	if mode == "generic" {
		flags = nl.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(link, prog, flags); err != nil {
		return err
	}
	link, err = netlink.LinkByName("cali-xdp0")
	if err != nil {
		return err
	}
	if xdp := link.Attrs().Xdp; xdp == nil || !xdp.Attached {
		return fmt.Errorf("the kernel reports no XDP program on cali-xdp0")
	}
	return nil
}
