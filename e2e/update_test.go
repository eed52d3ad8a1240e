package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

// after returns the console lines after the first one matching re.
func after(lines []string, re string) []string {
	rx := regexp.MustCompile(re)
	for i, l := range lines {
		if rx.MatchString(l) {
			return lines[i+1:]
		}
	}
	return nil
}

// noneMatch fails when a line matches re.
func noneMatch(t *testing.T, lines []string, re, why string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	for _, l := range lines {
		if rx.MatchString(l) {
			t.Errorf("%s: console has %q", why, l)
		}
	}
}

// TestUpdateUpgradeAndRollback: v1 in slot A finds v2 on the channel,
// applies it, reboots into slot B, blesses it, keeps /var; then
// `slate update rollback` brings it back to v1, which does not apply v2
// again.
func TestUpdateUpgradeAndRollback(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	c := newChannel(t)
	env := map[string]string{"ROLLBACK_AFTER": "1.1.0"}
	v1 := c.publish(t, updSpec{version: "1.0.0", statusEnv: env})
	c.publish(t, updSpec{version: "1.1.0", statusEnv: env})
	vm := boot(t, machine(t, v1), qemu.Options{Network: true})

	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 3*time.Minute)
	nthMatch(t, vm, `MARK boot=1 version=1\.0\.0`, 1, time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=downloading version=1\.1\.0 slot=b percent=0`, 1, 2*time.Minute)
	found := time.Now()
	nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0 slot=b entry=slate-1\.1\.0-b\+3\.conf`, 1, 3*time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
	t.Logf("update found to SLATE-READY on 1.1.0: %s", time.Since(found).Round(time.Millisecond))
	nthMatch(t, vm, `^SLATE-UPDATE state=blessed version=1\.1\.0 slot=b entry=slate-1\.1\.0-b\.conf`, 1, 2*time.Minute)
	// /var survived the slot change
	nthMatch(t, vm, `MARK boot=2 version=1\.1\.0`, 1, time.Minute)
	// slate update status tells the same
	nthMatch(t, vm, `STATUS state=\w+ version=1\.1\.0 slot=b entry=good other=a/1\.0\.0/good failed=$`, 1, time.Minute)

	// rollback by hand
	nthMatch(t, vm, `ROLLBACK err=<nil>`, 1, time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 2, 3*time.Minute)
	nthMatch(t, vm, `MARK boot=3 version=1\.0\.0`, 1, time.Minute)
	nthMatch(t, vm, `STATUS state=\w+ version=1\.0\.0 slot=a entry=good other=b/1\.1\.0/bad failed=1\.1\.0`, 1, time.Minute)
	// it checks the channel again (interval 20s) and leaves 1.1.0 alone
	nthMatch(t, vm, `^SLATE-UPDATE state=idle version=1\.0\.0 skipped=1\.1\.0`, 1, 90*time.Second)
	noneMatch(t, after(vm.Lines(), `ROLLBACK err=<nil>`), `SLATE-UPDATE state=downloading version=1\.1\.0`, "rolled-back version applied again")
}

// TestUpdateUnhealthy: a v2 whose health-checked service keeps crashing
// is never blessed; the machine goes back to v1 by itself, reports the
// failed update and does not retry it.
func TestUpdateUnhealthy(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	c := newChannel(t)
	v1 := c.publish(t, updSpec{version: "1.0.0"})
	c.publish(t, updSpec{version: "1.1.0", webMode: "crashloop"})
	vm := boot(t, machine(t, v1), qemu.Options{Network: true})

	nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0`, 1, 4*time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=unhealthy version=1\.1\.0 err="service web did not stay up`, 1, 2*time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 2, 3*time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=failed version=1\.1\.0 running=1\.0\.0`, 1, time.Minute)
	nthMatch(t, vm, `STATUS state=\w+ version=1\.0\.0 slot=a entry=good other=b/1\.1\.0/bad failed=1\.1\.0`, 1, time.Minute)
	nthMatch(t, vm, `^SLATE-UPDATE state=idle version=1\.0\.0 skipped=1\.1\.0`, 1, 90*time.Second)
	noneMatch(t, vm.Lines(), `SLATE-UPDATE state=blessed`, "an unhealthy version was blessed")
	noneMatch(t, after(vm.Lines(), `SLATE-UPDATE state=failed version=1\.1\.0`), `SLATE-UPDATE state=downloading`, "failed version applied again")
}

// TestUpdateBroken: a v2 whose kernel panics, and one whose init fails,
// use up their boot tries and the machine comes back on v1 with no human
// action.
func TestUpdateBroken(t *testing.T) {
	needQEMU(t)
	// A hang: 1.1.0 comes up, then a service stops the machine with a
	// panic that never reboots; only the watchdog PID 1 armed resets it.
	hang := `  - name: hang
    command: /usr/local/bin/probe
    args: [hang]
    restart: never
`
	cases := []struct {
		name  string
		args  []string
		extra string // more services of 1.1.0
		sign  string // what the console shows for the failure
		ready bool   // 1.1.0 reaches SLATE-READY before it fails
	}{
		{name: "kernel panic", args: []string{"rdinit=/nonexistent"}, sign: `Kernel panic`},
		{name: "init fails", args: []string{"slate.break=root"}, sign: `^SLATE-FAILED stage=root `},
		{name: "hang", extra: hang, sign: `Kernel panic - not syncing: sysrq triggered crash`, ready: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newChannel(t)
			v1 := c.publish(t, updSpec{version: "1.0.0"})
			c.publish(t, updSpec{version: "1.1.0", kernelArgs: tc.args, extra: tc.extra})
			vm := boot(t, machine(t, v1), qemu.Options{Network: true})
			nthMatch(t, vm, `msg="watchdog armed" dev=/dev/watchdog timeout=30s`, 1, 4*time.Minute)
			nthMatch(t, vm, `^SLATE-UPDATE state=staged version=1\.1\.0`, 1, 4*time.Minute)
			nthMatch(t, vm, tc.sign, 1, 3*time.Minute)
			nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 2, 6*time.Minute)
			nthMatch(t, vm, `^SLATE-UPDATE state=failed version=1\.1\.0 running=1\.0\.0`, 1, time.Minute)
			if n := countMatches(vm.Lines(), tc.sign); n < 2 {
				t.Errorf("the broken version ran %d times, want its tries (3)", n)
			}
			if !tc.ready {
				noneMatch(t, vm.Lines(), `^SLATE-READY version=1\.1\.0`, "the broken version came up")
			}
		})
	}
}

func countMatches(lines []string, re string) int {
	rx := regexp.MustCompile(re)
	n := 0
	for _, l := range lines {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

var _ = filepath.Join
var _ = strings.Contains
