// Package netconf configures the network of a slate machine: it finds the
// wired interfaces, sets loopback up, and configures an interface from a
// DHCPv4 lease (address, routes, resolv.conf). The supervisor uses it for
// the booted system and init for a network boot, where the root itself
// comes over the network.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LoopbackUp sets lo up: the kernel creates it down in every network
// namespace, and services expect localhost to work.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set loopback up: %w", err)
	}
	return nil
}

// Wired returns the wired Ethernet interfaces in netDir (a /sys/class/net
// tree), lowest ifindex first. Wired means backed by a device (not lo,
// veth, bridge or tun), not wireless, and of ARPHRD_ETHER type.
func Wired(netDir string) ([]string, error) {
	entries, err := os.ReadDir(netDir)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	type cand struct {
		name  string
		index int
	}
	var cands []cand
	for _, e := range entries {
		dir := filepath.Join(netDir, e.Name())
		if !exists(filepath.Join(dir, "device")) ||
			exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) {
			continue
		}
		if t, err := readInt(filepath.Join(dir, "type")); err == nil && t != unix.ARPHRD_ETHER {
			continue
		}
		idx, err := readInt(filepath.Join(dir, "ifindex"))
		if err != nil {
			idx = int(^uint(0) >> 1) // unknown: after every known one
		}
		cands = append(cands, cand{e.Name(), idx})
	}
	if len(cands) == 0 {
		return nil, errors.New("no wired network interface")
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].index != cands[j].index {
			return cands[i].index < cands[j].index
		}
		return cands[i].name < cands[j].name
	})
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.name
	}
	return names, nil
}

// WaitWired polls for wired interfaces: drivers loaded just before may
// register their interface a moment later.
func WaitWired(ctx context.Context, netDir string, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, err := Wired(netDir)
		if err == nil || time.Now().After(deadline) {
			return names, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// MACOf returns the interface in netDir whose hardware address is mac
// (any case, colons or hyphens), or "" when there is none.
func MACOf(netDir, mac string) string {
	want := strings.ToLower(strings.ReplaceAll(mac, "-", ":"))
	entries, err := os.ReadDir(netDir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(netDir, e.Name(), "address"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name()
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Lease is a configured DHCPv4 lease.
type Lease struct {
	Iface   string
	Addr    *net.IPNet
	Gateway net.IP
	Time    time.Duration
}

// DHCP asks for leases.
type DHCP struct {
	Timeout    time.Duration // one request; the client retries it Retries times
	Retries    int
	LinkUp     time.Duration // how long an interface may take to come up
	ResolvConf string        // written when the server names DNS servers
}

// Request sets the interfaces up, asks for a DHCPv4 lease on all of them
// at once, and configures the first interface that gets one.
func (c DHCP) Request(ctx context.Context, ifnames []string) (Lease, error) {
	if len(ifnames) == 0 {
		return Lease{}, errors.New("DHCPv4: no interface")
	}
	var links []netlink.Link
	for _, n := range ifnames {
		link, err := netlink.LinkByName(n)
		if err != nil {
			return Lease{}, fmt.Errorf("find %s: %w", n, err)
		}
		links = append(links, link)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := dhclient.SendRequests(ctx, links, true, false,
		dhclient.Config{Timeout: c.Timeout, Retries: c.Retries}, c.LinkUp)
	name := strings.Join(ifnames, ", ")
	err := fmt.Errorf("%s did not come up", name) // SendRequests reports nothing then
	for r := range res {
		if r.Err != nil {
			err = fmt.Errorf("DHCPv4 on %s: %w", r.Interface.Attrs().Name, r.Err)
			continue
		}
		msg, _ := r.Lease.Message()
		if msg == nil {
			err = fmt.Errorf("DHCPv4 on %s: no message in lease", r.Interface.Attrs().Name)
			continue
		}
		l, cerr := Configure(r.Interface, msg, c.ResolvConf)
		if cerr != nil {
			err = cerr
			continue
		}
		cancel()
		// Let SendRequests finish with the others before returning.
		for range res {
		}
		return l, nil
	}
	return Lease{}, err
}

// Configure applies an ACK: address, routes (classless static routes win
// over the router option, as RFC 3442 says), and resolv.conf when the
// server named DNS servers. It is dhclient's Packet4.Configure with the
// resolv.conf path as a parameter.
func Configure(link netlink.Link, msg *dhcpv4.DHCPv4, resolvConf string) (Lease, error) {
	p := dhclient.NewPacket4(link, msg)
	name := link.Attrs().Name
	l := Lease{Iface: name, Addr: p.Lease(), Time: msg.IPAddressLeaseTime(0)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: l.Addr}); err != nil {
		return Lease{}, fmt.Errorf("add %s to %s: %w", l.Addr, name, err)
	}
	var routes []*netlink.Route
	if static := msg.ClasslessStaticRoute(); static != nil {
		for _, sr := range static {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: sr.Dest, Gw: sr.Router}
			if r.Gw == nil || r.Gw.Equal(net.IPv4zero) {
				r.Scope = netlink.SCOPE_LINK
			} else if ones, _ := sr.Dest.Mask.Size(); ones == 0 {
				l.Gateway = sr.Router
			}
			routes = append(routes, r)
		}
	} else if gw := msg.Router(); len(gw) > 0 {
		l.Gateway = gw[0]
		routes = append(routes, &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw[0]})
	}
	for _, r := range routes {
		if err := netlink.RouteReplace(r); err != nil {
			return Lease{}, fmt.Errorf("%s: add route %s: %w", name, r, err)
		}
	}
	if resolvConf != "" {
		ns, search, domain := p.GatherDNSSettings()
		if len(ns) > 0 {
			if err := dhclient.WriteDNSSettings(ns, search, domain, resolvConf); err != nil {
				return Lease{}, fmt.Errorf("write %s: %w", resolvConf, err)
			}
		}
	}
	return l, nil
}
