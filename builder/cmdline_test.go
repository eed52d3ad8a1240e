package builder

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/cmdline"
)

// The default image's boot entries, byte for byte as slate wrote them
// before the builder and the updater shared cmdline.SlotOptions.
func TestEntryForDefaultUnchanged(t *testing.T) {
	spec, err := configs.Load(filepath.Join("..", "configs", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const guid = "5A92BAF2-4FF3-4F69-98D8-137964E3D4E3"
	want := map[string]string{
		"a": "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=a panic=10 loglevel=4 console=tty0 console=ttyS0,115200",
		"b": "root=PARTUUID=5a92baf2-4ff3-4f69-98d8-137964e3d4e3 ro slate.slot=b panic=10 loglevel=4 console=tty0 console=ttyS0,115200",
	}
	for slot, w := range want {
		if got := EntryFor(spec, slot, guid).Options; got != w {
			t.Errorf("slot %s:\n got %q\nwant %q", slot, got, w)
		}
	}
	// The updater writes the other slot's entry from the manifest's
	// kernel_args (SlotArgs) through the same function: the same line.
	if got := cmdline.SlotOptions("b", guid, SlotArgs(spec)); got != want["b"] {
		t.Errorf("from SlotArgs:\n got %q\nwant %q", got, want["b"])
	}
	if got := cmdline.SlotOptions("b", guid, cmdline.Fields(EntryFor(spec, "a", "00000000-0000-0000-0000-000000000000").Options)); got != want["b"] {
		t.Errorf("from slot a's entry:\n got %q\nwant %q", got, want["b"])
	}
	for _, a := range SlotArgs(spec) {
		if k, ok := cmdline.ReservedKey(a); ok || strings.HasPrefix(a, "root=") {
			t.Errorf("SlotArgs carries %s= (%q)", k, a)
		}
	}
}
