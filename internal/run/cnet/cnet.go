// Package cnet is the containers' bridge network: the host side that PID
// 1 sets up once before the first container starts (bridge slate0,
// ip_forward, an nftables table with masquerade and the DNAT of published
// ports) and the container side that runc's createRuntime hook runs for
// each container (a veth pair, the container end as eth0 with its address
// and default route).
//
// Both sides work in the network namespace of the calling thread; tests
// run them in namespaces of their own, so the machine's network is never
// touched.
package cnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

// DefaultBridge is the bridge every bridge-network container is attached
// to; the hook's command line does not carry it.
const DefaultBridge = "slate0"

// TableName is the nftables table (family ip) slate owns: SetupHost
// replaces it whole and nothing else touches it.
const TableName = "slate"

// Modules are the kernel modules of the host side, by name, as the
// Debian 6.1 kernel has them (all are loadable modules there; a kernel
// with them built in needs none). Their dependencies (llc, stp,
// nfnetlink, libcrc32c, nf_defrag_ipv4/6) are found by the loader and by
// the builder's closure. Measured on 6.1.0-57-amd64: 19 files, 2.18 MB
// with their dependencies, of which 17 and 2.14 MB are not in
// kmod.DefaultRoot (bridge 690 KB, nf_tables 643 KB and nf_conntrack
// 375 KB lead). The builder must add them to the root's module set when
// a container is on the bridge.
var Modules = []string{
	"bridge", "veth",
	"nf_tables", "nf_conntrack", "nf_nat",
	"nft_chain_nat", // the nat chain type
	"nft_nat",       // dnat
	"nft_masq",      // masquerade
	"nft_fib_ipv4",  // fib daddr type local
	"nft_ct",        // ct status dnat (hairpin masquerade)
}

// Port is one published port: traffic to HostPort (Proto) on any of the
// host's addresses goes to Addr:ContainerPort.
type Port struct {
	Proto         string // "tcp" or "udp"
	HostPort      uint16
	Addr          netip.Addr
	ContainerPort uint16
	// Container names the container, for error messages.
	Container string
}

// ModuleLoader loads kernel modules by name (kmod.Loader does).
type ModuleLoader interface {
	Probe(names ...string) error
}

// Host is what the host side sets up.
type Host struct {
	// Subnet is the containers' subnet; Gateway its first address, which
	// the bridge takes.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Bridge is the bridge's name (DefaultBridge when empty).
	Bridge string
	Ports  []Port
	// Modules loads Modules first; nil loads none (a kernel with them
	// built in, or tests).
	Modules ModuleLoader
}

// VethName is the host end of a container's veth pair: "vs" and 8 hex
// digits of a hash of the name, stable across restarts and within the
// 15 characters of an interface name whatever the container's name.
func VethName(container string) string {
	sum := sha256.Sum256([]byte(container))
	return "vs" + hex.EncodeToString(sum[:4])
}

// Gateway is the first address of subnet, the bridge's.
func Gateway(subnet netip.Prefix) (netip.Addr, error) {
	if err := checkSubnet(subnet); err != nil {
		return netip.Addr{}, err
	}
	return subnet.Addr().Next(), nil
}

func checkSubnet(subnet netip.Prefix) error {
	switch {
	case !subnet.IsValid():
		return errors.New("no container subnet")
	case !subnet.Addr().Is4():
		return fmt.Errorf("container subnet %s is not IPv4", subnet)
	case subnet.Masked() != subnet:
		return fmt.Errorf("container subnet %s has host bits set (the subnet is %s)", subnet, subnet.Masked())
	case subnet.Bits() > 30:
		return fmt.Errorf("container subnet %s is too small for a bridge and a container", subnet)
	}
	return nil
}

// OnBridge tells whether a container uses the bridge network (the
// default).
func OnBridge(c *imageinfo.Container) bool {
	return c.Network == "" || c.Network == configs.NetworkBridge
}

