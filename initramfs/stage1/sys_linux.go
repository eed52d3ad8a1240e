package stage1

import (
	"bytes"
	"context"
	"os"
	"unsafe"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/netconf"
	"github.com/slateos/slate/internal/format/kmod"
)

// linuxSys is Sys on the running kernel.
type linuxSys struct{}

func (linuxSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (linuxSys) SwitchRoot(newRoot, init string) error { return mount.SwitchRoot(newRoot, init) }

func (linuxSys) Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

func (linuxSys) KernelRelease() string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return string(bytes.TrimRight(uts.Release[:], "\x00"))
}

func (linuxSys) LoadModule(path, params string) error { return kmod.LoadFile(path, params) }

// ResizePartition is BLKPG_RESIZE_PARTITION.
func (linuxSys) ResizePartition(disk *os.File, num int, start, size int64) error {
	p := unix.BlkpgPartition{Start: start, Length: size, Pno: int32(num)}
	arg := unix.BlkpgIoctlArg{
		Op:      unix.BLKPG_RESIZE_PARTITION,
		Datalen: int32(unsafe.Sizeof(p)),
		Data:    (*byte)(unsafe.Pointer(&p)),
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, disk.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

func (linuxSys) LoopAttach(path string) (string, error) { return loopAttach(path) }

func (linuxSys) NetUp(ctx context.Context, cl Cmdline) (netconf.Lease, error) { return netUp(ctx, cl) }
