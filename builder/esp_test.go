package builder

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/partitions"
)

// The default image's ESP, read back from what buildESP wrote: its files,
// loader.conf and slot a's boot entry, byte for byte. Moving the entry
// code between packages must not change a byte of what machines boot.
func TestDefaultESPUnchanged(t *testing.T) {
	spec, err := configs.Load(filepath.Join("..", "configs", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := Inputs{Vmlinuz: filepath.Join(dir, "vmlinuz"), Loader: filepath.Join(dir, "BOOTX64.EFI")}
	for _, p := range []string{in.Vmlinuz, in.Loader} {
		if err := os.WriteFile(p, []byte(filepath.Base(p)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := partitions.Plan(int64(spec.Disk.Size), int64(spec.Disk.ESP), int64(spec.Disk.Root), spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	esp := l.Part(partitions.NumESP)
	f, err := os.Create(filepath.Join(dir, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(esp.End()); err != nil {
		t.Fatal(err)
	}
	if err := buildESP(f, l, spec, in, []byte("initrd"), time.Unix(1700000000, 0).UTC()); err != nil {
		t.Fatal(err)
	}
	fsys, err := fatfs.Open(f, esp.Start, esp.Size)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	const entry = "loader/entries/slate-1.0.0-a.conf"
	want := map[string]string{
		"EFI/BOOT/BOOTX64.EFI": "BOOTX64.EFI",
		"loader/loader.conf":   "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n",
		"slate/a/vmlinuz":      "vmlinuz",
		"slate/a/initrd.img":   "initrd",
		entry: "title slate slate-demo 1.0.0 (slot a)\n" +
			"version 1.0.0\n" +
			"sort-key slate\n" +
			"linux /slate/a/vmlinuz\n" +
			"initrd /slate/a/initrd.img\n" +
			"options root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a panic=10 loglevel=4 console=tty0 console=ttyS0,115200\n",
	}
	if len(files) != len(want) {
		t.Errorf("ESP files %q, want %d files", files, len(want))
	}
	for p, w := range want {
		got, err := fsys.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if string(got) != w {
			t.Errorf("%s:\n got %q\nwant %q", p, got, w)
		}
	}
}
