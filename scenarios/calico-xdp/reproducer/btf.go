package main

import (
	"encoding/binary"
	"fmt"
)

// BTF kinds (include/uapi/linux/btf.h).
const (
	kindInt       = 1
	kindPtr       = 2
	kindArray     = 3
	kindStruct    = 4
	kindUnion     = 5
	kindEnum      = 6
	kindFwd       = 7
	kindTypedef   = 8
	kindVolatile  = 9
	kindConst     = 10
	kindRestrict  = 11
	kindFunc      = 12
	kindFuncProto = 13
	kindVar       = 14
	kindDatasec   = 15
	kindFloat     = 16
	kindDeclTag   = 17
	kindTypeTag   = 18
	kindEnum64    = 19
)

type btfType struct {
	name    string
	kind    uint32
	vlen    uint32
	sizeOrT uint32
	// where the record starts in the buffer (for rewriting DATASECs)
	at int
	// kind-specific data
	arrayElem, arrayN uint32
	members           []btfMember
	secinfo           []secinfo
}

type btfMember struct {
	name string
	typ  uint32
}

type secinfo struct {
	typ, offset, size uint32
	at                int
}

// btfObject is the .BTF section of an object file, parsed the way a
// loader needs it: types by id, and the raw bytes to hand the kernel.
type btfObject struct {
	raw   []byte
	types []btfType // index = type id; 0 is void
}

func parseBTF(raw []byte) (*btfObject, error) {
	if len(raw) < 24 || binary.LittleEndian.Uint16(raw) != 0xeb9f {
		return nil, fmt.Errorf("not BTF")
	}
	hdrLen := binary.LittleEndian.Uint32(raw[4:])
	typeOff := binary.LittleEndian.Uint32(raw[8:])
	typeLen := binary.LittleEndian.Uint32(raw[12:])
	strOff := binary.LittleEndian.Uint32(raw[16:])
	types := raw[hdrLen+typeOff : hdrLen+typeOff+typeLen]
	strs := raw[hdrLen+strOff:]
	str := func(off uint32) string {
		end := off
		for int(end) < len(strs) && strs[end] != 0 {
			end++
		}
		return string(strs[off:end])
	}
	u32 := func(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[i:]) }
	obj := &btfObject{raw: raw, types: []btfType{{}}}
	for i := 0; i < len(types); {
		info := u32(types, i+4)
		t := btfType{
			name:    str(u32(types, i)),
			kind:    (info >> 24) & 0x1f,
			vlen:    info & 0xffff,
			sizeOrT: u32(types, i+8),
			at:      int(hdrLen+typeOff) + i,
		}
		i += 12
		switch t.kind {
		case kindInt, kindVar, kindDeclTag:
			i += 4
		case kindArray:
			t.arrayElem, t.arrayN = u32(types, i), u32(types, i+8)
			i += 12
		case kindStruct, kindUnion:
			for m := 0; m < int(t.vlen); m++ {
				t.members = append(t.members, btfMember{name: str(u32(types, i)), typ: u32(types, i+4)})
				i += 12
			}
		case kindEnum:
			i += 8 * int(t.vlen)
		case kindEnum64:
			i += 12 * int(t.vlen)
		case kindFuncProto:
			i += 8 * int(t.vlen)
		case kindDatasec:
			for v := 0; v < int(t.vlen); v++ {
				t.secinfo = append(t.secinfo, secinfo{typ: u32(types, i), offset: u32(types, i+4), size: u32(types, i+8), at: int(hdrLen+typeOff) + i})
				i += 12
			}
		case kindPtr, kindFwd, kindTypedef, kindVolatile, kindConst, kindRestrict, kindFunc, kindFloat, kindTypeTag:
		default:
			return nil, fmt.Errorf("unknown BTF kind %d", t.kind)
		}
		obj.types = append(obj.types, t)
	}
	return obj, nil
}

// resolve skips typedefs and qualifiers.
func (b *btfObject) resolve(id uint32) uint32 {
	for {
		t := b.types[id]
		switch t.kind {
		case kindTypedef, kindVolatile, kindConst, kindRestrict, kindTypeTag:
			id = t.sizeOrT
		default:
			return id
		}
	}
}

func (b *btfObject) size(id uint32) uint32 {
	t := b.types[b.resolve(id)]
	switch t.kind {
	case kindArray:
		return t.arrayN * b.size(t.arrayElem)
	case kindPtr:
		return 8
	default:
		return t.sizeOrT
	}
}

// finalizeDatasecs does what libbpf does before loading an object's BTF:
// clang leaves DATASEC sizes and variable offsets at zero; they come from
// the ELF section sizes and symbol values.
func (b *btfObject) finalizeDatasecs(sectionSize map[string]uint32, symbolValue map[string]uint32) {
	for _, t := range b.types {
		if t.kind != kindDatasec {
			continue
		}
		binary.LittleEndian.PutUint32(b.raw[t.at+8:], sectionSize[t.name])
		for _, v := range t.secinfo {
			binary.LittleEndian.PutUint32(b.raw[v.at+4:], symbolValue[b.types[v.typ].name])
		}
	}
}

// mapDef is a map as the object defines it.
type mapDef struct {
	name                                    string
	mapType, keySize, valueSize, maxEntries uint32
	flags                                   uint32
	btfKey, btfValue                        uint32
	btfDefined                              bool
}

// btfMaps reads BTF-defined maps (SEC(".maps")): each member of the map's
// anonymous struct is a pointer whose target encodes the value (__uint) or
// the type (__type).
func (b *btfObject) btfMaps() ([]mapDef, error) {
	var maps []mapDef
	for _, t := range b.types {
		if t.kind != kindDatasec || t.name != ".maps" {
			continue
		}
		for _, v := range t.secinfo {
			variable := b.types[v.typ]
			def := b.types[b.resolve(variable.sizeOrT)]
			if def.kind != kindStruct {
				return nil, fmt.Errorf("map %s is not a struct", variable.name)
			}
			m := mapDef{name: variable.name, btfDefined: true}
			for _, member := range def.members {
				ptr := b.types[b.resolve(member.typ)]
				if ptr.kind != kindPtr {
					return nil, fmt.Errorf("map %s: member %s is not a pointer", variable.name, member.name)
				}
				target := b.resolve(ptr.sizeOrT)
				number := b.types[target].arrayN
				switch member.name {
				case "type":
					m.mapType = number
				case "max_entries":
					m.maxEntries = number
				case "map_flags":
					m.flags = number
				case "key":
					m.keySize, m.btfKey = b.size(ptr.sizeOrT), ptr.sizeOrT
				case "value":
					m.valueSize, m.btfValue = b.size(ptr.sizeOrT), ptr.sizeOrT
				}
			}
			maps = append(maps, m)
		}
	}
	return maps, nil
}
