package bootentry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirLifecycle(t *testing.T) {
	b := Dir{Path: t.TempDir()}
	cfg := func(v, slot string) Config {
		return Config{Title: "t", Version: v, Slot: slot, Linux: "/slate/" + slot + "/vmlinuz", Initrd: "/slate/" + slot + "/initrd.img", Options: "ro"}
	}
	if _, err := b.InstallEntry(cfg("1.0.0", "a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteSlotFile("b", "vmlinuz", strings.NewReader("kernel")); err != nil {
		t.Fatal(err)
	}
	name, err := b.InstallEntry(cfg("2.0.0", "b"), DefaultTries)
	if err != nil || name != "slate-2.0.0-b+3.conf" {
		t.Fatalf("install: %q %v", name, err)
	}
	es, err := b.Entries()
	if err != nil || len(es) != 2 {
		t.Fatalf("entries: %+v %v", es, err)
	}
	var plain []Entry
	for _, e := range es {
		plain = append(plain, e.Entry)
	}
	if n, _ := NextBoot(plain); n.Slot != "b" {
		t.Fatalf("next boot %+v, want b", n)
	}
	// systemd-boot counts a try
	os.Rename(filepath.Join(b.Path, "loader/entries/slate-2.0.0-b+3.conf"), filepath.Join(b.Path, "loader/entries/slate-2.0.0-b+2-1.conf"))
	if name, err := b.Bless("b"); err != nil || name != "slate-2.0.0-b.conf" {
		t.Fatalf("bless: %q %v", name, err)
	}
	if name, err := b.MarkBad("b"); err != nil || name != "slate-2.0.0-b+0-3.conf" {
		t.Fatalf("mark bad: %q %v", name, err)
	}
	e, ok, err := b.SlotEntry("b")
	if err != nil || !ok || !e.Bad() || !strings.Contains(e.Options, "ro") {
		t.Fatalf("slot b entry %+v %v %v", e, ok, err)
	}
	if err := b.RemoveSlot("b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.SlotEntry("b"); ok {
		t.Fatal("slot b still has an entry")
	}
	if got, _ := os.ReadFile(filepath.Join(b.Path, "slate/b/vmlinuz")); string(got) != "kernel" {
		t.Fatalf("kernel file %q", got)
	}
	left, _ := filepath.Glob(filepath.Join(b.Path, "*/*.tmp"))
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
