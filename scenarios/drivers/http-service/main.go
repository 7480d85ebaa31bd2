// Command http-service drives an HTTP server the way a Kubernetes node
// meets it (shared by the scenarios whose versions are real servers:
// caddy-mptcp, ollama-mptcp): it starts the service (the command after `--`: crun running the
// version's real artifact as a container in this network namespace),
// restarts it a few times if it dies before it answers (a kubelet's
// CrashLoopBackOff), asks the kernel which protocol the service's listening
// socket really is (TCP or MPTCP, read from the service's own socket with
// pidfd_getfd), and reaches it over loopback, pod to pod over a veth pair,
// or through a DNAT'd ClusterIP as kube-proxy's nftables mode programs it.
// Exit 77: the kernel lacks what the path needs (the cell is unavailable);
// exit 3: the service kept dying (crash).
//
// Two more modes serve a Kubernetes workload: `-mode serve` is a stand-in
// server (listen as a Go server does, answer every GET, say which protocol
// the kernel gave the listener), built with a stand-in version's toolchain
// and go.mod line; `-mode get -target HOST:PORT` is a probe pod's GET.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	serverAddr  = "10.200.0.1"
	clientAddr  = "10.200.0.2"
	clusterIP   = "10.96.0.10"
	clusterPort = 8080
	restarts    = 3
)

type missingFeature struct{ what string }

func (m *missingFeature) Error() string { return m.what }

type crashLoop struct{ what string }

func (c *crashLoop) Error() string { return c.what }

func main() {
	mode := flag.String("mode", "loopback", "loopback | veth | dnat | serve | get")
	port := flag.Int("port", 80, "the port the service listens on")
	name := flag.String("name", "service", "what to call the service in messages")
	flag.StringVar(&path, "path", "/", "what to GET")
	target := flag.String("target", "", "HOST:PORT to GET (-mode get)")
	flag.Parse()
	service := flag.Args()
	var err error
	switch {
	case *mode == "serve":
		err = serveForever(*name, *port)
	case *mode == "get":
		if err = get(*target); err == nil {
			fmt.Printf("%s reachable at %s\n", *name, *target)
		}
	case len(service) == 0:
		fmt.Fprintln(os.Stderr, "usage: reproducer -mode loopback|veth|dnat -- SERVICE COMMAND...")
		os.Exit(2)
	default:
		err = drive(*mode, *port, *name, service)
	}
	var missing *missingFeature
	var crash *crashLoop
	switch {
	case errors.As(err, &missing):
		fmt.Fprintf(os.Stderr, "kernel lacks what this path needs: %s\n", missing.what)
		os.Exit(77)
	case errors.As(err, &crash):
		fmt.Fprintln(os.Stderr, crash.what)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func drive(mode string, port int, name string, service []string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	serverNS, err := netns.Get()
	if err != nil {
		return err
	}
	var clientNS netns.NsHandle
	if mode != "loopback" {
		clientNS, err = netns.New() // also moves this thread into it
		if err != nil {
			return &missingFeature{"network namespaces: " + err.Error()}
		}
		defer clientNS.Close()
		if err := netns.Set(serverNS); err != nil {
			return err
		}
		if err := wire(clientNS); err != nil {
			return err
		}
		if mode == "dnat" {
			if err := clusterIPRule(clientNS, port); err != nil {
				return err
			}
		}
	}
	svc, err := start(service, port)
	if err != nil {
		return err
	}
	defer svc.stop(service)
	proto := svc.listenerProtocol(port)
	target := fmt.Sprintf("127.0.0.1:%d", port)
	how := "over loopback"
	switch mode {
	case "veth":
		target, how = fmt.Sprintf("%s:%d", serverAddr, port), "pod to pod over veth"
	case "dnat":
		target, how = fmt.Sprintf("%s:%d", clusterIP, clusterPort), "through a DNAT'd ClusterIP"
	}
	if mode != "loopback" {
		if err := netns.Set(clientNS); err != nil {
			return err
		}
	}
	err = get(target)
	netns.Set(serverNS)
	if err != nil {
		return fmt.Errorf("%w (service log: %s)", err, svc.tail())
	}
	fmt.Printf("%s reachable %s (listener protocol %s)\n", name, how, proto)
	return nil
}

// service is the running container and what it printed.
type service struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the service and waits until it accepts on port; a service that
// exits first is started again, up to `restarts` times, like a kubelet.
func start(argv []string, port int) (*service, error) {
	var log string
attempts:
	for attempt := 0; attempt <= restarts; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second) // back off
		}
		cleanup(argv)
		out := &lockedBuffer{}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// Wait must not hang on output pipes a surviving process still holds.
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("cannot start the service: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				log = fmt.Sprintf("%v; last lines: %s", err, lastLines(out.String(), 5))
				if file := pidFile(argv); file != "" {
					if _, statErr := os.Stat(file); statErr != nil {
						// The runtime never started the container: not the service's doing.
						if missing := procFileMissing(out.String()); missing != "" {
							return nil, &missingFeature{"the container runtime needs " + missing + ": " + log}
						}
						return nil, fmt.Errorf("container runtime failed before the service started: %s", log)
					}
					os.Remove(file)
				}
				continue attempts
			default:
			}
			if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				conn.Close()
				return &service{cmd: cmd, out: out, exited: exited}, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return nil, fmt.Errorf("the service did not listen on port %d within 30 s; last lines: %s", port, lastLines(out.String(), 5))
	}
	return nil, &crashLoop{fmt.Sprintf("CrashLoopBackOff: the service exited %d times (restarted %d times): %s", restarts+1, restarts, log)}
}

