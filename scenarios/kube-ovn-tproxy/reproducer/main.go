// Command reproducer follows kube-ovn-cni's TPROXY start-up path: listen on
// the TPROXY port with net.ListenTCP, then set IP_TRANSPARENT on the
// listener's file descriptor (the go-tproxy pattern kube-ovn vendors in
// pkg/tproxy), and treat a failure as fatal as kube-ovn v1.14.0 does
// (klog.Fatalf in pkg/daemon/tproxy_linux.go). kube-ovn-cni opens that
// listener only with --enable-tproxy=true (default false); the variant says
// which through KUBE_OVN_ENABLE_TPROXY, as the DaemonSet's flag would.
// With -hold it then keeps running, as the daemon does in its DaemonSet
// (so a pod that starts stays up, and one that fails crash-loops).
//
// Nothing here knows which kernel or Go version it runs on: a Go >= 1.24
// build whose go.mod says `go 1.24` opens the listener as MPTCP, and kernels
// whose MPTCP lacks IP_TRANSPARENT (before Linux 5.17) then refuse the option.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8102", "TPROXY listen address")
	hold := flag.Bool("hold", false, "keep running after start-up, as the daemon does")
	flag.Parse()
	if *hold {
		defer func() {
			for { // a bare select{} would be Go's "all goroutines are asleep"
				time.Sleep(time.Hour)
			}
		}()
	}
	log.SetFlags(log.Lmicroseconds)
	switch os.Getenv("KUBE_OVN_ENABLE_TPROXY") {
	case "true":
	case "false":
		fmt.Println("TPROXY disabled (--enable-tproxy=false): no TPROXY listener, kube-ovn-cni starts")
		return
	default:
		log.Fatalf("KUBE_OVN_ENABLE_TPROXY must be true or false (the --enable-tproxy flag)")
	}

	laddr, err := net.ResolveTCPAddr("tcp", *addr)
	if err != nil {
		log.Fatalf("bad address: %v", err)
	}
	listener, err := listenTransparent("tcp", laddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Encountered error while binding listener: %s\n", err)
		os.Exit(255) // klog.Fatalf's exit status
	}

	proto := socketProtocol(listener)
	// Prove the listener works: connect to it and accept the connection.
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
	fmt.Printf("tproxy listener ready on %s (socket protocol %s, IP_TRANSPARENT set)\n", listener.Addr(), proto)
}

func listenTransparent(network string, laddr *net.TCPAddr) (*net.TCPListener, error) {
	listener, err := net.ListenTCP(network, laddr)
	if err != nil {
		return nil, err
	}
	file, err := listener.File()
	if err != nil {
		listener.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: fmt.Errorf("get file descriptor: %w", err)}
	}
	defer file.Close()
	if err := syscall.SetsockoptInt(int(file.Fd()), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1); err != nil {
		listener.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: fmt.Errorf("set socket option: IP_TRANSPARENT: %w", err)}
	}
	return listener, nil
}

// socketProtocol says whether the kernel gave the listener TCP or MPTCP.
func socketProtocol(listener *net.TCPListener) string {
	file, err := listener.File()
	if err != nil {
		return "unknown"
	}
	defer file.Close()
	proto, err := syscall.GetsockoptInt(int(file.Fd()), syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
	switch {
	case err != nil:
		return "unknown"
	case proto == syscall.IPPROTO_TCP:
		return "tcp"
	case proto == 262:
		return "mptcp"
	default:
		return fmt.Sprint(proto)
	}
}
