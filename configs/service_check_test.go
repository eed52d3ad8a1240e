package configs

import (
	"strings"
	"testing"
)

// TestCheckService is the table of the one validation of a service that
// the spec, Ignition's unit translation and PID 1 all run.
func TestCheckService(t *testing.T) {
	ok := Service{Name: "web", Command: "/usr/bin/web"}
	with := func(f func(*Service)) Service { s := ok; f(&s); return s }
	for _, tc := range []struct {
		name  string
		svc   Service
		field string // "" passes
		msg   string
	}{
		{"ok", ok, "", ""},
		{"defaults are empty", with(func(s *Service) { s.Restart, s.Type = "", "" }), "", ""},
		{"bare command (PATH lookup in PID 1)", with(func(s *Service) { s.Command = "sh" }), "", ""},
		{"no name", with(func(s *Service) { s.Name = "" }), "name", "required"},
		{"upper case", with(func(s *Service) { s.Name = "Web" }), "name", "not a valid service name"},
		{"long name", with(func(s *Service) { s.Name = strings.Repeat("a", 64) }), "name", "at most 63"},
		{"cgroup file name cpu.web", with(func(s *Service) { s.Name = "cpu.web" }), "name", `"cpu.web" cannot name the service's cgroup`},
		{"cgroup file name memory.db", with(func(s *Service) { s.Name = "memory.db" }), "name", "cannot name the service's cgroup"},
		{"cgroup file name cgroup.x", with(func(s *Service) { s.Name = "cgroup.x" }), "name", "cannot name the service's cgroup"},
		{"cgroup file name io.", with(func(s *Service) { s.Name = "io." }), "name", "cannot name the service's cgroup"},
		{"prefix after the dot", with(func(s *Service) { s.Name = "web.cpu" }), "", ""},
		{"prefix without a dot", with(func(s *Service) { s.Name = "cpuweb" }), "", ""},
		{"prefix with a dash", with(func(s *Service) { s.Name = "io-x.y" }), "", ""},
		{"no command", with(func(s *Service) { s.Command = "" }), "command", "required"},
		{"NUL command", with(func(s *Service) { s.Command = "/a\x00" }), "command", "NUL"},
		{"NUL arg", with(func(s *Service) { s.Args = []string{"a", "b\x00"} }), "args[1]", "NUL"},
		{"restart", with(func(s *Service) { s.Restart = "sometimes" }), "restart", `unknown restart policy "sometimes"`},
		{"oneshot always", with(func(s *Service) { s.Type, s.Restart = TypeOneshot, RestartAlways }), "restart", "in a loop"},
		{"type", with(func(s *Service) { s.Type = "forking" }), "type", `unknown type "forking"`},
		{"env key", with(func(s *Service) { s.Env = map[string]string{"1X": "v"} }), `env["1X"]`, "not a valid variable name"},
		{"env value", with(func(s *Service) { s.Env = map[string]string{"X": "\x00"} }), "env.X", "NUL"},
		{"user", with(func(s *Service) { s.User = "a,b" }), "user", "not a user name"},
		{"folder", with(func(s *Service) { s.WorkingDirectory = "srv" }), "working_directory", "not an absolute path"},
		{"env file", with(func(s *Service) { s.EnvironmentFile = []string{"-/a/../b"} }), "environment_file[0]", "not clean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := CheckService(tc.svc)
			if tc.field == "" {
				if len(ps) != 0 {
					t.Fatalf("problems %+v", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Field != tc.field || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Fatalf("problems %+v, want one at %s with %q", ps, tc.field, tc.msg)
			}
			if got := ps[0].at("$.services[2]"); !strings.HasPrefix(got, "$.services[2]") || strings.Contains(got, "..") {
				t.Errorf("path %q", got)
			}
		})
	}
	if CheckSpecCommand("sh") == "" || CheckSpecCommand("/bin/a b") == "" || CheckSpecCommand("/bin/a") != "" {
		t.Error("CheckSpecCommand: the spec asks for an absolute command without whitespace")
	}
}
