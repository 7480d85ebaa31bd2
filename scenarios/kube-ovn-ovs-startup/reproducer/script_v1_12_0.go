//go:build !kubeovn_v1_12_17

package main

import (
	"fmt"
	"os"
)

// requireIPTables as kube-ovn v1.12.0's start-ovs.sh: `modinfo ip_tables`
// and `modprobe ip_tables` run under `set -e`, so where the module cannot be
// found or loaded the script, and with it the ovs-ovn container, exits.
func requireIPTables() error {
	if err := loadModule("ip_tables"); err != nil {
		fmt.Fprintf(os.Stderr, "start-ovs.sh: modprobe ip_tables failed under set -e (%v): the ovs-ovn container exits\n", err)
		return fmt.Errorf("ip_tables is required by this start-ovs.sh")
	}
	return nil
}

// probeIntervals as v1.12.0: the script sets no probe intervals of its own
// and reads no environment for them; OVN's defaults apply.
func probeIntervals() []string { return nil }
