package cnet

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

type testNet struct {
	host, outside, container, other netns.NsHandle
	pid                             int
	h                               Host
}

// newTestNet builds the namespaces of the diagram in netns_test.go, sets
// up the host side in "host" and attaches one container.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireNetns(t)
	n := &testNet{host: newNS(t), outside: newNS(t), other: newNS(t)}
	// A machine's loopback is up (PID 1 sets it up): local traffic to a
	// published port then goes through the output chain only.
	if err := inNS(n.host, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	link(t, n.host, "up0", "203.0.113.1/24", n.outside, "out0", "203.0.113.2/24")
	// Another network on another interface of the host, and outside
	// routing both that one and the containers' subnet through the host:
	// the forward chain must refuse both.
	link(t, n.host, "up1", "198.51.100.1/24", n.other, "oth0", "198.51.100.2/24")
	if err := inNS(n.outside, func() error {
		out0, err := netlink.LinkByName("out0")
		if err != nil {
			return err
		}
		for _, dst := range []string{"10.88.0.0/16", "198.51.100.0/24"} {
			r := &netlink.Route{LinkIndex: out0.Attrs().Index, Dst: mustIPNet(dst), Gw: mustAddr("203.0.113.1").AsSlice()}
			if err := netlink.RouteAdd(r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	addr := mustAddr("10.88.0.2")
	n.h = Host{
		Subnet: mustPrefix("10.88.0.0/16"), Gateway: mustAddr("10.88.0.1"),
		Ports: []Port{
			{Proto: "tcp", HostPort: 8080, Addr: addr, ContainerPort: 80, Container: "web"},
			{Proto: "udp", HostPort: 5353, Addr: addr, ContainerPort: 53, Container: "web"},
		},
	}
	if err := inNS(n.host, func() error { return SetupHost(n.h) }); err != nil {
		t.Fatalf("SetupHost: %v", err)
	}
	n.pid = startIn(t, n.host, true)
	n.container = pidNS(t, n.pid)
	if err := inNS(n.host, func() error {
		return Attach("web", n.pid, mustPrefix("10.88.0.2/16"), n.h.Gateway, "")
	}); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return n
}

func TestBridgeNetwork(t *testing.T) {
	n := newTestNet(t)
	serveTCP(t, n.host, "10.88.0.1:9000")
	serveTCP(t, n.container, "10.88.0.2:80")
	serveUDP(t, n.container, "10.88.0.2:53")
	serveTCP(t, n.outside, "203.0.113.2:7000")

	for _, tc := range []struct {
		what     string
		from     netns.NsHandle
		network  string
		to       string
		wantSeen string // the source address the server saw
	}{
		{"container reaches the gateway", n.container, "tcp4", "10.88.0.1:9000", "10.88.0.2"},
		{"outside reaches a published port (DNAT, client address kept)", n.outside, "tcp4", "203.0.113.1:8080", "203.0.113.2"},
		{"outside reaches a published udp port", n.outside, "udp4", "203.0.113.1:5353", "203.0.113.2"},
		{"the host reaches a published port on its own address (output chain)", n.host, "tcp4", "203.0.113.1:8080", "203.0.113.1"},
		{"the host reaches a published port on the gateway address", n.host, "tcp4", "10.88.0.1:8080", "10.88.0.1"},
		{"container reaches the outside masqueraded", n.container, "tcp4", "203.0.113.2:7000", "203.0.113.1"},
		{"container reaches its own published port through the host (hairpin)", n.container, "tcp4", "203.0.113.1:8080", "10.88.0.1"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			got, err := dial(tc.from, tc.network, tc.to)
			if err != nil {
				t.Fatalf("dial %s %s: %v", tc.network, tc.to, err)
			}
			if got != tc.wantSeen {
				t.Errorf("the server saw %q as the source, want %s", got, tc.wantSeen)
			}
		})
	}
	// The published port is the host's, not the container's: a port
	// that is not published is not forwarded, and the container's
	// address is not reachable from outside, even through a route.
	if _, err := dialWithin(n.outside, "tcp4", "203.0.113.1:80", refused); err == nil {
		t.Error("an unpublished port reached the container")
	}
	if got, err := dialWithin(n.outside, "tcp4", "10.88.0.2:80", refused); err == nil {
		t.Errorf("the outside reached the container's own address (%q): only published ports may", got)
	}
	// The host routes for its containers only.
	serveTCP(t, n.other, "198.51.100.2:7000")
	if got, err := dialWithin(n.outside, "tcp4", "198.51.100.2:7000", refused); err == nil {
		t.Errorf("the host forwarded between its other interfaces (%q)", got)
	}
	if got, err := dial(n.container, "tcp4", "198.51.100.2:7000"); err != nil || got != "198.51.100.1" {
		t.Errorf("container to the other network: %q, %v", got, err)
	}
	// The host end is a port of the bridge, the container end eth0 with
	// the address and the default route.
	err := inNS(n.host, func() error {
		l, err := netlink.LinkByName(VethName("web"))
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName(DefaultBridge)
		if err != nil {
			return err
		}
		if l.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s is not a port of %s", VethName("web"), DefaultBridge)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSetupHostIsIdempotent(t *testing.T) {
	n := newTestNet(t)
	// Again, as PID 1 does after a container restarts, and with one port
	// more.
	n.h.Ports = append(n.h.Ports, Port{Proto: "tcp", HostPort: 8443, Addr: mustAddr("10.88.0.2"), ContainerPort: 443, Container: "web"})
	for range 2 {
		if err := inNS(n.host, func() error { return SetupHost(n.h) }); err != nil {
			t.Fatalf("SetupHost again: %v", err)
		}
	}
	err := inNS(n.host, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return err
		}
		count := 0
		for _, tb := range tables {
			if tb.Name == TableName {
				count++
			}
		}
		if count != 1 {
			t.Errorf("%d tables ip %s, want 1", count, TableName)
		}
		rules, err := Rules()
		if err != nil {
			return err
		}
		want := map[string]int{ChainPrerouting: 3, ChainOutput: 3, ChainPostrouting: 2, ChainForward: 3}
		for chain, w := range want {
			if got := len(rules[chain]); got != w {
				t.Errorf("chain %s has %d rules, want %d", chain, got, w)
			}
		}
		if len(rules) != len(want) {
			t.Errorf("chains %v, want %v", keys(rules), want)
		}
		br, err := netlink.LinkByName(DefaultBridge)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.0.1/16" {
			t.Errorf("bridge addresses %v, want 10.88.0.1/16 alone", addrs)
		}
		if br.Attrs().Flags&1 == 0 {
			t.Error("bridge is down")
		}
		b, err := readFile(ipForward)
		if err != nil {
			return err
		}
		if strings.TrimSpace(b) != "1" {
			t.Errorf("ip_forward is %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The container attached before still works, and so does the new
	// port.
	serveTCP(t, n.container, "10.88.0.2:443")
	if got, err := dial(n.outside, "tcp4", "203.0.113.1:8443"); err != nil || got != "203.0.113.2" {
		t.Errorf("the new port after SetupHost again: %q, %v", got, err)
	}
}

func TestAttachReplacesAStaleVeth(t *testing.T) {
	n := newTestNet(t)
	// The container restarts: a new init in a new namespace, while the
	// old pair still exists (its namespace is still alive here).
	pid := startIn(t, n.host, true)
	if err := inNS(n.host, func() error {
		return Attach("web", pid, mustPrefix("10.88.0.2/16"), n.h.Gateway, DefaultBridge)
	}); err != nil {
		t.Fatalf("Attach again: %v", err)
	}
	ns := pidNS(t, pid)
	serveTCP(t, ns, "10.88.0.2:80")
	if got, err := dial(n.outside, "tcp4", "203.0.113.1:8080"); err != nil || got != "203.0.113.2" {
		t.Errorf("the restarted container: %q, %v", got, err)
	}
	err := inNS(n.container, func() error {
		if _, err := netlink.LinkByName(ContainerIface); err == nil {
			t.Error("the old container still has its eth0: the stale pair was not deleted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := inNS(n.host, func() error { return Detach("web") }); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	err = inNS(n.host, func() error {
		if _, err := netlink.LinkByName(VethName("web")); err == nil {
			t.Error("the veth is still there after Detach")
		}
		return Detach("web") // nothing to do
	})
	if err != nil {
		t.Fatalf("Detach again: %v", err)
	}
}

func TestAttachRefuses(t *testing.T) {
	requireNetns(t)
	host := newNS(t)
	gw := mustAddr("10.88.0.1")
	addr := mustPrefix("10.88.0.2/16")
	if err := inNS(host, func() error { return Attach("web", startIn(t, host, true), addr, gw, "") }); err == nil ||
		!strings.Contains(err.Error(), "bridge slate0") {
		t.Errorf("no bridge: %v", err)
	}
	if err := inNS(host, func() error {
		return SetupHost(Host{Subnet: mustPrefix("10.88.0.0/16"), Gateway: gw})
	}); err != nil {
		t.Fatal(err)
	}
	// A process of the host's own namespace: attaching it would give the
	// host an eth0 and a default route.
	same := startIn(t, host, false)
	if !pidNS(t, same).Equal(host) {
		t.Fatal("the process is not in the test's host namespace")
	}
	err := inNS(host, func() error { return Attach("web", same, addr, gw, "") })
	if err == nil || !strings.Contains(err.Error(), "shares the host's network namespace") {
		t.Errorf("the host's own namespace: %v", err)
	}
	for _, tc := range []struct {
		name, bridge string
		pid          int
		addr         string
		gw           string
		want         string
	}{
		{"", "", 1, "10.88.0.2/16", "10.88.0.1", "container name"},
		{"a/b", "", 1, "10.88.0.2/16", "10.88.0.1", "character '/'"},
		{"web", "", 0, "10.88.0.2/16", "10.88.0.1", "pid 0"},
		{"web", "", 1 << 23, "10.88.0.2/16", "10.88.0.1", "out of range"},
		{"web", "a-very-long-bridge-name", 1, "10.88.0.2/16", "10.88.0.1", "not an interface name"},
		{"web", "", 1, "10.88.0.1/16", "10.88.0.1", "own address"},
		{"web", "", 1, "10.88.0.2/16", "10.89.0.1", "outside"},
		{"web", "", 1, "10.88.0.0/16", "10.88.0.1", "subnet's own address"},
		{"web", "", 1, "10.88.255.255/16", "10.88.0.1", "broadcast"},
		{"web", "", 1, "10.88.0.2/31", "10.88.0.3", "too small"},
		{"web", "", 999999, "10.88.0.2/16", "10.88.0.1", "network namespace of pid 999999"},
	} {
		err := inNS(host, func() error {
			p, err := parsePrefix(tc.addr)
			if err != nil {
				return err
			}
			return Attach(tc.name, tc.pid, p, mustAddr(tc.gw), tc.bridge)
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Attach(%q, %d, %s, %s, %q) = %v, want an error with %q", tc.name, tc.pid, tc.addr, tc.gw, tc.bridge, err, tc.want)
		}
	}
}

// parsePrefix parses a prefix without ParseAddress's checks, so
// Attach's own are exercised.
func parsePrefix(s string) (p netip.Prefix, err error) {
	return netip.ParsePrefix(s)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

func mustIPNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}
