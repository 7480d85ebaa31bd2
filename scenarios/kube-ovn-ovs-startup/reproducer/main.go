// Command reproducer starts Open vSwitch and OVN the way kube-ovn's ovs-ovn
// container does (start-ovs.sh: ovsdb-server, ovs-vswitchd, then
// ovn-controller against a southbound database), with Debian's real
// openvswitch-switch and ovn-host in the guest, several times over, and
// reports how long each start took until ovn-controller's OpenFlow
// connection to br-int (br-int.mgmt) was up, and how often it failed first.
//
// The start order is the same in v1.12.0 and v1.12.17 (ovs-ctl restart of
// ovsdb-server, then of ovs-vswitchd, then ovn-ctl restart_controller), and
// so are the 3.10.0-862 refusal and the "geneve needs IPv6" check on 3.10.
// What differs is in script_*.go (build tags): whether a missing ip_tables
// is fatal (kube-ovn#3281) and whether probe intervals come from the
// environment (kube-ovn#3145). Variants apply the seed's workarounds.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const (
	ovsRun    = "/run/openvswitch"
	ovnRun    = "/run/ovn"
	ovsLog    = "/var/log/openvswitch"
	ovnLog    = "/var/log/ovn"
	dbSock    = ovsRun + "/db.sock"
	sbSock    = ovnRun + "/ovnsb_db.sock"
	readyLine = "br-int.mgmt: connected"
	failLine  = "br-int.mgmt: connection failed"
)

