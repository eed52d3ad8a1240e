package stage1

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/bootinfo"
	"github.com/slateos/slate/bootlog"
	"github.com/slateos/slate/cmdline"
	"github.com/slateos/slate/ext4fs"
	"github.com/slateos/slate/kmod"
	"github.com/slateos/slate/partitions"
)

// processStart is set when the package is initialised, before main runs.
var processStart = time.Now()

// NewRoot is where the slot's root is mounted before switch_root.
const NewRoot = "/newroot"

// OverlayDir holds the upper and work folders of the /etc overlay on STATE.
const OverlayDir = "lib/slate/overlay/etc"

// stageError carries the boot stage that failed, for SLATE-FAILED.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func fail(stage string, err error) error {
	if err == nil {
		return nil
	}
	return &stageError{stage: stage, err: err}
}

// Main runs init. It does not return: it either execs /sbin/init of the
// slot's root, or reports the failure and reboots (or waits, with
// slate.debug) so boot counting can do its work.
func Main() {
	start := time.Now()
	err := run(start)
	stage := "init"
	var se *stageError
	if errors.As(err, &se) {
		stage = se.stage
		err = se.err
	}
	bootlog.Event("FAILED", "stage", stage, "err", err.Error())
	// The same reader as ParseCmdline: slate.debugger=1 is not slate.debug.
	if kc, rerr := cmdline.Read(); rerr == nil && kc.Flag(cmdline.Debug) {
		logrus.Error("slate.debug is set: waiting instead of rebooting")
		for {
			time.Sleep(time.Hour)
		}
	}
	logrus.Error("rebooting in 5 s")
	time.Sleep(5 * time.Second)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	for {
		time.Sleep(time.Hour)
	}
}

