// Package bootdisk finds the disk the running system booted from (by the
// root PARTUUID on the kernel command line) and its ESP, and mounts the
// ESP for as long as something needs it: the updater, provisioning's ESP
// config source and PID 1 share it.
package bootdisk

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/partitions"
)

// ESPMount is where the ESP is mounted while it is in use.
const ESPMount = "/run/slate/esp"

// Disk is the disk the running system booted from.
type Disk struct {
	partitions.Disk
	Cmdline string
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

// Detect finds the booted disk from root=PARTUUID= on the kernel command
// line.
func Detect(prepare func() error) (*Disk, error) {
	return detect(cmdline.Path, "/sys/block", "/dev", prepare)
}

func detect(cmdlinePath, sysBlock, devDir string, prepare func() error) (*Disk, error) {
	b, err := os.ReadFile(cmdlinePath)
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	line := strings.TrimSpace(string(b))
	// The last root= counts, as it did for init, which mounted it.
	root, _ := strings.CutPrefix(cmdline.Parse(line).Get(cmdline.Root), "PARTUUID=")
	if root == "" {
		return nil, fmt.Errorf("kernel command line has no root=PARTUUID=")
	}
	disks, err := partitions.ScanDisks(sysBlock, devDir)
	if err != nil {
		return nil, err
	}
	disk, _, ok := partitions.FindPartUUID(disks, root)
	if !ok {
		return nil, fmt.Errorf("no disk holds the root partition %s", root)
	}
	d := &Disk{Disk: disk, Cmdline: line, ESPMount: ESPMount, PrepareMount: prepare}
	esp, ok := disk.Layout.ESP()
	if !ok {
		return nil, fmt.Errorf("disk %s has no EFI system partition", disk.Name)
	}
	d.ESPDev = disk.Dev(esp.Num)
	return d, nil
}

// WithESP mounts the ESP for the length of fn, which gets the mount
// point. It stays unmounted otherwise, so a power cut rarely finds it
// mounted.
func (d *Disk) WithESP(fn func(dir string) error) error {
	if d.ESPDev == "" {
		return fn(d.ESPMount)
	}
	d.once.Do(func() {
		if d.PrepareMount != nil {
			d.prepErr = d.PrepareMount()
		}
	})
	if d.prepErr != nil {
		return fmt.Errorf("prepare to mount the ESP: %w", d.prepErr)
	}
	d.mu.Lock()
	if d.users == 0 {
		if err := os.MkdirAll(d.ESPMount, 0o755); err != nil {
			d.mu.Unlock()
			return err
		}
		if err := unix.Mount(d.ESPDev, d.ESPMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "iocharset=ascii,codepage=437,flush"); err != nil {
			d.mu.Unlock()
			return fmt.Errorf("mount ESP %s: %w", d.ESPDev, err)
		}
	}
	d.users++
	d.mu.Unlock()

	ferr := fn(d.ESPMount)

	d.mu.Lock()
	defer d.mu.Unlock()
	d.users--
	unix.Sync()
	if d.users == 0 {
		if err := unix.Unmount(d.ESPMount, 0); err != nil && ferr == nil {
			ferr = fmt.Errorf("unmount ESP: %w", err)
		}
	}
	return ferr
}
