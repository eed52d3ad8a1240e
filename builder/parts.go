package builder

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/initramfs"
	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/ignition"
	"github.com/slateos/slate/partitions"
)

func openFile(p string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(p) }
}

// buildInitramfs writes an initramfs: slate as init, the modules and,
// when root is set, the root image it carries (a RAM boot).
func buildInitramfs(w io.Writer, ix *kmod.Index, mods []*kmod.Module, slate string, root *ramRoot, epoch time.Time) error {
	a := initramfs.New(epoch)
	st, err := os.Stat(slate)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := a.AddFile("init", 0o755, st.Size(), openFile(slate)); err != nil {
		return err
	}
	if err := ix.WriteTree(a, mods); err != nil {
		return fmt.Errorf("initramfs modules: %w", err)
	}
	if root != nil {
		if err := a.AddReaderAt(strings.TrimPrefix(netroot.EmbeddedPath, "/"), 0o400, root.img, root.size); err != nil {
			return err
		}
	}
	if _, err := a.WriteTo(w); err != nil {
		return err
	}
	return nil
}

// ext4Writer adapts ext4fs to kmod.Writer (owner root). prefix is put
// before every path: "/usr" puts lib/modules under /usr in a merged-/usr
// root.
type ext4Writer struct {
	fs     *ext4fs.FS
	prefix string
}

func (e ext4Writer) AddFile(p string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	if err := e.fs.Mkdir(path.Dir(path.Join("/", e.prefix, p)), 0o755, 0, 0); err != nil {
		return err
	}
	return e.fs.AddFile(path.Join("/", e.prefix, p), mode, 0, 0, size, open)
}

func (e ext4Writer) Mkdir(p string, mode fs.FileMode) error {
	return e.fs.Mkdir(path.Join("/", e.prefix, p), mode, 0, 0)
}

func staticBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// rootDirs are the folders of every root; /proc, /sys, /dev, /run, /var
// and /tmp are mount points.
var rootDirs = []struct {
	path string
	mode fs.FileMode
}{
	{"/etc", 0o755}, {"/usr/bin", 0o755}, {"/usr/sbin", 0o755}, {"/usr/lib/slate", 0o755},
	{"/sbin", 0o755}, {"/bin", 0o755}, {"/lib/modules", 0o755},
	{"/proc", 0o555}, {"/sys", 0o555}, {"/dev", 0o755}, {"/run", 0o755},
	{"/var", 0o755}, {"/tmp", 0o777 | fs.ModeSticky}, {"/root", 0o700}, {"/home", 0o755}, {"/srv", 0o755}, {"/mnt", 0o755},
}

func etcFiles(spec *configs.Spec) map[string]string {
	return map[string]string{
		// no /etc/hostname: PID 1 sets the spec's hostname, and one that
		// a config writes (without overwrite, as CoreOS configs do) wins;
		// /etc/passwd, group and shadow come from accountFiles
		"/etc/hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t" + spec.Hostname + "\n",
		"/etc/resolv.conf": "",
		"/etc/os-release": fmt.Sprintf("NAME=slate\nID=slate\nPRETTY_NAME=\"slate %s %s\"\nVERSION_ID=%s\nIMAGE_ID=%s\nIMAGE_VERSION=%s\n",
			spec.Name, spec.Version, spec.Version, spec.Name, spec.Version),
	}
}

// buildRoot writes the root filesystem into the slot's partition and
// returns the bytes used and the filesystem's size. The filesystem is
// sized to its content plus a margin, not to the partition: a read-only
// root has no use for free space, and an update then writes and verifies
// only the filesystem (tens of MiB), not the whole slot.
func buildRoot(disk *os.File, part partitions.Part, spec *configs.Spec, in Inputs, ix *kmod.Index, mods []*kmod.Module, cons []*baked, pkgs *packageRoot, epoch time.Time) (used, size int64, err error) {
	fsys, err := rootFS(part.Size, spec, in, ix, mods, cons, pkgs, epoch, logrus.StandardLogger())
	if err != nil {
		return 0, 0, err
	}
	st, err := fsys.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("root filesystem does not fit in %s (%d bytes): %w", part.Label, part.Size, err)
	}
	used = int64(st.Blocks-st.FreeBlocks) * int64(st.BlockSize)
	size = min(part.Size, (used+used/8+16<<20+1<<20-1)&^(1<<20-1))
	// The same content again: its warnings were given the first time.
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	if fsys, err = rootFS(size, spec, in, ix, mods, cons, pkgs, epoch, quiet); err != nil {
		return 0, 0, err
	}
	if err := fsys.WriteTo(disk, part.Start); err != nil {
		return 0, 0, fmt.Errorf("write root filesystem to %s: %w", part.Label, err)
	}
	return used, size, nil
}

