package cnet

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

func TestVethName(t *testing.T) {
	a, b := VethName("web"), VethName("web2")
	if a == b || len(a) != 10 || !strings.HasPrefix(a, "vs") || VethName("web") != a {
		t.Errorf("VethName: %q, %q", a, b)
	}
	if n := VethName(strings.Repeat("x", 64)); len(n) > 15 {
		t.Errorf("VethName of a long name is %q", n)
	}
}

func container(name, network, addr string, ports ...string) imageinfo.Container {
	c := imageinfo.Container{Container: configs.Container{Name: name, Network: network, Ports: ports}}
	if addr != "" {
		c.Address, c.Gateway = addr, "10.88.0.1"
	}
	return c
}

func TestFromImage(t *testing.T) {
	info := &imageinfo.Info{Containers: []imageinfo.Container{
		container("web", "", "10.88.0.2/16", "8080:80", "5353:53/udp"),
		container("host", configs.NetworkHost, "", "9000:9000"),
		container("db", configs.NetworkBridge, "10.88.0.3/16"),
		container("off", configs.NetworkNone, ""),
	}}
	h, ok, err := FromImage(info)
	if err != nil || !ok {
		t.Fatalf("FromImage: %v, %v", ok, err)
	}
	want := Host{
		Subnet: netip.MustParsePrefix("10.88.0.0/16"), Gateway: netip.MustParseAddr("10.88.0.1"), Bridge: DefaultBridge,
		Ports: []Port{
			{Proto: "tcp", HostPort: 8080, Addr: netip.MustParseAddr("10.88.0.2"), ContainerPort: 80, Container: "web"},
			{Proto: "udp", HostPort: 5353, Addr: netip.MustParseAddr("10.88.0.2"), ContainerPort: 53, Container: "web"},
		},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("FromImage:\n got %+v\nwant %+v", h, want)
	}
	// No bridge container: nothing to set up.
	if _, ok, err := FromImage(&imageinfo.Info{Containers: []imageinfo.Container{container("host", configs.NetworkHost, "")}}); ok || err != nil {
		t.Errorf("host-only image: %v, %v", ok, err)
	}
	if _, ok, err := FromImage(&imageinfo.Info{}); ok || err != nil {
		t.Errorf("image without containers: %v, %v", ok, err)
	}
	// Another subnet.
	other := &imageinfo.Info{Network: configs.Network{ContainerSubnet: "172.30.0.0/24"}, Containers: []imageinfo.Container{
		{Container: configs.Container{Name: "web"}, Address: "172.30.0.2/24", Gateway: "172.30.0.1"},
	}}
	if h, ok, err := FromImage(other); err != nil || !ok || h.Gateway != netip.MustParseAddr("172.30.0.1") {
		t.Errorf("subnet 172.30.0.0/24: %+v, %v, %v", h, ok, err)
	}
}

func TestFromImageRefuses(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		cs     []imageinfo.Container
		want   string
	}{
		{"10.88.0.0", []imageinfo.Container{container("web", "", "10.88.0.2/16")}, "network.container_subnet"},
		{"10.88.0.1/16", []imageinfo.Container{container("web", "", "10.88.0.2/16")}, "host bits"},
		{"fd00::/64", []imageinfo.Container{container("web", "", "10.88.0.2/16")}, "not IPv4"},
		{"10.88.0.0/31", []imageinfo.Container{container("web", "", "10.88.0.2/16")}, "too small"},
		{"", []imageinfo.Container{container("web", "", "")}, "containers[0] (web): address"},
		{"", []imageinfo.Container{container("web", "", "10.89.0.2/16")}, "gateway 10.88.0.1 is outside"},
		{"", []imageinfo.Container{container("web", "", "10.88.0.2/24")}, "outside the container subnet"},
		{"", []imageinfo.Container{{Container: configs.Container{Name: "web"}, Address: "10.88.0.2/16", Gateway: "10.88.0.9"}}, "not the bridge's address"},
		{"", []imageinfo.Container{container("web", "", "10.88.0.1/16")}, "own address"},
		{"", []imageinfo.Container{container("a", "", "10.88.0.2/16"), container("b", "", "10.88.0.2/16")}, "address 10.88.0.2 is a's too"},
		{"", []imageinfo.Container{container("web", "", "10.88.0.2/16", "80:80/sctp")}, "containers[0] (web): ports[0]"},
		{"", []imageinfo.Container{container("a", "", "10.88.0.2/16", "80:80"), container("b", "", "10.88.0.3/16", "53:53/udp", "80:8080")},
			"containers[1] (b): ports[1]: host port 80/tcp is published by a too"},
	} {
		info := &imageinfo.Info{Network: configs.Network{ContainerSubnet: tc.subnet}, Containers: tc.cs}
		_, _, err := FromImage(info)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromImage(subnet %q, %v) = %v, want an error with %q", tc.subnet, tc.cs, err, tc.want)
		}
	}
	// The same port number over udp and tcp is two ports.
	ok := &imageinfo.Info{Containers: []imageinfo.Container{container("a", "", "10.88.0.2/16", "53:53/udp"), container("b", "", "10.88.0.3/16", "53:53/tcp")}}
	if _, _, err := FromImage(ok); err != nil {
		t.Errorf("53/udp and 53/tcp: %v", err)
	}
}