func (s *service) stop(argv []string) {
	// The container's process is in a session of its own: the runtime
	// kills it (`delete -f`), then the runtime's own group goes.
	cleanup(argv)
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited: // the goroutine in start() is the one Wait caller
	case <-time.After(5 * time.Second):
	}
}

func (s *service) tail() string { return lastLines(s.out.String(), 5) }

// pidFile is the runtime's --pid-file, written once the container runs.
func pidFile(argv []string) string {
	for i, arg := range argv[:len(argv)-1] {
		if arg == "--pid-file" {
			return argv[i+1]
		}
	}
	return ""
}

// cleanup removes a container left by a killed runtime (`crun delete -f ID`).
func cleanup(argv []string) {
	if filepath.Base(argv[0]) != "crun" || len(argv) < 2 {
		return
	}
	exec.Command(argv[0], "delete", "-f", argv[len(argv)-1]).Run()
	if file := pidFile(argv); file != "" {
		os.Remove(file)
	}
}

func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// listenerProtocol finds the service's listening socket on port among the
// processes the service started, takes a copy of it with pidfd_getfd, and
// asks the kernel its protocol: "tcp", "mptcp", or why it cannot tell.
func (s *service) listenerProtocol(port int) string {
	pids := descendants(s.cmd.Process.Pid)
	for _, pid := range pids {
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return "unknown (pidfd_open: " + err.Error() + ")"
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, entry := range fds {
			link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, entry.Name()))
			if !strings.HasPrefix(link, "socket:") {
				continue
			}
			target, _ := strconv.Atoi(entry.Name())
			fd, err := unix.PidfdGetfd(pidfd, target, 0)
			if err != nil {
				unix.Close(pidfd)
				return "unknown (pidfd_getfd: " + err.Error() + ")"
			}
			listening, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
			proto, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
			sa, _ := unix.Getsockname(fd)
			unix.Close(fd)
			if listening != 1 || socketPort(sa) != port {
				continue
			}
			unix.Close(pidfd)
			return protocolName(proto)
		}
		unix.Close(pidfd)
	}
	return "unknown (no listening socket found)"
}

// protocolName names a socket's SO_PROTOCOL.
func protocolName(proto int) string {
	switch proto {
	case unix.IPPROTO_TCP:
		return "tcp"
	case 262: // IPPROTO_MPTCP
		return "mptcp"
	default:
		return strconv.Itoa(proto)
	}
}

func socketPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return -1
}

// descendants lists pid and every process below it.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; split after ')'.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) > 1 {
			ppid, _ := strconv.Atoi(fields[1])
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// path is what get asks for (-path).
var path = "/"

// serveForever listens as a Go server's net.Listen("tcp", ...) does and
// answers every GET until killed: a stand-in for a server whose own code
// cannot run where it is deployed.
func serveForever(name string, port int) error {
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("%s API listening on %s (listener protocol %s)\n", name, addr, listenerProtocol(ln))
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s stand-in is running\n", name)
	})
	return (&http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
}

// listenerProtocol says whether the kernel gave a listener TCP or MPTCP.
func listenerProtocol(ln net.Listener) string {
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return "unknown"
	}
	proto := -1
	raw.Control(func(fd uintptr) {
		proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	})
	return protocolName(proto)
}

