package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/cgroup"
)

// findRunc is the runc that scripts/fetch-runc.sh put in the cache.
func findRunc() string {
	cache := os.Getenv("SLATE_CACHE")
	if cache == "" {
		return ""
	}
	m, _ := filepath.Glob(filepath.Join(cache, "runc", "*", "runc"))
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// ociConfig is a minimal runtime config like the builder's: the image's
// user, read-only root (or the overlay's path), its own PID, IPC, UTS
// and mount namespaces, the host network (the health check dials
// 127.0.0.1), a volume at /data and the cgroup leaf.
func ociConfig(rootPath string, readOnly bool, volume, cgroupsPath string, port int, env ...string) map[string]any {
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": 1000, "gid": 1000},
			"args": []string{"/hello"}, "env": append([]string{"PATH=/", fmt.Sprintf("PORT=%d", port)}, env...), "cwd": "/",
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": rootPath, "readonly": readOnly},
		"hostname": "c",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "mode=755", "size=1m"}},
			{"destination": "/data", "type": "bind", "source": volume, "options": []string{"rbind", "rw"}},
		},
		"linux": map[string]any{
			"namespaces":    []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
			"cgroupsPath":   cgroupsPath,
			"maskedPaths":   []string{"/proc/kcore"},
			"readonlyPaths": []string{"/proc/sys"},
		},
	}
}

