package supervisor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/cgroup"
)

// runHelperMore runs the helper modes of the container and cgroup
// tests: "fakerunc" plays runc as the supervisor calls it.
func runHelperMore(mode string) (int, bool) {
	switch mode {
	case "fakerunc":
		return fakeRunc(os.Args[1:]), true
	case "runc-child":
		return runcChild(), true
	case "chatty":
		// FOO lines of 1 KiB, HELPER_BYTES in all.
		n, _ := strconv.Atoi(os.Getenv("HELPER_BYTES"))
		line := strings.Repeat("x", 1023) + "\n"
		for w := 0; w < n; w += len(line) {
			os.Stdout.WriteString(line)
		}
		return 0, true
	case "cgroup":
		b, _ := os.ReadFile("/proc/self/cgroup")
		for _, l := range strings.Split(string(b), "\n") {
			if s, ok := strings.CutPrefix(l, "0::"); ok {
				fmt.Printf("cgroup=%s\n", s)
			}
		}
		// Burn some CPU so that usage shows.
		end := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(end) {
		}
		sleepWhileParent()
		return 0, true
	case "alloc":
		var keep [][]byte
		for range 256 {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
		sleepWhileParent()
		return 0, true
	}
	return 0, false
}

// fakeRunc is runc's command line as the supervisor uses it: --root R
// then run, delete, kill or exec. Each call is appended to FAKERUNC_LOG;
// FAKERUNC_RUN picks how run behaves (wait for SIGTERM by default,
// "ignore" it, "exit" with FAKERUNC_CODE), FAKERUNC_EXEC names a file
// whose content is exec's exit code.
func fakeRunc(args []string) int {
	record := func(s string) {
		f, err := os.OpenFile(os.Getenv("FAKERUNC_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			f.WriteString(s + "\n")
			f.Close()
		}
	}
	if len(args) < 3 || args[0] != "--root" {
		record("bad " + strings.Join(args, " "))
		return 2
	}
	root, cmd, rest := args[1], args[2], args[3:]
	switch cmd {
	case "run":
		if len(rest) != 4 || rest[0] != "--keep" || rest[1] != "--bundle" {
			record("bad run " + strings.Join(rest, " "))
			return 2
		}
		record(fmt.Sprintf("run %s root=%s bundle=%s", rest[3], root, rest[2]))
		// for kill, which signals this process as runc kill does the
		// container's init
		_ = os.WriteFile(os.Getenv("FAKERUNC_LOG")+".pid", []byte(strconv.Itoa(os.Getpid())), 0o644)
		// signals are set up before "container up", which the tests
		// wait for before they stop it
		c := make(chan os.Signal, 1)
		mode := os.Getenv("FAKERUNC_RUN")
		if mode == "ignore" {
			signal.Ignore(syscall.SIGTERM)
		} else {
			signal.Notify(c, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1)
		}
		fmt.Println("container up")
		switch mode {
		case "exit":
			time.Sleep(100 * time.Millisecond)
			code, _ := strconv.Atoi(os.Getenv("FAKERUNC_CODE"))
			return code
		case "ignore":
			sleepWhileParent()
			return 0
		}
		sig := (<-c).(syscall.Signal)
		record("run got " + strings.TrimPrefix(unix.SignalName(sig), "SIG"))
		return 128 + int(sig)
	case "delete":
		record(cmd + " " + strings.Join(rest, " "))
		return 0
	case "kill":
		record(cmd + " " + strings.Join(rest, " "))
		// A signal by number reaches the container (KILL, the last
		// resort, is only recorded: the supervisor kills runc next).
		if n, err := strconv.Atoi(rest[len(rest)-1]); err == nil {
			b, err := os.ReadFile(os.Getenv("FAKERUNC_LOG") + ".pid")
			pid, _ := strconv.Atoi(string(b))
			if err != nil || pid <= 0 || syscall.Kill(pid, syscall.Signal(n)) != nil {
				record("kill found no container")
				return 1
			}
		}
		return 0
	case "exec":
		b, _ := os.ReadFile(os.Getenv("FAKERUNC_EXEC"))
		code, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return code
	}
	record("bad " + cmd)
	return 2
}

// fakeContainer is a container service run by fakeRunc, with a bundle
// and volumes under a temporary folder.
func fakeContainer(t *testing.T, name string, mod func(*imageinfo.Container), env map[string]string) (Service, string) {
	t.Helper()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "containers", name)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	c := imageinfo.Container{Container: configs.Container{Name: name, Image: "example/" + name}, Bundle: bundle, Digest: "sha256:0123456789abcdef0123", UID: 1234, GID: 5678}
	if mod != nil {
		mod(&c)
	}
	svc, err := fromContainer(c, containerPaths{
		runc: self, runcRoot: filepath.Join(dir, "runc"), volumes: filepath.Join(dir, "volumes"), runDir: filepath.Join(dir, "run"),
	})
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "runc.log")
	svc.Env = map[string]string{helperEnv: "fakerunc", "FAKERUNC_LOG": log}
	for k, v := range env {
		svc.Env[k] = v
	}
	return svc, dir
}

