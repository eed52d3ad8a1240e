package stage1

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

var _ Sys = linuxSys{}

// TestBlkpgLayout pins the BLKPG structures to the kernel's amd64 ABI
// (struct blkpg_partition, struct blkpg_ioctl_arg in linux/blkpg.h): a
// wrong size or offset would make the kernel read garbage for STATE's
// new extent.
func TestBlkpgLayout(t *testing.T) {
	var p unix.BlkpgPartition
	var a unix.BlkpgIoctlArg
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof(blkpg_partition)", unsafe.Sizeof(p), 152},
		{"offsetof(length)", unsafe.Offsetof(p.Length), 8},
		{"offsetof(pno)", unsafe.Offsetof(p.Pno), 16},
		{"offsetof(devname)", unsafe.Offsetof(p.Devname), 20},
		{"offsetof(volname)", unsafe.Offsetof(p.Volname), 84},
		{"sizeof(blkpg_ioctl_arg)", unsafe.Sizeof(a), 24},
		{"offsetof(datalen)", unsafe.Offsetof(a.Datalen), 8},
		{"offsetof(data)", unsafe.Offsetof(a.Data), 16},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	if unix.BLKPG != 0x1269 || unix.BLKPG_RESIZE_PARTITION != 3 {
		t.Errorf("BLKPG %#x, BLKPG_RESIZE_PARTITION %d", unix.BLKPG, unix.BLKPG_RESIZE_PARTITION)
	}
}