type fakeLoader struct {
	names []string
	err   error
}

func (f *fakeLoader) Probe(names ...string) error { f.names = append(f.names, names...); return f.err }

func TestSetupHostRefuses(t *testing.T) {
	requireNetns(t)
	ns := newNS(t)
	good := Host{Subnet: netip.MustParsePrefix("10.88.0.0/16"), Gateway: netip.MustParseAddr("10.88.0.1")}
	port := Port{Proto: "tcp", HostPort: 80, Addr: netip.MustParseAddr("10.88.0.2"), ContainerPort: 80, Container: "web"}
	with := func(f func(*Host)) Host { h := good; h.Ports = []Port{port}; f(&h); return h }
	for _, tc := range []struct {
		h    Host
		want string
	}{
		{with(func(h *Host) { h.Bridge = "bad/name" }), "not an interface name"},
		{with(func(h *Host) { h.Bridge = "sixteen-chars-xx" }), "not an interface name"},
		{with(func(h *Host) { h.Subnet = netip.Prefix{} }), "no container subnet"},
		{with(func(h *Host) { h.Gateway = netip.MustParseAddr("10.88.0.5") }), "not 10.88.0.1"},
		{with(func(h *Host) { h.Ports[0].Proto = "icmp" }), `protocol "icmp"`},
		{with(func(h *Host) { h.Ports[0].HostPort = 0 }), "port 0"},
		{with(func(h *Host) { h.Ports[0].Addr = netip.MustParseAddr("192.168.1.1") }), "not a container's"},
		{with(func(h *Host) { h.Ports[0].Addr = netip.Addr{} }), "not a container's"},
		{with(func(h *Host) { h.Ports[0].Addr = h.Gateway }), "not a container's"},
		{with(func(h *Host) { h.Ports = append(h.Ports, port) }), "port 1 (web): host port 80/tcp is port 0's (web) too"},
		{with(func(h *Host) { h.Modules = &fakeLoader{err: errors.New("kmod: module \"nft_masq\" not found")} }), "load kernel modules: kmod: module \"nft_masq\""},
	} {
		// All of these fail before touching the network; in a namespace
		// of its own all the same, should one get further.
		err := inNS(ns, func() error { return SetupHost(tc.h) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetupHost(%+v) = %v, want an error with %q", tc.h, err, tc.want)
		}
	}
}

func TestSetupHostLoadsModules(t *testing.T) {
	requireNetns(t)
	f := &fakeLoader{}
	h := Host{Subnet: netip.MustParsePrefix("10.88.0.0/16"), Gateway: netip.MustParseAddr("10.88.0.1"), Modules: f}
	if err := inNS(newNS(t), func() error { return SetupHost(h) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.names, Modules) {
		t.Errorf("loaded %v, want %v", f.names, Modules)
	}
}

func TestComment(t *testing.T) {
	c := comment(Port{Proto: "udp", HostPort: 53, Container: "dns"})
	if want := "\x00\x0bdns 53/udp\x00"; string(c) != want {
		t.Errorf("comment = %q, want %q", c, want)
	}
	long := comment(Port{Proto: "tcp", HostPort: 1, Container: strings.Repeat("x", 300)})
	if len(long) != 2+120+1 || int(long[1]) != 121 {
		t.Errorf("long comment: %d bytes, length byte %d", len(long), long[1])
	}
}
