package configs

import (
	"fmt"
	"strings"
	"unicode"
)

// ServiceProblem is one thing wrong with a service: Field is the field
// relative to the service, in the spec's names ("command", "args[1]",
// "env.KEY"; "" for the service as a whole), Msg what is wrong with it.
type ServiceProblem struct {
	Field string
	Msg   string
}

// at is the problem's JSON path under the service at path sp.
func (p ServiceProblem) at(sp string) string {
	if p.Field == "" {
		return sp
	}
	if p.Field[0] == '[' {
		return sp + p.Field
	}
	return sp + "." + p.Field
}

// CheckService is the one validation of a service on its own (its name,
// program, arguments, environment, restart policy, type, user, folder and
// environment files), whoever wrote it: the spec's validation runs it on
// every service, Ignition's unit translation on every unit, and PID 1 on
// everything it is given to run. Empty Restart and Type are the defaults
// (on-failure, simple). What names other services (after, requires,
// duplicates, cycles) is checked on the whole set by the caller. A
// command need not be absolute here: PID 1 looks a bare name up in the
// service's PATH; the spec (CheckSpecCommand) and Ignition's ExecStart=
// ask for an absolute path.
func CheckService(s Service) []ServiceProblem {
	var out []ServiceProblem
	add := func(field, format string, args ...any) {
		out = append(out, ServiceProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case s.Name == "":
		add("name", "required: a service name like web or node-exporter")
	case len(s.Name) > maxName:
		add("name", "%d characters; at most %d are allowed", len(s.Name), maxName)
	case !serviceNameRe.MatchString(s.Name):
		add("name", "%q is not a valid service name: lowercase letters, digits, '_', '.' and '-', starting with a letter or digit", s.Name)
	case !CgroupSafeName(s.Name):
		add("name", "%q cannot name the service's cgroup: %s", s.Name, cgroupNameHint)
	}
	switch {
	case s.Command == "":
		add("command", "required: the absolute path of the program, like /usr/bin/app")
	case strings.ContainsRune(s.Command, 0):
		add("command", "contains a NUL byte")
	}
	for j, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			add(index("args", j), "contains a NUL byte")
		}
	}
	switch s.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		add("restart", "unknown restart policy %q: use always, on-failure or never", s.Restart)
	}
	for k, v := range s.Env {
		ep := key("env", k)
		if !envKeyRe.MatchString(k) {
			add(ep, "%q is not a valid variable name: letters, digits and '_', not starting with a digit", k)
		}
		if strings.ContainsRune(v, 0) {
			add(ep, "value contains a NUL byte")
		}
	}
	switch s.Type {
	case "", TypeSimple:
	case TypeOneshot:
		if s.Restart == RestartAlways {
			add("restart", "a oneshot service runs once to completion; restart always would run it in a loop (use type simple)")
		}
	default:
		add("type", "unknown type %q: use simple or oneshot", s.Type)
	}
	if badUser(s.User) {
		add("user", "%q is not a user name or numeric uid", s.User)
	}
	if d := s.WorkingDirectory; d != "" {
		if msg := absPath(d); msg != "" {
			add("working_directory", "%s", msg)
		}
	}
	out = append(out, CheckLimits(s.Limits)...)
	for j, f := range s.EnvironmentFile {
		if msg := absPath(strings.TrimPrefix(f, "-")); msg != "" {
			add(index("environment_file", j), "%s (a leading '-' marks an optional file)", msg)
		}
	}
	return out
}

// CheckSpecCommand is the spec's rule for a command, stricter than what
// PID 1 runs: an absolute path without whitespace, so that a spec never
// depends on PATH. "" when it passes (or is empty: CheckService says so).
func CheckSpecCommand(cmd string) string {
	switch {
	case cmd == "" || strings.ContainsRune(cmd, 0):
	case !strings.HasPrefix(cmd, "/"):
		return fmt.Sprintf("%q is not an absolute path; services are started without a shell or PATH lookup", cmd)
	case strings.ContainsFunc(cmd, unicode.IsSpace):
		return fmt.Sprintf("%q contains whitespace; command is the program only, put its arguments in args", cmd)
	}
	return ""
}
