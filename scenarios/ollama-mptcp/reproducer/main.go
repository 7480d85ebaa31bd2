// Command reproducer serves an HTTP API the way `ollama serve` does
// (net.Listen("tcp", OLLAMA_HOST) then http.Server.Serve on that listener)
// and reaches it the three ways a Kubernetes pod is reached: over loopback,
// over a veth pair from another network namespace (pod to pod), and through
// a DNAT rule in the client's namespace (a ClusterIP, as kube-proxy's
// nftables mode programs it).
//
// A Go >= 1.24 build whose go.mod says `go 1.24` makes that listener an
// MPTCP socket; GODEBUG=multipathtcp=0 makes it TCP again. Which kernels
// then answer with "connection refused", EOF or a reset is what the matrix
// shows. Exit 77 means the kernel lacks something the path needs (netns,
// veth, nftables NAT): the cell is unavailable there, not failed.
//
// On a Kubernetes environment the paths are real: `-mode serve` is the
// Deployment's container (it serves until killed) and `-mode get -target
// ADDR` is a probe pod reaching it by pod IP or through its Service's
// ClusterIP, which kube-proxy programs.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
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
	apiPort     = 11434 // Ollama's default port
	serverAddr  = "10.200.0.1"
	clientAddr  = "10.200.0.2"
	clusterIP   = "10.96.0.10"
	clusterPort = 80
)

type missingFeature struct{ what string }

func (m *missingFeature) Error() string { return m.what }

func main() {
	mode := flag.String("mode", "loopback", "loopback | veth | dnat | serve | get")
	target := flag.String("target", "", "host:port to GET /api/version from (-mode get)")
	flag.Parse()
	var err error
	switch *mode {
	case "serve":
		err = serveForever()
	case "get":
		err = get(*target)
		if err == nil {
			fmt.Printf("ollama API reachable at %s\n", *target)
		}
	case "loopback":
		err = overLoopback()
	case "veth":
		err = overVeth(false)
	case "dnat":
		err = overVeth(true)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	var missing *missingFeature
	switch {
	case errors.As(err, &missing):
		fmt.Fprintf(os.Stderr, "kernel lacks what this path needs: %s\n", missing.what)
		os.Exit(77)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serve listens as Ollama's RunServer does and serves a tiny API.
func serve(host string) (string, error) {
	ln, err := net.Listen("tcp", host)
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"version":"0.0.0-kmatrix"}`)
	})
	go (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
	return socketProtocol(ln), nil
}

// serveForever is `ollama serve` in a pod: OLLAMA_HOST (0.0.0.0:11434 in
// Ollama's container image) until killed.
func serveForever() error {
	host := os.Getenv("OLLAMA_HOST")
	if host == "" {
		host = fmt.Sprintf("0.0.0.0:%d", apiPort)
	}
	proto, err := serve(host)
	if err != nil {
		return err
	}
	fmt.Printf("ollama API listening on %s (listener protocol %s)\n", host, proto)
	select {}
}

// get dials on the calling goroutine's OS thread (so the socket is made in
// whatever namespace that thread is in) and speaks HTTP/1.1 over it.
func get(target string) error {
	url := "http://" + target + "/api/version"
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
	fmt.Printf("GET %s -> %s %s\n", url, resp.Status, body)
	return nil
}

func overLoopback() error {
	proto, err := serve(fmt.Sprintf("127.0.0.1:%d", apiPort))
	if err != nil {
		return err
	}
	if err := get(fmt.Sprintf("127.0.0.1:%d", apiPort)); err != nil {
		return err
	}
	fmt.Printf("ollama API reachable over loopback (listener protocol %s)\n", proto)
	return nil
}

func overVeth(viaClusterIP bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	serverNS, err := netns.Get()
	if err != nil {
		return err
	}
	clientNS, err := netns.New() // also moves this thread into it
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
	target := fmt.Sprintf("%s:%d", serverAddr, apiPort)
	if viaClusterIP {
		if err := clusterIPRule(clientNS); err != nil {
			return err
		}
		target = fmt.Sprintf("%s:%d", clusterIP, clusterPort)
	}
	proto, err := serve(fmt.Sprintf("0.0.0.0:%d", apiPort)) // OLLAMA_HOST=0.0.0.0 in a pod
	if err != nil {
		return err
	}
	if err := netns.Set(clientNS); err != nil {
		return err
	}
	err = get(target)
	netns.Set(serverNS)
	if err != nil {
		return err
	}
	how := "pod to pod over veth"
	if viaClusterIP {
		how = "through a DNAT'd ClusterIP"
	}
	fmt.Printf("ollama API reachable %s (listener protocol %s)\n", how, proto)
	return nil
}

// wire makes a veth pair: server end here, client end in clientNS.
func wire(clientNS netns.NsHandle) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "ollama0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "client0"}); err != nil {
		return &missingFeature{"veth: " + err.Error()}
	}
	server, err := netlink.LinkByName("ollama0")
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

// clusterIPRule DNATs clusterIP:clusterPort to the server in clientNS's
// nat OUTPUT chain, as kube-proxy does for traffic a node sends itself.
func clusterIPRule(clientNS netns.NsHandle) error {
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
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(apiPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	}})
	if err := conn.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EPROTONOSUPPORT) {
			return &missingFeature{"nftables NAT: " + err.Error()}
		}
		return fmt.Errorf("programming the ClusterIP rule: %w", err)
	}
	return nil
}

// socketProtocol says whether the kernel gave the listener TCP or MPTCP.
func socketProtocol(ln net.Listener) string {
	tcp, ok := ln.(*net.TCPListener)
	if !ok {
		return "unknown"
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return "unknown"
	}
	proto := -1
	raw.Control(func(fd uintptr) {
		proto, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
	})
	switch proto {
	case syscall.IPPROTO_TCP:
		return "tcp"
	case 262:
		return "mptcp"
	default:
		return fmt.Sprint(proto)
	}
}