func readRecord(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runc.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestFromContainer(t *testing.T) {
	no := false
	p := containerPaths{runc: "/r/runc", runcRoot: "/run/r", volumes: "/v", runDir: "/run/c"}
	for _, tc := range []struct {
		name string
		c    imageinfo.Container
		want Service
		err  string
	}{
		{"defaults", imageinfo.Container{Container: configs.Container{Name: "web"}, Bundle: "/b/web"}, Service{
			Name: "web", Command: "/r/runc", Args: []string{"--root", "/run/r", "run", "--keep", "--bundle", "/b/web", "web"}, Restart: configs.RestartAlways,
			Container: &Container{Runc: "/r/runc", RuncRoot: "/run/r", Bundle: "/b/web", ReadOnly: true},
		}, ""},
		{"everything", imageinfo.Container{
			Container: configs.Container{Name: "db", ReadOnly: &no, Volumes: []string{"data:/var/lib/db", "conf:/etc/db:ro"}, Restart: configs.RestartOnFailure,
				After: []string{"a"}, Requires: []string{"b"}, Limits: configs.Limits{Memory: 64 << 20, CPUs: 0.5, PIDs: 10}},
			Address: "10.88.0.2/16", UID: 7, GID: 8, Digest: "sha256:ab",
		}, Service{
			Name: "db", Command: "/r/runc", Args: []string{"--root", "/run/r", "run", "--keep", "--bundle", configs.ContainersDir + "/db", "db"}, Restart: configs.RestartOnFailure,
			After: []string{"a"}, Requires: []string{"b"}, Limits: configs.Limits{Memory: 64 << 20, CPUs: 0.5, PIDs: 10},
			Container: &Container{Runc: "/r/runc", RuncRoot: "/run/r", Bundle: configs.ContainersDir + "/db", Digest: "sha256:ab", Address: "10.88.0.2/16",
				RunDir: "/run/c/db", Volumes: []string{"/v/data", "/v/conf"}, UID: 7, GID: 8},
		}, ""},
		{"stop signal", imageinfo.Container{Container: configs.Container{Name: "web"}, Bundle: "/b/web", StopSignal: "SIGQUIT"}, Service{
			Name: "web", Command: "/r/runc", Args: []string{"--root", "/run/r", "run", "--keep", "--bundle", "/b/web", "web"}, Restart: configs.RestartAlways,
			Container: &Container{Runc: "/r/runc", RuncRoot: "/run/r", Bundle: "/b/web", ReadOnly: true, StopSignal: syscall.SIGQUIT},
		}, ""},
		{"stop signal SIGTERM is the default", imageinfo.Container{Container: configs.Container{Name: "web"}, Bundle: "/b/web", StopSignal: "15"}, Service{
			Name: "web", Command: "/r/runc", Args: []string{"--root", "/run/r", "run", "--keep", "--bundle", "/b/web", "web"}, Restart: configs.RestartAlways,
			Container: &Container{Runc: "/r/runc", RuncRoot: "/run/r", Bundle: "/b/web", ReadOnly: true},
		}, ""},
		{"unknown stop signal", imageinfo.Container{Container: configs.Container{Name: "x"}, Bundle: "/b/x", StopSignal: "SIGNOPE"}, Service{}, `stop_signal: unknown signal "SIGNOPE"`},
		{"relative bundle", imageinfo.Container{Container: configs.Container{Name: "x"}, Bundle: "b"}, Service{}, "not an absolute path"},
		{"volume escapes", imageinfo.Container{Container: configs.Container{Name: "x", Volumes: []string{"../etc:/x"}}}, Service{}, "volumes[0]"},
		{"volume without path", imageinfo.Container{Container: configs.Container{Name: "x", Volumes: []string{"data"}}}, Service{}, "volumes[0]"},
		{"volume with a relative path", imageinfo.Container{Container: configs.Container{Name: "x", Volumes: []string{"data:var/data"}}}, Service{}, "volumes[0]"},
		{"volume under /proc", imageinfo.Container{Container: configs.Container{Name: "x", Volumes: []string{"data:/proc/x"}}}, Service{}, "volumes[0]"},
		{"volume option", imageinfo.Container{Container: configs.Container{Name: "x", Volumes: []string{"data:/data:z"}}}, Service{}, "volumes[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fromContainer(tc.c, p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v %+v\nwant %+v %+v", got, *got.Container, tc.want, *tc.want.Container)
			}
		})
	}
}

