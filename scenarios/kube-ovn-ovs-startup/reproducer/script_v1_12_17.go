//go:build kubeovn_v1_12_17

package main

import (
	"fmt"
	"os"
)

// requireIPTables as start-ovs.sh from v1.12.2 (kube-ovn#3281) to v1.12.17:
// ip_tables is loaded if it can be, and its absence is no longer fatal.
func requireIPTables() error {
	if err := loadModule("ip_tables"); err != nil {
		fmt.Printf("ip_tables not available (%v): optional since v1.12.2, continuing\n", err)
	}
	return nil
}

// probeIntervals as from kube-ovn#3145: OVN_REMOTE_PROBE_INTERVAL and
// OVN_REMOTE_OPENFLOW_INTERVAL, when the DaemonSet sets them, become
// ovn-controller's southbound and OpenFlow probe intervals.
func probeIntervals() []string {
	var ids []string
	if v := os.Getenv("OVN_REMOTE_PROBE_INTERVAL"); v != "" {
		ids = append(ids, "external_ids:ovn-remote-probe-interval="+v)
	}
	if v := os.Getenv("OVN_REMOTE_OPENFLOW_INTERVAL"); v != "" {
		ids = append(ids, "external_ids:ovn-openflow-probe-interval="+v)
	}
	return ids
}
