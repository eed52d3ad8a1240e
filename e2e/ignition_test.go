package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

const e2eKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e slate-e2e"

// ignConfig is the test's Ignition config: a file inline and one gzip
// data: URL, a directory, a symbolic link, a user with an ssh key in a
// group, a unit that prints a marker and one that checks all of it from
// inside.
func ignConfig(t testing.TB) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello gzip\n"))
	zw.Close()
	cfg := map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"storage": map[string]any{
			"files": []any{
				map[string]any{"path": "/etc/ign/inline.txt", "mode": 0o644, "contents": map[string]any{"source": "data:,hello%20inline%0A"}},
				map[string]any{"path": "/var/lib/ign/gz.txt", "contents": map[string]any{
					"source": "data:;base64," + base64.StdEncoding.EncodeToString(gz.Bytes()), "compression": "gzip"}},
			},
			"directories": []any{map[string]any{"path": "/var/lib/ign/dir", "mode": 0o750}},
			"links":       []any{map[string]any{"path": "/etc/ign/link", "target": "/etc/ign/inline.txt"}},
		},
		"passwd": map[string]any{
			"users":  []any{map[string]any{"name": "alice", "sshAuthorizedKeys": []string{e2eKey}, "groups": []string{"devs"}}},
			"groups": []any{map[string]any{"name": "devs"}},
		},
		"systemd": map[string]any{"units": []any{
			map[string]any{"name": "marker.service", "enabled": true,
				"contents": "[Service]\nType=oneshot\nExecStart=/usr/local/bin/probe say IGNITION-MARKER hello\n"},
			map[string]any{"name": "igncheck.service", "enabled": true,
				"contents": "[Unit]\nAfter=marker.service\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/probe igncheck\n"},
		}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, name string, b []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIgnitionFwCfgAndUpdate: a config passed through fw_cfg provisions the
// machine on its first boot, only once, and what it made is still there
// after an A/B update.
func TestIgnitionFwCfgAndUpdate(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	c := newChannel(t)
	v1 := c.publish(t, updSpec{version: "1.0.0"})
	c.publish(t, updSpec{version: "1.1.0"})
	cfg := writeFile(t, "config.ign", ignConfig(t))
	if out, err := slate(t, "ignition", "validate", cfg); err != nil || !strings.Contains(out, "valid: 2 files, 1 directories, 1 links, 1 users, 1 groups, 2 services") {
		t.Fatalf("slate ignition validate: %v\n%s", err, out)
	}
	vm := boot(t, machine(t, v1), qemu.Options{Network: true, FwCfg: []qemu.FwCfg{{Name: "opt/com.coreos/config", File: cfg}}})
	nthMatch(t, vm, `^SLATE-IGNITION state=applied source=fw_cfg files=2 directories=1 links=1 users=1 groups=1 services=2`, 1, 3*time.Minute)
	nthMatch(t, vm, `^\[marker\] IGNITION-MARKER hello$`, 1, time.Minute)
	m := nthMatch(t, vm, `^\[igncheck\] IGNCHECK (\w+) version=1\.0\.0(.*)$`, 1, time.Minute)
	if m[1] != "ok" {
		t.Fatalf("first boot: %s%s", m[1], m[2])
	}
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, time.Minute)
	// the update to 1.1.0 keeps what provisioning made
	nthMatch(t, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 5*time.Minute)
	m = nthMatch(t, vm, `^\[igncheck\] IGNCHECK (\w+) version=1\.1\.0(.*)$`, 1, time.Minute)
	if m[1] != "ok" {
		t.Fatalf("after the update: %s%s", m[1], m[2])
	}
	if n := countMatches(vm.Lines(), `^SLATE-IGNITION state=applied`); n != 1 {
		t.Errorf("config applied %d times, want once (first boot only)", n)
	}
}

// TestIgnitionURL: a config fetched over HTTP from the host's loopback,
// named by ignition.config.url on the kernel command line.
func TestIgnitionURL(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ignConfig(t)
	var hits int
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Write(cfg)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	spec := writeSpec(t, fmt.Sprintf(`name: slate-ign
version: 1.0.0
kernel:
  args: ["ignition.config.url=http://10.0.2.2:%d/config.ign"]
root:
  files:
    - src: %s
      dst: /usr/local/bin/probe
      mode: "0755"
`, port, probeBin))
	out := build(t, spec)
	vm := boot(t, filepath.Join(out, "disk.raw"), qemu.Options{Network: true})
	nthMatch(t, vm, `^SLATE-IGNITION state=applied source=cmdline`, 1, 3*time.Minute)
	m := nthMatch(t, vm, `^\[igncheck\] IGNCHECK (\w+) version=1\.0\.0(.*)$`, 1, time.Minute)
	if m[1] != "ok" {
		t.Fatalf("%s%s", m[1], m[2])
	}
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, time.Minute)
	if hits == 0 {
		t.Error("the config server was never asked")
	}
}

// TestIgnitionFailuresStopTheBoot: a file with a wrong hash, an invalid
// config and one asking for a disk layout each stop the boot with a report
// naming the fault.
func TestIgnitionFailuresStopTheBoot(t *testing.T) {
	needQEMU(t)
	out := build(t, writeSpec(t, "name: slate-ign\nversion: 1.0.0\n"))
	bad := sha512.Sum512([]byte("something else"))
	cases := []struct{ name, cfg, want string }{
		{"bad hash", fmt.Sprintf(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,hello","verification":{"hash":"sha512-%x"}}}]}}`, bad),
			`\$\.storage\.files\[0\].*hash mismatch`},
		{"invalid", `{"ignition":{"version":"9.9.9"}}`, `\$\.ignition\.version: version .*9\.9\.9.* is not supported`},
		{"disk layout", `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","wipeTable":true}]}}`, `\$\.storage\.disks: .*not supported`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := machine(t, out)
			cfg := writeFile(t, "c.ign", []byte(tc.cfg))
			vm := boot(t, img, qemu.Options{FwCfg: []qemu.FwCfg{{Name: "opt/com.coreos/config", File: cfg}}})
			nthMatch(t, vm, `^SLATE-FAILED stage=ignition err=".*`+tc.want, 1, 3*time.Minute)
			time.Sleep(2 * time.Second)
			noneMatch(t, vm.Lines(), `^SLATE-READY`, "the boot went on after a bad config")
		})
	}
}
