package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/updater/payload"
)

// copyTree copies a folder (cp -a).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if b, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, b)
	}
}

// variant makes a channel folder under the served root from the good
// version in src, then lets mutate spoil it.
func variant(t *testing.T, c *channel, src, name string, mutate func(dir string)) string {
	t.Helper()
	dir := filepath.Join(c.root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(src, "1.1.0"), filepath.Join(dir, "1.1.0"))
	for _, f := range []string{payload.ManifestFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mutate(dir)
	return c.guestURL() + name + "/"
}

// resign rewrites a variant's manifest and signs it with the channel key:
// a manifest that lies but is signed by the right key.
func resign(t *testing.T, c *channel, dir string, edit func(*payload.Manifest)) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := payload.ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := payload.ParseManifest(env.Signed)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	key, err := payload.LoadPrivateKey(filepath.Join(c.keys, "update.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), payload.SignEnvelope(m.Marshal(), key), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateRejectsBadInput: a tampered root image, a tampered manifest, a
// signature by another key, a truncated download and a manifest that lies
// about a size are each rejected with a clear error; no entry is written
// for the idle slot and v1 keeps running.
func TestUpdateRejectsBadInput(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	c := newChannel(t)
	good := filepath.Join(c.dir, "good")
	c.publishTo(t, updSpec{version: "1.1.0"}, good)

	flip := func(p string, off int64) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := []byte{0}
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct{ name, want string }{
		{"tampered-root", "root.img.zst"},
		{"tampered-manifest", "signature"},
		{"other-key", "signature"},
		{"truncated", "truncated"},
		{"lying-size", "root.img.zst"},
	}
	urls := map[string]string{}
	urls["tampered-root"] = variant(t, c, good, "tampered-root", func(d string) {
		st, _ := os.Stat(filepath.Join(d, "1.1.0", "root.img.zst"))
		flip(filepath.Join(d, "1.1.0", "root.img.zst"), st.Size()/2)
	})
	urls["tampered-manifest"] = variant(t, c, good, "tampered-manifest", func(d string) {
		p := filepath.Join(d, "manifest.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), `"kernel_version": "`, `"kernel_version": "x`, 1)), 0o644)
	})
	urls["other-key"] = variant(t, c, good, "other-key", func(d string) {
		other := filepath.Join(c.dir, "otherkey")
		if out, err := slate(t, "keygen", "-o", other); err != nil {
			t.Fatalf("keygen: %v %s", err, out)
		}
		key, err := payload.LoadPrivateKey(filepath.Join(other, "update.key"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(d, "manifest.json"))
		env, err := payload.ParseEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "manifest.json"), payload.SignEnvelope(env.Signed, key), 0o644)
	})
	urls["truncated"] = variant(t, c, good, "truncated", func(d string) {
		p := filepath.Join(d, "1.1.0", "root.img.zst")
		st, _ := os.Stat(p)
		os.Truncate(p, st.Size()*2/3)
	})
	urls["lying-size"] = variant(t, c, good, "lying-size", func(d string) {
		resign(t, c, d, func(m *payload.Manifest) {
			for i := range m.Files {
				if m.Files[i].Role == payload.RoleRoot {
					m.Files[i].Size -= 4096
				}
			}
		})
	})
	var list []string
	for _, tc := range cases {
		list = append(list, urls[tc.name])
	}
	v1 := c.publish(t, updSpec{version: "1.0.0", extra: fmt.Sprintf(`  - name: applier
    command: /usr/local/bin/probe
    args: [apply]
    restart: never
    env:
      APPLY: %q
`, strings.Join(list, " "))})
	vm := boot(t, machine(t, v1), qemu.Options{Network: true})
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 3*time.Minute)
	for i, tc := range cases {
		m := nthMatch(t, vm, `^\[applier\] APPLY src=(\S+) ok=(\w+) out="(.*)"$`, i+1, 4*time.Minute)
		if m[1] != urls[tc.name] || m[2] != "false" || !strings.Contains(m[3], tc.want) {
			t.Errorf("%s: apply %s ok=%s out=%s; want a rejection naming %q", tc.name, m[1], m[2], m[3], tc.want)
		} else {
			t.Logf("%s rejected: %s", tc.name, m[3])
		}
	}
	nthMatch(t, vm, `APPLY done`, 1, time.Minute)
	nthMatch(t, vm, `STATUS state=\w+ version=1\.0\.0 slot=a entry=good other=b//empty`, 1, time.Minute)
	noneMatch(t, vm.Lines(), `SLATE-UPDATE state=(flipping|staged)`, "a bad payload reached the flip")
	noneMatch(t, vm.Lines(), `other=b/1\.1\.0`, "slot b got an entry")
	if n := countMatches(vm.Lines(), `^SLATE-READY `); n != 1 {
		t.Errorf("SLATE-READY printed %d times: v1 did not keep running", n)
	}
}

// TestUpdatePowerCut kills QEMU at points all through an update (root
// write, verification, ESP writes, just before and after the flip, during
// and after the bless); on restart the machine always comes up on a good
// version, and the update completes.
//
// The cuts are chained: two machines (one per core) each take every other
// point, and after an update completes its channel publishes the next
// version, so the next cut needs one boot, not a fresh machine and two.
func TestUpdatePowerCut(t *testing.T) {
	needQEMU(t)
	points := []string{
		`^SLATE-UPDATE state=downloading version=%s slot=[ab] percent=0$`,
		`^SLATE-UPDATE state=downloading version=%s slot=[ab] percent=3[0-9]$`,
		`^SLATE-UPDATE state=downloading version=%s slot=[ab] percent=6[0-9]$`,
		`^SLATE-UPDATE state=downloading version=%s slot=[ab] percent=9[0-9]$`,
		`^SLATE-UPDATE state=verifying version=%s`,
		`^SLATE-UPDATE state=writing version=%s slot=[ab] file=vmlinuz`,
		`^SLATE-UPDATE state=writing version=%s slot=[ab] file=initrd\.img`,
		`^SLATE-UPDATE state=flipping version=%s`,
		`^SLATE-UPDATE state=staged version=%s`,
		`^SLATE-UPDATE state=trial version=%s`,
		`^SLATE-UPDATE state=blessed version=%s`,
	}
	const machines = 2
	for m := range machines {
		var mine []string
		for i := m; i < len(points); i += machines {
			mine = append(mine, points[i])
		}
		t.Run(fmt.Sprintf("machine%d", m), func(t *testing.T) {
			t.Parallel()
			powerCuts(t, mine)
		})
	}
}

// powerCuts runs one machine through an update per point, cutting its
// power at that point each time. Every machine has its own channel: the
// next version is published only once this machine finished the last.
func powerCuts(t *testing.T, points []string) {
	c := newChannel(t)
	disk := machine(t, c.publish(t, updSpec{version: "1.0.0"}))
	prev, prevSlot := "1.0.0", "a"
	vm := boot(t, disk, qemu.Options{Network: true, SerialFile: disk + ".run0.log"})
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 4*time.Minute)
	for i, point := range points {
		next := fmt.Sprintf("1.%d.0", i+1)
		c.publish(t, updSpec{version: next})
		re := fmt.Sprintf(point, regexp.QuoteMeta(next))
		nthMatch(t, vm, re, 1, 6*time.Minute)
		if err := vm.Kill(); err != nil {
			t.Logf("kill: %v", err)
		}
		t.Logf("power cut at %q", re)
		// power back on
		vm = boot(t, disk, qemu.Options{Network: true, SerialFile: fmt.Sprintf("%s.run%d.log", disk, i+1)})
		m := nthMatch(t, vm, `^SLATE-READY version=(\S+) slot=(\w)$`, 1, 4*time.Minute)
		if m[1] != prev && m[1] != next {
			t.Fatalf("after the cut at %q: came up on %s, not %s or %s", re, m[1], prev, next)
		}
		// and the update completes: next runs in the other slot, blessed,
		// with the previous version kept good beside it
		m = nthMatch(t, vm, fmt.Sprintf(`STATUS state=\w+ version=%s slot=(\w) entry=good other=(\w)/%s/good`,
			regexp.QuoteMeta(next), regexp.QuoteMeta(prev)), 1, 8*time.Minute)
		if m[1] == prevSlot || m[2] != prevSlot {
			t.Fatalf("after the cut at %q: %s runs in slot %s with %s in %s; %s was in slot %s", re, next, m[1], prev, m[2], prev, prevSlot)
		}
		noneMatch(t, vm.Lines(), `^SLATE-FAILED`, "a boot failed after the power cut")
		prev, prevSlot = next, m[1]
	}
}
