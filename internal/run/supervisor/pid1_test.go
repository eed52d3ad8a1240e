package supervisor

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPID1 runs the whole PID 1 path, reboot(2) included, as PID 1 of new
// PID, mount, UTS and network namespaces: hostname, loopback, services,
// READY, RequestShutdown, SIGTERM then SIGKILL, kill(-1), unmounting, and
// reboot(2), which in a PID namespace ends its init with SIGINT (power-off)
// or SIGHUP (restart) instead of stopping the machine. The helper chroots
// into a tmpfs of its own first, so unmounting and the read-only remount
// of / touch nothing of the host.
func TestPID1(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		kind   Kind
		action string
		sig    syscall.Signal
	}{
		{Poweroff, "poweroff", syscall.SIGINT},
		{Reboot, "reboot", syscall.SIGHUP},
		{Halt, "poweroff", syscall.SIGINT},
	} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			cmd := exec.Command(self)
			cmd.Env = []string{helperEnv + "=pid1", "TMPDIR=" + t.TempDir(), fmt.Sprintf("PID1_KIND=%d", int(tt.kind))}
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
			}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				if os.Getenv("CI") != "" {
					t.Fatalf("cannot create namespaces: %v", err)
				}
				t.Skipf("cannot create namespaces: %v", err)
			}
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != tt.sig {
				t.Fatalf("PID 1 ended with %v, want killed by %v (reboot(2) in a PID namespace)\n%s", cmd.ProcessState, tt.sig, out)
			}
			o := string(out)
			if testing.Verbose() {
				t.Logf("PID 1 output:\n%s", o)
			}
			for _, want := range []string{
				"[hn] hostname=slate-pid1\n",
				"SLATE-READY version=9.9.9 slot=b\n",
				"SLATE-SERVICE name=hn state=exited signal=SIGTERM\n",
				"SLATE-SERVICE name=stubborn state=exited signal=SIGKILL\n",
				"SLATE-SHUTDOWN action=" + tt.action + "\n",
				"loopback=up\n",
				`msg="supervisor: unmounted" mount=/etc`,
			} {
				if !strings.Contains(o, want) {
					t.Errorf("output lacks %q:\n%s", want, o)
				}
			}
			if strings.Contains(o, "left read-write") || strings.Contains(o, "helper error") {
				t.Errorf("shutdown problem:\n%s", o)
			}
		})
	}
}

// helperPID1 is PID 1 of fresh namespaces. It builds a small root on a
// tmpfs (a writable /var and an overlay /etc over it, as on a slate
// system), chroots into it and runs Run with PID1 set. It has no /dev, so
// services get an empty pipe as stdin instead of /dev/null.
func helperPID1() int {
	fail := func(f string, a ...any) int {
		fmt.Printf("helper error: "+f+"\n", a...)
		return 1
	}
	// Every guard below keeps the host safe: only in a PID namespace may
	// kill(-1) and reboot(2) run, only in a private mount namespace and a
	// root of our own may filesystems be unmounted and remounted.
	if os.Getpid() != 1 {
		return fail("not PID 1 of a new PID namespace")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private: %v", err)
	}
	root := filepath.Join(os.Getenv("TMPDIR"), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail("%v", err)
	}
	if err := unix.Mount("slate-test", root, "tmpfs", 0, "size=256m"); err != nil {
		return fail("tmpfs root: %v", err)
	}
	for _, d := range []string{"proc", "var", "etc", "usr/lib/etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fail("%v", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fail("%v", err)
	}
	if err := copyFile(self, filepath.Join(root, "slate.test")); err != nil {
		return fail("copy test binary: %v", err)
	}
	if err := copyLibs(self, root); err != nil {
		return fail("copy libraries of the test binary: %v", err)
	}
	if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		return fail("proc: %v", err)
	}
	if err := unix.Mount("state", filepath.Join(root, "var"), "tmpfs", 0, ""); err != nil {
		return fail("var: %v", err)
	}
	for _, d := range []string{"var/etc/upper", "var/etc/work"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fail("%v", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		filepath.Join(root, "usr/lib/etc"), filepath.Join(root, "var/etc/upper"), filepath.Join(root, "var/etc/work"))
	if err := unix.Mount("overlay", filepath.Join(root, "etc"), "overlay", 0, opts); err != nil {
		return fail("overlay /etc: %v", err)
	}
	if err := unix.Chroot(root); err != nil {
		return fail("chroot: %v", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fail("%v", err)
	}

	var kind Kind
	fmt.Sscan(os.Getenv("PID1_KIND"), &kind)
	con := &console{}
	cfg := Config{
		Version:  "9.9.9",
		Slot:     "b",
		Hostname: "slate-pid1",
		PID1:     true,
		Console:  io.MultiWriter(os.Stdout, con),
		Services: []Service{
			{Name: "hn", Command: "/slate.test", Env: map[string]string{helperEnv: "hostname"}},
			{Name: "stubborn", Command: "/slate.test", Env: map[string]string{helperEnv: "ignoreterm"}},
		},
		BeforeServices: func(context.Context) error {
			// Loopback is up by now.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Println("loopback:", err)
				return nil
			}
			defer ln.Close()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
			if err != nil {
				fmt.Println("loopback:", err)
				return nil
			}
			c.Close()
			fmt.Println("loopback=up")
			return nil
		},
		stopTimeout: 300 * time.Millisecond,
	}
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for con.count(`^SLATE-READY`) == 0 || con.count(`^\[(hn|stubborn)\] `) < 2 {
			if time.Now().After(deadline) {
				fmt.Println("helper error: not ready")
				os.Exit(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := RequestShutdown(kind); err != nil {
			fmt.Println("helper error:", err)
		}
	}()
	err = Run(context.Background(), cfg)
	return fail("Run returned: %v", err)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// copyLibs copies the ELF interpreter and shared libraries of bin (a test
// binary is linked against libc when cgo is on) to the same paths under
// root. Copies, not bind mounts: the shutdown under test may remount
// whatever is mounted.
func copyLibs(bin, root string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	var paths []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return err
			}
			paths = append(paths, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	for _, lib := range libs {
		found := false
		for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
			if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
				paths = append(paths, filepath.Join(dir, lib))
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("library %s not found", lib)
		}
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := copyFile(p, filepath.Join(root, p)); err != nil {
			return err
		}
	}
	return nil
}
