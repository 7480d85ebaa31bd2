//go:build kubevip_v0810

package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// vipMask as in kube-vip v0.8.10 (PR #1072): the value is chosen per family
// as before, but one that does not fit the family is an error instead of a
// nil mask. The caller (pkg/cluster/service.go) logs the error and panics.
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
		return net.CIDRMask(size, size), nil
	}
	if bits < 0 || bits > size {
		return nil, fmt.Errorf("mask /%d does not fit a %d-bit address %s", bits, size, ip)
	}
	return net.CIDRMask(bits, size), nil
}
