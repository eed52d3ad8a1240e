package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slateos/slate/internal/boot/netconf"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
)

func TestPickWired(t *testing.T) {
	type iface struct {
		name, typ, index string
		device, wireless bool
		phy80211         bool
	}
	tests := []struct {
		name   string
		ifaces []iface
		want   string // "" for an error
	}{
		{"qemu", []iface{
			{name: "lo", typ: "772", index: "1"},
			{name: "ens3", typ: "1", index: "2", device: true},
		}, "ens3"},
		{"lowest ifindex, not name order", []iface{
			{name: "lo", typ: "772", index: "1"},
			{name: "eth1", typ: "1", index: "2", device: true},
			{name: "eth0", typ: "1", index: "3", device: true},
		}, "eth1"},
		{"skips wireless, virtual and non-Ethernet", []iface{
			{name: "lo", typ: "772", index: "1"},
			{name: "wlan0", typ: "1", index: "2", device: true, wireless: true},
			{name: "wlp2s0", typ: "1", index: "3", device: true, phy80211: true},
			{name: "veth0", typ: "1", index: "4"},
			{name: "br0", typ: "1", index: "5"},
			{name: "ib0", typ: "32", index: "6", device: true},
			{name: "enp1s0", typ: "1", index: "9", device: true},
		}, "enp1s0"},
		{"unknown index goes last", []iface{
			{name: "eth9", typ: "1", device: true},
			{name: "eth5", typ: "1", index: "7", device: true},
		}, "eth5"},
		{"same index: name order", []iface{
			{name: "b", typ: "1", index: "2", device: true},
			{name: "a", typ: "1", index: "2", device: true},
		}, "a"},
		{"only wireless", []iface{
			{name: "lo", typ: "772", index: "1"},
			{name: "wlan0", typ: "1", index: "2", device: true, wireless: true},
		}, ""},
		{"nothing", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, i := range tt.ifaces {
				d := filepath.Join(dir, i.name)
				mustMkdir(t, d)
				if i.typ != "" {
					mustWrite(t, filepath.Join(d, "type"), i.typ+"\n")
				}
				if i.index != "" {
					mustWrite(t, filepath.Join(d, "ifindex"), i.index+"\n")
				}
				if i.device {
					mustMkdir(t, filepath.Join(d, "device"))
				}
				if i.wireless {
					mustMkdir(t, filepath.Join(d, "wireless"))
				}
				if i.phy80211 {
					mustMkdir(t, filepath.Join(d, "phy80211"))
				}
			}
			got, err := pickWired(dir)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("picked %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("pickWired = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := pickWired(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing folder")
	}
}

func TestPickWiredHost(t *testing.T) {
	// The real tree has the shape pickWired expects (symlinks into
	// /sys/devices); whatever it picks must be a real Ethernet interface.
	name, err := pickWired("/sys/class/net")
	if err != nil {
		t.Skipf("no wired interface on this host: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", name, "device")); err != nil {
		t.Errorf("picked %s without a device: %v", name, err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// inNetNS runs a helper in a new network namespace and returns its output.
// Creating one needs root (CAP_SYS_ADMIN); without it the test is skipped,
// or fails when CI is set.
func inNetNS(t *testing.T, mode string, extraEnv ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append([]string{helperEnv + "=" + mode, "TMPDIR=" + t.TempDir()}, extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot create a network namespace: %v", err)
		}
		t.Skipf("cannot create a network namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

func TestLoopbackUp(t *testing.T) {
	out := inNetNS(t, "netns-lo")
	if !strings.Contains(out, "loopback ok") {
		t.Fatalf("helper output:\n%s", out)
	}
}

// helperLoopback runs in a fresh network namespace, where lo starts down.
func helperLoopback() int {
	fail := func(f string, a ...any) int {
		fmt.Printf(f+"\n", a...)
		return 1
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fail("find lo: %v", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return fail("lo is up before loopbackUp: not a fresh namespace")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("listen: %v", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		return fail("dial 127.0.0.1 works with lo down")
	}
	if err := loopbackUp(); err != nil {
		return fail("loopbackUp: %v", err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		return fail("dial after loopbackUp: %v", err)
	}
	c.Close()
	fmt.Println("loopback ok")
	return 0
}

func TestDHCP(t *testing.T) {
	out := inNetNS(t, "netns-dhcp", "DHCP_SERVER=1")
	if !strings.Contains(out, "\nSLATE-NET iface=eth0 addr=10.9.0.15/24 gw=10.9.0.1\n") || !strings.Contains(out, "dhcp ok") {
		t.Fatalf("helper output:\n%s", out)
	}
}

func TestDHCPNoServer(t *testing.T) {
	out := inNetNS(t, "netns-dhcp", "DHCP_SERVER=0")
	if !strings.Contains(out, "\nSLATE-NET iface=eth0 err=\"DHCPv4 on eth0: ") || !strings.Contains(out, "dhcp ok") {
		t.Fatalf("helper output:\n%s", out)
	}
}

func TestDHCPNoInterface(t *testing.T) {
	wiredWait = 300 * time.Millisecond
	t.Cleanup(func() { wiredWait = 10 * time.Second })
	con := &console{}
	s := newSupervisor(Config{Console: con, netDir: t.TempDir()})
	s.runDHCP(context.Background())
	if got, want := con.String(), "SLATE-NET iface=none err=\"no wired network interface\"\n"; got != want {
		t.Errorf("console %q, want %q", got, want)
	}
}

// helperDHCP runs in a fresh network namespace: a veth pair eth0/srv0,
// a DHCP server on srv0 (unless DHCP_SERVER=0), and runDHCP on eth0 with
// a fake /sys/class/net naming eth0 as wired.
func helperDHCP() int {
	fail := func(f string, a ...any) int {
		fmt.Printf(f+"\n", a...)
		return 1
	}
	tmp := os.Getenv("TMPDIR")
	netDir := filepath.Join(tmp, "net")
	if err := os.MkdirAll(filepath.Join(netDir, "eth0", "device"), 0o755); err != nil {
		return fail("%v", err)
	}
	os.WriteFile(filepath.Join(netDir, "eth0", "type"), []byte("1\n"), 0o644)

	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "srv0"}); err != nil {
		return fail("add veth: %v", err)
	}
	srv, err := netlink.LinkByName("srv0")
	if err != nil {
		return fail("%v", err)
	}
	srvIP := net.IPv4(10, 9, 0, 1).To4()
	if err := netlink.AddrAdd(srv, &netlink.Addr{IPNet: &net.IPNet{IP: srvIP, Mask: net.CIDRMask(24, 32)}}); err != nil {
		return fail("address srv0: %v", err)
	}
	if err := netlink.LinkSetUp(srv); err != nil {
		return fail("srv0 up: %v", err)
	}

	if os.Getenv("DHCP_SERVER") == "1" {
		handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
			typ := dhcpv4.MessageTypeOffer
			if m.MessageType() == dhcpv4.MessageTypeRequest {
				typ = dhcpv4.MessageTypeAck
			}
			resp, err := dhcpv4.NewReplyFromRequest(m,
				dhcpv4.WithMessageType(typ),
				dhcpv4.WithYourIP(net.IPv4(10, 9, 0, 15)),
				dhcpv4.WithServerIP(srvIP),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)),
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(srvIP),
				dhcpv4.WithDNS(net.IPv4(10, 9, 0, 53)),
				dhcpv4.WithLeaseTime(3600),
			)
			if err != nil {
				fmt.Println("server:", err)
				return
			}
			if _, err := conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
				fmt.Println("server:", err)
			}
		}
		server, err := server4.NewServer("srv0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
		if err != nil {
			return fail("server: %v", err)
		}
		go server.Serve()
		defer server.Close()
	} else {
		dhcpAttempts = 2
		dhcpTimeout = 300 * time.Millisecond
		dhcpRetries = 1
		dhcpRetryFirst = 50 * time.Millisecond
	}

	con := &console{}
	resolv := filepath.Join(tmp, "resolv.conf")
	s := newSupervisor(Config{Console: con, netDir: netDir, resolvConf: resolv})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.runDHCP(ctx)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for con.count(`^SLATE-NET `) == 0 {
		if time.Now().After(deadline) {
			return fail("no SLATE-NET line")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	fmt.Print("\n" + con.String())

	if os.Getenv("DHCP_SERVER") != "1" {
		if _, err := os.Stat(resolv); err == nil {
			return fail("resolv.conf written without a lease")
		}
		fmt.Println("dhcp ok")
		return 0
	}
	eth0, err := netlink.LinkByName("eth0")
	if err != nil {
		return fail("%v", err)
	}
	addrs, err := netlink.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.15/24" {
		return fail("eth0 addresses %v, %v", addrs, err)
	}
	routes, err := netlink.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		return fail("%v", err)
	}
	gw := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(srvIP) {
			gw = true
		}
	}
	if !gw {
		return fail("no default route via 10.9.0.1: %v", routes)
	}
	b, err := os.ReadFile(resolv)
	if err != nil || string(b) != "nameserver 10.9.0.53\n" {
		return fail("resolv.conf %q, %v", b, err)
	}
	fmt.Println("dhcp ok")
	return 0
}

// pickWired is netconf.Wired's first answer: the wired interface with
// the lowest ifindex, which waitWired returns.
func pickWired(netDir string) (string, error) {
	names, err := netconf.Wired(netDir)
	if err != nil {
		return "", err
	}
	return names[0], nil
}
