package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"github.com/sirupsen/logrus"
)

// DefaultStatusFile is where PID 1 publishes the state of the system for
// other processes (the updater's health checks, `slate update status`).
const DefaultStatusFile = "/run/slate/status.json"

// Status is the content of the status file.
type Status struct {
	Version  string          `json:"version"`
	Slot     string          `json:"slot"`
	Ready    bool            `json:"ready"`
	ReadyAt  time.Time       `json:"ready_at,omitzero"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one service's state:
//
//   - waiting: not started yet (dependencies, or the boot is young);
//   - started: a simple service's program is running (PID set);
//   - exited: its process ended, a decision follows;
//   - restarting: it will be started again after a delay;
//   - stopped: a simple service that will not be restarted;
//   - running: a oneshot's program is running (PID set);
//   - done: a oneshot exited 0;
//   - failed: could not be started, or a oneshot that did not exit 0
//     (Reason says why);
//   - skipped: never started because of its dependencies (Reason says
//     which).
//
// A oneshot is never "started": a health check that wants a service to
// stay started does not apply to it.
type ServiceStatus struct {
	Name   string    `json:"name"`
	State  string    `json:"state"`
	PID    int       `json:"pid,omitempty"`
	Starts int       `json:"starts"`
	Since  time.Time `json:"since"`
	// Reason is why a service failed or was skipped: the start error,
	// code=N or signal=NAME, or the dependency; "oom-killed" on an exited
	// one whose process the OOM killer killed.
	Reason string `json:"reason,omitempty"`
	// Kind is "container" for a container, empty for a service.
	Kind string `json:"kind,omitempty"`
	// Health is starting, healthy or unhealthy for a unit with a health
	// check (empty otherwise, and until its first start); HealthReason
	// is the last failed check's error.
	Health       string `json:"health,omitempty"`
	HealthReason string `json:"health_reason,omitempty"`
	// What the unit's cgroup uses, refreshed every few seconds: memory
	// now and its peak in bytes, CPU time in µs since the boot (every
	// run of the unit), processes, and the OOM killer's kills.
	Memory     uint64    `json:"memory,omitempty"`
	MemoryPeak uint64    `json:"memory_peak,omitempty"`
	CPUUsec    uint64    `json:"cpu_usec,omitempty"`
	Tasks      uint64    `json:"tasks,omitempty"`
	OOMKills   uint64    `json:"oom_kills,omitempty"`
	StatsAt    time.Time `json:"stats_at,omitzero"`
}

// Service returns a service's status by name.
func (s *Status) Service(name string) (ServiceStatus, bool) {
	for _, x := range s.Services {
		if x.Name == name {
			return x, true
		}
	}
	return ServiceStatus{}, false
}

// ReadStatus reads a status file.
func ReadStatus(path string) (*Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read supervisor status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse supervisor status %s: %w", path, err)
	}
	return &st, nil
}

// setState records a service's new state and publishes the status file.
func (s *supervisor) setState(name, state string, pid int) {
	s.setStateReason(name, state, pid, "")
}

// setStateReason is setState with the reason of a failed or skipped state.
func (s *supervisor) setStateReason(name, state string, pid int, reason string) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.initStatusLocked()
	for i := range s.status.Services {
		x := &s.status.Services[i]
		if x.Name != name {
			continue
		}
		x.State, x.PID, x.Since, x.Reason = state, pid, time.Now().UTC(), reason
		if state == "started" || state == "running" {
			x.Starts++
		}
	}
	s.writeStatusLocked()
}

// initStatusLocked lists every service as waiting, once.
func (s *supervisor) initStatusLocked() {
	if s.status.Services != nil {
		return
	}
	for _, svc := range s.cfg.Services {
		st := ServiceStatus{Name: svc.Name, State: "waiting"}
		if svc.Container != nil {
			st.Kind = KindContainer
		}
		s.status.Services = append(s.status.Services, st)
	}
}

// KindContainer is ServiceStatus.Kind of a container.
const KindContainer = "container"

// statsInterval is how often the units' cgroup use is refreshed in the
// status file.
const statsInterval = 5 * time.Second

// refreshStats reads svc's cgroup use into the status (without writing
// the file: the caller's next write carries it).
func (s *supervisor) refreshStats(svc *service) {
	if svc.leaf == nil {
		return
	}
	st, err := svc.leaf.Stats()
	if err != nil {
		// a container's leaf exists from its start to the runc
		// delete after its exit; what it used stays in the status
		return
	}
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.initStatusLocked()
	for i := range s.status.Services {
		if x := &s.status.Services[i]; x.Name == svc.spec.Name {
			if svc.spec.Container != nil {
				if svc.runEnded {
					// the kept leaf of a run already counted
					return
				}
				// runc makes a new leaf at each start: add what the
				// earlier ones used.
				svc.runCPU = st.CPUUsec
				st.CPUUsec += svc.cpuTotal
				st.OOMKills = svc.oomTotal + max(svc.runOOM.Load(), st.OOMKills)
			}
			x.Memory, x.MemoryPeak, x.CPUUsec, x.Tasks, x.OOMKills = st.MemoryCurrent, st.MemoryPeak, st.CPUUsec, st.PIDs, st.OOMKills
			x.StatsAt = time.Now().UTC()
		}
	}
}

// statsLoop refreshes every unit's use until the supervisor stops.
func (s *supervisor) statsLoop() {
	t := time.NewTicker(s.cfg.statsEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		for _, svc := range s.services {
			s.refreshStats(svc)
		}
		s.statusMu.Lock()
		s.writeStatusLocked()
		s.statusMu.Unlock()
	}
}

func (s *supervisor) setReady() {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.status.Ready, s.status.ReadyAt = true, time.Now().UTC()
	s.writeStatusLocked()
}

func (s *supervisor) writeStatusLocked() {
	if s.cfg.StatusFile == "" {
		return
	}
	s.status.Version, s.status.Slot = s.cfg.Version, s.cfg.Slot
	if s.status.Services == nil {
		s.status.Services = []ServiceStatus{}
	}
	b, err := json.MarshalIndent(&s.status, "", "  ")
	if err != nil {
		return
	}
	if err = os.MkdirAll(filepath.Dir(s.cfg.StatusFile), 0o755); err == nil {
		err = renameio.WriteFile(s.cfg.StatusFile, append(b, '\n'), 0o644)
	}
	if err != nil && !s.statusWarned {
		s.statusWarned = true
		logrus.WithError(err).Warn("supervisor: cannot write the status file")
	}
}
