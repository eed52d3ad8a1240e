package stage1

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/partitions"
)

// diskRoot waits for the slot's root partition and mounts it read-only.
func (b *boot) diskRoot() error {
	if err := b.makeNewRoot(); err != nil {
		return err
	}
	disk, rootNum, err := b.waitRoot()
	if err != nil {
		return err
	}
	b.disk = disk
	rootDev := disk.Dev(rootNum)
	if err := b.sys.Mount(b.path(rootDev), b.newRoot(), "ext4", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s read-only on %s: %w", rootDev, NewRoot, err)
	}
	logrus.WithFields(logrus.Fields{"dev": rootDev, "took": bootlog.Since(b.start)}).Info("root mounted read-only")
	b.info = bootinfo.Info{Mode: bootinfo.ModeDisk, Slot: b.cl.Slot, Root: rootDev}
	return nil
}

// waitRoot polls (bounded by slate.rootwait) for the partition named by
// root=PARTUUID=, loading modules for devices that show up meanwhile
// (USB disks take a while).
func (b *boot) waitRoot() (partitions.Disk, int, error) {
	deadline := time.Now().Add(time.Duration(b.cl.RootWait) * time.Second)
	var seen []string
	for {
		disks, err := partitions.ScanDisks(b.path("/sys/block"), b.path("/dev"))
		if err == nil {
			if d, n, ok := partitions.FindPartUUID(disks, b.cl.Root); ok {
				return d, n, nil
			}
			seen = seen[:0]
			for _, d := range disks {
				seen = append(seen, d.Name)
			}
		}
		if time.Now().After(deadline) {
			return partitions.Disk{}, 0, fmt.Errorf("no partition with PARTUUID %s after %ds (disks with a GPT: %s)", b.cl.Root, b.cl.RootWait, strings.Join(seen, ", "))
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = b.ld.ProbeDevices(b.path("/sys"))
	}
}

// diskState sets up STATE of the boot disk, growing it on first boot.
func (b *boot) diskState() error {
	state, err := findState(b.disk)
	if err != nil {
		return err
	}
	if err := b.setupState(b.disk, state, true); err != nil {
		return err
	}
	b.info.State = b.disk.Dev(state.Num)
	return nil
}

// findState finds the STATE partition of the boot disk (by type).
func findState(disk partitions.Disk) (partitions.Part, error) {
	for _, p := range disk.Layout.Parts {
		if strings.EqualFold(p.Type, partitions.TypeState) {
			return p, nil
		}
	}
	return partitions.Part{}, fmt.Errorf("disk %s has no STATE partition (type %s)", disk.Name, partitions.TypeState)
}

// setupState mounts STATE on /var. On first boot STATE has no filesystem:
// with grow, grow the partition to the end of the disk if the disk is
// larger than the image (only slate's own disk layout), then format it.
func (b *boot) setupState(disk partitions.Disk, state partitions.Part, grow bool) error {
	dev := disk.Dev(state.Num)
	has, err := hasExt4(b.path(dev), dev)
	if err != nil {
		return err
	}
	if !has {
		t := time.Now()
		size := state.Size
		if grow {
			if size, err = b.growState(disk, state); err != nil {
				return err
			}
		}
		if err := mkfsState(b.path(dev), dev, size, disk.Layout.GUID); err != nil {
			return err
		}
		bootlog.Event("STATE", "action", "created", "dev", dev, "size", size, "took", bootlog.Since(t))
	}
	dst := filepath.Join(b.newRoot(), "var")
	if err := b.sys.Mount(b.path(dev), dst, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount STATE %s on /var: %w", dev, err)
	}
	return nil
}

// hasExt4 tells whether the device at path (dev on the machine) holds an
// ext4 superblock.
func hasExt4(path, dev string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open STATE %s: %w", dev, err)
	}
	defer f.Close()
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+0x38); err != nil {
		return false, fmt.Errorf("read STATE superblock of %s: %w", dev, err)
	}
	return binary.LittleEndian.Uint16(magic[:]) == 0xEF53, nil
}

// growState extends STATE to the end of a disk that is larger than the
// image, and tells the kernel the new size. It returns STATE's size.
func (b *boot) growState(disk partitions.Disk, state partitions.Part) (int64, error) {
	whole := "/dev/" + disk.Name
	f, err := os.OpenFile(b.path(whole), os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", whole, err)
	}
	defer f.Close()
	grown, err := partitions.GrowState(f, disk.Size)
	if err != nil {
		return 0, err
	}
	if !grown {
		return state.Size, nil
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", whole, err)
	}
	l, err := partitions.ReadGPT(f, disk.Size)
	if err != nil {
		return 0, err
	}
	for _, p := range l.Parts {
		if p.Num == state.Num {
			if err := b.sys.ResizePartition(f, p.Num, p.Start, p.Size); err != nil {
				return 0, fmt.Errorf("tell the kernel %s%d grew: %w", disk.Name, p.Num, err)
			}
			bootlog.Event("STATE", "action", "grown", "from", state.Size, "to", p.Size)
			return p.Size, nil
		}
	}
	return 0, fmt.Errorf("STATE partition %d vanished after growing", state.Num)
}

// mkfsState formats the device at path (dev on the machine) as STATE.
func mkfsState(path, dev string, size int64, seed string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open STATE %s: %w", dev, err)
	}
	defer f.Close()
	opts := ext4fs.Options{
		Size:          size,
		Label:         partitions.LabelState,
		Time:          time.Now(),
		JournalBlocks: journalBlocks(size),
	}
	opts.UUID = uuid.MustParse(partitions.DeriveGUID(seed, "state-fs"))
	opts.HashSeed = uuid.MustParse(partitions.DeriveGUID(seed, "state-hash"))
	fsys, err := ext4fs.New(opts)
	if err != nil {
		return fmt.Errorf("format STATE: %w", err)
	}
	if err := fsys.WriteTo(f, 0); err != nil {
		return fmt.Errorf("format STATE %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync STATE %s: %w", dev, err)
	}
	return nil
}

// journalBlocks picks a journal size as mke2fs does, roughly: 16 MiB for
// small filesystems up to 128 MiB for large ones (4 KiB blocks).
func journalBlocks(size int64) int {
	switch {
	case size < 1<<30:
		return 4096
	case size < 16<<30:
		return 16384
	default:
		return 32768
	}
}

func (l *loadTimes) slowest(n int) string {
	idx := make([]int, len(l.names))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return l.times[idx[a]] > l.times[idx[b]] })
	var parts []string
	for _, i := range idx[:min(n, len(idx))] {
		parts = append(parts, fmt.Sprintf("%s:%dms", l.names[i], l.times[i].Milliseconds()))
	}
	return strings.Join(parts, ",")
}
