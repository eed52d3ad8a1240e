package e2e

import (
	"context"
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

// nthMatch waits until re has matched n console lines and returns the
// submatches of the n-th. The console is kept whole, so lines from
// earlier boots count too. It fails at once when QEMU exits first, with
// QEMU's exit status and the last console lines.
func nthMatch(t testing.TB, vm *qemu.VM, re string, n int, d time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := vm.WaitForNth(ctx, regexp.MustCompile(re), n)
	if err != nil {
		t.Fatalf("waiting up to %s for match %d of %q: %v", d, n, re, err)
	}
	return m
}

func writeSpec(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testSpec is the default image plus the probe: it checks the read-only
// root and /var from inside, reboots once and powers off on the second
// boot; a service that crashes twice before it stays up; and a Debian
// package (busybox-static, resolved against the build host's mirror)
// whose binary a oneshot service runs through the merged-/usr /bin.
func testSpec(t *testing.T) string {
	return writeSpec(t, fmt.Sprintf(`name: slate-e2e
version: 1.0.0
hostname: e2e-host
root:
  files:
    - src: %s
      dst: /usr/local/bin/probe
      mode: "0755"
packages: [busybox-static]
services:
  - name: pkg
    command: /bin/busybox
    args: [echo, PKG-OK]
    type: oneshot
    restart: never
  - name: hello
    command: /usr/bin/slate
    args: [version]
    restart: never
  - name: crasher
    command: /usr/local/bin/probe
    args: [crash]
    restart: on-failure
  - name: probe
    command: /usr/local/bin/probe
    restart: never
`, probeBin))
}

func TestBootToReady(t *testing.T) {
	needQEMU(t)
	out := build(t, testSpec(t))
	// the image written to a bigger disk: STATE must grow into the rest
	disk := filepath.Join(out, "disk.raw")
	st, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, st.Size()+1<<30); err != nil {
		t.Fatal(err)
	}
	vm := boot(t, disk, qemu.Options{})
	t0 := time.Now()

	// first boot
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 3*time.Minute)
	t.Logf("first SLATE-READY after %s", time.Since(t0).Round(time.Millisecond))
	nthMatch(t, vm, `^\[hello\] slate `, 1, 30*time.Second)
	// a program of a Debian package runs in the booted image
	nthMatch(t, vm, `^\[pkg\] PKG-OK$`, 1, 30*time.Second)
	m := nthMatch(t, vm, `PROBE boot=(\d+) usr-write=(\S+) etc-write=(\S+) hostname=(\S+)`, 1, 30*time.Second)
	if m[1] != "1" || m[2] != "denied" || m[3] != "ok" || m[4] != "e2e-host" {
		t.Errorf("first boot probe: boot=%s usr-write=%s etc-write=%s hostname=%s; want 1 denied ok e2e-host", m[1], m[2], m[3], m[4])
	}
	// the crasher fails twice and is restarted each time
	nthMatch(t, vm, `CRASH run=3`, 1, 60*time.Second)

	// the probe asks for a reboot; the second boot must see /var's counter
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 2, 3*time.Minute)
	m = nthMatch(t, vm, `PROBE boot=(\d+) usr-write=(\S+)`, 2, 30*time.Second)
	if m[1] != "2" {
		t.Errorf("second boot probe: boot=%s, want 2 (a file under /var did not survive the reboot)", m[1])
	}
	if m[2] != "denied" {
		t.Errorf("second boot: usr-write=%s, want denied", m[2])
	}
	// then powers off: QEMU exits by itself
	done := make(chan error, 1)
	go func() { done <- vm.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("QEMU after poweroff: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("guest did not power off")
	}
	created := 0
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "SLATE-FAILED") {
			t.Errorf("console: %s", l)
		}
		if strings.HasPrefix(l, "SLATE-STATE action=created") {
			created++
		}
	}
	if created != 1 {
		t.Errorf("STATE created %d times over two boots, want once", created)
	}
	if countMatches(vm.Lines(), `^SLATE-STATE action=grown from=\d+ to=\d+`) != 1 {
		t.Errorf("STATE was not grown to the end of the bigger disk")
	}
	// the grown table is still valid for an independent tool
	if sgdisk, err := exec.LookPath("sgdisk"); err == nil {
		b, err := exec.Command(sgdisk, "-v", disk).CombinedOutput()
		if err != nil || !strings.Contains(string(b), "No problems found") {
			t.Errorf("sgdisk -v after growing: %v\n%s", err, b)
		}
	}
	t.Logf("whole run %s", time.Since(t0).Round(time.Millisecond))
}
