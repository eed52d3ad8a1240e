package bootdisk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/partitions"
)

const (
	espGUID  = "11111111-2222-3333-4444-555555555555"
	rootGUID = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
)

// fakeMachine writes a sysfs and /dev with one disk vda of 128 sectors
// holding parts, and returns the two folders.
func fakeMachine(t *testing.T, parts []partitions.Part) (sys, dev string) {
	t.Helper()
	sys, dev = t.TempDir(), t.TempDir()
	l := partitions.Layout{Size: 128 * partitions.SectorSize, GUID: "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3", Parts: parts}
	f, err := os.Create(filepath.Join(dev, "vda"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if err := partitions.WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(sys, "vda"), 0o755)
	os.WriteFile(filepath.Join(sys, "vda", "size"), []byte("128\n"), 0o644)
	for _, p := range parts {
		name := "vda" + string(rune('0'+p.Num))
		os.MkdirAll(filepath.Join(sys, "vda", name), 0o755)
		os.WriteFile(filepath.Join(sys, "vda", name, "partition"), []byte(string(rune('0'+p.Num))+"\n"), 0o644)
	}
	return sys, dev
}

func TestDetect(t *testing.T) {
	esp := partitions.Part{Num: 1, Label: partitions.LabelESP, Type: partitions.TypeESP, GUID: espGUID, Start: 40 * partitions.SectorSize, Size: 20 * partitions.SectorSize}
	root := partitions.Part{Num: 2, Label: partitions.LabelRootA, Type: partitions.TypeRoot, GUID: rootGUID, Start: 60 * partitions.SectorSize, Size: 30 * partitions.SectorSize}
	cases := []struct {
		name    string
		parts   []partitions.Part
		cmdline string
		err     string
	}{
		{"found", []partitions.Part{esp, root}, "ro root=PARTUUID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee slate.slot=a\n", ""},
		// the last root= counts, as it did for init
		{"last root wins", []partitions.Part{esp, root}, "root=PARTUUID=00000000-0000-0000-0000-000000000000 root=PARTUUID=" + rootGUID, ""},
		{"no root", []partitions.Part{esp, root}, "ro quiet", "no root=PARTUUID="},
		{"root by label", []partitions.Part{esp, root}, "root=LABEL=ROOT-A", "no disk holds the root partition LABEL=ROOT-A"},
		{"root on no disk", []partitions.Part{esp, root}, "root=PARTUUID=00000000-0000-0000-0000-000000000000", "no disk holds the root partition"},
		{"no ESP", []partitions.Part{root}, "root=PARTUUID=" + rootGUID, "disk vda has no EFI system partition"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sys, dev := fakeMachine(t, c.parts)
			line := filepath.Join(t.TempDir(), "cmdline")
			os.WriteFile(line, []byte(c.cmdline), 0o644)
			d, err := detect(line, sys, dev, nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != "vda" || d.ESPDev != "/dev/vda1" || d.ESPMount != ESPMount || d.Cmdline != strings.TrimSpace(c.cmdline) {
				t.Errorf("disk %s, ESP %s on %s, cmdline %q", d.Name, d.ESPDev, d.ESPMount, d.Cmdline)
			}
			if d.Layout.Part(2).GUID != rootGUID {
				t.Errorf("layout %+v", d.Layout)
			}
		})
	}
}

// A plain folder (tests, and nothing to mount) is handed over as it is;
// a failing preparation (the vfat modules) stops the mount and says so.
func TestWithESP(t *testing.T) {
	dir := t.TempDir()
	prepared := 0
	d := &Disk{ESPMount: dir, PrepareMount: func() error { prepared++; return nil }}
	var got string
	if err := d.WithESP(func(p string) error { got = p; return nil }); err != nil || got != dir {
		t.Fatalf("WithESP gave %q, %v; want %q", got, err, dir)
	}
	if prepared != 0 {
		t.Errorf("prepared %d times for a plain folder", prepared)
	}
	boom := errors.New("no vfat module")
	d = &Disk{ESPDev: "/dev/nonexistent", ESPMount: filepath.Join(dir, "esp"), PrepareMount: func() error { prepared++; return boom }}
	called := false
	for range 2 {
		err := d.WithESP(func(string) error { called = true; return nil })
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "prepare to mount the ESP") {
			t.Fatalf("err %v", err)
		}
	}
	if called || prepared != 1 {
		t.Errorf("fn called %v, prepared %d times (want once)", called, prepared)
	}
	if _, err := os.Stat(filepath.Join(dir, "esp")); err == nil {
		t.Error("mount point created though nothing was mounted")
	}
}
