//go:build kubevip_v085

package main

import (
	"net"
	"strconv"
	"strings"
)

// vipMask as in kube-vip v0.8.5 to v0.8.9: vip_cidr may be "v4,v6"; with a
// single value that value serves both families, unchecked against the
// family's size. net.CIDRMask returns nil when the bits exceed the size.
func vipMask(ip net.IP, vipCIDR string) (net.IPMask, error) {
	size := 32
	if ip.To4() == nil {
		size = 128
	}
	parts := strings.Split(vipCIDR, ",")
	chosen := parts[0]
	if size == 128 && len(parts) > 1 {
		chosen = parts[1]
	}
	bits, err := strconv.Atoi(strings.TrimSpace(chosen))
	if err != nil {
		bits = size
	}
	return net.CIDRMask(bits, size), nil
}