func TestContainerLifecycle(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("volumes are chowned: needs root")
	}
	db := helperService(t, "db", "sleep", configs.RestartAlways, nil)
	web, dir := fakeContainer(t, "web", func(c *imageinfo.Container) {
		c.Requires = []string{"db"}
		c.Volumes = []string{"data:/data"}
	}, nil)
	cfg, con := testConfig(t, web, db)
	cfg.StatusFile = filepath.Join(dir, "status.json")
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-READY `, 1)
	lines := con.lines()
	dbAt := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SLATE-SERVICE name=db state=started") })
	webAt := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SLATE-SERVICE name=web state=started") })
	if dbAt < 0 || webAt < dbAt {
		t.Errorf("web (requires db) did not start after db:\n%s", con)
	}
	con.waitFor(t, `^\[web\] container up$`, 1)
	fi, err := os.Stat(filepath.Join(dir, "volumes", "data"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 || fi.Mode().Perm() != 0o700 {
		t.Errorf("volume owned by %d:%d mode %v, want 1234:5678 0700", st.Uid, st.Gid, fi.Mode().Perm())
	}
	st, err := ReadStatus(cfg.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := st.Service("web"); s.Kind != KindContainer || s.State != "started" {
		t.Errorf("web's status %+v", s)
	}
	if s, _ := st.Service("db"); s.Kind != "" {
		t.Errorf("db's status %+v", s)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"delete --force web",
		fmt.Sprintf("run web root=%s bundle=%s", filepath.Join(dir, "runc"), filepath.Join(dir, "containers", "web")),
		"run got TERM",
		"delete --force web",
	}
	if got := readRecord(t, dir); !slices.Equal(got, want) {
		t.Errorf("runc calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b, err := os.ReadFile(filepath.Join(cfg.LogDir, "web.log")); err != nil || !strings.Contains(string(b), "container up\n") {
		t.Errorf("web.log: %q, %v", b, err)
	}
}

func TestContainerThatIgnoresTermIsKilled(t *testing.T) {
	web, dir := fakeContainer(t, "web", nil, map[string]string{"FAKERUNC_RUN": "ignore"})
	cfg, con := testConfig(t, web)
	r := start(t, cfg)
	con.waitFor(t, `^\[web\] container up$`, 1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	got := readRecord(t, dir)
	if len(got) != 4 || got[0] != "delete --force web" || got[2] != "kill web KILL" || got[3] != "delete --force web" {
		t.Errorf("runc calls:\n%s\nwant delete, run, kill web KILL, delete", strings.Join(got, "\n"))
	}
}

// TestContainerStopSignal: a container whose image has a STOPSIGNAL gets
// it at a stop (through runc kill), and stops without waiting for the
// timeout.
func TestContainerStopSignal(t *testing.T) {
	web, dir := fakeContainer(t, "web", func(c *imageinfo.Container) { c.StopSignal = "SIGQUIT" }, nil)
	cfg, con := testConfig(t, web)
	cfg.stopTimeout = 20 * time.Second
	r := start(t, cfg)
	con.waitFor(t, `^\[web\] container up$`, 1)
	begin := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("the stop took %v: the stop signal did not end the container", took)
	}
	got := readRecord(t, dir)
	want := []string{"delete --force web", "run web", "kill web 3", "run got QUIT", "delete --force web"}
	if len(got) != len(want) {
		t.Fatalf("runc calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("runc call %d is %q, want %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(con.String(), "SLATE-SERVICE name=web state=exited code=131\n") {
		t.Errorf("no exit by SIGQUIT (code=131):\n%s", con)
	}
}

func TestContainerRestartsWithBackoff(t *testing.T) {
	web, _ := fakeContainer(t, "web", nil, map[string]string{"FAKERUNC_RUN": "exit", "FAKERUNC_CODE": "3"})
	cfg, con := testConfig(t, web)
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=web state=exited code=3$`, 2)
	con.waitFor(t, `^SLATE-SERVICE name=web state=restarting in=`, 2)
	con.waitFor(t, `^SLATE-SERVICE name=web state=started`, 3)
}

