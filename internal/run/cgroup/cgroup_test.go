package cgroup

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
)

// The test binary doubles as the processes started in leaves.
const helperEnv = "CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sleep":
		time.Sleep(time.Minute)
		os.Exit(0)
	case "alloc":
		// Touch 128 MiB, a page at a time, so it is charged at once.
		var keep [][]byte
		for range 128 {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println(len(keep))
		os.Exit(0)
	case "fork":
		// Start 20 sleepers; print how many started.
		self, _ := os.Executable()
		n := 0
		var procs []*os.Process
		for range 20 {
			p, err := os.StartProcess(self, []string{self}, &os.ProcAttr{Env: []string{helperEnv + "=sleep"}})
			if err != nil {
				continue
			}
			n++
			procs = append(procs, p)
		}
		fmt.Println(n)
		for _, p := range procs {
			_ = p.Kill()
			_, _ = p.Wait()
		}
		os.Exit(0)
	}
	os.Exit(2)
}

// testManager makes a Manager on a fresh subtree of this host's cgroup2
// mount, removed at the end; it skips when there is none or it is not
// writable.
func testManager(t *testing.T) *Manager {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("cgroup tests need root")
	}
	var base string
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if IsCgroup2(p) {
			base = p
			break
		}
	}
	if base == "" {
		t.Skip("no cgroup2 mount on this host")
	}
	// Enable what the base has (it may be enabled already; a base with
	// processes of its own refuses, and the limit tests skip).
	if avail, err := readList(filepath.Join(base, "cgroup.controllers")); err == nil {
		for _, c := range Controllers {
			if slices.Contains(avail, c) {
				_ = writeFile(filepath.Join(base, "cgroup.subtree_control"), "+"+c)
			}
		}
	}
	root := filepath.Join(base, fmt.Sprintf("slate-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")))
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Skipf("cannot create a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		l := &Leaf{Path: root}
		_ = l.Kill()
		if err := l.Remove(5 * time.Second); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return &Manager{Root: root}
}

// needController reports whether ctrl is enabled for leaves of m. Where
// it is not (a host that binds the controller to a cgroup v1 hierarchy,
// as hybrid hosts do with memory and pids), the test checks instead that
// a limit of that controller is refused with an error naming it, and the
// caller returns: the test runs, and can fail, on every host. The kernel
// of slate's images has every controller in cgroup2; the e2e tests run
// the limits there.
func needController(t *testing.T, m *Manager, enabled []string, ctrl string, lim Limits) bool {
	t.Helper()
	if slices.Contains(enabled, ctrl) {
		return true
	}
	l, err := m.Leaf("without-" + ctrl)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Create(lim)
	if err == nil || !strings.Contains(err.Error(), ctrl+" controller is not enabled") {
		t.Errorf("Create with a %s limit and no %s controller: %v", ctrl, ctrl, err)
	}
	if err := l.Create(Limits{}); err != nil {
		t.Errorf("Create without limits: %v", err)
	}
	t.Logf("no %s controller in cgroup2 here (%s): checked that a %s limit is refused", ctrl, m.Root, ctrl)
	return false
}

// startIn starts the test binary as helper mode in leaf l.
func startIn(t *testing.T, l *Leaf, mode string) (*os.Process, *os.File) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	attr, dir, err := l.Attr(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess(self, []string{self}, &os.ProcAttr{
		Env: []string{helperEnv + "=" + mode}, Files: []*os.File{nil, w, w}, Sys: attr,
	})
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return p, r
}

