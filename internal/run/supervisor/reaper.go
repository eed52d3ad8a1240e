package supervisor

import (
	"os"
	"os/signal"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// startReaper starts the one loop that waits for children: on every
// SIGCHLD it reaps all exited children and hands the status of a service
// process to its service. Other children are orphans re-parented to PID 1
// (or to this subreaper); reaping them is all there is to do. It returns a
// function that stops the loop after a last pass.
func (s *supervisor) startReaper() (stop func()) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			// Reap first: children may have exited before Notify, and a
			// signal that arrives while the channel is full is dropped but
			// is covered by the pass that the queued one triggers.
			s.reap()
			select {
			case <-sigc:
			case <-done:
				s.reap()
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigc)
		close(done)
		<-finished
	}
}

// reap collects every exited child. It holds s.mu for the whole pass (wait4
// with WNOHANG does not block), so a PID registered by start is either
// still unreaped or already handed over, never in between: stop can signal
// it without racing a PID reuse.
func (s *supervisor) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
			return
		}
		if h := s.helpers[pid]; h != nil {
			delete(s.helpers, pid)
			_ = h.proc.Release()
			h.exitc <- ws
			continue
		}
		svc := s.byPID[pid]
		if svc == nil {
			logrus.WithFields(logrus.Fields{"pid": pid, "status": int(ws)}).Debug("supervisor: reaped orphan")
			continue
		}
		delete(s.byPID, pid)
		_ = svc.proc.Release()
		svc.proc = nil
		svc.exitc <- ws
	}
}
