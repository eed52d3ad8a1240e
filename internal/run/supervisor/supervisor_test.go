package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
)

func TestOutputPrefixedAndLogged(t *testing.T) {
	svc := helperService(t, "greeter", "print", configs.RestartNever, map[string]string{"FOO": "bar"})
	cfg, con := testConfig(t, svc)
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=greeter state=stopped$`, 1)
	con.waitFor(t, `^\[greeter\] partial$`, 1)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	out := con.String()
	want := "[greeter] one\n[greeter] two\n[greeter] three\n[greeter] cwd=/ stdin=/dev/null path=" + servicePath + " foo=bar\n[greeter] partial\n"
	var got strings.Builder
	for _, l := range con.lines() {
		if strings.HasPrefix(l, "[greeter] ") {
			got.WriteString(l + "\n")
		}
	}
	if got.String() != want {
		t.Errorf("console service lines:\n%s\nwant:\n%s\nwhole console:\n%s", got.String(), want, out)
	}
	if !regexp.MustCompile(`(?m)^SLATE-SERVICE name=greeter state=started pid=\d+$`).MatchString(out) ||
		!strings.Contains(out, "SLATE-SERVICE name=greeter state=exited code=0\n") {
		t.Errorf("missing started/exited lines:\n%s", out)
	}

	logPath := filepath.Join(cfg.LogDir, "greeter.log")
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if wantLog := strings.ReplaceAll(want, "[greeter] ", ""); string(b) != wantLog {
		t.Errorf("log file:\n%s\nwant:\n%s", b, wantLog)
	}
	for p, mode := range map[string]os.FileMode{logPath: 0o644, cfg.LogDir: 0o755 | os.ModeDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, mode)
		}
	}

	// A second boot appends to the same log.
	cfg2, con2 := testConfig(t, svc)
	cfg2.LogDir = cfg.LogDir
	r2 := start(t, cfg2)
	con2.waitFor(t, `^\[greeter\] partial$`, 1)
	r2.stop(t)
	b, _ = os.ReadFile(logPath)
	if n := strings.Count(string(b), "one\n"); n != 2 {
		t.Errorf("log has %d runs, want 2 (appended)", n)
	}
}

// restartDelays are the in= values of a service's restarting lines.
func restartDelays(t *testing.T, con *console, name string) []time.Duration {
	rx := regexp.MustCompile(`^SLATE-SERVICE name=` + name + ` state=restarting in=(\S+)$`)
	var ds []time.Duration
	for _, l := range con.lines() {
		if m := rx.FindStringSubmatch(l); m != nil {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("bad delay in %q: %v", l, err)
			}
			ds = append(ds, d)
		}
	}
	return ds
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		name, restart, mode, code string
		restarts                  bool
		exited                    string
	}{
		{"always-exit0", configs.RestartAlways, "exit", "0", true, "code=0"},
		{"always-exit1", configs.RestartAlways, "exit", "1", true, "code=1"},
		{"onfailure-exit3", configs.RestartOnFailure, "exit", "3", true, "code=3"},
		{"default-exit3", "", "exit", "3", true, "code=3"},
		{"onfailure-signal", configs.RestartOnFailure, "killself", "", true, "signal=SIGKILL"},
		{"onfailure-exit0", configs.RestartOnFailure, "exit", "0", false, "code=0"},
		{"never-exit3", configs.RestartNever, "exit", "3", false, "code=3"},
		{"never-signal", configs.RestartNever, "killself", "", false, "signal=SIGKILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := helperService(t, "svc", tt.mode, tt.restart, map[string]string{"HELPER_CODE": tt.code})
			cfg, con := testConfig(t, svc)
			if !tt.restarts {
				cfg = withClock(t, cfg)
			}
			r := start(t, cfg)
			if tt.restarts {
				// 20, 40, 80, 160 (cap), 160 ms: five restarts.
				con.waitFor(t, `^SLATE-SERVICE name=svc state=started`, 6)
				r.stop(t)
				ds := restartDelays(t, con, "svc")
				ms := time.Millisecond
				want := []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 160 * ms}
				if len(ds) < len(want) {
					t.Fatalf("delays %v, want at least %v; console:\n%s", ds, want, con)
				}
				for i, w := range want {
					if ds[i] != w {
						t.Errorf("delay %d = %v, want %v", i, ds[i], w)
					}
				}
			} else {
				con.waitFor(t, `^SLATE-SERVICE name=svc state=stopped$`, 1)
				con.waitClock(t) // past any backoff
				r.stop(t)
				if n := con.count(`name=svc state=started`); n != 1 {
					t.Errorf("started %d times, want 1:\n%s", n, con)
				}
				if n := con.count(`name=svc state=restarting`); n != 0 {
					t.Errorf("restarted %d times, want 0:\n%s", n, con)
				}
			}
			if !strings.Contains(con.String(), "SLATE-SERVICE name=svc state=exited "+tt.exited+"\n") {
				t.Errorf("no exited %s line:\n%s", tt.exited, con)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	p := defaultBackoff
	ms := time.Millisecond
	tests := []struct {
		prev, ran, want time.Duration
	}{
		{0, 0, 100 * ms},                      // first restart
		{100 * ms, 0, 200 * ms},               // quick failure doubles
		{200 * ms, 5 * time.Second, 400 * ms}, // ran less than reset
		{3200 * ms, 0, 6400 * ms},
		{6400 * ms, 0, 10 * time.Second}, // capped
		{10 * time.Second, 0, 10 * time.Second},
		{10 * time.Second, 10 * time.Second, 100 * ms}, // ran long enough: reset
		{400 * ms, time.Hour, 100 * ms},
		{0, time.Hour, 100 * ms},
	}
	for _, tt := range tests {
		if got := p.next(tt.prev, tt.ran); got != tt.want {
			t.Errorf("next(%v, ran %v) = %v, want %v", tt.prev, tt.ran, got, tt.want)
		}
	}
	// The whole sequence of quick failures.
	var d time.Duration
	var seq []string
	for range 9 {
		d = p.next(d, 0)
		seq = append(seq, d.String())
	}
	if got, want := strings.Join(seq, " "), "100ms 200ms 400ms 800ms 1.6s 3.2s 6.4s 10s 10s"; got != want {
		t.Errorf("sequence %s, want %s", got, want)
	}
}

func TestReadyOnce(t *testing.T) {
	cfg, con := testConfig(t,
		helperService(t, "long", "sleep", configs.RestartAlways, nil),
		helperService(t, "quick", "exit", configs.RestartNever, nil),
		helperService(t, "flappy", "exit", configs.RestartAlways, map[string]string{"HELPER_CODE": "1"}),
	)
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-READY version=1\.2\.3 slot=a$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=flappy state=started`, 4)
	r.stop(t)

	lines := con.lines()
	ready := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "SLATE-READY") {
			if ready >= 0 {
				t.Fatalf("SLATE-READY printed twice:\n%s", con)
			}
			ready = i
		}
	}
	for _, name := range []string{"long", "quick", "flappy"} {
		first := -1
		for i, l := range lines {
			if strings.HasPrefix(l, "SLATE-SERVICE name="+name+" state=started") {
				first = i
				break
			}
		}
		if first < 0 || first > ready {
			t.Errorf("%s first started at line %d, READY at %d:\n%s", name, first, ready, con)
		}
	}
}

