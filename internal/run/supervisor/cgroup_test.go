package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/cgroup"
)

// testCgroups is a Manager on a fresh subtree of the host's cgroup2
// (removed at the end), or a skip.
func testCgroups(t *testing.T) (*cgroup.Manager, []string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("cgroups need root")
	}
	var base string
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if cgroup.IsCgroup2(p) {
			base = p
			break
		}
	}
	if base == "" {
		t.Skip("no cgroup2 mount on this host")
	}
	if b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			if slices.Contains(cgroup.Controllers, c) {
				_ = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+"+c), 0)
			}
		}
	}
	root := filepath.Join(base, fmt.Sprintf("slate-suptest-%d-%s", os.Getpid(), t.Name()))
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Skipf("cannot create a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		l := &cgroup.Leaf{Path: root}
		_ = l.Kill()
		if err := l.Remove(5 * time.Second); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	m := &cgroup.Manager{Root: root}
	// What Run's Setup will enable, to know what the tests can check.
	ctrls, err := m.Setup()
	if err != nil {
		t.Fatal(err)
	}
	return m, ctrls
}

func TestServicesRunInTheirCgroup(t *testing.T) {
	m, _ := testCgroups(t)
	cfg, con := testConfig(t,
		helperService(t, "a", "cgroup", configs.RestartAlways, nil),
		helperService(t, "b", "cgroup", configs.RestartAlways, nil))
	cfg.Cgroups = m
	cfg.StatusFile = filepath.Join(t.TempDir(), "status.json")
	cfg.statsEvery = 50 * time.Millisecond
	start(t, cfg)
	con.waitFor(t, `^\[a\] cgroup=`, 1)
	con.waitFor(t, `^\[b\] cgroup=`, 1)
	for _, name := range []string{"a", "b"} {
		if n := con.count(`^\[` + name + `\] cgroup=/.*/slate/` + name + `$`); n != 1 {
			t.Errorf("%s is not in its leaf:\n%s", name, con)
		}
	}
	// The supervisor itself stays where it was.
	self, _ := os.ReadFile("/proc/self/cgroup")
	if strings.Contains(string(self), "/slate/") {
		t.Errorf("the supervisor moved: %s", self)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadStatus(cfg.StatusFile)
		if err == nil {
			if a, _ := st.Service("a"); a.CPUUsec > 0 && !a.StatsAt.IsZero() {
				t.Logf("a's use: memory %d, CPU %dµs, tasks %d", a.Memory, a.CPUUsec, a.Tasks)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed a's CPU time: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServiceOOMKilledIsReported(t *testing.T) {
	m, ctrls := testCgroups(t)
	if !slices.Contains(ctrls, "memory") {
		// A hybrid host binds memory to cgroup v1: check the other
		// branch, a service whose limit cannot be applied fails alone.
		limitWithoutController(t, m, "memory", configs.Limits{Memory: 32 << 20})
		return
	}
	hog := helperService(t, "hog", "alloc", configs.RestartAlways, nil)
	hog.Limits = configs.Limits{Memory: 32 << 20}
	cfg, con := testConfig(t, hog)
	cfg.Cgroups = m
	cfg.StatusFile = filepath.Join(t.TempDir(), "status.json")
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=hog state=exited signal=SIGKILL oom=true$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=hog state=restarting`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=hog state=started`, 2)
	if con.count(`allocated`) != 0 {
		t.Errorf("the hog allocated past its limit:\n%s", con)
	}
	st, err := ReadStatus(cfg.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := st.Service("hog"); h.OOMKills < 1 {
		t.Errorf("status %+v", h)
	}
}

func TestLimitsWithoutCgroupsFail(t *testing.T) {
	svc := helperService(t, "x", "sleep", configs.RestartNever, nil)
	svc.Limits = configs.Limits{PIDs: 10}
	cfg, con := testConfig(t, svc)
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=x state=failed err="limits are set .* cgroups are not available"$`, 1)
}

// limitWithoutController checks that a service whose limit needs a
// controller this host's cgroup2 lacks fails with an error naming it, and
// that the others start.
func limitWithoutController(t *testing.T, m *cgroup.Manager, ctrl string, lim configs.Limits) {
	t.Helper()
	svc := helperService(t, "x", "sleep", configs.RestartNever, nil)
	svc.Limits = lim
	ok := helperService(t, "ok", "sleep", configs.RestartNever, nil)
	cfg, con := testConfig(t, svc, ok)
	cfg.Cgroups = m
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=x state=failed err=".*`+ctrl+` controller is not enabled`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=ok state=started`, 1)
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chatty.log")
	l, err := openLog(path, logMaxSize, logKeep)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("y", 999) + "\n")
	const total = 50 << 20
	for w := 0; w < total; w += len(line) {
		if _, err := l.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, name := range []string{"chatty.log", "chatty.log.1", "chatty.log.2"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > logMaxSize {
			t.Errorf("%s is %d bytes, over %d", name, fi.Size(), logMaxSize)
		}
		if fi.Size()%int64(len(line)) != 0 {
			t.Errorf("%s (%d bytes) has a cut line", name, fi.Size())
		}
		sum += fi.Size()
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("%d files in the log folder, want 3", len(ents))
	}
	if sum > (logKeep+1)*logMaxSize {
		t.Errorf("%d bytes kept for 50 MiB written", sum)
	}
	t.Logf("50 MiB written, %d bytes kept in 3 files", sum)
	// Reopening appends to the current file.
	l, err = openLog(path, logMaxSize, logKeep)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	_, _ = l.Write(line)
	l.Close()
	after, _ := os.Stat(path)
	if after.Size() != before.Size()+int64(len(line)) {
		t.Errorf("reopened log: %d then %d bytes", before.Size(), after.Size())
	}
}

func TestChattyServiceLogIsBounded(t *testing.T) {
	svc := helperService(t, "chatty", "chatty", configs.RestartNever, map[string]string{"HELPER_BYTES": fmt.Sprint(3 << 20)})
	cfg, con := testConfig(t, svc)
	cfg.Console = discardLines{con} // 3 MiB on the console would only slow the test
	cfg.logMaxSize = 256 << 10
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=chatty state=stopped$`, 1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, name := range []string{"chatty.log", "chatty.log.1", "chatty.log.2"} {
		fi, err := os.Stat(filepath.Join(cfg.LogDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > cfg.logMaxSize {
			t.Errorf("%s is %d bytes", name, fi.Size())
		}
		sum += fi.Size()
	}
	if _, err := os.Stat(filepath.Join(cfg.LogDir, "chatty.log.3")); !os.IsNotExist(err) {
		t.Errorf("chatty.log.3: %v", err)
	}
	f, _ := os.Open(filepath.Join(cfg.LogDir, "chatty.log.1"))
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(sc.Text()) != 1023 {
			t.Fatalf("a line of %d bytes in the log", len(sc.Text()))
		}
	}
	t.Logf("3 MiB of output, %d bytes kept", sum)
}

// discardLines passes only SLATE- lines to the console.
type discardLines struct{ c *console }

func (d discardLines) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), "SLATE-") {
		return d.c.Write(p)
	}
	return len(p), nil
}

func TestServicePIDsLimit(t *testing.T) {
	m, ctrls := testCgroups(t)
	if !slices.Contains(ctrls, "pids") {
		limitWithoutController(t, m, "pids", configs.Limits{PIDs: 10})
		return
	}
	svc := helperService(t, "x", "sleep", configs.RestartNever, nil)
	svc.Limits = configs.Limits{PIDs: 10}
	cfg, con := testConfig(t, svc)
	cfg.Cgroups = m
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=x state=started`, 1)
	l, err := m.Leaf("x")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(l.Path, "pids.max")); err != nil || strings.TrimSpace(string(b)) != "10" {
		t.Errorf("pids.max of x: %q, %v; want 10", b, err)
	}
}