// rootFS lays out a root filesystem of the given size (nothing is written).
// Without packages it is slate's own layout (/sbin/init a link to
// /usr/bin/slate, modules in /lib/modules); with packages it is Debian's
// merged /usr (/bin, /sbin, /lib and /lib64 links into /usr; init
// /usr/sbin/init, modules /usr/lib/modules), and the packages are
// written after slate's files and root.files, which win where both have
// a path.
func rootFS(fsSize int64, spec *configs.Spec, in Inputs, ix *kmod.Index, mods []*kmod.Module, cons []*baked, pkgs *packageRoot, epoch time.Time, log logrus.FieldLogger) (*ext4fs.FS, error) {
	opts := ext4fs.Options{
		Size:  fsSize,
		Label: "slate-root",
		Time:  epoch,
	}
	opts.UUID = uuid.MustParse(partitions.DeriveGUID(spec.Name+"\x00"+spec.Version, "root-fs"))
	opts.HashSeed = uuid.MustParse(partitions.DeriveGUID(spec.Name+"\x00"+spec.Version, "root-hash"))
	fsys, err := ext4fs.New(opts)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	merged := pkgs != nil
	dirs := rootDirs
	initPath, initTarget, modPrefix := "/sbin/init", "../usr/bin/slate", ""
	if merged {
		dirs = mergedRootDirs
		initPath, initTarget, modPrefix = "/usr/sbin/init", "../bin/slate", "usr"
	}
	for _, d := range dirs {
		if err := fsys.Mkdir(d.path, d.mode, 0, 0); err != nil {
			return nil, fmt.Errorf("root: %s: %w", d.path, err)
		}
	}
	if merged {
		for _, l := range mergedLinks {
			if err := fsys.Symlink(l.path, l.target, 0, 0); err != nil {
				return nil, fmt.Errorf("root: %s: %w", l.path, err)
			}
		}
	}
	st, err := os.Stat(in.Slate)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	if err := fsys.AddFile("/usr/bin/slate", 0o755, 0, 0, st.Size(), openFile(in.Slate)); err != nil {
		return nil, fmt.Errorf("root: /usr/bin/slate: %w", err)
	}
	if err := fsys.Symlink(initPath, initTarget, 0, 0); err != nil {
		return nil, fmt.Errorf("root: %s: %w", initPath, err)
	}
	etc := etcFiles(spec)
	for _, p := range sortedKeys(etc) {
		b := []byte(etc[p])
		if err := fsys.AddFile(p, 0o644, 0, 0, int64(len(b)), staticBytes(b)); err != nil {
			return nil, fmt.Errorf("root: %s: %w", p, err)
		}
	}
	if err := addAccounts(fsys, spec); err != nil {
		return nil, err
	}
	if err := addCABundle(fsys, spec, in); err != nil {
		return nil, err
	}
	infos := make([]imageinfo.Container, len(cons))
	for i, b := range cons {
		infos[i] = b.info
	}
	var pkgInfo []imageinfo.Package
	if merged {
		pkgInfo = pkgs.info
	}
	info, err := imageinfo.MarshalWith(spec, in.KernelVersion, infos, pkgInfo)
	if err != nil {
		return nil, err
	}
	if err := fsys.AddFile(imageinfo.Path, 0o644, 0, 0, int64(len(info)), staticBytes(info)); err != nil {
		return nil, fmt.Errorf("root: %s: %w", imageinfo.Path, err)
	}
	if err := ix.WriteTree(ext4Writer{fsys, modPrefix}, mods); err != nil {
		return nil, fmt.Errorf("root modules: %w", err)
	}
	if spec.Update != nil {
		// the keys every update is checked against, re-encoded from the
		// parsed keys: nothing else from the spec's key files (never a
		// private key) reaches the public root image
		ring, err := trustedKeyring(spec)
		if err != nil {
			return nil, err
		}
		if err := fsys.AddFile("/usr/lib/slate/update.pub", 0o644, 0, 0, int64(len(ring)), staticBytes(ring)); err != nil {
			return nil, fmt.Errorf("root: update.pub: %w", err)
		}
	}
	if spec.Ignition != "" {
		cfg, err := ignition.ReadConfigFile(spec.Path(spec.Ignition))
		if err != nil {
			return nil, fmt.Errorf("$.ignition: %w", err)
		}
		// a config that would stop the first boot is refused now, checked
		// against the image it runs on
		if _, err := ignition.ParseFor(cfg, IgnitionImage(spec)); err != nil {
			return nil, fmt.Errorf("$.ignition: %s: %w", spec.Path(spec.Ignition), err)
		}
		if err := fsys.AddFile("/usr/lib/slate/config.ign", 0o644, 0, 0, int64(len(cfg)), staticBytes(cfg)); err != nil {
			return nil, fmt.Errorf("root: config.ign: %w", err)
		}
	}
	for i, f := range spec.Root.Files {
		if merged {
			f.Dst = mergedDst(f.Dst)
		}
		if err := addContent(fsys, spec, f, log); err != nil {
			return nil, fmt.Errorf("$.root.files[%d]: %w", i, err)
		}
	}
	if merged {
		t := &pkgTree{fs: fsys, u: pkgs.unpacked, log: log, kept: map[string]bool{}, reserved: reservedPaths(spec)}
		if err := pkgs.unpacked.WriteTo(t); err != nil {
			return nil, fmt.Errorf("$.packages: %w", err)
		}
	}
	if err := addSSH(fsys, spec); err != nil {
		return nil, err
	}
	if in.Runc != "" {
		if err := addRunc(fsys, in); err != nil {
			return nil, err
		}
	}
	if err := addContainers(fsys, cons); err != nil {
		return nil, err
	}
	warnDanglingLinks(fsys, spec, log)
	if err := checkPrograms(fsys, spec, log); err != nil {
		return nil, err
	}
	return fsys, nil
}