func TestReadyWithoutServices(t *testing.T) {
	cfg, con := testConfig(t)
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-READY version=1\.2\.3 slot=a$`, 1)
	r.stop(t)
}

func TestNotReadyWhileAServiceNeverStarted(t *testing.T) {
	cfg, con := testConfig(t,
		helperService(t, "long", "sleep", configs.RestartAlways, nil),
		Service{Name: "ghost", Command: "/nonexistent/ghost", Restart: configs.RestartNever},
	)
	r := start(t, withClock(t, cfg))
	con.waitFor(t, `^SLATE-SERVICE name=ghost state=stopped$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=long state=started`, 1)
	con.waitClock(t)
	r.stop(t)
	if n := con.count(`^SLATE-READY`); n != 0 {
		t.Errorf("READY printed although ghost never started:\n%s", con)
	}
}

func TestMissingCommand(t *testing.T) {
	tests := []struct {
		name, command, restart, errPart string
		retried                         bool
	}{
		{"abs-onfailure", "/nonexistent/cmd", configs.RestartOnFailure, "no such file or directory", true},
		{"abs-always", "/nonexistent/cmd", configs.RestartAlways, "no such file or directory", true},
		{"path-onfailure", "no-such-slate-command", configs.RestartOnFailure, `not found in /usr/sbin:/usr/bin:/sbin:/bin`, true},
		{"abs-never", "/nonexistent/cmd", configs.RestartNever, "no such file or directory", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, con := testConfig(t, Service{Name: "m", Command: tt.command, Restart: tt.restart})
			if !tt.retried {
				cfg = withClock(t, cfg)
			}
			r := start(t, cfg)
			failed := `^SLATE-SERVICE name=m state=failed err=".*` + regexp.QuoteMeta(tt.errPart) + `.*"$`
			if tt.retried {
				con.waitFor(t, failed, 4)
				r.stop(t)
				ds := restartDelays(t, con, "m")
				if len(ds) < 3 || ds[0] != 20*time.Millisecond || ds[1] != 40*time.Millisecond || ds[2] != 80*time.Millisecond {
					t.Errorf("delays %v, want 20ms 40ms 80ms ...", ds)
				}
			} else {
				con.waitFor(t, `^SLATE-SERVICE name=m state=stopped$`, 1)
				con.waitClock(t)
				r.stop(t)
				if n := con.count(failed); n != 1 {
					t.Errorf("%d failed lines, want 1:\n%s", n, con)
				}
			}
			if n := con.count(`name=m state=started`); n != 0 {
				t.Errorf("a missing command was reported started:\n%s", con)
			}
		})
	}
}

// procState is the state letter of /proc/pid/stat, or "" if pid is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "?"
	}
	return s[i+2 : i+3]
}

func TestReapsOrphans(t *testing.T) {
	cfg, con := testConfig(t, helperService(t, "forker", "orphan", configs.RestartNever, nil))
	r := start(t, cfg)
	con.waitFor(t, `^\[forker\] grandchild=\d+$`, 1)
	var gpid int
	for _, l := range con.lines() {
		if v, ok := strings.CutPrefix(l, "[forker] grandchild="); ok {
			gpid, _ = strconv.Atoi(v)
		}
	}
	con.waitFor(t, `^SLATE-SERVICE name=forker state=exited code=0$`, 1)

	// The grandchild is now ours (we are the subreaper); it exits after
	// 300 ms. Unreaped it would stay a zombie (state Z) as long as we live.
	deadline := time.Now().Add(5 * time.Second)
	sawOrphan := false
	for {
		st := procState(gpid)
		if st == "" {
			break
		}
		if ppid := parentOf(gpid); ppid == os.Getpid() {
			sawOrphan = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still there in state %s", gpid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sawOrphan {
		t.Log("grandchild exited before it was seen re-parented")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// Run restores the subreaper setting it found.
	var v int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0); err != nil || v != 0 {
		t.Errorf("subreaper after Run = %d, %v; want 0", v, err)
	}
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// startedPIDs maps each service to the PID of its last start.
func startedPIDs(con *console) map[string]int {
	rx := regexp.MustCompile(`^SLATE-SERVICE name=(\S+) state=started pid=(\d+)$`)
	m := map[string]int{}
	for _, l := range con.lines() {
		if s := rx.FindStringSubmatch(l); s != nil {
			m[s[1]], _ = strconv.Atoi(s[2])
		}
	}
	return m
}

func TestShutdownStopsServices(t *testing.T) {
	cfg, con := testConfig(t,
		helperService(t, "polite", "sleep", configs.RestartAlways, nil),
		helperService(t, "stubborn", "ignoreterm", configs.RestartAlways, nil),
	)
	r := start(t, cfg)
	con.waitFor(t, `^\[polite\] ready$`, 1)
	con.waitFor(t, `^\[stubborn\] ready$`, 1)
	pids := startedPIDs(con)

	begin := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	took := time.Since(begin)
	if took < cfg.stopTimeout || took > cfg.stopTimeout+3*time.Second {
		t.Errorf("shutdown took %v, want a bit more than the %v grace period", took, cfg.stopTimeout)
	}
	out := con.String()
	for _, want := range []string{
		"SLATE-SERVICE name=polite state=exited signal=SIGTERM\n",
		"SLATE-SERVICE name=stubborn state=exited signal=SIGKILL\n",
		"SLATE-SHUTDOWN action=poweroff\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if n := con.count(`state=(started|restarting)`); n != 2 {
		t.Errorf("%d started/restarting lines, want 2 (no restart at shutdown):\n%s", n, out)
	}
	if !strings.HasSuffix(out, "SLATE-SHUTDOWN action=poweroff\n") {
		t.Errorf("SLATE-SHUTDOWN is not the last line:\n%s", out)
	}
	for name, pid := range pids {
		if st := procState(pid); st != "" {
			t.Errorf("%s (pid %d) still there in state %s", name, pid, st)
		}
	}
}

func TestShutdownSignals(t *testing.T) {
	tests := []struct {
		sig    syscall.Signal
		action string
	}{
		{syscall.SIGTERM, "reboot"},
		{syscall.SIGINT, "reboot"},
		{syscall.SIGUSR2, "poweroff"},
		{syscall.SIGPWR, "poweroff"},
		{syscall.SIGUSR1, "poweroff"}, // halt
	}
	for _, tt := range tests {
		t.Run(unix.SignalName(tt.sig), func(t *testing.T) {
			cfg, con := testConfig(t, helperService(t, "s", "sleep", configs.RestartAlways, nil))
			r := start(t, cfg)
			// READY comes after Run catches the shutdown signals, so the
			// signal cannot kill the test binary.
			con.waitFor(t, `^SLATE-READY`, 1)
			if err := syscall.Kill(os.Getpid(), tt.sig); err != nil {
				t.Fatal(err)
			}
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if want := "SLATE-SHUTDOWN action=" + tt.action + "\n"; !strings.HasSuffix(con.String(), want) {
				t.Errorf("console does not end with %q:\n%s", want, con)
			}
		})
	}
}

func TestKindSignals(t *testing.T) {
	for _, k := range []Kind{Poweroff, Reboot, Halt} {
		sig, err := k.signal()
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := kindOf(sig); !ok || got != k {
			t.Errorf("%s: signal %v maps back to %v, %v", k, sig, got, ok)
		}
	}
	if _, err := Kind(7).signal(); err == nil {
		t.Error("Kind(7) has a signal")
	}
	if err := RequestShutdown(Kind(7)); err == nil {
		t.Error("RequestShutdown(Kind(7)) succeeded")
	}
}

func TestRunRejectsBadServices(t *testing.T) {
	ok := Service{Name: "a", Command: "/bin/true"}
	tests := []struct {
		name string
		svcs []Service
		want string
	}{
		{"empty name", []Service{{Command: "/bin/true"}}, `services[0]: invalid name ""`},
		{"slash", []Service{{Name: "a/b", Command: "/bin/true"}}, `invalid name "a/b"`},
		{"dotdot", []Service{{Name: "..", Command: "/bin/true"}}, `invalid name ".."`},
		{"duplicate", []Service{ok, ok}, `services[1]: duplicate name "a"`},
		{"no command", []Service{{Name: "a"}}, `services[0] (a): empty command`},
		{"policy", []Service{{Name: "a", Command: "x", Restart: "sometimes"}}, `unknown restart policy "sometimes"`},
		{"type", []Service{{Name: "a", Command: "x", Type: "forking"}}, `services[0] (a): unknown type "forking"`},
		// the one validation of a service (configs.CheckService), naming the field
		{"env key", []Service{{Name: "a", Command: "x", Env: map[string]string{"1X": "v"}}}, `services[0] (a): "1X" is not a valid variable name: letters, digits and '_', not starting with a digit (at env["1X"])`},
		{"upper case", []Service{{Name: "A", Command: "x"}}, `services[0] (A): "A" is not a valid service name`},
		{"empty hook", []Service{{Name: "a", Command: "x", ExecStop: []ExecCommand{{}}}}, `services[0] (a): empty command line (at exec_stop[0])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, con := testConfig(t, tt.svcs...)
			err := Run(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want error containing %q", err, tt.want)
			}
			if con.String() != "" {
				t.Errorf("something was started: %s", con)
			}
		})
	}
}