// FromImage is the host side an image needs: false when no container of
// info is on the bridge. Modules is left nil for the caller to set.
func FromImage(info *imageinfo.Info) (Host, bool, error) {
	var h Host
	for i := range info.Containers {
		if OnBridge(&info.Containers[i]) {
			h.Bridge = DefaultBridge
			break
		}
	}
	if h.Bridge == "" {
		return Host{}, false, nil
	}
	s := info.Network.ContainerSubnet
	if s == "" {
		s = configs.DefaultContainerSubnet
	}
	var err error
	if h.Subnet, err = netip.ParsePrefix(s); err != nil {
		return Host{}, false, fmt.Errorf("network.container_subnet: %w", err)
	}
	if h.Gateway, err = Gateway(h.Subnet); err != nil {
		return Host{}, false, fmt.Errorf("network.container_subnet: %w", err)
	}
	type key struct {
		proto string
		port  uint16
	}
	published := map[key]string{}
	veths := map[string]string{}
	addrs := map[netip.Addr]string{h.Gateway: "the bridge"}
	for i := range info.Containers {
		c := &info.Containers[i]
		if !OnBridge(c) {
			continue
		}
		addr, err := containerAddress(c, h)
		if err != nil {
			return Host{}, false, fmt.Errorf("containers[%d] (%s): %w", i, c.Name, err)
		}
		if other, ok := addrs[addr.Addr()]; ok {
			return Host{}, false, fmt.Errorf("containers[%d] (%s): address %s is %s's too", i, c.Name, addr.Addr(), other)
		}
		addrs[addr.Addr()] = c.Name
		v := VethName(c.Name)
		if other, ok := veths[v]; ok {
			// 32 bits of a hash: not expected, but two containers must
			// never share an interface.
			return Host{}, false, fmt.Errorf("containers[%d] (%s): interface name %s is %s's too; rename one", i, c.Name, v, other)
		}
		veths[v] = c.Name
		for j, ps := range c.Ports {
			cp, err := configs.ParsePort(ps)
			if err != nil {
				return Host{}, false, fmt.Errorf("containers[%d] (%s): ports[%d]: %w", i, c.Name, j, err)
			}
			p := Port{Proto: cp.Proto, HostPort: cp.Host, ContainerPort: cp.Container}
			k := key{p.Proto, p.HostPort}
			if other, ok := published[k]; ok {
				return Host{}, false, fmt.Errorf("containers[%d] (%s): ports[%d]: host port %d/%s is published by %s too", i, c.Name, j, p.HostPort, p.Proto, other)
			}
			published[k] = c.Name
			p.Addr, p.Container = addr.Addr(), c.Name
			h.Ports = append(h.Ports, p)
		}
	}
	return h, true, nil
}

// containerAddress checks a bridge container's address and gateway
// against the host side.
func containerAddress(c *imageinfo.Container, h Host) (netip.Prefix, error) {
	addr, err := ParseAddress(c.Address)
	if err != nil {
		return netip.Prefix{}, err
	}
	gw, err := ParseGateway(c.Gateway, addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr.Masked() != h.Subnet {
		return netip.Prefix{}, fmt.Errorf("address %s is outside the container subnet %s", addr, h.Subnet)
	}
	if gw != h.Gateway {
		return netip.Prefix{}, fmt.Errorf("gateway %s is not the bridge's address %s", gw, h.Gateway)
	}
	return addr, nil
}

// ParseAddress parses a container's address with its prefix
// ("10.88.0.2/16"): IPv4, neither the subnet's own address nor its
// broadcast.
func ParseAddress(s string) (netip.Prefix, error) {
	if len(s) > len("255.255.255.255/32") {
		return netip.Prefix{}, fmt.Errorf("address %.20q...: too long", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address: %w", err)
	}
	if err := checkSubnet(p.Masked()); err != nil {
		return netip.Prefix{}, fmt.Errorf("address %s: %w", s, err)
	}
	if p.Addr() == p.Masked().Addr() {
		return netip.Prefix{}, fmt.Errorf("address %s is the subnet's own address", s)
	}
	if p.Addr() == broadcast(p) {
		return netip.Prefix{}, fmt.Errorf("address %s is the subnet's broadcast address", s)
	}
	return p, nil
}

// ParseGateway parses the gateway of a container whose address is addr:
// an IPv4 address in addr's subnet other than addr.
func ParseGateway(s string, addr netip.Prefix) (netip.Addr, error) {
	if len(s) > len("255.255.255.255") {
		return netip.Addr{}, fmt.Errorf("gateway %.16q...: too long", s)
	}
	gw, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("gateway: %w", err)
	}
	if !gw.Is4() {
		return netip.Addr{}, fmt.Errorf("gateway %s is not IPv4", s)
	}
	if !addr.Contains(gw) {
		return netip.Addr{}, fmt.Errorf("gateway %s is outside %s", gw, addr.Masked())
	}
	if gw == addr.Addr() {
		return netip.Addr{}, fmt.Errorf("gateway %s is the container's own address", gw)
	}
	if gw == addr.Masked().Addr() || gw == broadcast(addr) {
		return netip.Addr{}, fmt.Errorf("gateway %s is the subnet's own or broadcast address", gw)
	}
	return gw, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}
