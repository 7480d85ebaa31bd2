// Command kmatrix-harness drives kube-ovn's own TPROXY listener code at the
// release tag: it is built inside github.com/kubeovn/kube-ovn (so the
// module's go.mod `go` line, go.sum and pkg/tproxy are the release's) and
// calls pkg/tproxy.ListenTCP exactly as pkg/daemon/tproxy_linux.go's
// StartTProxyForwarding does, failing as it does (klog.Fatalf: exit 255,
// "Encountered error while binding listener: ..."). Same flags, variant
// switch (KUBE_OVN_ENABLE_TPROXY) and output as the scenario's stand-in, so
// the same probes judge both.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	goTProxy "github.com/kubeovn/kube-ovn/pkg/tproxy"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8102", "TPROXY listen address")
	hold := flag.Bool("hold", false, "keep running after start-up, as the daemon does")
	flag.Parse()
	if *hold {
		defer func() {
			for {
				time.Sleep(time.Hour)
			}
		}()
	}
	switch os.Getenv("KUBE_OVN_ENABLE_TPROXY") {
	case "true":
	case "false":
		fmt.Println("TPROXY disabled (--enable-tproxy=false): no TPROXY listener, kube-ovn-cni starts")
		return
	default:
		fmt.Fprintln(os.Stderr, "KUBE_OVN_ENABLE_TPROXY must be true or false (the --enable-tproxy flag)")
		os.Exit(2)
	}
	laddr, err := net.ResolveTCPAddr("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad address: %v\n", err)
		os.Exit(2)
	}
	listener, err := goTProxy.ListenTCP("tcp", laddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Encountered error while binding listener: %s\n", err)
		os.Exit(255)
	}
	accepted := make(chan error, 1)
	go func() {
		conn, err := listener.Accept()
		if err == nil {
			conn.Close()
		}
		accepted <- err
	}()
	conn, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial own listener: %s\n", err)
		os.Exit(1)
	}
	conn.Close()
	if err := <-accepted; err != nil {
		fmt.Fprintf(os.Stderr, "accept: %s\n", err)
		os.Exit(1)
	}
	fmt.Printf("tproxy listener ready on %s (socket protocol %s, IP_TRANSPARENT set)\n",
		listener.Addr(), listenerProtocol(laddr.Port))
}

// listenerProtocol finds this process's listening socket on port (kube-ovn's
// Listener keeps its *net.TCPListener unexported) and asks the kernel its
// protocol: "tcp" or "mptcp".
func listenerProtocol(port int) string {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, entry := range fds {
		link, _ := os.Readlink("/proc/self/fd/" + entry.Name())
		if !strings.HasPrefix(link, "socket:") {
			continue
		}
		fd, _ := strconv.Atoi(entry.Name())
		listening, _ := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
		sa, _ := syscall.Getsockname(fd)
		in4, ok := sa.(*syscall.SockaddrInet4)
		if listening != 1 || !ok || in4.Port != port {
			continue
		}
		switch proto, _ := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_PROTOCOL); proto {
		case syscall.IPPROTO_TCP:
			return "tcp"
		case 262:
			return "mptcp"
		default:
			return strconv.Itoa(proto)
		}
	}
	return "unknown"
}