func TestContainerWithoutRuncFailsAlone(t *testing.T) {
	web, _ := fakeContainer(t, "web", nil, nil)
	web.Command = "/nonexistent/runc"
	web.Container.Runc = "/nonexistent/runc"
	other := helperService(t, "other", "sleep", configs.RestartAlways, nil)
	cfg, con := testConfig(t, web, other)
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=web state=failed err=".*runc.*missing`, 2)
	con.waitFor(t, `^SLATE-SERVICE name=web state=restarting`, 2)
	con.waitFor(t, `^SLATE-SERVICE name=other state=started`, 1)
	if err := r.stop(t); err != nil { // one Run at a time: each reaps every child
		t.Fatal(err)
	}

	// A missing bundle too.
	gone, _ := fakeContainer(t, "gone", nil, nil)
	if err := os.Remove(filepath.Join(gone.Container.Bundle, "config.json")); err != nil {
		t.Fatal(err)
	}
	cfg2, con2 := testConfig(t, gone)
	start(t, cfg2)
	con2.waitFor(t, `^SLATE-SERVICE name=gone state=failed err="container bundle: .*config.json`, 1)
}

func TestHealthHTTP(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || fail.Load() {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	web, dir := fakeContainer(t, "web", func(c *imageinfo.Container) {
		c.Health = &configs.HealthCheck{HTTP: "/healthz", Port: port, Interval: configs.Duration(50 * time.Millisecond), Retries: 2}
	}, nil)
	cfg, con := testConfig(t, web)
	cfg.StatusFile = filepath.Join(dir, "status.json")
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=web health=starting$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=web health=healthy$`, 1)
	if st, _ := ReadStatus(cfg.StatusFile); st == nil || func() string { s, _ := st.Service("web"); return s.Health }() != HealthHealthy {
		t.Errorf("status does not say healthy: %+v", st)
	}
	fail.Store(true)
	con.waitFor(t, `^SLATE-SERVICE name=web health=unhealthy err=".*500`, 1)
	st, _ := ReadStatus(cfg.StatusFile)
	if s, _ := st.Service("web"); s.Health != HealthUnhealthy || !strings.Contains(s.HealthReason, "500") {
		t.Errorf("status %+v", s)
	}
	fail.Store(false)
	con.waitFor(t, `^SLATE-SERVICE name=web health=healthy$`, 2)
}

func TestHealthTCPAndCommand(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u, _ := url.Parse(srv.URL)
		port, _ := strconv.Atoi(u.Port())
		web, _ := fakeContainer(t, "web", func(c *imageinfo.Container) {
			c.Health = &configs.HealthCheck{TCP: true, Port: port, Interval: configs.Duration(50 * time.Millisecond), Retries: 1}
		}, nil)
		cfg, con := testConfig(t, web)
		start(t, cfg)
		con.waitFor(t, `^SLATE-SERVICE name=web health=healthy$`, 1)
		srv.Close()
		con.waitFor(t, `^SLATE-SERVICE name=web health=unhealthy err=.*refused`, 1)
	})
	t.Run("command", func(t *testing.T) {
		code := filepath.Join(t.TempDir(), "code")
		if err := os.WriteFile(code, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		web, _ := fakeContainer(t, "web", func(c *imageinfo.Container) {
			c.Health = &configs.HealthCheck{Command: []string{"/bin/check"}, Interval: configs.Duration(50 * time.Millisecond), Retries: 2}
		}, map[string]string{"FAKERUNC_EXEC": code})
		cfg, con := testConfig(t, web)
		start(t, cfg)
		con.waitFor(t, `^SLATE-SERVICE name=web health=unhealthy err="code=1"$`, 1)
		if err := os.WriteFile(code, []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
		con.waitFor(t, `^SLATE-SERVICE name=web health=healthy$`, 1)
	})
}

func TestHealthTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		p       healthPolicy
		results []bool // one a second
		want    []string
	}{
		{"passes", healthPolicy{retries: 3}, []bool{true}, []string{"healthy"}},
		{"retries", healthPolicy{retries: 2}, []bool{false, false, true, false, false}, []string{"starting", "unhealthy", "healthy", "healthy", "unhealthy"}},
		{"start period", healthPolicy{retries: 1, startPeriod: 2500 * time.Millisecond}, []bool{false, false, false}, []string{"starting", "starting", "unhealthy"}},
		{"pass in start period", healthPolicy{retries: 1, startPeriod: time.Hour}, []bool{false, true, false}, []string{"starting", "healthy", "unhealthy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &healthTracker{p: tc.p, started: t0, state: HealthStarting}
			for i, ok := range tc.results {
				if got := tr.result(ok, t0.Add(time.Duration(i+1)*time.Second)); got != tc.want[i] {
					t.Errorf("check %d (%v): %s, want %s", i, ok, got, tc.want[i])
				}
			}
		})
	}
	if p := policyOf(&configs.HealthCheck{}); p.interval != 10*time.Second || p.timeout != 5*time.Second || p.retries != 3 || p.startPeriod != 0 {
		t.Errorf("defaults %+v", p)
	}
}

