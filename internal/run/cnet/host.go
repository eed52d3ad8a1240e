package cnet

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ipForward is the sysctl SetupHost turns on; it is per network namespace
// and resolved in the namespace of the thread that opens it.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// SetupHost sets up the host side in the calling thread's network
// namespace: Modules, the nftables table, ip_forward, then the bridge with
// the gateway's address, up. It may be called again (after a container's
// restart, with other ports): the table is replaced whole, the bridge
// kept. The bridge comes last so that a failure before it leaves no
// bridge, and every container's hook then fails at once with a clear
// error rather than running without its NAT.
func SetupHost(h Host) error {
	if h.Bridge == "" {
		h.Bridge = DefaultBridge
	}
	if err := h.check(); err != nil {
		return err
	}
	if h.Modules != nil {
		if err := h.Modules.Probe(Modules...); err != nil {
			return fmt.Errorf("cnet: load kernel modules: %w", err)
		}
	}
	if err := writeRules(h); err != nil {
		return err
	}
	if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("cnet: enable forwarding (%s): %w", ipForward, err)
	}
	return setupBridge(h)
}

func (h Host) check() error {
	if err := checkIfname(h.Bridge); err != nil {
		return fmt.Errorf("cnet: bridge: %w", err)
	}
	if err := checkSubnet(h.Subnet); err != nil {
		return fmt.Errorf("cnet: %w", err)
	}
	if gw, _ := Gateway(h.Subnet); h.Gateway != gw {
		return fmt.Errorf("cnet: gateway %s is not %s, the first address of %s", h.Gateway, gw, h.Subnet)
	}
	seen := map[Port]int{}
	for i, p := range h.Ports {
		k := Port{Proto: p.Proto, HostPort: p.HostPort}
		if j, ok := seen[k]; ok {
			return fmt.Errorf("cnet: port %d (%s): host port %d/%s is port %d's (%s) too", i, p.Container, p.HostPort, p.Proto, j, h.Ports[j].Container)
		}
		seen[k] = i
		switch {
		case p.Proto != "tcp" && p.Proto != "udp":
			return fmt.Errorf("cnet: port %d (%s): protocol %q is neither tcp nor udp", i, p.Container, p.Proto)
		case p.HostPort == 0 || p.ContainerPort == 0:
			return fmt.Errorf("cnet: port %d (%s): port 0", i, p.Container)
		case !h.Subnet.Contains(p.Addr) || p.Addr == h.Gateway:
			return fmt.Errorf("cnet: port %d (%s): address %s is not a container's in %s", i, p.Container, p.Addr, h.Subnet)
		}
	}
	return nil
}

// checkIfname refuses what the kernel would refuse as an interface name,
// and names that would make a table rule or a sysctl path ambiguous.
func checkIfname(n string) error {
	if n == "" || len(n) >= unix.IFNAMSIZ || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\x00") {
		return fmt.Errorf("%q is not an interface name (1-15 characters, no '/', ':' or space)", n)
	}
	return nil
}

func writeRules(h Host) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("cnet: nftables: %w", err)
	}
	writeTable(c, h)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("cnet: write nftables table ip %s (nat chains, masquerade, %d port rules; modules %s): %w",
			TableName, 2*len(h.Ports), strings.Join(Modules[2:], ","), err)
	}
	return nil
}

func setupBridge(h Host) error {
	// Route only: a handle of every family also opens NETLINK_XFRM,
	// which a kernel without xfrm_user loaded refuses
	// (EPROTONOSUPPORT), as slate's kernels do.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cnet: netlink: %w", err)
	}
	defer nl.Close()
	link, err := nl.LinkByName(h.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		la := netlink.NewLinkAttrs()
		la.Name = h.Bridge
		// A fixed address: a bridge without one takes the lowest of its
		// ports', and changes it as containers come and go, which stales
		// the containers' neighbour entries for the gateway.
		la.HardwareAddr = bridgeMAC(h.Bridge)
		if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("cnet: create bridge %s: %w", h.Bridge, err)
		}
		if link, err = nl.LinkByName(h.Bridge); err != nil {
			return fmt.Errorf("cnet: bridge %s: %w", h.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("cnet: bridge %s: %w", h.Bridge, err)
	case link.Type() != "bridge":
		return fmt.Errorf("cnet: %s exists and is a %s, not a bridge", h.Bridge, link.Type())
	}
	want := &net.IPNet{IP: h.Gateway.AsSlice(), Mask: net.CIDRMask(h.Subnet.Bits(), 32)}
	addrs, err := nl.AddrList(link, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("cnet: bridge %s: list addresses: %w", h.Bridge, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != want.String() {
			// An address of another subnet (an earlier call's) would
			// route part of the containers' traffic wrongly.
			if err := nl.AddrDel(link, &a); err != nil {
				return fmt.Errorf("cnet: bridge %s: remove address %s: %w", h.Bridge, a.IPNet, err)
			}
		}
	}
	if err := nl.AddrReplace(link, &netlink.Addr{IPNet: want}); err != nil {
		return fmt.Errorf("cnet: bridge %s: address %s: %w", h.Bridge, want, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("cnet: bridge %s: set up: %w", h.Bridge, err)
	}
	return nil
}

// bridgeMAC is a locally administered unicast address derived from the
// bridge's name.
func bridgeMAC(name string) net.HardwareAddr {
	b := sha256.Sum256([]byte("bridge " + name))
	return net.HardwareAddr{0x02, 0x5e, b[0], b[1], b[2], b[3]}
}

// Rules lists the rules of slate's table in the calling thread's network
// namespace, by chain (for tests and for diagnosis).
func Rules() (map[string][]*nftables.Rule, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("cnet: nftables: %w", err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("cnet: list chains: %w", err)
	}
	out := map[string][]*nftables.Rule{}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("cnet: list rules of %s: %w", ch.Name, err)
		}
		out[ch.Name] = rs
	}
	return out, nil
}
