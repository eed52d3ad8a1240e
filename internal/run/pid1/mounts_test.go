package pid1

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/cgroup"
)

const mountHelperEnv = "SYSTEM_TEST_MOUNTS"

func TestMain(m *testing.M) {
	if os.Getenv(mountHelperEnv) != "" {
		os.Exit(mountHelper())
	}
	os.Exit(m.Run())
}

// mountHelper runs in a mount namespace of its own: it mounts what PID 1
// mounts, twice (the second finds them there), and prints each mount's
// type and options from mountinfo.
func mountHelper() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Println("private:", err)
		return 1
	}
	// What the host has there goes, as on a machine that just switched
	// root (devtmpfs only).
	for _, dir := range []string{"/dev/pts", "/dev/shm"} {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	}
	mountSystem()
	mountSystem()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		target := f[4]
		for _, m := range systemMounts {
			if target != m.target {
				continue
			}
			sep := 6
			for f[sep] != "-" {
				sep++
			}
			// the last mount on a target is the one seen
			fmt.Printf("%s %s %s\n", target, f[sep+1], f[sep+3])
		}
	}
	return 0
}

func TestMountSystem(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), mountHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	last := map[string]string{}
	seen := map[string]int{}
	defer func() {
		for target, n := range seen {
			if n != 1 {
				t.Errorf("%s mounted %d times: a second start must find it", target, n)
			}
		}
	}()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		target, rest, _ := strings.Cut(l, " ")
		last[target] = rest
		fstype, _, _ := strings.Cut(rest, " ")
		seen[target+" "+fstype]++
	}
	for _, want := range []struct{ target, fstype, opt string }{
		{cgroup.Mountpoint, "cgroup2", "nsdelegate"},
		{"/dev/pts", "devpts", "ptmxmode=666"},
		{"/dev/shm", "tmpfs", ""},
	} {
		got := last[want.target]
		if !strings.HasPrefix(got, want.fstype+" ") || !strings.Contains(got, want.opt) {
			t.Errorf("%s: %q, want %s with %s\n%s", want.target, got, want.fstype, want.opt, out)
		}
	}
	t.Logf("mounts:\n%s", out)
}

// The gate covers containers meant to keep running.
func TestGatedContainers(t *testing.T) {
	cs := []imageinfo.Container{
		{Container: configs.Container{Name: "a"}},
		{Container: configs.Container{Name: "b", Restart: configs.RestartNever}},
		{Container: configs.Container{Name: "c", Restart: configs.RestartOnFailure}},
	}
	if got := gatedContainers(cs); strings.Join(got, ",") != "a,c" {
		t.Errorf("gated %v, want a,c", got)
	}
}
