package updater

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/cmdline"
	"github.com/slateos/slate/partitions"
)

// Machine is the disk the running system booted from.
type Machine struct {
	Cmdline string
	Disk    partitions.Disk
	// ESPDev is the ESP's device; empty when ESPMount is a plain folder
	// (tests).
	ESPDev   string
	ESPMount string
	// PrepareMount is called once before the first ESP mount (loads the
	// vfat modules).
	PrepareMount func() error

	once    sync.Once
	prepErr error

	// The ESP is mounted once for all concurrent users (an apply and a
	// status request may overlap); the last one out unmounts it.
	mu    sync.Mutex
	users int
}

// SlotTarget is a Target with the slot's partition GUID.
type SlotTarget struct {
	Target
	PartUUID string
}

// DetectMachine finds the booted disk from root=PARTUUID= on the kernel
// command line.
func DetectMachine(prepare func() error) (*Machine, error) {
	b, err := os.ReadFile(cmdline.Path)
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	line := strings.TrimSpace(string(b))
	// The last root= counts, as it did for init, which mounted it.
	root, _ := strings.CutPrefix(cmdline.Parse(line).Get(cmdline.Root), "PARTUUID=")
	if root == "" {
		return nil, fmt.Errorf("kernel command line has no root=PARTUUID=")
	}
	disks, err := partitions.ScanDisks("/sys/block", "/dev")
	if err != nil {
		return nil, err
	}
	disk, _, ok := partitions.FindPartUUID(disks, root)
	if !ok {
		return nil, fmt.Errorf("no disk holds the root partition %s", root)
	}
	m := &Machine{Cmdline: line, Disk: disk, ESPMount: ESPMount, PrepareMount: prepare}
	esp, ok := disk.Layout.ESP()
	if !ok {
		return nil, fmt.Errorf("disk %s has no EFI system partition", disk.Name)
	}
	m.ESPDev = disk.Dev(esp.Num)
	return m, nil
}

// Target returns the idle slot (the one not running).
func (m *Machine) Target(running string) (SlotTarget, error) {
	idle := partitions.Other(running)
	num := partitions.SlotNum(idle)
	for _, p := range m.Disk.Layout.Parts {
		if p.Num == num && p.Label == partitions.SlotLabel(idle) {
			dev := m.Disk.Dev(num)
			return SlotTarget{
				Target:   Target{Slot: idle, RootDev: dev, RootSize: p.Size, Tries: partitions.DefaultTries},
				PartUUID: p.GUID,
			}, nil
		}
	}
	return SlotTarget{}, fmt.Errorf("disk %s has no %s partition", m.Disk.Name, partitions.SlotLabel(idle))
}

// WithESP mounts the ESP for the length of fn. It stays unmounted
// otherwise, so a power cut rarely finds it mounted.
func (m *Machine) WithESP(fn func(partitions.BootDir) error) error {
	if m.ESPDev == "" {
		return fn(partitions.BootDir{Dir: m.ESPMount})
	}
	m.once.Do(func() {
		if m.PrepareMount != nil {
			m.prepErr = m.PrepareMount()
		}
	})
	if m.prepErr != nil {
		return fmt.Errorf("prepare to mount the ESP: %w", m.prepErr)
	}
	m.mu.Lock()
	if m.users == 0 {
		if err := os.MkdirAll(m.ESPMount, 0o755); err != nil {
			m.mu.Unlock()
			return err
		}
		if err := unix.Mount(m.ESPDev, m.ESPMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "iocharset=ascii,codepage=437,flush"); err != nil {
			m.mu.Unlock()
			return fmt.Errorf("mount ESP %s: %w", m.ESPDev, err)
		}
	}
	m.users++
	m.mu.Unlock()

	ferr := fn(partitions.BootDir{Dir: m.ESPMount})

	m.mu.Lock()
	defer m.mu.Unlock()
	m.users--
	unix.Sync()
	if m.users == 0 {
		if err := unix.Unmount(m.ESPMount, 0); err != nil && ferr == nil {
			ferr = fmt.Errorf("unmount ESP: %w", err)
		}
	}
	return ferr
}
