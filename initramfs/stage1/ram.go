package stage1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/redact"
	"github.com/slateos/slate/partitions"
)

// Where a root held in RAM lives. A fetched image goes to /run, which
// moves into the booted system, so it stays visible there; an image the
// initramfs carries stays where the kernel unpacked it.
const (
	ramRootDir  = "/run/slate/netroot"
	ramRootPath = ramRootDir + "/root.img"
)

// memReserve is what the booted system needs beside a root in RAM; a
// machine with less fails early with a clear reason instead of in the
// middle of the download.
const memReserve = 48 << 20

// ramRootLimit bounds bringing a root into RAM: DHCP and the download
// have their own retries and limits; this only keeps a stuck server from
// holding the boot for ever.
const ramRootLimit = 15 * time.Minute

// ramRoot is stage netroot: it brings the root into RAM, checks it and
// mounts it read-only.
func (b *boot) ramRoot() error {
	ctx, cancel := context.WithTimeout(context.Background(), b.ramLimit)
	defer cancel()
	dev, err := b.ramImage(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (init gives the network and the download %s in all)", err, b.ramLimit)
	}
	if err != nil {
		return err
	}
	if err := b.sys.Mount(dev, b.newRoot(), "ext4", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s read-only on %s: %w", dev, NewRoot, err)
	}
	bootlog.Event("NETROOT", "state", "mounted", "dev", dev, "mem_start", b.memStart, "mem_peak", max(b.peakMem.Load(), b.memUsed()), "took", bootlog.Since(b.start))
	return nil
}

// ramImage brings the root image into RAM (fetched by URL, or carried in
// the initramfs), checks it against the command line, and attaches it to
// a read-only loop device. Nothing is mounted unless the check passed.
func (b *boot) ramImage(ctx context.Context) (string, error) {
	src := b.cl.Net
	b.info = bootinfo.Info{Mode: bootinfo.ModeRAM, RootURL: redact.URL(src.URL), RootSHA256: src.SHA256, RootSize: src.Size}
	t := time.Now()
	path := b.path(netroot.EmbeddedPath)
	if src.URL == "" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("%s=%s names no URL and the initramfs carries no root (%w)", netroot.ArgSHA256, src.SHA256, err)
		}
		defer f.Close()
		bootlog.Event("NETROOT", "state", "verifying", "source", "initramfs", "size", src.Size)
		if err := netroot.Verify(f, src); err != nil {
			return "", err
		}
		bootlog.Event("NETROOT", "state", "verified", "source", "initramfs", "sha256", src.SHA256, "took", bootlog.Since(t))
	} else {
		if avail := b.meminfo("MemAvailable"); avail > 0 && src.Size+memReserve > avail {
			return "", fmt.Errorf("not enough memory: the root needs %d MiB in RAM plus %d MiB for the system, %d MiB are available",
				src.Size>>20, memReserve>>20, avail>>20)
		}
		lease, err := b.sys.NetUp(ctx, b.cl)
		if err != nil {
			return "", err
		}
		bootlog.Event("NET", "iface", lease.Iface, "addr", lease.Addr, "gw", lease.Gateway, "took", bootlog.Since(t))
		b.info.Iface = lease.Iface
		path = b.path(ramRootPath)
		if err := b.fetchRoot(ctx, src, path); err != nil {
			return "", err
		}
	}
	dev, err := b.sys.LoopAttach(path)
	if err != nil {
		return "", err
	}
	b.ramDev = dev
	b.info.Root = dev
	return dev, nil
}

// fetchRoot downloads and checks the image into a file on a tmpfs of its
// own, sized to the image: a server that sends more cannot fill /run, and
// the booted system's /run keeps its room. The file is removed again on
// any failure, so no unchecked byte stays in RAM or within reach of a
// mount.
func (b *boot) fetchRoot(ctx context.Context, src netroot.Source, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	size := (src.Size + 1<<20 + 4095) &^ 4095
	if err := b.sys.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%d,nr_inodes=16,mode=0700", size)); err != nil {
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
			b.notePeak()
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
	logrus.WithFields(logrus.Fields{"shmem": b.meminfo("Shmem"), "anon": b.meminfo("AnonPages"), "slab": b.meminfo("Slab"),
		"vmalloc": b.meminfo("VmallocUsed"), "total": b.meminfo("MemTotal"), "free": b.meminfo("MemFree")}).Debug("memory with the root in RAM")
	bootlog.Event("NETROOT", "state", "verified", "sha256", src.SHA256, "size", src.Size,
		"transferred", res.Transferred, "compressed", res.Compressed, "took", bootlog.Since(t),
		"mib_s", strconv.FormatFloat(float64(src.Size)/(1<<20)/max(secs, 0.001), 'f', 1, 64))
	return nil
}

// ramState is stage state for a machine whose root is in RAM: it mounts
// /var from a disk partition labelled STATE and of slate's STATE type
// when there is one, else a tmpfs. Disk drivers probe in the background
// from the moment their modules load (b.probed): disks get a second from
// then to show up, which the download has usually used already. Both the
// label and the type must match, so a partition some other system calls
// STATE is never formatted. It is formatted when it has no ext4 yet, but
// never grown: the disk's layout is the operator's.
func (b *boot) ramState() error {
	deadline := b.probed.Add(time.Second)
	for {
		disks, _ := partitions.ScanDisks(b.path("/sys/block"), b.path("/dev"))
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
			return fmt.Errorf("%s and %s are both STATE partitions: remove one, or its label", hits[0].disk.Dev(hits[0].part.Num), hits[1].disk.Dev(hits[1].part.Num))
		case len(hits) == 1:
			if err := b.setupState(hits[0].disk, hits[0].part, false); err != nil {
				return err
			}
			b.info.State = hits[0].disk.Dev(hits[0].part.Num)
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := b.sys.Mount("tmpfs", filepath.Join(b.newRoot(), "var"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on /var: %w", err)
	}
	bootlog.Event("STATE", "action", "tmpfs", "reason", "no partition labelled "+partitions.LabelState+" of type "+partitions.TypeState)
	b.info.State = "tmpfs"
	return nil
}

func (b *boot) notePeak() {
	if u := b.memUsed(); u > b.peakMem.Load() {
		b.peakMem.Store(u)
	}
}

// memUsed is MemTotal - MemFree: everything the machine holds, page cache
// and tmpfs included, which is what a root in RAM costs.
func (b *boot) memUsed() int64 { return b.meminfo("MemTotal") - b.meminfo("MemFree") }

// meminfo is key's value in /proc/meminfo in bytes, 0 if unknown.
func (b *boot) meminfo(key string) int64 {
	f, err := os.Open(b.path("/proc/meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseMeminfo(f, key)
}

// parseMeminfo reads key's value (kB) from /proc/meminfo's text, in
// bytes; 0 if it is missing or does not parse.
func parseMeminfo(r io.Reader, key string) int64 {
	sc := bufio.NewScanner(r)
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