// LoaderConf has no default: systemd-boot then boots the highest version
// that is not bad, which is how the A/B flip and the fall-back work.
const LoaderConf = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n"

// SlotArgs is a version's kernel command line without what names the slot
// (root= and slate.slot=): update manifests carry it, and the updater adds
// the slot it writes.
func SlotArgs(spec *configs.Spec) []string {
	var out []string
	for _, a := range strings.Fields(EntryFor(spec, "a", "00000000-0000-0000-0000-000000000000").Options) {
		if !strings.HasPrefix(a, "root=") && !strings.HasPrefix(a, "slate.slot=") {
			out = append(out, a)
		}
	}
	return out
}

// EntryFor renders slot's boot entry.
func EntryFor(spec *configs.Spec, slot string, rootGUID string) bootentry.Config {
	// loglevel=4 keeps the kernel's informational chatter (and slate's own
	// kernel-log copies of its console lines) off the console: serial
	// output is slow under emulation and the SLATE- lines stay readable.
	args := []string{"panic=10", "loglevel=4"}
	for _, c := range spec.Console {
		args = append(args, "console="+c)
	}
	args = append(args, spec.Kernel.Args...)
	dir := bootentry.SlotDir(slot)
	return bootentry.Config{
		Title:   fmt.Sprintf("slate %s %s (slot %s)", spec.Name, spec.Version, slot),
		Version: spec.Version,
		Slot:    slot,
		Linux:   dir + "/vmlinuz",
		Initrd:  dir + "/initrd.img",
		Options: cmdline.SlotOptions(slot, rootGUID, args),
	}
}

func buildESP(disk *os.File, l partitions.Layout, spec *configs.Spec, in Inputs, initrd []byte, epoch time.Time) error {
	part := l.Part(partitions.NumESP)
	esp, err := fatfs.New(fatfs.Options{
		Size:  part.Size,
		Label: partitions.LabelESP,
		// a volume ID derived from the spec keeps builds reproducible
		VolumeID: binary.LittleEndian.Uint32(uuid.MustParse(part.GUID).NodeID()[:4]),
		Time:     epoch,
	})
	if err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	kst, err := os.Stat(in.Vmlinuz)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	lst, err := os.Stat(in.Loader)
	if err != nil {
		return fmt.Errorf("systemd-boot: %w", err)
	}
	ent := EntryFor(spec, "a", l.Part(partitions.NumRootA).GUID)
	name := bootentry.Entry{Version: spec.Version, Slot: "a"}.Name()
	files := []struct {
		path string
		size int64
		open func() (io.ReadCloser, error)
	}{
		{"/EFI/BOOT/BOOTX64.EFI", lst.Size(), openFile(in.Loader)},
		{"/loader/loader.conf", int64(len(LoaderConf)), staticBytes([]byte(LoaderConf))},
		{ent.Linux, kst.Size(), openFile(in.Vmlinuz)},
		{ent.Initrd, int64(len(initrd)), staticBytes(initrd)},
		{path.Join(bootentry.EntriesDir, name), int64(len(ent.Render())), staticBytes(ent.Render())},
	}
	total := int64(0)
	for _, f := range files {
		total += f.size
	}
	// Room for the other slot's kernel and initramfs on the next update.
	if need := 2*total + 4<<20; need > int64(spec.Disk.ESP) {
		return fmt.Errorf("$.disk.esp: %d bytes are too small for two slots' kernel and initramfs (%d bytes needed)", spec.Disk.ESP, need)
	}
	for _, f := range files {
		if err := esp.AddFile(f.path, f.size, f.open); err != nil {
			return fmt.Errorf("ESP: %s: %w", f.path, err)
		}
	}
	if err := esp.WriteTo(disk, part.Start); err != nil {
		return fmt.Errorf("write ESP: %w", err)
	}
	return nil
}
