package stage1

import (
	"context"
	"os"

	"github.com/slateos/slate/internal/boot/netconf"
)

// Sys is what init asks of the kernel that a test on a build host cannot
// have: mounts, the switch into the booted root, a reboot, module loads,
// the loop and BLKPG ioctls and the network. Everything else init does
// (reading /proc and /sys, finding the disk, formatting STATE, writing
// boot.json) works on files under a root prefix, so a test runs the same
// stages on a temporary folder with a fake Sys. linuxSys is the real one.
type Sys interface {
	// Mount is mount(2).
	Mount(source, target, fstype string, flags uintptr, data string) error
	// SwitchRoot moves /dev, /proc, /sys and /run into newRoot, makes it
	// the root, empties the initramfs and execs init: it returns only on
	// failure.
	SwitchRoot(newRoot, init string) error
	// Reboot syncs the disks and restarts the machine.
	Reboot() error
	// KernelRelease is uname -r.
	KernelRelease() string
	// LoadModule loads one kernel module file (finit_module(2)).
	LoadModule(path, params string) error
	// ResizePartition tells the kernel that partition num of the open
	// whole disk now spans [start, start+size) bytes (BLKPG): unlike a
	// re-read of the table it works while other partitions are mounted.
	ResizePartition(disk *os.File, num int, start, size int64) error
	// LoopAttach puts a read-only loop device over the file at path and
	// returns the device's path.
	LoopAttach(path string) (string, error)
	// NetUp configures the first wired interface that gets a DHCP lease.
	NetUp(ctx context.Context, cl Cmdline) (netconf.Lease, error)
}