func run(start time.Time) error {
	if err := mountEarly(); err != nil {
		return fail("mount", err)
	}
	bootlog.Setup(os.Stdout, "slate-init")
	// u-root's switch_root logs through the standard logger.
	log.SetOutput(io.Discard)

	raw, err := os.ReadFile(cmdline.Path)
	if err != nil {
		return fail("cmdline", err)
	}
	cl, err := ParseCmdline(string(raw))
	if err != nil {
		return fail("cmdline", err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	kver := string(bytes.TrimRight(uts.Release[:], "\x00"))
	// What the machine holds before init does anything (kernel and the
	// unpacked initramfs): a RAM boot's cost is measured from here.
	memStart := memUsed()
	if cl.RAM {
		logrus.WithFields(logrus.Fields{"kernel": kver, "root_url": cl.Net.URL, "root_size": cl.Net.Size, "mem_used": memStart}).Info("slate init starting, root in RAM")
	} else {
		logrus.WithFields(logrus.Fields{"kernel": kver, "slot": cl.Slot, "root": cl.Root}).Info("slate init starting")
	}

	brk := func(stage string) error {
		if cl.Break == stage {
			return fail(stage, fmt.Errorf("stopped by slate.break=%s on the kernel command line", stage))
		}
		return nil
	}
	if err := brk("modules"); err != nil {
		return err
	}
	lt := &loadTimes{}
	// async_probe: a driver probes its devices in the background, so a
	// slow controller (AHCI scans its ports for ~350 ms under emulation)
	// does not hold up the disk that has the root.
	ld := &kmod.Loader{Dir: filepath.Join("/lib/modules", kver), Load: lt.load, SysModule: "/sys/module", Params: "async_probe"}
	base := []string{"ext4", "overlay"}
	if cl.RAM {
		base = append(base, "loop")
	}
	if err := ld.Probe(base...); err != nil {
		return fail("modules", err)
	}
	if _, err := ld.ProbeDevices("/sys"); err != nil {
		logrus.WithError(err).Debug("some device modules did not load")
	}
	logrus.WithFields(logrus.Fields{"took": bootlog.Since(start), "count": len(lt.names), "in_kernel": lt.total.Round(time.Millisecond), "slowest": lt.slowest(3)}).Info("modules loaded")
	probed := time.Now()

	if cl.RAM {
		// The module files have done their work (the drivers are in the
		// kernel now) and the booted system loads later ones from its
		// root: dropping them leaves their ~20 MiB of RAM to the root.
		if err := os.RemoveAll(ld.Dir); err != nil {
			logrus.WithError(err).Warn("drop the initramfs modules")
		}
	}
	if err := brk("root"); err != nil {
		return err
	}
	if err := os.MkdirAll(NewRoot, 0o755); err != nil {
		return fail("root", err)
	}
	var info bootinfo.Info
	if cl.RAM {
		if info, err = mountRAMRoot(cl, start, memStart, probed, brk); err != nil {
			return err
		}
	} else {
		disk, rootNum, err := waitRoot(ld, cl)
		if err != nil {
			return fail("root", err)
		}
		rootDev := disk.Dev(rootNum)
		if err := unix.Mount(rootDev, NewRoot, "ext4", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
			return fail("root", fmt.Errorf("mount %s read-only on %s: %w", rootDev, NewRoot, err))
		}
		logrus.WithFields(logrus.Fields{"dev": rootDev, "took": bootlog.Since(start)}).Info("root mounted read-only")
		info = bootinfo.Info{Mode: bootinfo.ModeDisk, Slot: cl.Slot, Root: rootDev}
		if err := brk("state"); err != nil {
			return err
		}
		state, err := diskState(disk)
		if err != nil {
			return fail("state", err)
		}
		if err := setupState(disk, state, true); err != nil {
			return fail("state", err)
		}
		info.State = disk.Dev(state.Num)
	}
	if err := brk("etc"); err != nil {
		return err
	}
	if err := setupEtc(); err != nil {
		return fail("etc", err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(NewRoot, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fail("tmp", fmt.Errorf("mount /tmp: %w", err))
	}
	if err := brk("switch_root"); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(NewRoot, "sbin/init")); err != nil {
		return fail("switch_root", fmt.Errorf("root %s has no /sbin/init: %w", info.Root, err))
	}
	if err := bootinfo.Write(bootinfo.Path, info); err != nil {
		return fail("switch_root", err)
	}
	slot := cl.Slot
	if cl.RAM {
		slot = "none"
	}
	// took counts from package initialisation, the earliest point Go
	// code runs (PID 1's own start time is the kernel thread's, at boot).
	bootlog.Event("INIT", "slot", slot, "root", info.Root, "took", bootlog.Since(processStart))
	if err := mount.SwitchRoot(NewRoot, "/sbin/init"); err != nil {
		return fail("switch_root", err)
	}
	return fail("switch_root", errors.New("exec of /sbin/init returned"))
}

// ramRootLimit bounds bringing a root into RAM: DHCP and the download
// have their own retries and limits; this only keeps a stuck server from
// holding the boot for ever.
const ramRootLimit = 15 * time.Minute

// mountRAMRoot brings the root into RAM, checks it, mounts it read-only
// and sets up /var. Failures before the mount are stage netroot.
func mountRAMRoot(cl Cmdline, start time.Time, memStart int64, probed time.Time, brk func(stage string) error) (bootinfo.Info, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ramRootLimit)
	defer cancel()
	dev, info, err := ramRoot(ctx, cl)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (init gives the network and the download %s in all)", err, ramRootLimit)
	}
	if err != nil {
		return info, fail("netroot", err)
	}
	if err := unix.Mount(dev, NewRoot, "ext4", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		return info, fail("netroot", fmt.Errorf("mount %s read-only on %s: %w", dev, NewRoot, err))
	}
	bootlog.Event("NETROOT", "state", "mounted", "dev", dev, "mem_start", memStart, "mem_peak", max(peakMem.Load(), memUsed()), "took", bootlog.Since(start))
	if err := brk("state"); err != nil {
		return info, err
	}
	state, err := ramState(probed)
	if err != nil {
		return info, fail("state", err)
	}
	info.State = state
	return info, nil
}

func mountEarly() error {
	for _, m := range []struct{ src, dst, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.typ, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.typ, m.dst, err)
		}
	}
	return nil
}

