// Package bootinfo records how the running system booted: from a disk
// slot, or with its root in RAM (fetched over the network, or carried in
// the initramfs of a network boot or a live ISO). Init writes it before it
// hands over; the updater, `slate inspect` and `slate update status` read
// it, so a machine without a slot says so instead of failing on a disk it
// does not have.
package bootinfo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Path is where init writes the record; /run moves into the booted system.
const Path = "/run/slate/boot.json"

// Modes.
const (
	ModeDisk = "disk" // root is a slot partition on a disk
	ModeRAM  = "ram"  // root image held in RAM, no slot
)

// Info is Path's content.
type Info struct {
	Mode string `json:"mode"`
	Slot string `json:"slot,omitempty"` // a or b on a disk boot
	Root string `json:"root"`           // the block device mounted as /
	// RootURL is where a RAM root was fetched from (without a password);
	// empty when the initramfs carried it.
	RootURL string `json:"root_url,omitempty"`
	// Iface is the interface init configured to fetch the root: the
	// system renews that lease.
	Iface      string `json:"iface,omitempty"`
	RootSHA256 string `json:"root_sha256,omitempty"`
	RootSize   int64  `json:"root_size,omitempty"`
	// State is the device mounted on /var, or "tmpfs" when nothing the
	// machine writes survives a reboot.
	State string `json:"state"`
}

// RAM reports whether the root is held in RAM (no slot, no updates).
func (i Info) RAM() bool { return i.Mode == ModeRAM }

// Describe says in one sentence how the machine booted.
func (i Info) Describe() string {
	if !i.RAM() {
		return fmt.Sprintf("booted from disk, slot %s (%s)", i.Slot, i.Root)
	}
	src := "carried in the initramfs"
	if i.RootURL != "" {
		src = "fetched from " + i.RootURL
	}
	state := "STATE on " + i.State
	if i.State == "tmpfs" {
		state = "/var in tmpfs (lost at reboot)"
	}
	how := "booted live"
	if i.RootURL != "" {
		how = "network-booted"
	}
	return fmt.Sprintf("%s: root in RAM (%s), %s; no slot, updates are not applied on this machine", how, src, state)
}

// Write stores info at path (atomically: a reader never sees half of it).
func Write(path string, info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("boot record: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("boot record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("boot record: %w", err)
	}
	return nil
}

// Read loads the record at path. A system without one (an older init)
// booted from disk.
func Read(path string) (Info, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Info{Mode: ModeDisk}, err
	}
	if err != nil {
		return Info{}, fmt.Errorf("boot record: %w", err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("boot record %s: %w", path, err)
	}
	if info.Mode != ModeDisk && info.Mode != ModeRAM {
		return Info{}, fmt.Errorf("boot record %s: mode %q: want %s or %s", path, info.Mode, ModeDisk, ModeRAM)
	}
	return info, nil
}
