// Command reproducer follows kube-vip's address-programming path for a
// LoadBalancer VIP in dual-stack mode: take the configured vip_cidr, build
// the VIP's netlink.Addr with that mask, and program it on the interface with
// vishvananda/netlink's AddrReplace, as kube-vip's pkg/vip does.
//
// The mask handling differs by release (mask_*.go, chosen by build tag):
// from v0.8.5 a single vip_cidr value is applied to both address families,
// so vip_cidr "128" asks net.CIDRMask(128, 32) for an IPv4 VIP, which is nil
// (kube-vip#1052); netlink then indexes the empty mask while computing the
// IPv4 broadcast address and panics. v0.8.10 (kube-vip#1072) refuses the
// mask with an error, logs "failed to set mask" and still panics.
//
// In a Kubernetes DaemonSet it runs as kube-vip does: -existing programs
// the pod's own interface (kube-vip's vip_interface) instead of a dummy,
// and -hold keeps it running after, so a panic is a crash loop.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
)

func main() {
	iface := flag.String("interface", "kube-vip0", "dummy interface to create and program")
	vips := flag.String("vips", "10.155.30.242,fd00:4269:6943::12", "comma-separated VIPs (IPv4 LoadBalancer IP first)")
	existing := flag.Bool("existing", false, "program an existing interface instead of creating a dummy")
	hold := flag.Bool("hold", false, "keep running after programming, as the DaemonSet's kube-vip does")
	flag.Parse()
	vipCIDR := os.Getenv("vip_cidr") // kube-vip reads its configuration from the environment

	link, err := netlink.LinkByName(*iface)
	if !*existing {
		link, err = dummyLink(*iface)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not create %s: %v\n", *iface, err)
		os.Exit(1)
	}
	for _, vip := range splitList(*vips) {
		ip := net.ParseIP(vip)
		if ip == nil {
			fmt.Fprintf(os.Stderr, "bad VIP %q\n", vip)
			os.Exit(1)
		}
		mask, err := vipMask(ip, vipCIDR)
		if err != nil {
			// v0.8.10's pkg/cluster/service.go: log.Error("failed to set mask"), then panic("").
			fmt.Fprintf(os.Stderr, "level=error msg=\"failed to set mask\" error=\"%v\"\n", err)
			panic("")
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: mask}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			fmt.Fprintf(os.Stderr, "could not add ip %s: %v\n", vip, err)
			os.Exit(1)
		}
		fmt.Printf("programmed %s on %s\n", addr.IPNet, *iface)
	}
	fmt.Printf("all VIPs programmed (vip_cidr=%q)\n", vipCIDR)
	for *hold {
		time.Sleep(time.Hour)
	}
}

func dummyLink(name string) (netlink.Link, error) {
	dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(dummy); err != nil {
		return nil, err
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	return link, netlink.LinkSetUp(link)
}

func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
