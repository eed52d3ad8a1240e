package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

// flatcarConfig is what a Flatcar or Fedora CoreOS config typically
// does: user core in wheel and docker with an SSH key and no password,
// /etc/hostname written without overwrite, and a unit that waits for the
// network with Wants= plus After=network-online.target and prepares with
// ExecStartPre.
func flatcarConfig(t testing.TB) []byte {
	cfg := map[string]any{
		"ignition": map[string]any{"version": "3.3.0"},
		"passwd": map[string]any{"users": []any{map[string]any{
			"name": "core", "groups": []string{"wheel", "docker"}, "sshAuthorizedKeys": []string{e2eKey}}}},
		"storage": map[string]any{"files": []any{map[string]any{
			"path": "/etc/hostname", "mode": 0o644, "contents": map[string]any{"source": "data:,flatcar-node-1%0A"}}}},
		"systemd": map[string]any{"units": []any{map[string]any{
			"name": "netcheck.service", "enabled": true,
			"contents": "[Unit]\nDescription=runs once the network is online\nWants=network-online.target\nAfter=network-online.target\n" +
				"[Service]\nType=oneshot\nExecStartPre=/usr/local/bin/probe say PRE-RAN\nExecStartPre=-/usr/local/bin/nonexistent\n" +
				"ExecStart=/usr/local/bin/probe accounts core\nTimeoutStartSec=5min\n[Install]\nWantedBy=multi-user.target\n"}}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIgnitionFlatcarConfig boots once with a Flatcar-style config: it is
// valid for the image (checked on the host against the spec), the unit
// runs after the DHCP lease and after its ExecStartPre, the hostname file
// takes effect, core is in wheel and docker with "*" in /etc/shadow and
// its key.
func TestIgnitionFlatcarConfig(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	t0 := time.Now()
	spec := writeSpec(t, fmt.Sprintf(`name: slate-fc
version: 1.0.0
network:
  dhcp: true
root:
  files:
    - src: %s
      dst: /usr/local/bin/probe
      mode: "0755"
`, probeBin))
	cfg := writeFile(t, "config.ign", flatcarConfig(t))
	if out, err := slate(t, "ignition", "validate", cfg, "--spec", spec); err != nil || !strings.Contains(out, "valid: 1 files, 0 directories, 0 links, 1 users, 0 groups, 1 services") {
		t.Fatalf("slate ignition validate --spec: %v\n%s", err, out)
	}
	out := build(t, spec)
	vm := boot(t, filepath.Join(out, "disk.raw"), qemu.Options{Network: true, FwCfg: []qemu.FwCfg{{Name: "opt/com.coreos/config", File: cfg}}})
	nthMatch(t, vm, `^SLATE-IGNITION state=applied source=fw_cfg files=1 directories=0 links=0 users=1 groups=0 services=1`, 1, 3*time.Minute)
	m := nthMatch(t, vm, `^\[netcheck\] ACCOUNTS (.*)$`, 1, 2*time.Minute)
	if want := "hostname=flatcar-node-1 user=core shadow=* groups=wheel,docker keys=1"; m[1] != want {
		t.Errorf("inside the machine: %q, want %q", m[1], want)
	}
	nthMatch(t, vm, `^SLATE-SERVICE name=netcheck state=done$`, 1, time.Minute)
	nthMatch(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, time.Minute)
	lines := vm.Lines()
	lease := firstIndex(lines, `^SLATE-NET iface=\S+ addr=`)
	pre := firstIndex(lines, `^\[netcheck\] PRE-RAN$`)
	run := firstIndex(lines, `^SLATE-SERVICE name=netcheck state=running`)
	acc := firstIndex(lines, `^\[netcheck\] ACCOUNTS `)
	if lease < 0 || !(lease < pre && pre < run && run < acc) {
		t.Errorf("console order: lease at %d, ExecStartPre at %d, start at %d, unit output at %d; want them in that order", lease, pre, run, acc)
	}
	t.Logf("build and boot to SLATE-READY: %s", time.Since(t0).Round(time.Second))
}

// firstIndex is the index of the first line matching re, or -1.
func firstIndex(lines []string, re string) int {
	rx := regexp.MustCompile(re)
	for i, l := range lines {
		if rx.MatchString(l) {
			return i
		}
	}
	return -1
}
