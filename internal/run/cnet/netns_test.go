package cnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The tests below build a small network of namespaces, never touching the
// namespace the test binary started in:
//
//	outside (203.0.113.2) ── out0/up0 ── host (203.0.113.1, slate0 10.88.0.1/16) ── vsXXXX/eth0 ── container (10.88.0.2)
//
// Each namespace is used from a goroutine locked to a thread that entered
// it; such a thread is never unlocked, so it exits with its goroutine and
// no thread of the test binary is left in a foreign namespace.

// requireNetns skips the test when network namespaces cannot be made
// (not root), except in CI, where that is a failure.
func requireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the network tests need root (network namespaces, veths, nftables)")
	}
	t.Skip("not root: no network namespaces")
}

// inNS runs fn in ns, on a thread of its own.
func inNS(ns netns.NsHandle, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if err := netns.Set(ns); err != nil {
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// newNS makes a fresh network namespace, closed at the end of the test.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	ch := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is in ns
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		ch <- ns
	}()
	select {
	case ns := <-ch:
		t.Cleanup(func() { ns.Close() })
		return ns
	case err := <-errc:
		t.Fatalf("new network namespace: %v", err)
		return 0
	}
}

// startIn starts a sleeping process in ns (newNet false) or in a fresh
// namespace of its own (newNet true), as runc's container init is; it is
// killed at the end of the test.
func startIn(t testing.TB, ns netns.NsHandle, newNet bool) int {
	t.Helper()
	var cmd *exec.Cmd
	err := inNS(ns, func() error {
		cmd = exec.Command("sleep", "600")
		if newNet {
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		}
		return cmd.Start() // forked from this thread: its namespaces
	})
	if err != nil {
		t.Fatalf("start a process: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func pidNS(t testing.TB, pid int) netns.NsHandle {
	t.Helper()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// link connects a and b with a veth pair, aName in a with aAddr and
// bName in b with bAddr, both up.
func link(t testing.TB, a netns.NsHandle, aName, aAddr string, b netns.NsHandle, bName, bAddr string) {
	t.Helper()
	err := inNS(a, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = aName
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: bName, PeerNamespace: netlink.NsFd(int(b))}); err != nil {
			return err
		}
		return setAddrUp(aName, aAddr)
	})
	if err == nil {
		err = inNS(b, func() error { return setAddrUp(bName, bAddr) })
	}
	if err != nil {
		t.Fatalf("veth %s/%s: %v", aName, bName, err)
	}
}

func setAddrUp(name, addr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// serveTCP listens on addr in ns and answers every connection with the
// remote address it sees, then closes it.
func serveTCP(t testing.TB, ns netns.NsHandle, addr string) {
	t.Helper()
	var l net.Listener
	if err := inNS(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()))
			c.Close()
		}
	}()
}

// serveUDP answers every datagram to addr in ns with the sender's
// address.
func serveUDP(t testing.TB, ns netns.NsHandle, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("listen on udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.(*net.UDPAddr).AddrPort().Addr().String()), from)
		}
	}()
}

// dial connects from ns to addr over network and returns what the server
// answered (the source address it saw).
func dial(ns netns.NsHandle, network, addr string) (string, error) {
	return dialWithin(ns, network, addr, 3*time.Second)
}

// refused is how long a dial that must fail is given: between namespaces
// of one machine an answer takes well under a millisecond.
const refused = 300 * time.Millisecond

func dialWithin(ns netns.NsHandle, network, addr string, timeout time.Duration) (string, error) {
	var answer string
	err := inNS(ns, func() error {
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if network == "udp4" {
			if _, err := c.Write([]byte("?")); err != nil {
				return err
			}
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil && !errors.Is(err, net.ErrClosed) && n == 0 {
			return err
		}
		answer = string(buf[:n])
		return nil
	})
	return answer, err
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
