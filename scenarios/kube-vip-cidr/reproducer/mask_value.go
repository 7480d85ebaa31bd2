package main

import (
	"net"
	"strconv"
	"strings"
)

// familyMaskBits is how kube-vip from v0.8.5 (PR #961) reads vip_cidr for
// one VIP: "v4,v6", or a single value that serves both families. It returns
// the value chosen for the VIP's family and that family's address size;
// ok is false when the value is not a number.
func familyMaskBits(ip net.IP, vipCIDR string) (bits, size int, ok bool) {
	size = 32
	if ip.To4() == nil {
		size = 128
	}
	parts := strings.Split(vipCIDR, ",")
	chosen := parts[0]
	if size == 128 && len(parts) > 1 {
		chosen = parts[1]
	}
	bits, err := strconv.Atoi(strings.TrimSpace(chosen))
	return bits, size, err == nil
}
