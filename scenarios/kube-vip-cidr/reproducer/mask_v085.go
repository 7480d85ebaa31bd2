//go:build kubevip_v085

package main

import "net"

// vipMask as in kube-vip v0.8.5 to v0.8.9: the value is unchecked against
// the family's size, and net.CIDRMask returns nil when the bits exceed it.
func vipMask(ip net.IP, vipCIDR string) (net.IPMask, error) {
	bits, size, ok := familyMaskBits(ip, vipCIDR)
	if !ok {
		bits = size
	}
	return net.CIDRMask(bits, size), nil
}