// TestRealRunc runs tiny containers (a static Go program as their only
// file) through the supervisor and a real runc: one with a read-only
// root and one with the writable overlay, both with a volume and an HTTP
// health check; one that ignores SIGTERM; one stopped by its image's
// STOPSIGNAL; one that exits by itself, read and deleted after its exit
// (runc run --keep). It runs in a child process with a mount namespace of
// its own, where cgroup2 is mounted at /sys/fs/cgroup as on a machine,
// and a network namespace of its own, so the containers' ports are
// free.
func TestRealRunc(t *testing.T) {
	runc := findRunc()
	if runc == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no runc in $SLATE_CACHE/runc: run scripts/fetch-runc.sh")
		}
		t.Skip("no runc in $SLATE_CACHE/runc (scripts/fetch-runc.sh)")
	}
	if os.Getuid() != 0 {
		t.Skip("runc needs root")
	}
	var base string
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if cgroup.IsCgroup2(p) {
			base = p
		}
	}
	if base == "" {
		t.Skip("no cgroup2 on this host")
	}
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", hello, "./testdata/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the container's program: %v\n%s", err, out)
	}
	// The test's own subtree of the cgroup2 root: the leaves are in
	// <it>/slate/<name>, and config.json names them from the mount's root.
	testRoot := fmt.Sprintf("slate-runctest-%d", os.Getpid())
	t.Cleanup(func() {
		l := &cgroup.Leaf{Path: filepath.Join(base, testRoot)}
		_ = l.Kill()
		if err := l.Remove(5 * time.Second); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	var cs []imageinfo.Container
	for _, name := range []string{"ro", "rw", "stubborn", "quitter", "brief"} {
		bundle := filepath.Join(dir, "containers", name)
		rootfs := filepath.Join(bundle, "rootfs")
		for _, d := range []string{"proc", "dev", "data"} {
			if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// Anyone may write the root folder: a write that fails shows a
		// read-only mount, not a permission.
		if err := os.Chmod(rootfs, 0o1777); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(hello)
		if err := os.WriteFile(filepath.Join(rootfs, "hello"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		// the child has a network namespace of its own: any port is free
		port := 8081 + len(cs)
		readOnly := name != "rw"
		rootPath := "rootfs"
		if !readOnly {
			rootPath = filepath.Join(dir, "run", name, "rootfs")
		}
		var env []string
		switch name {
		case "stubborn":
			env = []string{"IGNORE_TERM=1"}
		case "brief":
			env = []string{"BURN=1"}
		}
		cfg := ociConfig(rootPath, readOnly, filepath.Join(dir, "volumes", name), "/"+testRoot+"/slate/"+name, port, env...)
		j, _ := json.Marshal(cfg)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), j, 0o644); err != nil {
			t.Fatal(err)
		}
		ro := readOnly
		var health *configs.HealthCheck
		if name != "stubborn" && name != "brief" {
			health = &configs.HealthCheck{HTTP: "/healthz", Port: port, Interval: configs.Duration(100 * time.Millisecond)}
		}
		c := imageinfo.Container{
			Container: configs.Container{
				Name: name, ReadOnly: &ro, Volumes: []string{name + ":/data"}, Network: configs.NetworkHost, Health: health,
			},
			Bundle: bundle, UID: 1000, GID: 1000, Digest: "sha256:test",
		}
		switch name {
		case "quitter":
			// the image's STOPSIGNAL, sent with runc kill
			c.StopSignal = "SIGQUIT"
		case "brief":
			c.Restart = configs.RestartNever
		}
		cs = append(cs, c)
	}
	spec, _ := json.Marshal(cs)
	run := func() string {
		t.Helper()
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=runc-child", "RUNC="+runc, "RUNC_DIR="+dir, "RUNC_SPEC="+string(spec),
			"RUNC_CGROUP_BASE="+base, "RUNC_CGROUP_ROOT="+testRoot)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return string(out)
	}
	begin := time.Now()
	out := run()
	t.Logf("first boot (%v):\n%s", time.Since(begin), out)
	for _, want := range []string{
		"[ro] hello pid=1 uid=1000 ro=true count=1 volerr=<nil>",
		"[rw] hello pid=1 uid=1000 ro=false count=1 volerr=<nil>",
		"SLATE-SERVICE name=ro health=healthy",
		"SLATE-SERVICE name=rw health=healthy",
		"[ro] hello got SIGTERM",
		"[rw] hello got SIGTERM",
		"SLATE-SERVICE name=ro state=exited code=0",
		"[quitter] hello got SIGQUIT", "SLATE-SERVICE name=quitter state=exited code=0", "child: cgroup quitter gone",
		"child: cgroup ro gone", "child: cgroup rw gone", "child: cgroup stubborn gone", "child: runc list empty",
		// SIGTERM did nothing: runc kill KILL after the stop timeout.
		"SLATE-SERVICE name=stubborn state=exited code=137",
		"child: in leaf ro", "child: in leaf rw", "child: the overlay's upper has the write",
		// runc run --keep: the exited container is read, then deleted
		"[brief] hello burned", "SLATE-SERVICE name=brief state=exited code=0",
		"child: brief deleted after its exit", "child: brief's CPU time counted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the child's output", want)
		}
	}
	// The volume outlives the container; the overlay's writes do not.
	out = run()
	for _, want := range []string{
		"[ro] hello pid=1 uid=1000 ro=true count=2",
		"[rw] hello pid=1 uid=1000 ro=false count=2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("second run: no %q in:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "rw", "upper", "written")); !os.IsNotExist(err) {
		t.Errorf("the writable root's tmpfs is still there after the stop: %v", err)
	}
}

