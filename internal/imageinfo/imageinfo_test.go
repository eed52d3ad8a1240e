package imageinfo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

func TestMarshalHoldsOnlyWhatTheMachineReads(t *testing.T) {
	dir := t.TempDir()
	spec, err := configs.Parse([]byte(`name: info
version: 1.2.3
hostname: info-1
kernel:
  vmlinuz: /host/kernels/bzImage
  modules_dir: /host/kernels/modules
  args: [quiet]
disk:
  size: 4GiB
root:
  ca_bundle: /host/secret/ca.pem
  files:
    - {src: /host/secret/files/app, dst: /usr/local/bin/app, mode: "0755"}
services:
  - name: app
    command: /usr/local/bin/app
    env: {GREETING: hello}
network:
  dhcp: true
users:
  - {name: app, uid: 1000}
ignition: /host/secret/config.ign
update:
  channel: https://updates.example.com/c
  public_key: /host/secret/keys/update.pub
`), filepath.Join(dir, "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec.Dir = dir
	b, err := Marshal(spec, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"/host/", dir, "vmlinuz", "public_key", "ca_bundle", "disk", "console", "ignition", "kernel\""} {
		if strings.Contains(string(b), leak) {
			t.Errorf("image.json holds %q:\n%s", leak, b)
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range top {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"hostname", "kernel_version", "name", "network", "services", "update", "version"}; !slices.Equal(keys, want) {
		t.Errorf("image.json fields %q, want only what the machine reads %q", keys, want)
	}
	// What the machine reads survives.
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "info" || info.Version != "1.2.3" || info.Hostname != "info-1" || info.KernelVersion != "6.1.0-test" ||
		!info.Network.DHCP || len(info.Services) != 1 || info.Services[0].Env["GREETING"] != "hello" ||
		info.Update == nil || info.Update.Channel != "https://updates.example.com/c" || info.Update.CheckInterval != configs.DefaultCheckInterval ||
		info.Update.PublicKey != "" {
		t.Errorf("image.json reads back as %+v (update %+v)", info, info.Update)
	}
}

func TestLoad(t *testing.T) {
	spec, err := configs.Parse([]byte("name: sys\nversion: 2.0.0\nservices:\n- {name: a, command: /usr/bin/slate, env: {K: v}}\nupdate:\n  channel: https://u.example.com/c\n  public_key: /host/keys/update.pub\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good, err := Marshal(spec, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want string // part of the error; "" when fine
	}{
		{"as built", string(good), ""},
		{"not JSON", "{", "parse"},
		{"no name", `{"version": "1.0.0"}`, "names no image"},
		{"an older description", `{"spec": {"name": "x", "version": "1.0.0"}}`, "names no image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := Load(root)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != "sys" || info.Version != "2.0.0" || info.Hostname != "sys" || info.KernelVersion != "6.1.0-test" ||
				len(info.Services) != 1 || info.Services[0].Env["K"] != "v" || !info.Network.DHCP ||
				info.Update == nil || info.Update.Channel != "https://u.example.com/c" || info.Update.PublicKey != "" {
				t.Errorf("read back %+v (update %+v)", info, info.Update)
			}
		})
	}
}
