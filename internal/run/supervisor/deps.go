package supervisor

import (
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
)

// outcome is how far a service got, as its dependents see it.
type outcome int

const (
	pending outcome = iota
	// up: a simple service started at least once, a oneshot exited 0.
	up
	// failed: a oneshot that did not exit 0, or a simple service that
	// never started, or ended with a failure, and will not be restarted.
	failed
	// skipped: not started because of its dependencies.
	skipped
)

// The systemd targets services (Ignition units) may be ordered against.
const (
	// NetworkOnlineTarget is reached when DHCP has its first lease, or has
	// given up (then it failed: what requires it is skipped), or at once
	// when the system runs no DHCP.
	NetworkOnlineTarget = "network-online.target"
	// MultiUserTarget is reached once every service that is not ordered
	// after it has started (or settled otherwise).
	MultiUserTarget = "multi-user.target"
)

// linkServices resolves each service's After and Requires names to the
// services (and targets) they name and marks what cannot be started at
// all: services on a dependency cycle, and services that require a
// service that does not exist. An After naming no service is dropped with
// a warning, as systemd ignores ordering against a unit it does not know.
// It returns the targets named.
func linkServices(svcs []*service) []*service {
	byName := map[string]*service{}
	for _, svc := range svcs {
		byName[svc.spec.Name] = svc
	}
	var targets []*service
	for _, svc := range svcs {
		for _, n := range append(append([]string(nil), svc.spec.After...), svc.spec.Requires...) {
			if (n == NetworkOnlineTarget || n == MultiUserTarget) && byName[n] == nil {
				t := &service{spec: Service{Name: n}, target: true, settled: make(chan struct{}), done: make(chan struct{})}
				byName[n] = t
				targets = append(targets, t)
			}
		}
	}
	for _, svc := range svcs {
		for _, n := range svc.spec.After {
			d := byName[n]
			if d == nil {
				logrus.WithFields(logrus.Fields{"service": svc.spec.Name, "after": n}).Warn("supervisor: after names no service, ignored")
				continue
			}
			if !slices.Contains(svc.after, d) {
				svc.after = append(svc.after, d)
			}
		}
		for _, n := range svc.spec.Requires {
			d := byName[n]
			if d == nil {
				if svc.skipReason == "" {
					svc.skipReason = fmt.Sprintf("requires %s, which does not exist", n)
				}
				continue
			}
			if !slices.Contains(svc.after, d) {
				svc.after = append(svc.after, d)
			}
			if !slices.Contains(svc.requires, d) {
				svc.requires = append(svc.requires, d)
			}
		}
	}
	if mu := byName[MultiUserTarget]; mu != nil && mu.target {
		for _, svc := range svcs {
			if !waitsFor(svc, mu) {
				mu.after = append(mu.after, svc)
			}
		}
	}
	// A cycle is reported in place of a missing requirement: it is the
	// bigger problem and it also holds up the other members.
	for _, svc := range svcs {
		if cycle := cycleThrough(svc); cycle != nil {
			svc.skipReason = configs.CycleText(cycle)
		}
	}
	return targets
}

// waitsFor reports whether svc waits, directly or not, for t.
func waitsFor(svc, t *service) bool {
	seen := map[*service]bool{}
	queue := []*service{svc}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, d := range cur.after {
			if d == t {
				return true
			}
			if !seen[d] {
				seen[d] = true
				queue = append(queue, d)
			}
		}
	}
	return false
}

// reachTarget settles a target once it is reached (see the targets).
func (s *supervisor) reachTarget(t *service) {
	switch t.spec.Name {
	case NetworkOnlineTarget:
		select {
		case <-s.netUp:
		case <-s.stopc:
			return
		}
		if s.netOK {
			s.settle(t, up)
		} else {
			s.settle(t, failed)
		}
	default:
		for _, d := range t.after {
			select {
			case <-d.settled:
			case <-s.stopc:
				return
			}
		}
		s.settle(t, up)
	}
}

// cycleThrough returns the shortest chain of services svc waits for that
// leads back to svc, as names from svc to svc, or nil when it is on no
// cycle (configs.DependencyCycle: the spec's check, on the services PID 1
// runs).
func cycleThrough(svc *service) []string {
	var names []string
	for _, s := range configs.DependencyCycle(svc, func(s *service) []*service { return s.after }) {
		names = append(names, s.spec.Name)
	}
	return names
}

// awaitDependencies waits until every service svc is ordered after has
// settled, and reports whether svc may start: false when the supervisor
// is stopping or svc has been skipped (then reported).
func (s *supervisor) awaitDependencies(svc *service) bool {
	if svc.skipReason != "" {
		s.skip(svc, svc.skipReason)
		return false
	}
	for _, d := range svc.after {
		select {
		case <-d.settled:
		case <-s.stopc:
			return false
		}
	}
	// The outcome may have changed since it settled (a simple service
	// that has since failed for good), so it is read now, at start time.
	for _, d := range svc.requires {
		switch s.outcomeOf(d) {
		case failed:
			s.skip(svc, fmt.Sprintf("requires %s, which failed", d.spec.Name))
			return false
		case skipped:
			s.skip(svc, fmt.Sprintf("requires %s, which was skipped", d.spec.Name))
			return false
		}
	}
	return true
}

// skip reports a service that will not be started.
func (s *supervisor) skip(svc *service, reason string) {
	s.setStateReason(svc.spec.Name, "skipped", 0, reason)
	s.event("SERVICE", "name", svc.spec.Name, "state", "skipped", "reason", reason)
	s.settle(svc, skipped)
}

func (s *supervisor) outcomeOf(svc *service) outcome {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	return svc.outcome
}

// settle records a service's outcome. The first one wakes its dependents
// and counts towards SLATE-READY, except a simple service that never
// started: the system is not ready without it (its dependents that
// require it are skipped, and count). Later ones only change what
// dependents that start later see.
func (s *supervisor) settle(svc *service, o outcome) {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	first := svc.outcome == pending
	svc.outcome = o
	if !first {
		return
	}
	close(svc.settled)
	if svc.target {
		return
	}
	if o == failed && !svc.oneshot() {
		return
	}
	s.resolved++
	s.maybeReadyLocked()
}
