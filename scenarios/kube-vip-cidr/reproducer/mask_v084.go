//go:build !kubevip_v085 && !kubevip_v0810

package main

import "net"

// vipMask as in kube-vip v0.8.4 and before: a VIP is programmed as a host
// address of its own family (/32 or /128); vip_cidr plays no part.
func vipMask(ip net.IP, _ string) (net.IPMask, error) {
	if ip.To4() != nil {
		return net.CIDRMask(32, 32), nil
	}
	return net.CIDRMask(128, 128), nil
}
