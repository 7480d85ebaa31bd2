//go:build !kubeovn_v1_12_17

package main

import "time"

// startOnce as kube-ovn v1.12.0's start-ovs.sh: the databases (ovs-ctl
// waits for those), then ovs-vswitchd and ovn-controller at the same time,
// so ovn-controller may look for br-int.mgmt before the switch made it.
func startOnce(workarounds []string, deadline time.Duration) (time.Duration, int, error) {
	if err := prepare(workarounds); err != nil {
		return 0, 0, err
	}
	begin := time.Now()
	if err := startOVSDB(); err != nil {
		return 0, 0, err
	}
	if err := waitFor("ovsdb-server socket", deadline, exists(dbSock)); err != nil {
		return time.Since(begin), 0, err
	}
	if err := configure(workarounds); err != nil {
		return 0, 0, err
	}
	switchStarted := make(chan error, 1)
	go func() { switchStarted <- startVswitchd() }()
	if err := startController(); err != nil {
		return 0, 0, err
	}
	if err := <-switchStarted; err != nil {
		return 0, 0, err
	}
	err := waitFor("br-int.mgmt connection", deadline, func() bool {
		return count(ovnLog+"/ovn-controller.log", readyLine) > 0
	})
	return time.Since(begin), count(ovnLog+"/ovn-controller.log", failLine), err
}