func main() {
	starts := flag.Int("starts", 3, "how many times to start the stack")
	deadline := flag.Duration("deadline", 90*time.Second, "a start slower than this counts as failed")
	flag.Parse()
	workarounds := strings.Split(os.Getenv("KUBE_OVN_WORKAROUNDS"), ",")

	missing := missingModules()
	if len(missing) > 0 {
		fmt.Printf("preflight: kernel modules not loaded: %s\n", strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		fmt.Println("preflight: IPv6 is off in this kernel")
	}

	if err := requireIPTables(); err != nil {
		// The script exits, and the container with it: no start at all.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	var times []time.Duration
	failures := 0
	slow := 0
	for i := 1; i <= *starts; i++ {
		stopAll()
		took, failed, err := startOnce(workarounds, *deadline)
		failures += failed
		if err != nil {
			slow++
			fmt.Printf("start %d: not ready after %s (%d br-int.mgmt connection failures): %v\n", i, took.Round(time.Millisecond), failed, err)
			continue
		}
		times = append(times, took)
		fmt.Printf("start %d: ready in %s (%d br-int.mgmt connection failures)\n", i, took.Round(time.Millisecond), failed)
	}
	stopAll()
	fmt.Printf("br-int.mgmt: connection failed %d times over %d starts\n", failures, *starts)
	if slow > 0 {
		fmt.Fprintf(os.Stderr, "ovs-ovn did not become ready in %d of %d starts (deadline %s); %s\n", slow, *starts, *deadline, tail(ovnLog+"/ovn-controller.log"))
		os.Exit(1)
	}
	sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
	fmt.Printf("ovs-ovn ready: min %s median %s max %s\n",
		times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}

// startOnce as start-ovs.sh: refuse kernels it refuses, handle ip_tables
// as the release does, then each daemon in turn, each started detached
// (the daemon returns once it serves, as ovs-ctl and ovn-ctl wait for it).
func startOnce(workarounds []string, deadline time.Duration) (time.Duration, int, error) {
	if err := kernelChecks(); err != nil {
		return 0, 0, err
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
	if err := startController(); err != nil {
		return 0, 0, err
	}
	err := waitFor("br-int.mgmt connection", deadline, func() bool {
		return count(ovnLog+"/ovn-controller.log", readyLine) > 0
	})
	return time.Since(begin), count(ovnLog+"/ovn-controller.log", failLine), err
}

// kernelChecks as both releases' start-ovs.sh: 3.10.0-862 is refused, and
// on 3.10 kernels geneve needs IPv6.
func kernelChecks() error {
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err != nil {
		return err
	}
	release := utsString(uts.Release[:])
	if strings.HasPrefix(release, "3.10.0-862") {
		return fmt.Errorf("kernel %s is not supported by start-ovs.sh (3.10.0-862 has a known OVS bug)", release)
	}
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil && strings.HasPrefix(release, "3.10.") {
		return fmt.Errorf("geneve requires IPv6 on kernel %s", release)
	}
	return nil
}

func utsString(field []int8) string {
	var b []byte
	for _, c := range field {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// loadModule: present (loaded or built in) or loaded now by modprobe.
func loadModule(name string) error {
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		return nil
	}
	return run("modprobe", name)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func waitFor(what string, within time.Duration, ok func() bool) error {
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		if ok() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not happen within %s", what, within)
}

func exists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

func count(path, line string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), line)
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 2 {
		lines = lines[len(lines)-2:]
	}
	return strings.Join(lines, " | ")
}

func missingModules() []string {
	var missing []string
	for _, module := range []string{"openvswitch", "geneve", "ip_tables"} {
		if _, err := os.Stat("/sys/module/" + module); err != nil {
			missing = append(missing, module)
		}
	}
	return missing
}

// prepare lays out the folders the daemons expect and fresh databases.
func prepare(workarounds []string) error {
	// Debian's layout (base-files): /var/run is /run. OVS and OVN are built
	// with /var/run/openvswitch and /var/run/ovn as their run directories.
	if _, err := os.Lstat("/var/run"); err != nil {
		os.MkdirAll("/var", 0o755)
		if err := os.Symlink("/run", "/var/run"); err != nil {
			return err
		}
	}
	if contains(workarounds, "symlinked-run-dir") {
		// kube-ovn's fix: OVN and OVS share one run directory, so
		// ovn-controller finds br-int.mgmt wherever each was built to look.
		if info, err := os.Lstat(ovnRun); err != nil || info.Mode()&os.ModeSymlink == 0 {
			os.RemoveAll(ovnRun)
			if err := os.MkdirAll(ovsRun, 0o755); err != nil {
				return err
			}
			if err := os.Symlink(ovsRun, ovnRun); err != nil {
				return err
			}
		}
	}
	for _, dir := range []string{ovsRun, ovnRun, ovsLog, ovnLog, "/etc/openvswitch", "/etc/ovn", "/var/lib/openvswitch"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, stale := range []string{"/etc/openvswitch/conf.db", "/etc/ovn/ovnsb_db.db"} {
		os.Remove(stale)
	}
	files, _ := filepath.Glob(ovsLog + "/*")
	more, _ := filepath.Glob(ovnLog + "/*")
	for _, f := range append(files, more...) {
		os.Remove(f)
	}
	if err := run("ovsdb-tool", "create", "/etc/openvswitch/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"); err != nil {
		return err
	}
	return run("ovsdb-tool", "create", "/etc/ovn/ovnsb_db.db", "/usr/share/ovn/ovn-sb.ovsschema")
}

func startOVSDB() error {
	if err := run("ovsdb-server", "/etc/openvswitch/conf.db", "--remote=punix:"+dbSock,
		"--pidfile="+ovsRun+"/ovsdb-server.pid", "--detach", "--log-file="+ovsLog+"/ovsdb-server.log"); err != nil {
		return err
	}
	return run("ovsdb-server", "/etc/ovn/ovnsb_db.db", "--remote=punix:"+sbSock,
		"--pidfile="+ovnRun+"/ovnsb_db.pid", "--detach", "--log-file="+ovnLog+"/ovsdb-server-sb.log")
}

func configure(workarounds []string) error {
	args := []string{"--db=unix:" + dbSock, "--no-wait", "--", "init", "--", "set", "open_vswitch", ".",
		"external_ids:system-id=kmatrix-node",
		"external_ids:ovn-remote=unix:" + sbSock,
		"external_ids:ovn-encap-type=geneve",
		"external_ids:ovn-encap-ip=127.0.0.1",
	}
	args = append(args, probeIntervals()...)
	return run("ovs-vsctl", args...)
}

func startVswitchd() error {
	// Debian installs the switch daemon outside PATH.
	return run("/usr/lib/openvswitch-switch/ovs-vswitchd", "unix:"+dbSock, "--pidfile="+ovsRun+"/ovs-vswitchd.pid",
		"--detach", "--log-file="+ovsLog+"/ovs-vswitchd.log")
}

func startController() error {
	return run("ovn-controller", "unix:"+dbSock, "--pidfile="+ovnRun+"/ovn-controller.pid",
		"--detach", "--log-file="+ovnLog+"/ovn-controller.log")
}

func stopAll() {
	for _, pid := range []string{ovnRun + "/ovn-controller.pid", ovsRun + "/ovs-vswitchd.pid", ovnRun + "/ovnsb_db.pid", ovsRun + "/ovsdb-server.pid"} {
		data, err := os.ReadFile(pid)
		if err != nil {
			continue
		}
		exec.Command("kill", strings.TrimSpace(string(data))).Run()
		var p int
		fmt.Sscan(strings.TrimSpace(string(data)), &p)
		if proc, err := os.FindProcess(p); err == nil {
			proc.Kill()
		}
		os.Remove(pid)
	}
	time.Sleep(200 * time.Millisecond)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
