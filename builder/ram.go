package builder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/internal/format/isoimage"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/updater/payload"
)

// The files of `--format pxe`, under DIR/pxe/.
const (
	PXEDir      = "pxe"
	PXEKernel   = "vmlinuz"
	PXEInitrd   = "initrd.img"
	PXERoot     = "root.img.zst"
	PXEScript   = "boot.ipxe"
	ISOName     = "live.iso"
	rootURLVar  = "slate-root-url"
	extraArgVar = "slate-args"
)

// ramRoot is the root image as a RAM boot fetches or carries it.
type ramRoot struct {
	img    io.ReaderAt // the root filesystem image
	size   int64
	sha256 string
}

// readRoot hashes the root filesystem image in the disk image.
func readRoot(disk io.ReaderAt, start, size int64) (ramRoot, error) {
	sec := io.NewSectionReader(disk, start, size)
	h := sha256.New()
	if _, err := io.Copy(h, sec); err != nil {
		return ramRoot{}, fmt.Errorf("hash root image: %w", err)
	}
	return ramRoot{img: sec, size: size, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ramArgs is the kernel command line of a boot from RAM, without where the
// root comes from: a RAM boot has no slot, so SlotArgs is all of it plus
// the root's size and hash, which init checks before it mounts anything.
func ramArgs(spec *configs.Spec, root ramRoot) []string {
	return append(SlotArgs(spec),
		netroot.ArgSHA256+"="+root.sha256,
		netroot.ArgSize+"="+strconv.FormatInt(root.size, 10))
}

// writeRAMInitramfs writes the initramfs of a RAM boot to the file dst:
// init, the netboot module set and, when root is set, the root image.
func writeRAMInitramfs(dst string, ix *kmod.Index, mods []*kmod.Module, slate string, root *ramRoot, epoch time.Time) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	if err := buildInitramfs(f, ix, mods, slate, root, epoch); err != nil {
		return err
	}
	return f.Close()
}

// writePXE writes DIR/pxe: kernel, initramfs, the compressed root (unless
// it is embedded) and the iPXE script. carried, when set, is the
// initramfs that carries the root, already written: the root is embedded.
// It returns the files written, relative to dir.
func writePXE(dir string, spec *configs.Spec, in Inputs, ix *kmod.Index, mods []*kmod.Module, root ramRoot, carried, rootURL string, epoch time.Time) ([]string, error) {
	embed := carried != ""
	pxe := filepath.Join(dir, PXEDir)
	if err := os.MkdirAll(pxe, 0o755); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	files := []string{PXEKernel, PXEInitrd}
	if err := copyTo(filepath.Join(pxe, PXEKernel), in.Vmlinuz); err != nil {
		return nil, fmt.Errorf("pxe: kernel: %w", err)
	}
	if embed {
		if err := os.Link(carried, filepath.Join(pxe, PXEInitrd)); err != nil {
			return nil, fmt.Errorf("pxe: %w", err)
		}
	} else if err := writeRAMInitramfs(filepath.Join(pxe, PXEInitrd), ix, mods, in.Slate, nil, epoch); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	if !embed {
		f, err := os.Create(filepath.Join(pxe, PXERoot))
		if err != nil {
			return nil, fmt.Errorf("pxe: %w", err)
		}
		defer f.Close()
		pf, err := payload.Compress(f, io.NewSectionReader(root.img, 0, root.size), root.size)
		if err != nil {
			return nil, fmt.Errorf("pxe: compress root: %w", err)
		}
		if pf.SHA256 != root.sha256 {
			return nil, fmt.Errorf("pxe: root image changed while it was compressed")
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("pxe: %w", err)
		}
		files = append(files, PXERoot)
	}
	script := IPXEScript(spec, in.KernelVersion, root, embed, rootURL)
	if err := os.WriteFile(filepath.Join(pxe, PXEScript), []byte(script), 0o644); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	files = append(files, PXEScript)
	for i, f := range files {
		files[i] = PXEDir + "/" + f
	}
	return files, nil
}

// IPXEScript renders boot.ipxe. Its kernel and initramfs are named
// relative to the script, so iPXE fetches them the way the script came
// (TFTP or HTTP). The root URL and extra kernel arguments are iPXE
// settings, so a menu or a per-machine script can set them before it
// chains this one.
func IPXEScript(spec *configs.Spec, kver string, root ramRoot, embed bool, rootURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!ipxe\n# slate %s %s: network boot (kernel %s).\n", spec.Name, spec.Version, kver)
	b.WriteString("# The kernel and initramfs are fetched relative to this script.\n")
	args := append([]string{"initrd=" + PXEInitrd}, ramArgs(spec, root)...)
	if embed {
		b.WriteString("# The root image is inside the initramfs and checked against its\n# sha256 before it is mounted.\n")
	} else {
		b.WriteString("# Init fetches the root image (http, https or tftp) from ${" + rootURLVar + "}\n")
		b.WriteString("# and checks it against its sha256 before it is mounted.\n")
		b.WriteString("# Set " + rootURLVar + " before chaining this script to fetch it elsewhere.\n")
		if rootURL == "" {
			rootURL = "tftp://${next-server}/" + PXERoot
		}
		fmt.Fprintf(&b, "isset ${%s} || set %s %s\n", rootURLVar, rootURLVar, rootURL)
		args = append(args, netroot.ArgURL+"=${"+rootURLVar+"}")
	}
	b.WriteString("# Set " + extraArgVar + " for more kernel arguments (ignition.config.url=...).\n")
	args = append(args, "BOOTIF=01-${netX/mac:hexhyp}", "${"+extraArgVar+"}")
	fmt.Fprintf(&b, "kernel %s %s\n", PXEKernel, strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd %s\nboot\n", PXEInitrd)
	return b.String()
}

func copyTo(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Close()
}

// buildRAM writes the files of the RAM boot formats (pxe, iso) into tmp
// from the root filesystem in the disk image just built. It returns their
// names relative to tmp and the root image's sha256.
func buildRAM(tmp, rawPath string, rootStart, rootSize int64, o Options, spec *configs.Spec, in Inputs, ix *kmod.Index, epoch time.Time) ([]string, string, error) {
	mods, err := ix.Resolve(append(append([]string(nil), kmod.DefaultNetboot...), spec.Kernel.InitramfsModules...))
	if err != nil {
		return nil, "", fmt.Errorf("$.kernel.initramfs_modules: %w", err)
	}
	disk, err := os.Open(rawPath)
	if err != nil {
		return nil, "", err
	}
	defer disk.Close()
	root, err := readRoot(disk, rootStart, rootSize)
	if err != nil {
		return nil, "", err
	}
	formats, _ := parseFormats(o.Formats)
	// The initramfs that carries the root is the same for the ISO and for
	// pxe --embed-root: it is written once.
	carried := ""
	if formats["iso"] || (formats["pxe"] && o.EmbedRoot) {
		carried = filepath.Join(tmp, "carried-initrd.img")
		if err := writeRAMInitramfs(carried, ix, mods, in.Slate, &root, epoch); err != nil {
			return nil, "", fmt.Errorf("initramfs with the root: %w", err)
		}
		defer os.Remove(carried)
	}
	var names []string
	if formats["pxe"] {
		pxeCarried := ""
		if o.EmbedRoot {
			pxeCarried = carried
		}
		n, err := writePXE(tmp, spec, in, ix, mods, root, pxeCarried, o.RootURL, epoch)
		if err != nil {
			return nil, "", err
		}
		names = append(names, n...)
	}
	if formats["iso"] {
		if err := writeISO(tmp, spec, in, root, carried, epoch); err != nil {
			return nil, "", err
		}
		names = append(names, ISOName)
	}
	return names, root.sha256, nil
}

// The live ISO's ESP: the same loader as a disk, one entry, and the
// kernel with an initramfs that carries the root.
const (
	liveDir = "/slate/live"
	// not slate-*.conf: that name is for slot entries, which carry a
	// version and slot in it
	liveEntry = "/loader/entries/live.conf"
)

// writeISO writes DIR/live.iso: a FAT image with systemd-boot, one loader
// entry, the kernel and an initramfs that carries the root, wrapped in an
// ISO 9660 image that boots as a CD (El Torito) and as a disk (GPT).
// initrd is the initramfs that carries the root.
func writeISO(tmp string, spec *configs.Spec, in Inputs, root ramRoot, initrd string, epoch time.Time) error {
	ent := bootentry.Config{
		Title:   fmt.Sprintf("slate %s %s (live)", spec.Name, spec.Version),
		Version: spec.Version,
		Linux:   liveDir + "/vmlinuz",
		Initrd:  liveDir + "/initrd.img",
		Options: strings.Join(ramArgs(spec, root), " "),
	}
	files := []struct{ path, src string }{
		{"/EFI/BOOT/BOOTX64.EFI", in.Loader},
		{ent.Linux, in.Vmlinuz},
		{ent.Initrd, initrd},
	}
	static := []struct {
		path string
		data []byte
	}{
		{"/loader/loader.conf", []byte(LoaderConf)},
		{liveEntry, ent.Render()},
	}
	total := int64(0)
	sizes := make([]int64, len(files))
	for i, f := range files {
		st, err := os.Stat(f.src)
		if err != nil {
			return fmt.Errorf("iso: %w", err)
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	// FAT32 needs about 33 MiB at least; the rest is the files, their
	// clusters' slack and the FATs.
	size := max(total+total/16+4<<20, 40<<20)
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	esp, err := fatfs.New(fatfs.Options{Size: size, Label: "SLATE_LIVE", VolumeID: binary.LittleEndian.Uint32([]byte(root.sha256[:4])), Time: epoch})
	if err != nil {
		return fmt.Errorf("iso: ESP: %w", err)
	}
	for i, f := range files {
		if err := esp.AddFile(f.path, sizes[i], openFile(f.src)); err != nil {
			return fmt.Errorf("iso: ESP: %s: %w", f.path, err)
		}
	}
	for _, f := range static {
		if err := esp.AddFile(f.path, int64(len(f.data)), staticBytes(f.data)); err != nil {
			return fmt.Errorf("iso: ESP: %s: %w", f.path, err)
		}
	}
	espPath := filepath.Join(tmp, "live-esp.img")
	ef, err := os.Create(espPath)
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer os.Remove(espPath)
	defer ef.Close()
	if err := ef.Truncate(size); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := esp.WriteTo(ef, 0); err != nil {
		return fmt.Errorf("iso: ESP: %w", err)
	}
	out, err := os.Create(filepath.Join(tmp, ISOName))
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer out.Close()
	if _, err := isoimage.Write(out, isoimage.Options{VolumeID: volumeID(spec), ESP: ef, ESPSize: size, Epoch: epoch}); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	return out.Close()
}

// volumeID is the ISO volume identifier: the image name and version in
// ISO 9660's d-characters (A-Z, 0-9, _), at most 32.
func volumeID(spec *configs.Spec) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(spec.Name + "_" + spec.Version) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	id := b.String()
	if len(id) > 32 {
		id = id[:32]
	}
	return id
}
