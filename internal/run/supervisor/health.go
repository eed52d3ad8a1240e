package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/slateos/slate/configs"
)

// Health states of a unit with a health check, in the status file and
// on the console (SLATE-SERVICE name=web health=healthy):
//
//   - starting: since the process started, until a check passes, or
//     Retries checks in a row failed after StartPeriod;
//   - healthy: the last check passed (or fewer than Retries failed since);
//   - unhealthy: Retries checks in a row failed.
//
// The updater's health gate waits for healthy and fails on unhealthy.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Health check defaults, as configs.HealthCheck documents them.
const (
	defaultHealthInterval = 10 * time.Second
	defaultHealthTimeout  = 5 * time.Second
	defaultHealthRetries  = 3
)

// healthPolicy is a check with its defaults filled in.
type healthPolicy struct {
	interval, timeout, startPeriod time.Duration
	retries                        int
}

func policyOf(hc *configs.HealthCheck) healthPolicy {
	p := healthPolicy{
		interval: hc.Interval.D(), timeout: hc.Timeout.D(), startPeriod: hc.StartPeriod.D(), retries: hc.Retries,
	}
	if p.interval <= 0 {
		p.interval = defaultHealthInterval
	}
	if p.timeout <= 0 {
		p.timeout = defaultHealthTimeout
	}
	if p.retries <= 0 {
		p.retries = defaultHealthRetries
	}
	return p
}

// healthTracker turns check results into a health state.
type healthTracker struct {
	p        healthPolicy
	started  time.Time
	state    string
	failures int // in a row, counted after the start period
}

// result records one check at now and returns the state after it.
func (t *healthTracker) result(ok bool, now time.Time) string {
	if ok {
		t.failures = 0
		t.state = HealthHealthy
		return t.state
	}
	if t.state == HealthStarting && now.Sub(t.started) < t.p.startPeriod {
		return t.state
	}
	t.failures++
	if t.failures >= t.p.retries {
		t.state = HealthUnhealthy
	}
	return t.state
}

// startHealth starts svc's health checks for the process that just
// started and returns the function that stops them (when it exits). A
// unit without a check returns a no-op.
func (s *supervisor) startHealth(svc *service) func() {
	if svc.spec.Container == nil || svc.spec.Container.Health == nil {
		return func() {}
	}
	hc := svc.spec.Container.Health
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.setHealth(svc, HealthStarting, "")
	go func() {
		defer close(done)
		s.healthLoop(ctx, svc, hc, policyOf(hc))
	}()
	return func() {
		cancel()
		<-done
		// A unit that is not running has no health; the next start
		// prints starting again.
		s.statusMu.Lock()
		for i := range s.status.Services {
			if x := &s.status.Services[i]; x.Name == svc.spec.Name {
				x.Health, x.HealthReason = "", ""
			}
		}
		s.statusMu.Unlock()
	}
}

func (s *supervisor) healthLoop(ctx context.Context, svc *service, hc *configs.HealthCheck, p healthPolicy) {
	t := &healthTracker{p: p, started: time.Now(), state: HealthStarting}
	// The first check comes soon, so a healthy container is seen healthy
	// without waiting a whole interval.
	wait := min(p.interval, time.Second)
	for {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.stopc:
			timer.Stop()
			return
		case <-timer.C:
		}
		wait = p.interval
		err := s.check(ctx, svc, hc, p.timeout)
		if ctx.Err() != nil || errors.Is(err, errStopping) {
			return
		}
		prev := t.state
		now := t.result(err == nil, time.Now())
		if now != prev {
			reason := ""
			if err != nil {
				reason = err.Error()
			}
			s.setHealth(svc, now, reason)
		}
	}
}

// check runs one health check.
func (s *supervisor) check(ctx context.Context, svc *service, hc *configs.HealthCheck, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := svc.spec.Container
	host := "127.0.0.1"
	if c.Address != "" {
		if pfx, err := netip.ParsePrefix(c.Address); err == nil {
			host = pfx.Addr().String()
		} else if a, err := netip.ParseAddr(c.Address); err == nil {
			host = a.String()
		}
	}
	addr := net.JoinHostPort(host, strconv.Itoa(hc.Port))
	switch {
	case len(hc.Command) > 0:
		argv := c.runcArgv(append([]string{"exec", svc.spec.Name}, hc.Command...)...)
		return s.runQuiet(svc, argv, timeout, false)
	case hc.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+hc.HTTP, nil)
		if err != nil {
			return err
		}
		cl := &http.Client{
			// A redirect answer passes as it is; it is not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: %s", hc.HTTP, resp.Status)
		}
		return nil
	case hc.TCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("health check has no http, tcp or command")
}

// setHealth records and prints a health change.
func (s *supervisor) setHealth(svc *service, state, reason string) {
	s.statusMu.Lock()
	s.initStatusLocked()
	for i := range s.status.Services {
		if x := &s.status.Services[i]; x.Name == svc.spec.Name {
			x.Health, x.HealthReason = state, reason
		}
	}
	s.writeStatusLocked()
	s.statusMu.Unlock()
	kv := []any{"name", svc.spec.Name, "health", state}
	if reason != "" {
		kv = append(kv, "err", reason)
	}
	s.event("SERVICE", kv...)
}
