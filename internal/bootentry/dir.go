package bootentry

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Dir manages the slots' boot files on a mounted ESP (the running
// system mounts it with the kernel's vfat driver). Every change is written
// to a temporary name, synced and renamed, so a power cut leaves either the
// old or the new file, and the boot entry of a slot is always written last
// and removed first: an entry never points at a half-written slot.
type Dir struct {
	Path string // ESP mount point
}

func (b Dir) entries() string { return filepath.Join(b.Path, "loader", "entries") }

// Entries lists slate's entries, sorted by file name.
func (b Dir) Entries() ([]File, error) {
	ents, err := os.ReadDir(b.entries())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list boot entries: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, d := range ents {
		if !d.IsDir() {
			names = append(names, d.Name())
		}
	}
	return readEntries(names, func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(b.entries(), name))
		if err != nil {
			return nil, fmt.Errorf("read boot entry: %w", err)
		}
		return b, nil
	})
}

// SlotEntry returns the entry of a slot, if it has one.
func (b Dir) SlotEntry(slot string) (File, bool, error) {
	es, err := b.Entries()
	if err != nil {
		return File{}, false, err
	}
	for _, e := range es {
		if e.Slot == slot {
			return e, true, nil
		}
	}
	return File{}, false, nil
}

// RemoveSlot removes every entry of a slot, so it cannot boot while its
// files are being replaced.
func (b Dir) RemoveSlot(slot string) error {
	es, err := b.Entries()
	if err != nil {
		return err
	}
	removed := false
	for _, e := range es {
		if e.Slot != slot {
			continue
		}
		if err := os.Remove(filepath.Join(b.entries(), e.File)); err != nil {
			return fmt.Errorf("remove boot entry %s: %w", e.File, err)
		}
		removed = true
	}
	if !removed {
		return nil
	}
	return syncDir(b.entries())
}

// WriteSlotFile writes a slot's kernel or initramfs (name "vmlinuz" or
// "initrd.img") from r, synced, under /slate/<slot>/.
func (b Dir) WriteSlotFile(slot, name string, r io.Reader) (int64, error) {
	dir := filepath.Join(b.Path, "slate", slot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	return writeSynced(filepath.Join(dir, name), r)
}

// InstallEntry writes a slot's entry with boot counting (tries tries),
// which makes the slot the next to boot when its version is the highest.
// This rename is the flip.
func (b Dir) InstallEntry(cfg Config, tries int) (string, error) {
	e := Entry{Version: cfg.Version, Slot: cfg.Slot, Counted: tries > 0, Left: tries}
	if err := os.MkdirAll(b.entries(), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", b.entries(), err)
	}
	if _, err := writeSynced(filepath.Join(b.entries(), e.Name()), strings.NewReader(string(cfg.Render()))); err != nil {
		return "", err
	}
	return e.Name(), nil
}

// Bless removes the boot counter of a slot's entry: the slot is good.
func (b Dir) Bless(slot string) (string, error) {
	e, ok, err := b.SlotEntry(slot)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("slot %s has no boot entry to bless", slot)
	}
	if !e.Counted {
		return e.File, nil
	}
	blessed := Entry{Version: e.Version, Slot: e.Slot}
	return blessed.Name(), b.rename(e.File, blessed.Name())
}

// MarkBad sets a slot's tries to zero: systemd-boot will not pick it while
// another entry is good.
func (b Dir) MarkBad(slot string) (string, error) {
	e, ok, err := b.SlotEntry(slot)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("slot %s has no boot entry", slot)
	}
	bad := Entry{Version: e.Version, Slot: e.Slot, Counted: true, Left: 0, Done: max(e.Done, DefaultTries)}
	if e.File == bad.Name() {
		return e.File, nil
	}
	return bad.Name(), b.rename(e.File, bad.Name())
}

func (b Dir) rename(from, to string) error {
	if err := os.Rename(filepath.Join(b.entries(), from), filepath.Join(b.entries(), to)); err != nil {
		return fmt.Errorf("rename boot entry %s to %s: %w", from, to, err)
	}
	return syncDir(b.entries())
}

// writeSynced writes a file under a temporary name, syncs it and renames
// it into place, then syncs the folder.
func writeSynced(p string, r io.Reader) (int64, error) {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return n, fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return n, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return n, syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
