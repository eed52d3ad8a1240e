package supervisor

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/internal/boot/netconf"
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

func loopbackUp() error { return netconf.LoopbackUp() }

// waitWired polls for a wired interface: drivers loaded just before may
// register their interface a moment later.
func waitWired(ctx context.Context, netDir string, wait time.Duration) (string, error) {
	names, err := netconf.WaitWired(ctx, netDir, wait)
	if err != nil {
		return "", err
	}
	return names[0], nil
}

type lease = netconf.Lease

// runDHCP configures the first wired interface by DHCPv4, prints one
// SLATE-NET line with the result, then keeps the lease renewed until ctx
// ends.
func (s *supervisor) runDHCP(ctx context.Context) {
	ifname, err := s.cfg.DHCPIface, error(nil)
	if ifname == "" {
		ifname, err = waitWired(ctx, s.cfg.netDir, wiredWait)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.event("NET", "iface", "none", "err", err.Error())
			s.networkOnline(false)
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
		s.event("NET", "iface", ifname, "err", err.Error())
		s.networkOnline(false)
		return
	}
	s.printNet(ifname, l)
	s.networkOnline(true)

	// Renew at half the lease time, as RFC 2131 T1. A failed renewal keeps
	// the address (it is valid until the lease ends) and tries again.
	for {
		wait := max(l.Time/2, renewMin)
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
		if nl.Addr.String() != l.Addr.String() || !nl.Gateway.Equal(l.Gateway) {
			s.printNet(ifname, nl)
		}
		l = nl
	}
}

func (s *supervisor) printNet(ifname string, l lease) {
	kv := []any{"iface", ifname, "addr", l.Addr}
	if l.Gateway != nil {
		kv = append(kv, "gw", l.Gateway)
	}
	s.event("NET", kv...)
	logrus.WithFields(logrus.Fields{"iface": ifname, "addr": l.Addr.String(), "gw": l.Gateway}).Info("network configured")
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
	return netconf.DHCP{Timeout: dhcpTimeout, Retries: dhcpRetries, LinkUp: linkUpTimeout, ResolvConf: s.cfg.resolvConf}.Request(ctx, []string{ifname})
}