func TestBeforeServicesHook(t *testing.T) {
	cfg, con := testConfig(t, helperService(t, "s", "sleep", configs.RestartAlways, nil))
	called := false
	cfg.BeforeServices = func(ctx context.Context) error {
		called = true
		if con.String() != "" {
			t.Errorf("services started before the hook: %s", con)
		}
		// The hook may run programs and wait for them: the reaper does
		// not steal them yet.
		for range 20 {
			cmd := exec.Command("/bin/true")
			if err := cmd.Run(); err != nil {
				t.Errorf("program run by the hook: %v", err)
				break
			}
		}
		return fmt.Errorf("no modules")
	}
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-READY`, 1) // a failing hook does not stop the boot
	r.stop(t)
	if !called {
		t.Error("hook not called")
	}
}

func TestStatusFile(t *testing.T) {
	dir := t.TempDir()
	statusFile := filepath.Join(dir, "run", "status.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{
		Version: "1.2.3", Slot: "b", Console: io.Discard, LogDir: filepath.Join(dir, "log"), StatusFile: statusFile,
		Services: []Service{
			{Name: "up", Command: "/bin/sleep", Args: []string{"30"}, Restart: configs.RestartAlways},
			{Name: "once", Command: "/bin/true", Restart: configs.RestartNever},
		},
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadStatus(statusFile)
		if err == nil && st.Ready {
			up, _ := st.Service("up")
			once, _ := st.Service("once")
			if up.State == "started" && up.PID > 0 && up.Starts == 1 && once.State == "stopped" {
				if st.Version != "1.2.3" || st.Slot != "b" || st.ReadyAt.IsZero() {
					t.Fatalf("status %+v", st)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed ready with up running and once stopped: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestProvisionHook(t *testing.T) {
	t.Run("adds services", func(t *testing.T) {
		cfg, con := testConfig(t, helperService(t, "s", "sleep", configs.RestartAlways, nil))
		cfg.Provision = func(ctx context.Context) ([]Service, error) {
			return []Service{helperService(t, "extra", "sleep", configs.RestartAlways, nil)}, nil
		}
		booted := make(chan int, 1)
		cfg.booted = func(n int) { booted <- n }
		r := start(t, cfg)
		if n := waitBooted(t, booted); n != 2 {
			t.Errorf("%d services supervised, want 2 (the spec's and the provisioned one)", n)
		}
		con.waitFor(t, `^SLATE-SERVICE name=extra state=started`, 1)
		con.waitFor(t, `^SLATE-READY`, 1)
		r.stop(t)
	})
	t.Run("failure stops the boot", func(t *testing.T) {
		cfg, con := testConfig(t, helperService(t, "s", "sleep", configs.RestartAlways, nil))
		cfg.Provision = func(ctx context.Context) ([]Service, error) {
			return nil, fmt.Errorf("bad config")
		}
		booted := make(chan int, 1)
		cfg.booted = func(n int) { booted <- n }
		r := start(t, cfg)
		if n := waitBooted(t, booted); n != 0 {
			t.Errorf("%d services supervised after a failed provisioning, want none", n)
		}
		r.stop(t)
		if strings.Contains(con.String(), "SLATE-READY") || strings.Contains(con.String(), "state=started") {
			t.Errorf("services started after a failed provisioning:\n%s", con)
		}
	})
}

// waitBooted waits for Run to report that it has started its services (or
// decided not to) and waits for a shutdown, and returns how many it
// supervises.
func waitBooted(t *testing.T, booted <-chan int) int {
	t.Helper()
	select {
	case n := <-booted:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("Run never got to wait for a shutdown")
		return -1
	}
}
