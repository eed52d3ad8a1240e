//lint:file-ignore ST1011 RestartSec, TimeoutStartSec and TimeoutStopSec are named after systemd's unit keys

package supervisor

import (
	"time"

	"github.com/slateos/slate/configs"
)

// Service is what PID 1 runs: a spec service (FromSpec), a translated
// Ignition unit (provision.Services) or one of the system's own (the
// updater). It is not the spec's YAML type: it carries what only Ignition
// units set (the Exec* hooks and timeouts). Its JSON is the provisioning
// record's (result.json on STATE), so a later boot, of this version or
// another, reads back the units the first boot translated.
type Service struct {
	Name    string            `json:"name"`
	Command string            `json:"command"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Restart is configs.RestartAlways, RestartOnFailure (also when empty)
	// or RestartNever. A oneshot service is never restarted.
	Restart string `json:"restart,omitempty"`
	// Type is configs.TypeSimple (when empty) or TypeOneshot.
	Type string `json:"type,omitempty"`
	// User, a name or a numeric uid, is resolved in /etc/passwd (and its
	// groups in /etc/group) at each start; empty is root.
	User string `json:"user,omitempty"`
	// WorkingDirectory is the absolute folder the service starts in; /
	// when empty.
	WorkingDirectory string `json:"working_directory,omitempty"`
	// EnvironmentFile lists files of KEY=VALUE lines read at each start,
	// in order, before Env; a leading "-" marks an optional one.
	EnvironmentFile []string `json:"environment_file,omitempty"`
	// After and Requires name services (or the targets) that must have
	// started first; without a Requires one it is skipped.
	After    []string `json:"after,omitempty"`
	Requires []string `json:"requires,omitempty"`

	// systemd's ExecStartPre=, ExecStartPost=, ExecStop=, RestartSec=,
	// TimeoutStartSec= and TimeoutStopSec=. Zero durations are the
	// supervisor's defaults; a negative timeout is systemd's "infinity".
	ExecStartPre    []ExecCommand `json:"exec_start_pre,omitempty"`
	ExecStartPost   []ExecCommand `json:"exec_start_post,omitempty"`
	ExecStop        []ExecCommand `json:"exec_stop,omitempty"`
	RestartSec      time.Duration `json:"restart_sec,omitempty"`
	TimeoutStartSec time.Duration `json:"timeout_start_sec,omitempty"`
	TimeoutStopSec  time.Duration `json:"timeout_stop_sec,omitempty"`

	// Limits bound the service's cgroup (memory.max, cpu.max, pids.max);
	// zero is no limit. A spec service's come from the spec; an Ignition
	// unit has none.
	Limits configs.Limits `json:"limits,omitzero"`
	// Container, when set, makes the service a container run by runc
	// (FromContainer): Command and Args are runc's.
	Container *Container `json:"container,omitempty"`
}

// ExecCommand is one extra command line of a service, run to completion.
type ExecCommand struct {
	Argv []string `json:"argv"`
	// IgnoreFailure is systemd's "-" prefix: a failure is logged only.
	IgnoreFailure bool `json:"ignore_failure,omitempty"`
}

// FromSpec is how PID 1 runs a service of the spec (carried by
// image.json in the spec's form).
func FromSpec(s configs.Service) Service {
	return Service{
		Name: s.Name, Command: s.Command, Args: s.Args, Env: s.Env, Restart: s.Restart, Type: s.Type,
		User: s.User, WorkingDirectory: s.WorkingDirectory, EnvironmentFile: s.EnvironmentFile,
		After: s.After, Requires: s.Requires, Limits: s.Limits,
	}
}

// FromSpecs converts every service of the spec.
func FromSpecs(svcs []configs.Service) []Service {
	out := make([]Service, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, FromSpec(s))
	}
	return out
}

// specFields is the part of s that a spec service has too, for the one
// validation of a service (configs.CheckService).
func (s Service) specFields() configs.Service {
	return configs.Service{
		Name: s.Name, Command: s.Command, Args: s.Args, Env: s.Env, Restart: s.Restart, Type: s.Type,
		User: s.User, WorkingDirectory: s.WorkingDirectory, EnvironmentFile: s.EnvironmentFile,
		After: s.After, Requires: s.Requires,
	}
}
