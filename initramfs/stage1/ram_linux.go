package stage1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/bootinfo"
	"github.com/slateos/slate/bootlog"
	"github.com/slateos/slate/netconf"
	"github.com/slateos/slate/netroot"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/redact"
)

// Where a root held in RAM lives. A fetched image goes to /run, which
// moves into the booted system, so it stays visible there; an image the
// initramfs carries stays where the kernel unpacked it.
const (
	ramRootDir  = "/run/slate/netroot"
	ramRootPath = ramRootDir + "/root.img"
)

// Network bring-up for a network boot: interfaces get this long to appear
// after their drivers load, and DHCP this many rounds (each round asks on
// every interface at once and retries its requests) before the boot fails.
var (
	netWiredWait    = 15 * time.Second
	netDHCPAttempts = 4
	netDHCPTimeout  = 3 * time.Second
)

// memReserve is what the booted system needs beside a root in RAM; a
// machine with less fails early with a clear reason instead of in the
// middle of the download.
const memReserve = 48 << 20

// ramRoot brings the root image into RAM (fetched by URL, or carried in
// the initramfs), checks it against the command line, and attaches it to
// a read-only loop device. Nothing is mounted unless the check passed.
func ramRoot(ctx context.Context, cl Cmdline) (dev string, info bootinfo.Info, err error) {
	src := cl.Net
	info = bootinfo.Info{Mode: bootinfo.ModeRAM, RootURL: redact.URL(src.URL), RootSHA256: src.SHA256, RootSize: src.Size}
	t := time.Now()
	path := netroot.EmbeddedPath
	if src.URL == "" {
		f, err := os.Open(path)
		if err != nil {
			return "", info, fmt.Errorf("%s=%s names no URL and the initramfs carries no root (%w)", netroot.ArgSHA256, src.SHA256, err)
		}
		defer f.Close()
		bootlog.Event("NETROOT", "state", "verifying", "source", "initramfs", "size", src.Size)
		if err := netroot.Verify(f, src); err != nil {
			return "", info, err
		}
		bootlog.Event("NETROOT", "state", "verified", "source", "initramfs", "sha256", src.SHA256, "took", bootlog.Since(t))
	} else {
		if avail := memAvailable(); avail > 0 && src.Size+memReserve > avail {
			return "", info, fmt.Errorf("not enough memory: the root needs %d MiB in RAM plus %d MiB for the system, %d MiB are available",
				src.Size>>20, memReserve>>20, avail>>20)
		}
		lease, err := netUp(ctx, cl)
		if err != nil {
			return "", info, err
		}
		bootlog.Event("NET", "iface", lease.Iface, "addr", lease.Addr, "gw", lease.Gateway, "took", bootlog.Since(t))
		info.Iface = lease.Iface
		path = ramRootPath
		if err := fetchRoot(ctx, src, path); err != nil {
			return "", info, err
		}
	}
	dev, err = loopAttach(path)
	if err != nil {
		return "", info, err
	}
	info.Root = dev
	return dev, info, nil
}

