//go:build kubevip_v0810

package main

import (
	"fmt"
	"net"
)

// vipMask as in kube-vip v0.8.10 (PR #1072): the value is chosen per family
// as before, but one that does not fit the family is an error instead of a
// nil mask. The caller (pkg/cluster/service.go) logs the error and panics.
func vipMask(ip net.IP, vipCIDR string) (net.IPMask, error) {
	bits, size, ok := familyMaskBits(ip, vipCIDR)
	if !ok {
		return net.CIDRMask(size, size), nil
	}
	if bits < 0 || bits > size {
		return nil, fmt.Errorf("mask /%d does not fit a %d-bit address %s", bits, size, ip)
	}
	return net.CIDRMask(bits, size), nil
}
