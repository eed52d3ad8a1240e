package supervisor

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
)

// oneshot is a helper service of type oneshot.
func oneshot(t *testing.T, name, mode string, env map[string]string) Service {
	svc := helperService(t, name, mode, configs.RestartOnFailure, env)
	svc.Type = configs.TypeOneshot
	return svc
}

func after(svc Service, names ...string) Service {
	svc.After = append(svc.After, names...)
	return svc
}

func requires(svc Service, names ...string) Service {
	svc.Requires = append(svc.Requires, names...)
	return svc
}

// lineIndex is the index of the first console line matching re, or -1.
func lineIndex(con *console, re string) int {
	rx := regexp.MustCompile(re)
	for i, l := range con.lines() {
		if rx.MatchString(l) {
			return i
		}
	}
	return -1
}

func TestDependencies(t *testing.T) {
	type order struct{ first, then string } // line patterns
	tests := []struct {
		name  string
		svcs  func(t *testing.T, dir string) []Service
		lines []string // each must appear exactly once
		order []order
		never []string // patterns no line may match
		ready bool
		// last is a line to wait for when the system never gets ready.
		last string
	}{
		{
			name: "oneshot before simple",
			svcs: func(t *testing.T, dir string) []Service {
				f := map[string]string{"HELPER_FILE": filepath.Join(dir, "stamp")}
				// web is listed first: order comes from the dependencies.
				return []Service{
					requires(after(helperService(t, "web", "checkfile", configs.RestartAlways, f), "setup"), "setup"),
					oneshot(t, "setup", "touch", f),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=setup state=running pid=\d+$`,
				`^SLATE-SERVICE name=setup state=exited code=0$`,
				`^SLATE-SERVICE name=setup state=done$`,
				`^SLATE-SERVICE name=web state=started pid=\d+$`,
				`^\[web\] exists=true$`,
			},
			order: []order{
				{`name=setup state=done`, `name=web state=started`},
				{`name=web state=started`, `^SLATE-READY`},
			},
			ready: true,
		},
		{
			name: "requires a failing oneshot",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					oneshot(t, "bad", "exit", map[string]string{"HELPER_CODE": "3"}),
					requires(helperService(t, "dep", "sleep", configs.RestartAlways, nil), "bad"),
					requires(helperService(t, "chain", "sleep", configs.RestartAlways, nil), "dep"),
					after(helperService(t, "soft", "sleep", configs.RestartAlways, nil), "bad"),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=bad state=exited code=3$`,
				`^SLATE-SERVICE name=bad state=failed code=3$`,
				`^SLATE-SERVICE name=dep state=skipped reason="requires bad, which failed"$`,
				`^SLATE-SERVICE name=chain state=skipped reason="requires dep, which was skipped"$`,
				`^SLATE-SERVICE name=soft state=started pid=\d+$`,
				`^SLATE-SERVICE name=bad state=running`, // once: a oneshot is not restarted
			},
			order: []order{{`name=bad state=failed`, `name=soft state=started`}},
			never: []string{`name=(dep|chain) state=started`, `name=bad state=restarting`},
			ready: true,
		},
		{
			name: "oneshot that cannot start or is killed",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					{Name: "ghost", Command: "/nonexistent/ghost", Type: configs.TypeOneshot, Restart: configs.RestartOnFailure},
					oneshot(t, "killed", "killself", nil),
					requires(helperService(t, "dep", "sleep", configs.RestartAlways, nil), "ghost", "killed"),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=ghost state=failed err=".*no such file or directory"$`,
				`^SLATE-SERVICE name=killed state=failed signal=SIGKILL$`,
				`^SLATE-SERVICE name=dep state=skipped reason="requires ghost, which failed"$`,
			},
			never: []string{`name=ghost state=(restarting|stopped)`},
			ready: true,
		},
		{
			name: "cycle",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					after(helperService(t, "a", "sleep", configs.RestartAlways, nil), "b"),
					requires(helperService(t, "b", "sleep", configs.RestartAlways, nil), "a"),
					requires(helperService(t, "c", "sleep", configs.RestartAlways, nil), "a"),
					helperService(t, "d", "sleep", configs.RestartAlways, nil),
					after(helperService(t, "e", "sleep", configs.RestartAlways, nil), "c"),
					after(helperService(t, "self", "sleep", configs.RestartAlways, nil), "self"),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=a state=skipped reason="dependency cycle: a -> b -> a"$`,
				`^SLATE-SERVICE name=b state=skipped reason="dependency cycle: b -> a -> b"$`,
				`^SLATE-SERVICE name=self state=skipped reason="dependency cycle: self -> self"$`,
				`^SLATE-SERVICE name=c state=skipped reason="requires a, which was skipped"$`,
				`^SLATE-SERVICE name=d state=started`,
				`^SLATE-SERVICE name=e state=started`, // after only: runs anyway
			},
			never: []string{`name=(a|b|c|self) state=started`},
			ready: true,
		},
		{
			name: "unknown names",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					after(helperService(t, "x", "sleep", configs.RestartAlways, nil), "nobody"),
					requires(helperService(t, "y", "sleep", configs.RestartAlways, nil), "nobody"),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=x state=started`,
				`^SLATE-SERVICE name=y state=skipped reason="requires nobody, which does not exist"$`,
			},
			ready: true,
		},
		{
			name: "requires a simple service that never starts",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					{Name: "ghost", Command: "/nonexistent/ghost", Restart: configs.RestartNever},
					requires(helperService(t, "dep", "sleep", configs.RestartAlways, nil), "ghost"),
				}
			},
			lines: []string{
				`^SLATE-SERVICE name=ghost state=stopped$`,
				`^SLATE-SERVICE name=dep state=skipped reason="requires ghost, which failed"$`,
			},
			last: `name=dep state=skipped`,
		},
		{
			name: "after a simple service waits for its start only",
			svcs: func(t *testing.T, dir string) []Service {
				return []Service{
					requires(helperService(t, "client", "sleep", configs.RestartAlways, nil), "server"),
					helperService(t, "server", "sleep", configs.RestartAlways, nil),
				}
			},
			lines: []string{`^SLATE-SERVICE name=server state=started`, `^SLATE-SERVICE name=client state=started`},
			order: []order{{`name=server state=started`, `name=client state=started`}},
			ready: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, con := testConfig(t, tt.svcs(t, t.TempDir())...)
			cfg.StatusFile = filepath.Join(t.TempDir(), "status.json")
			r := start(t, withClock(t, cfg))
			if tt.ready {
				con.waitFor(t, `^SLATE-READY version=1\.2\.3 slot=a$`, 1)
			} else {
				con.waitFor(t, tt.last, 1)
			}
			for _, re := range tt.lines {
				con.waitFor(t, re, 1)
			}
			con.waitClock(t) // time for a wrong restart or start
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			for _, re := range tt.lines {
				if n := con.count(re); n != 1 {
					t.Errorf("%d lines match %q, want 1", n, re)
				}
			}
			for _, re := range tt.never {
				if n := con.count(re); n != 0 {
					t.Errorf("%d lines match %q, want none", n, re)
				}
			}
			for _, o := range tt.order {
				if i, j := lineIndex(con, o.first), lineIndex(con, o.then); i < 0 || j < 0 || i > j {
					t.Errorf("%q (line %d) is not before %q (line %d)", o.first, i, o.then, j)
				}
			}
			if n := con.count(`^SLATE-READY`); (n == 1) != tt.ready || n > 1 {
				t.Errorf("%d READY lines, want ready=%t", n, tt.ready)
			}
			if t.Failed() {
				t.Logf("console:\n%s", con)
			}
		})
	}
}

func TestDependencyStatus(t *testing.T) {
	cfg, con := testConfig(t,
		oneshot(t, "ok", "exit", nil),
		oneshot(t, "bad", "exit", map[string]string{"HELPER_CODE": "4"}),
		requires(helperService(t, "web", "sleep", configs.RestartAlways, nil), "ok"),
		requires(helperService(t, "api", "sleep", configs.RestartAlways, nil), "bad"),
	)
	cfg.StatusFile = filepath.Join(t.TempDir(), "status.json")
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-READY`, 1)
	st, err := ReadStatus(cfg.StatusFile)
	r.stop(t)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ServiceStatus{
		"ok":  {State: "done", Starts: 1},
		"bad": {State: "failed", Starts: 1, Reason: "code=4"},
		"web": {State: "started", Starts: 1},
		"api": {State: "skipped", Reason: "requires bad, which failed"},
	}
	if !st.Ready {
		t.Error("status not ready")
	}
	for name, w := range want {
		got, ok := st.Service(name)
		if !ok || got.State != w.State || got.Starts != w.Starts || got.Reason != w.Reason {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
		if (got.PID != 0) != (w.State == "started") {
			t.Errorf("%s: pid %d in state %s", name, got.PID, got.State)
		}
	}
}

// A shutdown while services wait for a dependency ends at once and starts
// none of them.
func TestStopWhileWaiting(t *testing.T) {
	cfg, con := testConfig(t,
		oneshot(t, "slow", "sleep", nil), // never exits by itself
		requires(helperService(t, "web", "sleep", configs.RestartAlways, nil), "slow"),
		after(helperService(t, "late", "sleep", configs.RestartAlways, nil), "web"),
	)
	r := start(t, cfg)
	con.waitFor(t, `^\[slow\] ready$`, 1)
	begin := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("stop took %v", took)
	}
	out := con.String()
	if strings.Contains(out, "name=web") || strings.Contains(out, "name=late") || strings.Contains(out, "SLATE-READY") {
		t.Errorf("a waiting service was started or reported:\n%s", out)
	}
	if !strings.Contains(out, "SLATE-SERVICE name=slow state=exited signal=SIGTERM\n") || strings.Contains(out, "name=slow state=failed") {
		t.Errorf("slow was not just stopped:\n%s", out)
	}
}

func TestLinkServicesCycles(t *testing.T) {
	mk := func(name string, after, req []string) *service {
		return &service{spec: Service{Name: name, After: after, Requires: req}, settled: make(chan struct{})}
	}
	svcs := []*service{
		mk("a", []string{"b", "b"}, nil),
		mk("b", nil, []string{"c", "ghost"}),
		mk("c", []string{"a", "b"}, nil),
		mk("d", []string{"a", "nobody"}, []string{"ghost"}),
		mk("e", []string{"d"}, []string{"d"}),
	}
	linkServices(svcs)
	want := map[string]string{
		"a": "dependency cycle: a -> b -> c -> a",
		"b": "dependency cycle: b -> c -> b",
		"c": "dependency cycle: c -> b -> c",
		"d": "requires ghost, which does not exist",
		"e": "",
	}
	for _, svc := range svcs {
		if svc.skipReason != want[svc.spec.Name] {
			t.Errorf("%s: skip reason %q, want %q", svc.spec.Name, svc.skipReason, want[svc.spec.Name])
		}
	}
	if len(svcs[0].after) != 1 || len(svcs[4].after) != 1 || len(svcs[4].requires) != 1 || len(svcs[3].after) != 1 {
		t.Errorf("dependencies not deduplicated or unknown ones kept: a %d, d %d, e %d/%d",
			len(svcs[0].after), len(svcs[3].after), len(svcs[4].after), len(svcs[4].requires))
	}
}
