package cnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ContainerIface is the container end's name inside its namespace.
const ContainerIface = "eth0"

// Attach connects the container whose init is pid to bridge: a veth pair
// whose host end (VethName(name)) is a port of the bridge, and whose other
// end is created straight in the network namespace of pid as eth0, with
// addr, up, and the default route via gw. The calling thread's namespace
// is the host's; it is never changed (netlink sockets are opened in the
// container's namespace by handle). A host end left by an earlier run of
// the container is deleted first.
func Attach(name string, pid int, addr netip.Prefix, gw netip.Addr, bridge string) error {
	if bridge == "" {
		bridge = DefaultBridge
	}
	if err := checkAttach(name, pid, addr, gw, bridge); err != nil {
		return err
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cnet: netlink: %w", err)
	}
	defer host.Close()
	br, err := host.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("cnet: bridge %s (PID 1 sets it up before containers start; see SLATE-BRIDGE on the console): %w", bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("cnet: %s is a %s, not a bridge", bridge, br.Type())
	}
	ns, err := containerNS(pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	veth := VethName(name)
	if err := deleteVeth(host, veth); err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name = veth
	la.MTU = br.Attrs().MTU
	if err := host.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: ContainerIface, PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		return fmt.Errorf("cnet: create veth %s with %s in the netns of pid %d: %w", veth, ContainerIface, pid, err)
	}
	ok := false
	defer func() {
		if !ok { // the pair dies with either end
			_ = deleteVeth(host, veth)
		}
	}()
	hl, err := host.LinkByName(veth)
	if err != nil {
		return fmt.Errorf("cnet: veth %s: %w", veth, err)
	}
	if err := host.LinkSetMaster(hl, br); err != nil {
		return fmt.Errorf("cnet: attach %s to bridge %s: %w", veth, bridge, err)
	}
	// Hairpin: a container reaching its own published port through a
	// host address gets its packets back through the port they came in
	// by; without it the bridge drops them.
	if err := host.LinkSetHairpin(hl, true); err != nil {
		return fmt.Errorf("cnet: hairpin on %s: %w", veth, err)
	}
	if err := host.LinkSetUp(hl); err != nil {
		return fmt.Errorf("cnet: set %s up: %w", veth, err)
	}
	if err := configureContainer(ns, pid, addr, gw); err != nil {
		return err
	}
	ok = true
	return nil
}

func checkAttach(name string, pid int, addr netip.Prefix, gw netip.Addr, bridge string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if pid <= 0 || pid > maxPID {
		return fmt.Errorf("cnet: pid %d out of range", pid)
	}
	if err := checkIfname(bridge); err != nil {
		return fmt.Errorf("cnet: bridge: %w", err)
	}
	a, err := ParseAddress(addr.String())
	if err != nil {
		return fmt.Errorf("cnet: %w", err)
	}
	if _, err := ParseGateway(gw.String(), a); err != nil {
		return fmt.Errorf("cnet: %w", err)
	}
	return nil
}

// maxPID is the kernel's PID_MAX_LIMIT on 64-bit machines.
const maxPID = 1 << 22

// containerNS opens the network namespace of pid, refusing the caller's
// own: configuring eth0 and the default route there would rewrite the
// host's network.
func containerNS(pid int) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return 0, fmt.Errorf("cnet: network namespace of pid %d: %w", pid, err)
	}
	self, err := netns.Get() // the calling thread's
	if err != nil {
		ns.Close()
		return 0, fmt.Errorf("cnet: own network namespace: %w", err)
	}
	defer self.Close()
	if ns.Equal(self) {
		ns.Close()
		return 0, fmt.Errorf("cnet: pid %d shares the host's network namespace (a bridge container needs its own)", pid)
	}
	return ns, nil
}

func configureContainer(ns netns.NsHandle, pid int, addr netip.Prefix, gw netip.Addr) error {
	c, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cnet: netlink in the netns of pid %d: %w", pid, err)
	}
	defer c.Close()
	if lo, err := c.LinkByName("lo"); err == nil {
		if err := c.LinkSetUp(lo); err != nil {
			return fmt.Errorf("cnet: set lo up in the netns of pid %d: %w", pid, err)
		}
	}
	eth, err := c.LinkByName(ContainerIface)
	if err != nil {
		return fmt.Errorf("cnet: %s in the netns of pid %d: %w", ContainerIface, pid, err)
	}
	ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := c.AddrReplace(eth, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("cnet: address %s on %s of pid %d: %w", addr, ContainerIface, pid, err)
	}
	if err := c.LinkSetUp(eth); err != nil {
		return fmt.Errorf("cnet: set %s of pid %d up: %w", ContainerIface, pid, err)
	}
	r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
	if err := c.RouteReplace(r); err != nil {
		return fmt.Errorf("cnet: default route via %s in the netns of pid %d: %w", gw, pid, err)
	}
	return nil
}

// Detach deletes the host end of the container's veth pair, if any (the
// pair is gone anyway once the container's namespace is).
func Detach(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cnet: netlink: %w", err)
	}
	defer host.Close()
	return deleteVeth(host, VethName(name))
}

func deleteVeth(h *netlink.Handle, veth string) error {
	l, err := h.LinkByName(veth)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return nil
	case err != nil:
		return fmt.Errorf("cnet: look up %s: %w", veth, err)
	case l.Type() != "veth":
		return fmt.Errorf("cnet: %s is a %s, not a container's veth: not deleted", veth, l.Type())
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cnet: delete stale %s: %w", veth, err)
	}
	return nil
}

// maxName bounds a container name; configs checks the real rule.
const maxName = 64

// CheckName refuses a container name that cannot be one: empty, too long,
// not starting with a letter or digit, or with characters other than
// letters, digits, '-', '_' and '.'.
func CheckName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("cnet: container name %.64q: want 1 to %d characters", name, maxName)
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("cnet: container name %q does not start with a letter or digit", name)
		}
		if !alnum && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("cnet: container name %q: character %q is not a letter, digit, '-', '_' or '.'", name, c)
		}
	}
	return nil
}
