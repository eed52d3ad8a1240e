package provision

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/run/ignition"
	"github.com/slateos/slate/internal/run/supervisor"
)

func units(t *testing.T, contents map[string]string) []ignition.Unit {
	t.Helper()
	var out []ignition.Unit
	for _, name := range []string{"a.service", "b.service", "c.service"} {
		c, ok := contents[name]
		if !ok {
			continue
		}
		u, err := ignition.ParseUnit(name, c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func TestServicesDependencies(t *testing.T) {
	const run = "[Service]\nExecStart=/bin/true\n"
	tests := []struct {
		name            string
		units           map[string]string
		after, requires map[string][]string
	}{
		{
			// fine under systemd; an ordering cycle if Wants ordered
			name: "wants does not order",
			units: map[string]string{
				"a.service": "[Unit]\nWants=b.service\n" + run,
				"b.service": "[Unit]\nAfter=a.service\n" + run,
			},
			after: map[string][]string{"b": {"a"}},
		},
		{
			name: "requires without after does not order",
			units: map[string]string{
				"a.service": "[Unit]\nRequires=b.service\n" + run,
				"b.service": "[Unit]\nAfter=a.service\n" + run,
			},
			after: map[string][]string{"b": {"a"}},
		},
		{
			name: "requires with after",
			units: map[string]string{
				"a.service": "[Unit]\nRequires=b.service\nAfter=b.service\n" + run,
				"b.service": run,
			},
			after:    map[string][]string{"a": {"b"}},
			requires: map[string][]string{"a": {"b"}},
		},
		{
			name: "before",
			units: map[string]string{
				"a.service": "[Unit]\nBefore=b.service multi-user.target\n" + run,
				"b.service": run,
			},
			after: map[string][]string{"b": {"a"}},
		},
		{
			name: "targets",
			units: map[string]string{
				"a.service": "[Unit]\nWants=network-online.target\nAfter=network-online.target network.target\n" + run,
				"b.service": "[Unit]\nRequires=network-online.target\nAfter=network-online.target\n" + run,
				"c.service": "[Unit]\nAfter=default.target local-fs.target web.service\n" + run,
			},
			after:    map[string][]string{"a": {"network-online.target"}, "b": {"network-online.target"}, "c": {"multi-user.target", "web"}},
			requires: map[string][]string{"b": {"network-online.target"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcs, err := Services(units(t, tt.units))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range svcs {
				if !reflect.DeepEqual(s.After, tt.after[s.Name]) {
					t.Errorf("%s: after %q, want %q", s.Name, s.After, tt.after[s.Name])
				}
				if !reflect.DeepEqual(s.Requires, tt.requires[s.Name]) {
					t.Errorf("%s: requires %q, want %q", s.Name, s.Requires, tt.requires[s.Name])
				}
			}
		})
	}
}

func TestServicesCarryDirectives(t *testing.T) {
	u := units(t, map[string]string{"a.service": "[Service]\nExecStartPre=-/bin/mkdir -p /var/a\nExecStart=/bin/a\nExecStartPost=/bin/b\nExecStop=/bin/c\nRestartSec=2\nTimeoutStartSec=1min 30s\nTimeoutStopSec=infinity\n"})
	svcs, err := Services(u)
	if err != nil {
		t.Fatal(err)
	}
	s := svcs[0]
	if len(s.ExecStartPre) != 1 || !s.ExecStartPre[0].IgnoreFailure || !reflect.DeepEqual(s.ExecStartPre[0].Argv, []string{"/bin/mkdir", "-p", "/var/a"}) ||
		len(s.ExecStartPost) != 1 || len(s.ExecStop) != 1 || s.RestartSec != 2*time.Second || s.TimeoutStartSec != 90*time.Second || s.TimeoutStopSec >= 0 {
		t.Fatalf("service %+v", s)
	}
	// and they survive the record of the first boot
	b, _ := json.Marshal(s)
	var back supervisor.Service
	err = json.Unmarshal(b, &back)
	if b2, _ := json.Marshal(back); err != nil || string(b2) != string(b) || back.TimeoutStopSec != s.TimeoutStopSec {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, s)
	}
	// The record as images before PID 1 had its own service model wrote
	// it (the spec's type with the unit directives): the same JSON.
	const old = `{"name":"a","command":"/bin/a","restart":"never","type":"simple","exec_start_pre":[{"argv":["/bin/mkdir","-p","/var/a"],"ignore_failure":true}],` +
		`"exec_start_post":[{"argv":["/bin/b"]}],"exec_stop":[{"argv":["/bin/c"]}],"restart_sec":2000000000,"timeout_start_sec":90000000000,"timeout_stop_sec":-1}`
	if string(b) != old {
		t.Errorf("record of a unit changed:\n%s\nwant\n%s", b, old)
	}
}

func writeCfg(t *testing.T, data string) string {
	p := filepath.Join(t.TempDir(), "config.ign")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A unit named like a service of the image is refused before anything is
// applied or recorded; a record that clashes (the image gained such a
// service since) keeps the image's service.
func TestRunRefusesClashes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("applying needs root")
	}
	unit := func(name string) string {
		return `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi"}}]},
		"systemd":{"units":[{"name":"` + name + `","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`
	}
	for _, name := range []string{"web.service", "slate-updated.service"} {
		root := t.TempDir()
		env := Env{Baked: writeCfg(t, unit(name)), Services: []string{"web", "slate-updated"}}
		_, err := Run(context.Background(), root, env, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "$.systemd.units[0].name") {
			t.Fatalf("%s: error %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/motd")); err == nil {
			t.Errorf("%s: the config was applied", name)
		}
		if _, err := os.Stat(filepath.Join(root, ResultPath)); err == nil {
			t.Errorf("%s: the failure was recorded", name)
		}
	}
	root := t.TempDir()
	svcs, err := Run(context.Background(), root, Env{Baked: writeCfg(t, unit("app.service"))}, nil, nil)
	if err != nil || len(svcs) != 1 {
		t.Fatalf("first boot: %v %v", svcs, err)
	}
	var warned []string
	svcs, err = Run(context.Background(), root, Env{Services: []string{"app"}}, nil, func(kind string, kv ...any) {
		warned = append(warned, kind)
	})
	if err != nil || len(svcs) != 0 || len(warned) != 1 {
		t.Fatalf("later boot of an image with an app service: %v %v %v", svcs, err, warned)
	}
}

func TestReadConfigLimit(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := readConfig(f); err == nil || !strings.Contains(err.Error(), "8388608") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}
