package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeQEMU puts a shell script named qemu-system-x86_64 first in PATH and
// returns options that Start accepts without firmware (a direct kernel
// boot of a file that is no kernel: the script never reads it).
func fakeQEMU(t *testing.T, script string) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, binaryName), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_DIR", dir)
	kernel := touch(t, filepath.Join(dir, "vmlinuz"), 1)
	return Options{Kernel: kernel, Accel: "tcg", NoNetwork: true}, dir
}

// TestWaitsFailWhenQEMUExits: a wait for a line QEMU never prints returns
// as soon as QEMU exits, not at its deadline, and its error names the line,
// QEMU's exit status and the last console lines.
func TestWaitsFailWhenQEMUExits(t *testing.T) {
	const script = `echo "firmware says hi"
echo "SLATE-STAGE one"
echo "SLATE-STAGE two"
echo "the disk is on fire" >&2
printf 'last words without a newline'
exit $FAKE_STATUS
`
	cases := []struct {
		name   string
		status int
		wait   func(context.Context, *VM) ([]string, error)
		want   []string // in the error
	}{
		{"WaitFor, exit status 3", 3, func(ctx context.Context, vm *VM) ([]string, error) {
			return vm.WaitFor(ctx, regexp.MustCompile(`^SLATE-READY`))
		}, []string{`"^SLATE-READY"`, "exit status 3", "the disk is on fire", "| SLATE-STAGE two", "| last words without a newline"}},
		{"WaitFor, clean exit", 0, func(ctx context.Context, vm *VM) ([]string, error) {
			return vm.WaitFor(ctx, regexp.MustCompile(`^SLATE-READY`))
		}, []string{`"^SLATE-READY"`, "exit status 0", "| firmware says hi"}},
		{"WaitForNth, a line that came too few times", 1, func(ctx context.Context, vm *VM) ([]string, error) {
			return vm.WaitForNth(ctx, regexp.MustCompile(`^SLATE-STAGE`), 3)
		}, []string{`"^SLATE-STAGE"`, "fewer than 3 times", "exit status 1", "| SLATE-STAGE two"}},
		{"WaitForNth, a line that never came", 2, func(ctx context.Context, vm *VM) ([]string, error) {
			return vm.WaitForNth(ctx, regexp.MustCompile(`^SLATE-READY`), 1)
		}, []string{`never matched "^SLATE-READY"`, "exit status 2", "| SLATE-STAGE one"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := fakeQEMU(t, script)
			t.Setenv("FAKE_STATUS", strconv.Itoa(tc.status))
			const timeout = 2 * time.Minute
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			vm, err := Start(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Kill()
			_, err = tc.wait(ctx, vm)
			took := time.Since(start)
			t.Logf("returned after %s: %v", took.Round(time.Millisecond), err)
			if err == nil {
				t.Fatal("the wait succeeded")
			}
			// a second is plenty for a shell script; the margin is for a
			// loaded machine, and still far from the timeout
			if took > 5*time.Second {
				t.Errorf("the wait took %s after QEMU exited at once (timeout %s)", took, timeout)
			}
			if !errors.Is(err, ErrExited) {
				t.Errorf("error does not wrap ErrExited: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestWaitsFindLinesOfAnExitedQEMU: lines QEMU printed before it exited,
// the unterminated last one too, are still found after the exit.
func TestWaitsFindLinesOfAnExitedQEMU(t *testing.T) {
	opts, _ := fakeQEMU(t, "echo 'SLATE-STAGE one'\necho 'SLATE-STAGE two'\nprintf 'SLATE-DONE'\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(); err != nil {
		t.Fatal(err)
	}
	if m, err := vm.WaitForNth(ctx, regexp.MustCompile(`^SLATE-STAGE (\w+)`), 2); err != nil || m[1] != "two" {
		t.Errorf("WaitForNth 2 = %q, %v; want the second line", m, err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`^SLATE-DONE$`)); err != nil {
		t.Errorf("WaitFor on the unterminated last line: %v", err)
	}
	// WaitForNth did not move WaitFor's place, WaitFor did
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`^SLATE-STAGE`)); err == nil {
		t.Error("WaitFor matched a line before its place")
	}
	if m, err := vm.WaitForNth(ctx, regexp.MustCompile(`^SLATE-STAGE (\w+)`), 1); err != nil || m[1] != "one" {
		t.Errorf("WaitForNth 1 = %q, %v; want the first line", m, err)
	}
}

// forwardScript fails like QEMU with a taken port for its first FAIL tries
// (all of them when FAIL is "always"), then prints its arguments and exits.
const forwardScript = `n=$(cat "$FAKE_DIR/tries" 2>/dev/null || echo 0)
n=$((n+1))
echo $n > "$FAKE_DIR/tries"
if [ "$FAIL" = always ] || [ $n -le "$FAIL" ]; then
	echo "qemu-system-x86_64: -netdev user,id=n0,hostfwd=tcp:127.0.0.1:1-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:1-:22'" >&2
	exit 1
fi
echo "ARGS $*"
`

func tries(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "tries"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestForwardOnFreePortRetries: a forward on a free port whose port is
// taken before QEMU binds it starts QEMU again on a new port; a fixed port
// is the caller's and is not changed; a port taken every time gives up
// with QEMU's message.
func TestForwardOnFreePortRetries(t *testing.T) {
	t.Run("taken twice", func(t *testing.T) {
		opts, dir := fakeQEMU(t, forwardScript)
		t.Setenv("FAIL", "2")
		opts.NoNetwork = false
		opts.Forwards = []Forward{{0, 22}, {8080, 80}}
		vm, err := Start(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Kill()
		if n := tries(t, dir); n != 3 {
			t.Errorf("QEMU started %d times, want 3", n)
		}
		fw := vm.Forwards()
		if len(fw) != 2 || fw[0].HostPort == 0 || fw[0].GuestPort != 22 || fw[1] != (Forward{8080, 80}) {
			t.Fatalf("Forwards = %v", fw)
		}
		want := fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:8080-:80", fw[0].HostPort)
		if _, err := vm.WaitFor(context.Background(), regexp.MustCompile(regexp.QuoteMeta(want))); err != nil {
			t.Errorf("QEMU was not given the port Forwards names: %v", err)
		}
	})
	t.Run("fixed port", func(t *testing.T) {
		opts, dir := fakeQEMU(t, forwardScript)
		t.Setenv("FAIL", "1")
		opts.NoNetwork = false
		opts.Forwards = []Forward{{2222, 22}}
		vm, err := Start(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Kill()
		_, err = vm.WaitFor(context.Background(), regexp.MustCompile(`ARGS`))
		if err == nil || !strings.Contains(err.Error(), forwardFailed) {
			t.Errorf("WaitFor = %v; want QEMU's forwarding error", err)
		}
		if n := tries(t, dir); n != 1 {
			t.Errorf("QEMU started %d times for a fixed port, want 1", n)
		}
	})
	t.Run("always taken", func(t *testing.T) {
		opts, dir := fakeQEMU(t, forwardScript)
		t.Setenv("FAIL", "always")
		opts.NoNetwork = false
		opts.Forwards = []Forward{{0, 22}}
		vm, err := Start(context.Background(), opts)
		if err == nil {
			vm.Kill()
			t.Fatal("Start succeeded")
		}
		if !strings.Contains(err.Error(), forwardFailed) {
			t.Errorf("error lacks QEMU's message: %v", err)
		}
		if n := tries(t, dir); n != forwardTries {
			t.Errorf("QEMU started %d times, want %d", n, forwardTries)
		}
	})
}

// TestForwardTakenPortRealQEMU: the real QEMU, handed a port another
// process holds, exits with the message Start looks for, and Start's next
// try binds a free port that then accepts connections.
func TestForwardTakenPortRealQEMU(t *testing.T) {
	needVM(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	real := pickPort
	handed := 0
	pickPort = func() (int, error) {
		handed++
		if handed == 1 {
			return takenPort, nil
		}
		return real()
	}
	defer func() { pickPort = real }()

	img := touch(t, filepath.Join(t.TempDir(), "empty.raw"), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Options{Image: img, Accel: "tcg", Forwards: []Forward{{0, 22}}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	fw := vm.Forwards()
	if handed < 2 || fw[0].HostPort == takenPort {
		t.Fatalf("Start kept the taken port %d (ports handed out: %d)", takenPort, handed)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fw[0].HostPort), 5*time.Second)
	if err != nil {
		t.Fatalf("the forwarded port %d does not accept: %v", fw[0].HostPort, err)
	}
	c.Close()
}

// TestPickPorts: every HostPort 0 gets its own port; fixed ones stay.
func TestPickPorts(t *testing.T) {
	fw, err := pickPorts([]Forward{{0, 22}, {0, 80}, {2222, 23}})
	if err != nil {
		t.Fatal(err)
	}
	if fw[0].HostPort == 0 || fw[1].HostPort == 0 || fw[0].HostPort == fw[1].HostPort || fw[2] != (Forward{2222, 23}) {
		t.Errorf("pickPorts = %v", fw)
	}
}
