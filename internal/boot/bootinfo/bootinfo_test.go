package bootinfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		info Info
		want []string // in Describe
	}{
		{"disk", Info{Mode: ModeDisk, Slot: "b", Root: "/dev/vda3", State: "/dev/vda4"}, []string{"slot b", "/dev/vda3"}},
		{"net", Info{Mode: ModeRAM, Root: "/dev/loop0", RootURL: "http://10.0.2.2/root.img.zst", RootSHA256: strings.Repeat("a", 64), RootSize: 1 << 20, State: "tmpfs"},
			[]string{"network-booted", "http://10.0.2.2/root.img.zst", "no slot", "tmpfs"}},
		{"live", Info{Mode: ModeRAM, Root: "/dev/loop0", State: "/dev/sda4"}, []string{"booted live", "initramfs", "STATE on /dev/sda4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "run", "boot.json")
			if err := Write(p, tt.info); err != nil {
				t.Fatal(err)
			}
			got, err := Read(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.info {
				t.Fatalf("read %+v, wrote %+v", got, tt.info)
			}
			d := got.Describe()
			for _, w := range tt.want {
				if !strings.Contains(d, w) {
					t.Errorf("Describe() = %q, want it to contain %q", d, w)
				}
			}
		})
	}
}

func TestReadBad(t *testing.T) {
	dir := t.TempDir()
	if info, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) || info.Mode != ModeDisk {
		t.Errorf("missing record: %+v, %v; want disk mode and ErrNotExist", info, err)
	}
	for _, tt := range []struct{ name, data, want string }{
		{"not json", "{", "boot record"},
		{"bad mode", `{"mode":"usb"}`, `mode "usb"`},
	} {
		p := filepath.Join(dir, tt.name)
		if err := os.WriteFile(p, []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
}