func TestContainersList(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &Status{Services: []ServiceStatus{
		{Name: "web", Kind: KindContainer, State: "started", Starts: 3, Since: now.Add(-90 * time.Second), Memory: 3 << 20, CPUUsec: 1500000, Health: "healthy"},
		{Name: "db", Kind: KindContainer, State: "exited", Starts: 1, Reason: "oom-killed", OOMKills: 1},
	}}
	cs := []imageinfo.Container{
		{Container: configs.Container{Name: "web"}, Digest: "sha256:0123456789abcdef0123456789"},
		{Container: configs.Container{Name: "db"}, Digest: "sha256:ff"},
		{Container: configs.Container{Name: "new"}},
	}
	list := Containers(st, cs, now)
	if len(list) != 3 || list[0].Restarts != 2 || list[0].UptimeSeconds != 90 || list[1].UptimeSeconds != 0 || list[2].State != "unknown" {
		t.Errorf("list %+v", list)
	}
	var b strings.Builder
	if err := WriteContainers(&b, list, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"NAME", "sha256:0123456789ab ", "started", "1m30s", "3.0MiB", "1.5s", "healthy", "exited (oom-killed)", "unknown"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := WriteContainers(&b, list, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"uptime_seconds": 90`) {
		t.Errorf("json:\n%s", b.String())
	}
	if l := Containers(nil, cs, now); len(l) != 3 || l[0].State != "unknown" {
		t.Errorf("without status: %+v", l)
	}
	st.Services = append(st.Services, ServiceStatus{Name: "api", State: "started", Starts: 1, Since: now, CPUUsec: 2000})
	units := Units(st, now)
	if len(units) != 3 || units[2].Kind != "service" || units[0].Kind != KindContainer {
		t.Errorf("units %+v", units)
	}
	b.Reset()
	if err := WriteUnits(&b, units, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "KIND") || !strings.Contains(b.String(), "api   service") {
		t.Errorf("units table:\n%s", b.String())
	}
}

// Limits and health checks reach PID 1 through image.json's JSON.
func TestImageJSONCarriesLimitsAndHealth(t *testing.T) {
	info := imageinfo.Info{
		Services: []configs.Service{{Name: "api", Command: "/bin/api", Limits: configs.Limits{Memory: 64 << 20, CPUs: 1.5, PIDs: 100}}},
		Containers: []imageinfo.Container{{
			Container: configs.Container{Name: "web", Limits: configs.Limits{Memory: 32 << 20},
				Health: &configs.HealthCheck{HTTP: "/", Port: 80, Interval: configs.Duration(3 * time.Second), Retries: 5}},
			Bundle: "/usr/lib/slate/containers/web",
		}},
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var back imageinfo.Info
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := FromSpecs(back.Services)[0].Limits; got != info.Services[0].Limits {
		t.Errorf("service limits %+v, want %+v (JSON %s)", got, info.Services[0].Limits, b)
	}
	web, err := FromContainer(back.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	if web.Limits.Memory != 32<<20 || web.Container.Health == nil || web.Container.Health.Interval.D() != 3*time.Second || web.Container.Health.Retries != 5 {
		t.Errorf("container %+v health %+v", web, web.Container.Health)
	}
}

// TestContainerOOMFromItsKeptLeaf: runc run --keep leaves the exited
// container's leaf until runc delete, so an exit is oom=true only when
// that leaf (or the watch of it while it ran) counted a kill: not because
// it exited with 137 while /slate's count grew with another unit's kill.
// The kept leaf's use is counted once.
func TestContainerOOMFromItsKeptLeaf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		leaf     string // the kept leaf's oom_kill; "" when it is gone
		runOOM   uint64 // what the watch saw while it ran
		slateOOM string // /slate's oom_kill at the exit
		want     string
		kills    uint64
	}{
		{"its own kill", "1", 0, "1", "SLATE-SERVICE name=db state=exited code=137 oom=true\n", 1},
		{"another unit's kill", "0", 0, "3", "SLATE-SERVICE name=db state=exited code=137\n", 0},
		{"seen by the watch, leaf gone", "", 1, "1", "SLATE-SERVICE name=db state=exited code=137 oom=true\n", 1},
		{"leaf gone, another unit's kill", "", 0, "3", "SLATE-SERVICE name=db state=exited code=137\n", 0},
		{"no kill", "0", 0, "0", "SLATE-SERVICE name=db state=exited code=137\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write := func(p, body string) {
				t.Helper()
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(filepath.Join(root, cgroup.Parent, "memory.events"), "oom 0\noom_kill "+tc.slateOOM+"\n")
			if tc.leaf != "" {
				write(filepath.Join(root, cgroup.Parent, "db", "memory.events"), "oom 0\noom_kill "+tc.leaf+"\n")
				write(filepath.Join(root, cgroup.Parent, "db", "cpu.stat"), "usage_usec 500\nuser_usec 300\nsystem_usec 200\n")
			}
			con := &console{}
			// runc delete after the exit fails here (no runc): logged only
			spec := Service{Name: "db", Command: "/nonexistent/runc", Container: &Container{Runc: "/nonexistent/runc"}}
			s := newSupervisor(Config{Console: con, Services: []Service{spec}})
			s.cgroups = &cgroup.Manager{Root: root}
			leaf, err := s.cgroups.Leaf("db")
			if err != nil {
				t.Fatal(err)
			}
			svc := &service{spec: spec, leaf: leaf}
			svc.cpuTotal = 1000 // earlier runs
			svc.runOOM.Store(tc.runOOM)
			s.exited(svc, exit{status: unix.WaitStatus(137 << 8)})
			if got := con.String(); got != tc.want {
				t.Errorf("console %q, want %q", got, tc.want)
			}
			st, _ := s.status.Service("db")
			if st.OOMKills != tc.kills || svc.oomTotal != tc.kills {
				t.Errorf("status counts %d OOM kills, the service %d; want %d", st.OOMKills, svc.oomTotal, tc.kills)
			}
			wantCPU := uint64(1000)
			if tc.leaf != "" {
				wantCPU = 1500
			}
			// a later refresh of the kept leaf does not count the run again
			s.refreshStats(svc)
			if st, _ := s.status.Service("db"); tc.leaf != "" && st.CPUUsec != wantCPU || svc.cpuTotal != wantCPU {
				t.Errorf("CPU time %dµs in the status, %dµs counted; want %d", st.CPUUsec, svc.cpuTotal, wantCPU)
			}
		})
	}
}
