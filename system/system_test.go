package system

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/cmdline"
	"github.com/slateos/slate/configs"
)

// PID 1 reads the slot as init does: the last slate.slot= wins.
func TestSlotFrom(t *testing.T) {
	cases := []struct{ in, want string }{
		{"root=PARTUUID=x ro slate.slot=a", "a"},
		{"slate.slot=a slate.slot=b", "b"},
		{"slate.slots=a", "none"},
		{"slate.root_sha256=00 slate.root_size=1", "none"},
	}
	for _, c := range cases {
		if got := SlotFrom(cmdline.Parse(c.in)); got != c.want {
			t.Errorf("SlotFrom(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
func TestLoadImageInfo(t *testing.T) {
	spec, err := configs.Parse([]byte("name: sys\nversion: 2.0.0\nservices:\n- {name: a, command: /usr/bin/slate, env: {K: v}}\nupdate:\n  channel: https://u.example.com/c\n  public_key: /host/keys/update.pub\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good, err := builder.MarshalImageInfo(spec, "6.1.0-test")
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
			p := filepath.Join(root, builder.ImageInfoPath)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := LoadImageInfo(root)
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