// fetchRoot downloads and checks the image into a file on a tmpfs of its
// own, sized to the image: a server that sends more cannot fill /run, and
// the booted system's /run keeps its room. The file is removed again on
// any failure, so no unchecked byte stays in RAM or within reach of a
// mount.
func fetchRoot(ctx context.Context, src netroot.Source, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	size := (src.Size + 1<<20 + 4095) &^ 4095
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%d,nr_inodes=16,mode=0700", size)); err != nil {
		return fmt.Errorf("mount a tmpfs for the root on %s: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o400)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	t := time.Now()
	// The decoder's window and the buffers are garbage within a few MiB:
	// collect often, so init's heap does not grow to twice its live size
	// next to a root that already takes most of the memory, and give it
	// back once the root is in.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	defer debug.FreeOSMemory()
	bootlog.Event("NETROOT", "state", "fetching", "url", redact.URL(src.URL), "size", src.Size)
	next, noted := int64(25), int64(0)
	res, err := netroot.Fetch(ctx, src, f, netroot.Options{Progress: func(n int64) {
		if n-noted >= 4<<20 {
			noted = n
			notePeak()
		}
		if pct := n * 100 / src.Size; pct >= next && pct < 100 {
			bootlog.Event("NETROOT", "state", "fetching", "percent", next)
			next += 25
		}
	}})
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	secs := time.Since(t).Seconds()
	// Where the memory went, for slate.debug boots that chase it.
	logrus.WithFields(logrus.Fields{"shmem": meminfo("Shmem"), "anon": meminfo("AnonPages"), "slab": meminfo("Slab"),
		"vmalloc": meminfo("VmallocUsed"), "total": meminfo("MemTotal"), "free": meminfo("MemFree")}).Debug("memory with the root in RAM")
	bootlog.Event("NETROOT", "state", "verified", "sha256", src.SHA256, "size", src.Size,
		"transferred", res.Transferred, "compressed", res.Compressed, "took", bootlog.Since(t),
		"mib_s", strconv.FormatFloat(float64(src.Size)/(1<<20)/max(secs, 0.001), 'f', 1, 64))
	return nil
}

// netUp configures the first interface that gets a DHCP lease. The one
// the machine netbooted from (BOOTIF) is asked alone first: on a machine
// with several networks the root is most likely reachable where the boot
// script came from.
func netUp(ctx context.Context, cl Cmdline) (netconf.Lease, error) {
	if err := netconf.LoopbackUp(); err != nil {
		logrus.WithError(err).Warn("loopback")
	}
	// resolv.conf is written here and carried into the booted system's
	// view only through its own DHCP; init needs it for a root URL by name.
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return netconf.Lease{}, err
	}
	names, err := netconf.WaitWired(ctx, "/sys/class/net", netWiredWait)
	if err != nil {
		return netconf.Lease{}, fmt.Errorf("network: %w after %s (drivers loaded for the network cards found: see the module lines above)", err, netWiredWait)
	}
	var first []string
	if cl.BootIf != "" {
		if n := netconf.MACOf("/sys/class/net", cl.BootIf); n != "" {
			first = []string{n}
		}
	}
	dhcp := netconf.DHCP{Timeout: netDHCPTimeout, Retries: 2, LinkUp: 10 * time.Second, ResolvConf: "/etc/resolv.conf"}
	var last error
	for attempt := 1; attempt <= netDHCPAttempts; attempt++ {
		try := names
		if attempt == 1 && first != nil {
			try = first
		}
		l, err := dhcp.Request(ctx, try)
		if err == nil {
			return l, nil
		}
		last = err
		if attempt == netDHCPAttempts {
			break
		}
		logrus.WithError(err).WithField("attempt", attempt).Warn("DHCP failed, retrying")
		select {
		case <-ctx.Done():
			return netconf.Lease{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return netconf.Lease{}, fmt.Errorf("network: no DHCP lease on %s after %d attempts: %w", strings.Join(names, ", "), netDHCPAttempts, last)
}

// loopAttach puts a read-only loop device over path.
func loopAttach(path string) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("open /dev/loop-control (is the loop module in the initramfs?): %w", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("find a free loop device: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	var ld *os.File
	for i := 0; ; i++ {
		ld, err = os.OpenFile(dev, os.O_RDONLY, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond) // devtmpfs adds the node
	}
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer ld.Close()
	img, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer img.Close()
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY
	copy(cfg.Info.File_name[:], path)
	err = unix.IoctlLoopConfigure(int(ld.Fd()), &cfg)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		// Kernels before 5.8 have no LOOP_CONFIGURE: the two-step way.
		if err = unix.IoctlSetInt(int(ld.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err == nil {
			if err = unix.IoctlLoopSetStatus64(int(ld.Fd()), &cfg.Info); err != nil {
				_ = unix.IoctlSetInt(int(ld.Fd()), unix.LOOP_CLR_FD, 0)
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("attach %s to %s: %w", path, dev, err)
	}
	return dev, nil
}

// ramState mounts /var for a machine whose root is in RAM: a disk
// partition labelled STATE and of slate's STATE type when there is one,
// else a tmpfs. Disk drivers probe in the background from the moment
// their modules load (probed): disks get a second from then to show up,
// which the download has usually used already. Both the label and the type must match, so a partition some
// other system calls STATE is never formatted. It is formatted when it has
// no ext4 yet, but never grown: the disk's layout is the operator's.
func ramState(probed time.Time) (string, error) {
	deadline := probed.Add(time.Second)
	for {
		disks, _ := partitions.ScanDisks("/sys/block", "/dev")
		type found struct {
			disk partitions.Disk
			part partitions.Part
		}
		var hits []found
		for _, d := range disks {
			for _, p := range d.Layout.Parts {
				if p.Label == partitions.LabelState && strings.EqualFold(p.Type, partitions.TypeState) {
					hits = append(hits, found{d, p})
				}
			}
		}
		switch {
		case len(hits) > 1:
			return "", fmt.Errorf("%s and %s are both STATE partitions: remove one, or its label", hits[0].disk.Dev(hits[0].part.Num), hits[1].disk.Dev(hits[1].part.Num))
		case len(hits) == 1:
			if err := setupState(hits[0].disk, hits[0].part, false); err != nil {
				return "", err
			}
			return hits[0].disk.Dev(hits[0].part.Num), nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := unix.Mount("tmpfs", filepath.Join(NewRoot, "var"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return "", fmt.Errorf("mount tmpfs on /var: %w", err)
	}
	bootlog.Event("STATE", "action", "tmpfs", "reason", "no partition labelled "+partitions.LabelState+" of type "+partitions.TypeState)
	return "tmpfs", nil
}

// peakMem is the most memory in use seen while the root came into RAM.
var peakMem atomic.Int64

func notePeak() {
	if u := memUsed(); u > peakMem.Load() {
		peakMem.Store(u)
	}
}

// memAvailable is MemAvailable from /proc/meminfo in bytes, 0 if unknown.
func memAvailable() int64 { return meminfo("MemAvailable") }

// memUsed is MemTotal - MemFree: everything the machine holds, page cache
// and tmpfs included, which is what a root in RAM costs.
func memUsed() int64 { return meminfo("MemTotal") - meminfo("MemFree") }

func meminfo(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return n << 10
	}
	return 0
}