// runcChild is TestRealRunc's child: cgroup2 on /sys/fs/cgroup, the
// supervisor with the containers until both are healthy, then a stop.
func runcChild() int {
	fail := func(f string, a ...any) int {
		fmt.Printf("child: "+f+"\n", a...)
		return 1
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("private mounts: %v", err)
	}
	// the containers share the child's network namespace (network
	// host): its loopback is where they listen and are checked
	if err := loopbackUp(); err != nil {
		return fail("loopback: %v", err)
	}
	if !cgroup.IsCgroup2(cgroup.Mountpoint) {
		if err := unix.Mount("cgroup2", cgroup.Mountpoint, "cgroup2", 0, "nsdelegate"); err != nil {
			return fail("mount cgroup2: %v", err)
		}
	}
	dir := os.Getenv("RUNC_DIR")
	var cs []imageinfo.Container
	if err := json.Unmarshal([]byte(os.Getenv("RUNC_SPEC")), &cs); err != nil {
		return fail("spec: %v", err)
	}
	paths := containerPaths{runc: os.Getenv("RUNC"), runcRoot: filepath.Join(dir, "runc-state"), volumes: filepath.Join(dir, "volumes"), runDir: filepath.Join(dir, "run")}
	var svcs []Service
	for _, c := range cs {
		svc, err := fromContainer(c, paths)
		if err != nil {
			return fail("%v", err)
		}
		svcs = append(svcs, svc)
	}
	m := &cgroup.Manager{Root: filepath.Join(cgroup.Mountpoint, os.Getenv("RUNC_CGROUP_ROOT"))}
	if err := os.MkdirAll(m.Root, 0o755); err != nil {
		return fail("%v", err)
	}
	con := &console{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Version: "1", Slot: "a", Services: svcs, Console: con, LogDir: filepath.Join(dir, "log"),
			Cgroups: m, StatusFile: filepath.Join(dir, "status.json"), stopTimeout: time.Second,
		})
	}()
	begin := time.Now()
	deadline := begin.Add(30 * time.Second)
	for (con.count(`health=healthy`) < 3 || con.count(`^\[stubborn\] hello`) < 1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("child: started and healthy after %v\n", time.Since(begin).Round(time.Millisecond))
	for con.count(`^SLATE-SERVICE name=brief state=exited`) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l, _ := m.Leaf("brief"); l != nil {
		_, statErr := os.Stat(l.Path)
		state, err := exec.Command(paths.runc, "--root", paths.runcRoot, "state", "brief").CombinedOutput()
		if os.IsNotExist(statErr) && err != nil {
			fmt.Println("child: brief deleted after its exit")
		} else {
			fmt.Printf("child: brief is still there after its exit: leaf %v, runc state %s\n", statErr, state)
		}
	}
	if st, err := ReadStatus(filepath.Join(dir, "status.json")); err == nil {
		// it ran for 300 ms, less than a stats interval: only a read
		// of its kept leaf after the exit has its CPU time
		if b, _ := st.Service("brief"); b.CPUUsec >= 100_000 {
			fmt.Println("child: brief's CPU time counted")
		} else {
			fmt.Printf("child: brief's status %+v\n", b)
		}
	}
	// The containers' processes are in their leaves.
	for _, c := range cs {
		l, _ := m.Leaf(c.Name)
		if pids, err := l.PIDs(); err == nil && len(pids) > 0 {
			fmt.Printf("child: in leaf %s (%d processes)\n", c.Name, len(pids))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "rw", "upper", "written")); err == nil {
		fmt.Println("child: the overlay's upper has the write")
	}
	st, _ := ReadStatus(filepath.Join(dir, "status.json"))
	if st != nil {
		for _, s := range st.Services {
			fmt.Printf("child: status %s %s health=%s\n", s.Name, s.State, s.Health)
		}
	}
	stopAt := time.Now()
	cancel()
	err := <-done
	fmt.Printf("child: stopped in %v\n", time.Since(stopAt).Round(time.Millisecond))
	fmt.Print(con.String())
	if err != nil {
		return fail("run: %v", err)
	}
	for _, c := range cs {
		l, _ := m.Leaf(c.Name)
		if _, err := os.Stat(l.Path); os.IsNotExist(err) {
			fmt.Printf("child: cgroup %s gone\n", c.Name)
		}
	}
	out, err := exec.Command(paths.runc, "--root", paths.runcRoot, "list", "-q").CombinedOutput()
	if err == nil && strings.TrimSpace(string(out)) == "" {
		fmt.Println("child: runc list empty")
	} else {
		fmt.Printf("child: runc list: %v %s\n", err, out)
	}
	_ = (&cgroup.Leaf{Path: m.Root}).Remove(time.Second)
	return 0
}
