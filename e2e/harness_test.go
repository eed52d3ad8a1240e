// Package e2e builds real slate images with the slate binary and boots
// them in QEMU, reading the serial console.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

var (
	repoRoot string
	slateBin string
	probeBin string
	buildErr error
	workDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// every test that needs the binaries skips under -short
		buildErr = errShort
		os.Exit(m.Run())
	}
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "slate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	slateBin = filepath.Join(dir, "slate")
	probeBin = filepath.Join(dir, "probe")
	buildErr = goBuild(slateBin, "./cmd/slate")
	if buildErr == nil {
		buildErr = goBuild(probeBin, "./e2e/testdata/probe")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func cacheDir() string {
	if d := os.Getenv("SLATE_CACHE"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, ".cache")
}

// errShort stands for the binaries TestMain does not build under -short.
var errShort = errors.New("not built under -short")

// need fails the test under CI and skips it elsewhere when a prerequisite
// is missing: a skipped end-to-end test in CI would hide a broken set-up.
func need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (CI is set: run scripts/setup.sh)", what)
	}
	t.Skipf("%s is missing: run scripts/setup.sh", what)
}

// needBuild is the start of every test here: they build real images
// (minutes on 2 cores) and most boot them, so -short (make test-short,
// which boots no VM) skips them all, CI or not. Without -short, a missing
// prerequisite fails the test under CI.
func needBuild(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds images and boots VMs: not with -short")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	kern, _ := filepath.Glob(filepath.Join(cacheDir(), "kernel", "linux-image-amd64", "boot", "vmlinuz-*"))
	need(t, "the cached kernel ("+cacheDir()+")", len(kern) > 0)
}

func needQEMU(t testing.TB) {
	t.Helper()
	needBuild(t)
	_, err := qemu.Binary()
	need(t, "qemu-system-x86_64", err == nil)
	_, _, err = qemu.FindOVMF()
	need(t, "OVMF firmware", err == nil)
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	need(t, name, err == nil)
	return p
}

// slate runs the slate binary and returns its combined output.
func slate(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(slateBin, args...)
	cmd.Env = append(os.Environ(), "SLATE_CACHE="+cacheDir())
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// build builds spec into a new folder and returns it.
func build(t testing.TB, spec string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	t0 := time.Now()
	o, err := slate(t, append([]string{"build", "-c", spec, "-o", out}, args...)...)
	if err != nil {
		t.Fatalf("slate build -c %s: %v\n%s", spec, err, o)
	}
	t.Logf("built %s in %s", spec, time.Since(t0).Round(time.Millisecond))
	return out
}

// boot starts QEMU on an image with the console logged to the test.
func boot(t testing.TB, image string, opts qemu.Options) *qemu.VM {
	t.Helper()
	opts.Image = image
	opts.Accel = "tcg"
	if opts.SerialFile == "" {
		opts.SerialFile = filepath.Join(filepath.Dir(image), "serial.log")
	}
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := qemu.Start(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("start QEMU: %v", err)
	}
	t.Cleanup(func() {
		_ = vm.Kill()
		cancel()
		if t.Failed() {
			t.Logf("serial console:\n%s", strings.Join(vm.Lines(), "\n"))
		}
	})
	return vm
}

// waitLine waits for a console line matching re after the one the last
// waitLine matched; it fails at once when QEMU exits first.
func waitLine(t testing.TB, vm *qemu.VM, re string, d time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := vm.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatalf("waiting for %q: %v", re, err)
	}
	return m
}