// waitRoot polls (bounded by slate.rootwait) for the partition named by
// root=PARTUUID=, loading modules for devices that show up meanwhile
// (USB disks take a while).
func waitRoot(ld *kmod.Loader, cl Cmdline) (partitions.Disk, int, error) {
	deadline := time.Now().Add(time.Duration(cl.RootWait) * time.Second)
	var seen []string
	for {
		disks, err := partitions.ScanDisks("/sys/block", "/dev")
		if err == nil {
			if d, n, ok := partitions.FindPartUUID(disks, cl.Root); ok {
				return d, n, nil
			}
			seen = seen[:0]
			for _, d := range disks {
				seen = append(seen, d.Name)
			}
		}
		if time.Now().After(deadline) {
			return partitions.Disk{}, 0, fmt.Errorf("no partition with PARTUUID %s after %ds (disks with a GPT: %s)", cl.Root, cl.RootWait, strings.Join(seen, ", "))
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = ld.ProbeDevices("/sys")
	}
}

// diskState finds the STATE partition of the boot disk (by type).
func diskState(disk partitions.Disk) (partitions.Part, error) {
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
func setupState(disk partitions.Disk, state partitions.Part, grow bool) error {
	dev := disk.Dev(state.Num)
	has, err := hasExt4(dev)
	if err != nil {
		return err
	}
	if !has {
		t := time.Now()
		size := state.Size
		if grow {
			if size, err = growState(disk, state); err != nil {
				return err
			}
		}
		if err := mkfsState(dev, size, disk.Layout.GUID); err != nil {
			return err
		}
		bootlog.Event("STATE", "action", "created", "dev", dev, "size", size, "took", bootlog.Since(t))
	}
	dst := filepath.Join(NewRoot, "var")
	if err := unix.Mount(dev, dst, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount STATE %s on /var: %w", dev, err)
	}
	return nil
}

func hasExt4(dev string) (bool, error) {
	f, err := os.Open(dev)
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
func growState(disk partitions.Disk, state partitions.Part) (int64, error) {
	whole := "/dev/" + disk.Name
	f, err := os.OpenFile(whole, os.O_RDWR, 0)
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
			if err := blkpgResize(f, p.Num, p.Start, p.Size); err != nil {
				return 0, fmt.Errorf("tell the kernel %s%d grew: %w", disk.Name, p.Num, err)
			}
			bootlog.Event("STATE", "action", "grown", "from", state.Size, "to", p.Size)
			return p.Size, nil
		}
	}
	return 0, fmt.Errorf("STATE partition %d vanished after growing", state.Num)
}

// blkpgResize is BLKPG_RESIZE_PARTITION: unlike BLKRRPART it works while
// other partitions of the disk (our root) are mounted.
func blkpgResize(f *os.File, num int, start, size int64) error {
	type blkpgPartition struct {
		Start   int64
		Length  int64
		Pno     int32
		Devname [64]byte
		Volname [64]byte
		_       [4]byte
	}
	type blkpgIoctlArg struct {
		Op      int32
		Flags   int32
		Datalen int32
		_       [4]byte
		Data    uintptr
	}
	p := blkpgPartition{Start: start, Length: size, Pno: int32(num)}
	arg := blkpgIoctlArg{Op: 3 /* BLKPG_RESIZE_PARTITION */, Datalen: int32(unsafe.Sizeof(p)), Data: uintptr(unsafe.Pointer(&p))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

func mkfsState(dev string, size int64, seed string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
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

// setupEtc gives the system a writable /etc: an overlay whose lower layer
// is the slot's read-only /etc and whose upper layer lives on STATE, so
// local changes survive updates of the slot.
func setupEtc() error {
	upper := filepath.Join(NewRoot, "var", OverlayDir, "upper")
	work := filepath.Join(NewRoot, "var", OverlayDir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	etc := filepath.Join(NewRoot, "etc")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", etc, upper, work)
	if err := unix.Mount("overlay", etc, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay on /etc (%s): %w", opts, err)
	}
	// Homes and /srv hold what people and provisioning put there: they
	// live on STATE too, bound over the root's empty folders.
	for _, d := range []struct {
		dir  string
		mode os.FileMode
	}{{"home", 0o755}, {"root", 0o700}, {"srv", 0o755}} {
		src := filepath.Join(NewRoot, "var", "lib", "slate", "state", d.dir)
		dst := filepath.Join(NewRoot, d.dir)
		if err := os.MkdirAll(src, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", src, err)
		}
		if _, err := os.Stat(dst); err != nil {
			continue // an older root without the folder
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on /%s: %w", src, d.dir, err)
		}
	}
	return nil
}

// loadTimes records how long each module load took: module loading is
// most of init's time under emulation, so the log says where it went.
type loadTimes struct {
	names []string
	times []time.Duration
	total time.Duration
}

func (l *loadTimes) load(path, params string) error {
	t := time.Now()
	err := kmod.LoadFile(path, params)
	d := time.Since(t)
	l.names = append(l.names, strings.TrimSuffix(filepath.Base(path), ".ko"))
	l.times = append(l.times, d)
	l.total += d
	return err
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