func TestProcessStartsInLeafAndIsKilled(t *testing.T) {
	m := testManager(t)
	if _, err := m.Setup(); err != nil {
		t.Fatal(err)
	}
	l, err := m.Leaf("web")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Create(Limits{}); err != nil {
		t.Fatal(err)
	}
	p, _ := startIn(t, l, "sleep")
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The cgroup2 line is "0::/path" relative to the mount's root.
	var rel string
	for _, line := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(line, "0::"); ok {
			rel = s
		}
	}
	if !strings.HasSuffix(l.Path, rel) || !strings.HasSuffix(rel, "/"+Parent+"/web") {
		t.Errorf("process is in %q, want the leaf %s", rel, l.Path)
	}
	pids, err := l.PIDs()
	if err != nil || len(pids) != 1 || pids[0] != p.Pid {
		t.Errorf("PIDs = %v, %v; want [%d]", pids, err, p.Pid)
	}
	if pop, err := l.Populated(); err != nil || !pop {
		t.Errorf("Populated = %v, %v", pop, err)
	}
	if _, err := l.Stats(); err != nil {
		t.Errorf("Stats: %v", err)
	}
	if err := l.Remove(0); err == nil {
		t.Error("Remove of a leaf with a process succeeded")
	}
	if err := l.Kill(); err != nil {
		t.Fatal(err)
	}
	ps, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ws := ps.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process ended with %v, want SIGKILL", ps)
	}
	if err := l.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path); !os.IsNotExist(err) {
		t.Errorf("leaf still there: %v", err)
	}
	if err := l.Remove(0); err != nil {
		t.Errorf("Remove of a removed leaf: %v", err)
	}
}

func TestCPUTimeIsCounted(t *testing.T) {
	m := testManager(t)
	if _, err := m.Setup(); err != nil {
		t.Fatal(err)
	}
	l, _ := m.Leaf("busy")
	if err := l.Create(Limits{}); err != nil {
		t.Fatal(err)
	}
	p, r := startIn(t, l, "alloc") // touching memory takes CPU time
	buf := make([]byte, 64)
	_, _ = r.Read(buf)
	_, _ = p.Wait()
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsec == 0 {
		t.Errorf("no CPU time counted: %+v", st)
	}
	t.Logf("stats after a 128 MiB allocation: %+v", st)
}

func TestMemoryLimitOOMKills(t *testing.T) {
	m := testManager(t)
	enabled, err := m.Setup()
	if err != nil {
		t.Fatal(err)
	}
	if !needController(t, m, enabled, "memory", Limits{Memory: 32 << 20}) {
		return
	}
	l, _ := m.Leaf("hog")
	if err := l.Create(Limits{Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(l.Path, "memory.max")); strings.TrimSpace(string(b)) != strconv.Itoa(32<<20) {
		t.Errorf("memory.max = %q", b)
	}
	p, _ := startIn(t, l, "alloc")
	ps, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ws := ps.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("allocating process ended with %v, want the OOM killer's SIGKILL", ps)
	}
	if n := l.OOMKills(); n < 1 {
		t.Errorf("oom_kill = %d, want at least 1", n)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryPeak != 0 && st.MemoryPeak > 40<<20 {
		t.Errorf("memory.peak %d above the 32 MiB limit", st.MemoryPeak)
	}
	// Lifting the limit writes max again.
	if err := l.SetLimits(Limits{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(l.Path, "memory.max")); strings.TrimSpace(string(b)) != "max" {
		t.Errorf("memory.max after lifting = %q", b)
	}
}

func TestPIDsLimit(t *testing.T) {
	m := testManager(t)
	enabled, err := m.Setup()
	if err != nil {
		t.Fatal(err)
	}
	if !needController(t, m, enabled, "pids", Limits{PIDs: 5}) {
		return
	}
	l, _ := m.Leaf("forker")
	if err := l.Create(Limits{PIDs: 5}); err != nil {
		t.Fatal(err)
	}
	p, r := startIn(t, l, "fork")
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	_, _ = p.Wait()
	started, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("helper said %q", buf[:n])
	}
	// The helper and its Go threads count too: fewer than 5 children.
	if started >= 5 {
		t.Errorf("%d children started under pids.max=5", started)
	}
}

func TestLeafNames(t *testing.T) {
	m := &Manager{Root: "/x"}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"slate-updated", true}, {"", false}, {".", false}, {"..", false},
		{"a/b", false}, {"cgroup.procs", false}, {"memory.max", false}, {"io.x", false}, {"web.1", true}, {"iodine.x", true}, {"a\x00", false}, {strings.Repeat("a", 256), false},
	} {
		l, err := m.Leaf(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("Leaf(%q) = %v, %v", tc.name, l, err)
		}
		if err == nil && l.Path != "/x/slate/"+tc.name {
			t.Errorf("Leaf(%q).Path = %s", tc.name, l.Path)
		}
	}
}

