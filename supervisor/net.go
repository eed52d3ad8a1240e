package supervisor

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
	"github.com/sirupsen/logrus"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DHCP timings. A boot must not wait on a network that is not there, and a
// network that comes late (a switch port still in STP listening) should
// still be found: a few attempts spread over about a minute, then give up
// with a SLATE-NET err line. Variables so that tests can shorten them.
var (
	wiredWait      = 10 * time.Second // for the NIC to appear after its module loads
	dhcpAttempts   = 4
	dhcpTimeout    = 3 * time.Second // one request; nclient4 retries it
	dhcpRetries    = 2
	linkUpTimeout  = 10 * time.Second
	dhcpRetryFirst = time.Second
	renewMin       = 30 * time.Second
	renewRetry     = time.Minute
)

// loopbackUp sets lo up: the kernel creates it down in every network
// namespace, and services expect localhost to work.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set loopback up: %w", err)
	}
	return nil
}

// pickWired returns the wired Ethernet interface with the lowest ifindex in
// netDir (a /sys/class/net tree). Wired means backed by a device (not lo,
// veth, bridge or tun), not wireless, and of ARPHRD_ETHER type.
func pickWired(netDir string) (string, error) {
	entries, err := os.ReadDir(netDir)
	if err != nil {
		return "", fmt.Errorf("list network interfaces: %w", err)
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
		return "", errors.New("no wired network interface")
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].index != cands[j].index {
			return cands[i].index < cands[j].index
		}
		return cands[i].name < cands[j].name
	})
	return cands[0].name, nil
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

// waitWired polls for a wired interface: drivers loaded just before may
// register their interface a moment later.
func waitWired(ctx context.Context, netDir string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		name, err := pickWired(netDir)
		if err == nil || time.Now().After(deadline) {
			return name, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lease is a configured DHCPv4 lease.
type lease struct {
	addr *net.IPNet
	gw   net.IP
	time time.Duration
}

// runDHCP configures the first wired interface by DHCPv4, prints one
// SLATE-NET line with the result, then keeps the lease renewed until ctx
// ends.
func (s *supervisor) runDHCP(ctx context.Context) {
	ifname, err := waitWired(ctx, s.cfg.netDir, wiredWait)
	if err != nil {
		if ctx.Err() == nil {
			s.printf("SLATE-NET iface=none err=%q\n", err.Error())
		}
		return
	}
	var l lease
	delay := dhcpRetryFirst
	for attempt := 1; ; attempt++ {
		l, err = s.dhcpOnce(ctx, ifname)
		if err == nil || attempt == dhcpAttempts || !sleepCtx(ctx, delay) {
			break
		}
		logrus.WithError(err).WithField("iface", ifname).Warn("supervisor: DHCP attempt failed, retrying")
		delay *= 2
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.printf("SLATE-NET iface=%s err=%q\n", ifname, err.Error())
		return
	}
	s.printNet(ifname, l)

	// Renew at half the lease time, as RFC 2131 T1. A failed renewal keeps
	// the address (it is valid until the lease ends) and tries again.
	for {
		wait := max(l.time/2, renewMin)
		if !sleepCtx(ctx, wait) {
			return
		}
		nl, err := s.dhcpOnce(ctx, ifname)
		for err != nil {
			if ctx.Err() != nil {
				return
			}
			logrus.WithError(err).WithField("iface", ifname).Warn("supervisor: DHCP renewal failed")
			if !sleepCtx(ctx, renewRetry) {
				return
			}
			nl, err = s.dhcpOnce(ctx, ifname)
		}
		if nl.addr.String() != l.addr.String() || !nl.gw.Equal(l.gw) {
			s.printNet(ifname, nl)
		}
		l = nl
	}
}

func (s *supervisor) printNet(ifname string, l lease) {
	line := fmt.Sprintf("SLATE-NET iface=%s addr=%s", ifname, l.addr)
	if l.gw != nil {
		line += " gw=" + l.gw.String()
	}
	s.printf("%s\n", line)
	logrus.WithFields(logrus.Fields{"iface": ifname, "addr": l.addr.String(), "gw": l.gw}).Info("network configured")
}

// sleepCtx waits d and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dhcpOnce sets ifname up, gets one DHCPv4 lease and configures it.
func (s *supervisor) dhcpOnce(ctx context.Context, ifname string) (lease, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return lease{}, fmt.Errorf("find %s: %w", ifname, err)
	}
	res := dhclient.SendRequests(ctx, []netlink.Link{link}, true, false,
		dhclient.Config{Timeout: dhcpTimeout, Retries: dhcpRetries}, linkUpTimeout)
	err = fmt.Errorf("%s did not come up", ifname) // SendRequests reports nothing then
	for r := range res {
		if r.Err != nil {
			err = fmt.Errorf("DHCPv4 on %s: %w", ifname, r.Err)
			continue
		}
		msg, _ := r.Lease.Message()
		if msg == nil {
			err = fmt.Errorf("DHCPv4 on %s: no message in lease", ifname)
			continue
		}
		return configure(r.Interface, msg, s.cfg.resolvConf)
	}
	return lease{}, err
}

// configure applies an ACK: address, routes (classless static routes win
// over the router option, as RFC 3442 says), and resolv.conf when the
// server named DNS servers. It is dhclient's Packet4.Configure with the
// resolv.conf path as a parameter.
func configure(link netlink.Link, msg *dhcpv4.DHCPv4, resolvConf string) (lease, error) {
	p := dhclient.NewPacket4(link, msg)
	l := lease{addr: p.Lease(), time: msg.IPAddressLeaseTime(0)}
	name := link.Attrs().Name
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: l.addr}); err != nil {
		return lease{}, fmt.Errorf("add %s to %s: %w", l.addr, name, err)
	}
	var routes []*netlink.Route
	if static := msg.ClasslessStaticRoute(); static != nil {
		for _, sr := range static {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: sr.Dest, Gw: sr.Router}
			if r.Gw == nil || r.Gw.Equal(net.IPv4zero) {
				r.Scope = netlink.SCOPE_LINK
			} else if ones, _ := sr.Dest.Mask.Size(); ones == 0 {
				l.gw = sr.Router
			}
			routes = append(routes, r)
		}
	} else if gw := msg.Router(); len(gw) > 0 {
		l.gw = gw[0]
		routes = append(routes, &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw[0]})
	}
	for _, r := range routes {
		if err := netlink.RouteReplace(r); err != nil {
			return lease{}, fmt.Errorf("%s: add route %s: %w", name, r, err)
		}
	}
	ns, search, domain := p.GatherDNSSettings()
	if len(ns) > 0 {
		if err := dhclient.WriteDNSSettings(ns, search, domain, resolvConf); err != nil {
			return lease{}, fmt.Errorf("write %s: %w", resolvConf, err)
		}
	}
	return l, nil
}