// get dials on the calling goroutine's OS thread (so the socket is made in
// whatever namespace that thread is in) and speaks HTTP/1.1 over it.
func get(target string) error {
	url := "http://" + target + path
	conn, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("GET %s: write: %w", url, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err) // io.EOF when the server side drops it
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	if len(body) <= 200 && !bytes.ContainsAny(body, "<\n") {
		fmt.Printf("GET %s -> %s %s\n", url, resp.Status, body)
	} else {
		fmt.Printf("GET %s -> %s (%d bytes)\n", url, resp.Status, len(body))
	}
	return nil
}

// wire makes a veth pair: server end here, client end in clientNS.
func wire(clientNS netns.NsHandle) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "svc0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "client0"}); err != nil {
		return &missingFeature{"veth: " + err.Error()}
	}
	server, err := netlink.LinkByName("svc0")
	if err != nil {
		return err
	}
	peer, err := netlink.LinkByName("client0")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(peer, int(clientNS)); err != nil {
		return fmt.Errorf("moving client0 into the client namespace: %w", err)
	}
	if err := addrUp(netlink.AddrAdd, netlink.LinkSetUp, server, serverAddr+"/24"); err != nil {
		return err
	}
	// Only rtnetlink: asking for every family also opens XFRM, which many kernels lack.
	handle, err := netlink.NewHandleAt(clientNS, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the client namespace: %w", err)
	}
	defer handle.Delete()
	client, err := handle.LinkByName("client0")
	if err != nil {
		return err
	}
	if err := addrUp(handle.AddrAdd, handle.LinkSetUp, client, clientAddr+"/24"); err != nil {
		return err
	}
	if lo, err := handle.LinkByName("lo"); err == nil {
		handle.LinkSetUp(lo)
	}
	// A default route, so the ClusterIP is routable before DNAT rewrites it.
	return handle.RouteAdd(&netlink.Route{LinkIndex: client.Attrs().Index, Gw: net.ParseIP(serverAddr)})
}

func addrUp(add func(netlink.Link, *netlink.Addr) error, up func(netlink.Link) error, link netlink.Link, cidr string) error {
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := add(link, addr); err != nil {
		return err
	}
	return up(link)
}

// clusterIPRule DNATs clusterIP:clusterPort to the service in clientNS's
// nat OUTPUT chain, as kube-proxy does for traffic a node sends itself.
func clusterIPRule(clientNS netns.NsHandle, port int) error {
	// Without nfnetlink the netlink library fails badly; ask the kernel first.
	probe, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER)
	if err != nil {
		return &missingFeature{"nftables (no nfnetlink): " + err.Error()}
	}
	unix.Close(probe)
	conn, err := nftables.New(nftables.WithNetNSFd(int(clientNS)))
	if err != nil {
		return &missingFeature{"nftables: " + err.Error()}
	}
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kube-proxy"})
	chain := conn.AddChain(&nftables.Chain{
		Name: "nat-output", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.ParseIP(clusterIP).To4()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(clusterPort)},
		&expr.Immediate{Register: 1, Data: net.ParseIP(serverAddr).To4()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	}})
	if err := conn.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EPROTONOSUPPORT) {
			return &missingFeature{"nftables NAT: " + err.Error()}
		}
		// The first nf_tables (3.13) refuses this rule as a whole; the
		// kernels after it take it. kube-proxy's own nftables mode asks
		// for 5.13 or newer, so such a node runs kube-proxy's iptables.
		if errors.Is(err, syscall.EINVAL) {
			return &missingFeature{"nftables NAT: the kernel's nf_tables refused kube-proxy's DNAT rule (" + err.Error() + ")"}
		}
		return fmt.Errorf("programming the ClusterIP rule: %w", err)
	}
	return nil
}

// procFileMissing names the /proc file a runtime could not open because the
// kernel does not have it (crun opens /proc/self/setgroups, Linux 3.19, to
// start any container), or "".
func procFileMissing(output string) string {
	added := map[string]string{"setgroups": "3.19"}
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, "No such file or directory") {
			continue
		}
		start := strings.Index(line, "/proc/self/")
		if start < 0 {
			continue
		}
		file := strings.TrimRight(strings.Fields(line[start:])[0], "`':,")
		name := strings.TrimPrefix(file, "/proc/self/")
		if version, ok := added[name]; ok {
			return fmt.Sprintf("%s, which Linux added in %s", file, version)
		}
		return file + ", which this kernel does not have"
	}
	return ""
}
