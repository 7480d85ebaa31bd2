//go:build kubeovn_v1_12_17

package main

import (
	"fmt"
	"time"
)

// startOnce as kube-ovn v1.12.17's start-ovs.sh: check the kernel modules,
// wait for each daemon's socket before starting the next, and only then
// start ovn-controller.
func startOnce(workarounds []string, deadline time.Duration) (time.Duration, int, error) {
	if missing := missingModules(); len(missing) > 0 {
		return 0, 0, fmt.Errorf("required kernel modules missing: %v", missing)
	}
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
	if err := startVswitchd(); err != nil {
		return 0, 0, err
	}
	if err := waitFor("ovs-vswitchd control socket", deadline, func() bool {
		return run("ovs-vsctl", "--db=unix:"+dbSock, "--timeout=2", "show") == nil
	}); err != nil {
		return time.Since(begin), 0, err
	}
	if err := startController(); err != nil {
		return 0, 0, err
	}
	err := waitFor("br-int.mgmt connection", deadline, func() bool {
		return count(ovnLog+"/ovn-controller.log", readyLine) > 0
	})
	return time.Since(begin), count(ovnLog+"/ovn-controller.log", failLine), err
}
