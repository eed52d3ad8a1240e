package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/slateos/slate/internal/run/ignition"
	"github.com/slateos/slate/internal/run/supervisor"
)

// ResultPath (under the root) records that provisioning ran: it is on
// STATE, so it survives A/B updates and rollbacks, and the config is
// applied on the first boot only.
const ResultPath = "var/lib/slate/ignition/result.json"

// Result is what the first boot did.
type Result struct {
	Source   string               `json:"source"` // cmdline, fw_cfg, image, esp or none
	Where    string               `json:"where,omitempty"`
	At       time.Time            `json:"at"`
	Files    int                  `json:"files"`
	Dirs     int                  `json:"directories"`
	Links    int                  `json:"links"`
	Users    int                  `json:"users"`
	Groups   int                  `json:"groups"`
	Services []supervisor.Service `json:"services,omitempty"`
	Warnings []string             `json:"warnings,omitempty"`
}

// Reporter prints SLATE- lines.
type Reporter func(kind string, kv ...any)

// Run provisions on the first boot and returns the services the config
// added, on every boot. root is "/" on a machine.
func Run(ctx context.Context, root string, env Env, fetch ignition.Fetcher, report Reporter) ([]supervisor.Service, error) {
	if report == nil {
		report = func(string, ...any) {}
	}
	res, err := LoadResult(root)
	if err != nil {
		return nil, err
	}
	if res != nil {
		// A later boot, perhaps of an image that has since gained a
		// service named like a unit: the image's wins, so that its
		// services (the updater among them) still run.
		var svcs []supervisor.Service
		for _, s := range res.Services {
			if slices.Contains(env.Services, s.Name) || slices.Contains(ignition.ReservedServices, s.Name) {
				report("IGNITION", "warning", fmt.Sprintf("unit %s.service of the config is not started: the image has a service %q", s.Name, s.Name))
				continue
			}
			svcs = append(svcs, s)
		}
		return svcs, nil
	}
	cfg, err := Find(ctx, env)
	if err != nil {
		return nil, err
	}
	res = &Result{Source: "none", At: time.Now().UTC()}
	if cfg != nil {
		report("IGNITION", "state", "found", "source", cfg.Source, "where", cfg.Where)
		// checked against the image's services before anything is applied
		plan, err := ignition.ParseFor(cfg.Data, &ignition.Image{Services: env.Services})
		if err != nil {
			return nil, fmt.Errorf("config from %s (%s): %w", cfg.Source, cfg.Where, err)
		}
		for _, w := range plan.Warnings {
			report("IGNITION", "warning", w)
		}
		if err := plan.Apply(ctx, root, fetch); err != nil {
			return nil, fmt.Errorf("config from %s (%s): %w", cfg.Source, cfg.Where, err)
		}
		svcs, err := Services(plan.Units)
		if err != nil {
			return nil, err
		}
		res.Source, res.Where = cfg.Source, cfg.Where
		res.Files, res.Dirs, res.Links = len(plan.Files), len(plan.Dirs), len(plan.Links)
		res.Users, res.Groups, res.Services, res.Warnings = len(plan.Users), len(plan.Groups), svcs, plan.Warnings
	}
	if err := saveResult(root, res); err != nil {
		return nil, err
	}
	if res.Source == "none" {
		report("IGNITION", "state", "none")
		return nil, nil
	}
	report("IGNITION", "state", "applied", "source", res.Source, "files", res.Files, "directories", res.Dirs,
		"links", res.Links, "users", res.Users, "groups", res.Groups, "services", len(res.Services))
	return res.Services, nil
}

// LoadResult reads the record of an earlier first boot; nil if none.
func LoadResult(root string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(root, ResultPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read provisioning result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("provisioning result %s is damaged: %w", ResultPath, err)
	}
	return &r, nil
}

func saveResult(root string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(root, ResultPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("record provisioning: %w", err)
	}
	if err := renameio.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record provisioning: %w", err)
	}
	return nil
}

// Services turns units into supervisor services (the conversion from an
// Ignition unit to what PID 1 runs), with systemd's meaning
// of their dependencies: only After= and Before= order (Wants= pulls a
// unit in, and slate starts every enabled unit anyway); Requires= skips
// the unit when the required one failed only together with After=, as
// systemd starts both at once otherwise. Units of the config and services
// of the image are named by service name; network-online.target and
// multi-user.target (default.target) are the supervisor's targets; other
// well-known targets are reached when services start and order nothing.
func Services(units []ignition.Unit) ([]supervisor.Service, error) {
	dep := func(n string) string {
		switch n {
		case supervisor.NetworkOnlineTarget, supervisor.MultiUserTarget:
			return n
		case "default.target":
			return supervisor.MultiUserTarget
		}
		if ignition.WellKnownTargets[n] {
			return ""
		}
		return unitName(n)
	}
	before := map[string][]string{} // service -> services ordered before it
	for _, u := range units {
		for _, b := range u.Before {
			if n := dep(b); n != "" && !strings.HasSuffix(n, ".target") {
				before[n] = append(before[n], unitName(u.Name))
			}
		}
	}
	var out []supervisor.Service
	for _, u := range units {
		if len(u.ExecStart) == 0 {
			return nil, fmt.Errorf("unit %s has no ExecStart", u.Name)
		}
		s := supervisor.Service{
			Name:             unitName(u.Name),
			Command:          u.ExecStart[0],
			Args:             u.ExecStart[1:],
			Env:              u.Environment,
			Restart:          u.Restart,
			Type:             u.Type,
			User:             u.User,
			WorkingDirectory: u.WorkingDirectory,
		}
		for _, f := range u.EnvironmentFiles {
			p := f.Path
			if f.Optional {
				p = "-" + p
			}
			s.EnvironmentFile = append(s.EnvironmentFile, p)
		}
		for _, a := range append(append([]string(nil), u.After...), before[s.Name]...) {
			if n := dep(a); n != "" && n != s.Name && !contains(s.After, n) {
				s.After = append(s.After, n)
			}
		}
		for _, r := range u.Requires {
			if n := dep(r); n != "" && n != s.Name && contains(s.After, n) && !contains(s.Requires, n) {
				s.Requires = append(s.Requires, n)
			}
		}
		s.ExecStartPre, s.ExecStartPost, s.ExecStop = execCommands(u.ExecStartPre), execCommands(u.ExecStartPost), execCommands(u.ExecStop)
		s.RestartSec, s.TimeoutStartSec, s.TimeoutStopSec = u.RestartSec, u.TimeoutStartSec, u.TimeoutStopSec
		out = append(out, s)
	}
	return out, nil
}

func execCommands(cmds []ignition.ExecCommand) []supervisor.ExecCommand {
	var out []supervisor.ExecCommand
	for _, c := range cmds {
		out = append(out, supervisor.ExecCommand{Argv: c.Argv, IgnoreFailure: c.IgnoreFailure})
	}
	return out
}

func unitName(n string) string { return strings.TrimSuffix(n, ".service") }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