func TestCPUMax(t *testing.T) {
	for _, tc := range []struct {
		cpus float64
		want string
	}{
		{0, "max 100000"}, {-1, "max 100000"}, {math.NaN(), "max 100000"}, {math.Inf(1), "max 100000"},
		{0.5, "50000 100000"}, {2, "200000 100000"}, {0.001, "1000 100000"}, {1e30, "max 100000"},
	} {
		if got := CPUMax(tc.cpus); got != tc.want {
			t.Errorf("CPUMax(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}

func TestParsers(t *testing.T) {
	m, err := ParseKeyed([]byte("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n"))
	if err != nil || m["usage_usec"] != 1234 || len(m) != 3 {
		t.Errorf("cpu.stat: %v, %v", m, err)
	}
	for _, bad := range []string{"a", "a b", "a 1 2", "a -1"} {
		if _, err := ParseKeyed([]byte(bad)); err == nil {
			t.Errorf("ParseKeyed(%q) succeeded", bad)
		}
	}
	for in, want := range map[string]uint64{"0\n": 0, "123": 123, "max\n": math.MaxUint64} {
		if v, err := ParseValue([]byte(in)); err != nil || v != want {
			t.Errorf("ParseValue(%q) = %d, %v", in, v, err)
		}
	}
	for _, bad := range []string{"", "-1", "1 2", "maxx"} {
		if _, err := ParseValue([]byte(bad)); err == nil {
			t.Errorf("ParseValue(%q) succeeded", bad)
		}
	}
	if p, err := ParsePIDs([]byte("1\n22\n")); err != nil || len(p) != 2 || p[1] != 22 {
		t.Errorf("ParsePIDs: %v, %v", p, err)
	}
	for _, bad := range []string{"0", "x", "-3"} {
		if _, err := ParsePIDs([]byte(bad)); err == nil {
			t.Errorf("ParsePIDs(%q) succeeded", bad)
		}
	}
}

func FuzzParseKeyed(f *testing.F) {
	f.Add([]byte("usage_usec 1\nuser_usec 2\n"))
	f.Add([]byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseKeyed(b)
		if err == nil && len(m) > 256 {
			t.Errorf("%d keys kept", len(m))
		}
	})
}

func FuzzParseValue(f *testing.F) {
	f.Add([]byte("max\n"))
	f.Add([]byte("123\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseValue(b)
		s := string(bytes.TrimSpace(b))
		if s == "max" {
			if err != nil || v != math.MaxUint64 {
				t.Errorf("ParseValue(%q) = %d, %v", b, v, err)
			}
			return
		}
		want, werr := strconv.ParseUint(s, 10, 64)
		if (err == nil) != (werr == nil) || err == nil && v != want {
			t.Errorf("ParseValue(%q) = %d, %v; the number is %d, %v", b, v, err, want, werr)
		}
	})
}

func FuzzParsePIDs(f *testing.F) {
	f.Add([]byte("1\n2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pids, err := ParsePIDs(b)
		for _, p := range pids {
			if err == nil && p <= 0 {
				t.Errorf("PID %d accepted", p)
			}
		}
	})
}

// TestValidNameAgreesWithTheSpec: a unit name the spec accepts names a
// leaf, and one that looks like an interface file is refused by both.
func TestValidNameAgreesWithTheSpec(t *testing.T) {
	for _, name := range []string{"web", "web.cpu", "cpuweb", "io-x", "a.b.c", "cpu.web", "io.x", "memory.db", "cgroup.x", "pids.", "irq.1", "misc.a"} {
		if got, want := ValidName(name), configs.CgroupSafeName(name); got != want {
			t.Errorf("%q: ValidName %v, configs.CgroupSafeName %v", name, got, want)
		}
	}
	for _, p := range configs.CgroupReservedPrefixes {
		if ValidName(p+".x") || !ValidName("x."+p) {
			t.Errorf("prefix %s", p)
		}
	}
}
