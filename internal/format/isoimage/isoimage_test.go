package isoimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/format/fatfs"
	"github.com/slateos/slate/partitions"
)

const mib = 1 << 20

var epoch = time.Date(2024, 5, 17, 12, 34, 56, 0, time.UTC)

// need fails the test under CI and skips it elsewhere when a prerequisite is
// missing: a skipped check in CI would hide a broken set-up.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (CI is set; scripts/setup.sh installs it): %v", what, err)
	}
	t.Skipf("%s is missing: %v", what, err)
}

// tool finds a host tool, also in the sbin folders a non-root PATH lacks.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
	}
	need(t, name, err)
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// noise is size bytes of deterministic pseudo-random data.
func noise(seed uint64, size int64) []byte {
	b := make([]byte, size)
	var s [32]byte
	s[0] = byte(seed)
	r := rand.NewChaCha8(s)
	_, _ = r.Read(b)
	return b
}

type file struct {
	path string
	data []byte
}

// buildESP writes a FAT32 image of size bytes holding files to dir/esp.img.
func buildESP(t *testing.T, dir string, size int64, files []file) string {
	t.Helper()
	b, err := fatfs.New(fatfs.Options{Size: size, Label: "ESP", VolumeID: 1, Time: epoch})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data := f.data
		err := b.AddFile(f.path, int64(len(data)), func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "esp.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteTo(out, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeISO writes the image of the ESP image file esp to path.
func writeISO(t *testing.T, path, volID, esp string) int64 {
	t.Helper()
	in, err := os.Open(esp)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	n, err := Write(out, Options{VolumeID: volID, ESP: in, ESPSize: st.Size(), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		espSize int64
		fat     bool
		ldsiz   int // El Torito sector count expected
	}{
		// No FAT32 filesystem fits in 0xFFFF sectors, but a FAT12/16 ESP
		// made elsewhere would: its count is exact.
		{name: "small", espSize: 3 * mib, ldsiz: 3 * mib / 512},
		{name: "exact-limit", espSize: 0xffff * 512, ldsiz: 0xffff},
		{name: "fat-40MiB", espSize: 40 * mib, fat: true, ldsiz: 0},
		{name: "fat-150MiB", espSize: 150 * mib, fat: true, ldsiz: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xorriso := tool(t, "xorriso")
			sgdisk := tool(t, "sgdisk")
			dir := t.TempDir()
			var esp string
			if tc.fat {
				esp = buildESP(t, dir, tc.espSize, []file{
					{"/EFI/BOOT/BOOTX64.EFI", noise(1, 100<<10)},
					{"/loader/loader.conf", []byte("timeout 0\n")},
					{"/live/big", noise(2, tc.espSize-8*mib)},
				})
			} else {
				esp = filepath.Join(dir, "esp.img")
				if err := os.WriteFile(esp, noise(3, tc.espSize), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			iso := filepath.Join(dir, "live.iso")
			const volID = "SLATE_LIVE_1"
			size := writeISO(t, iso, volID, esp)
			st, err := os.Stat(iso)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != size || size%2048 != 0 {
				t.Fatalf("Write returned %d, file has %d bytes; want equal and a multiple of 2048", size, st.Size())
			}
			espData, err := os.ReadFile(esp)
			if err != nil {
				t.Fatal(err)
			}

			// El Torito, as xorriso reads it.
			rep := run(t, xorriso, "-indev", iso, "-report_el_torito", "plain")
			want := regexp.MustCompile(`El Torito boot img :\s+1\s+UEFI\s+y\s+none\s+0x0000\s+0x00\s+` + strconv.Itoa(tc.ldsiz) + `\s+512\b`)
			if !want.MatchString(rep) {
				t.Errorf("El Torito report lacks an EFI no-emulation entry with load size %d at LBA 512:\n%s", tc.ldsiz, rep)
			}
			if !strings.Contains(rep, "/SLATE/EFIBOOT.IMG") || !strings.Contains(rep, "/SLATE/BOOT.CAT") {
				t.Errorf("El Torito report lacks the image or catalog paths:\n%s", rep)
			}
			if strings.Contains(rep, "FAILURE") || strings.Contains(rep, "SORRY") {
				t.Errorf("xorriso complains:\n%s", rep)
			}
			if !strings.Contains(rep, "Volume id    : '"+volID+"'") {
				t.Errorf("volume id %q not reported:\n%s", volID, rep)
			}

			// The ISO 9660 file is the ESP.
			ext := filepath.Join(dir, "extracted.img")
			run(t, xorriso, "-osirrox", "on", "-indev", iso, "-extract", "/SLATE/EFIBOOT.IMG", ext)
			got, err := os.ReadFile(ext)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, espData) {
				t.Errorf("/SLATE/EFIBOOT.IMG (%d bytes) differs from the ESP (%d bytes)", len(got), len(espData))
			}

			// GPT, as sgdisk reads it.
			v := run(t, sgdisk, "-v", iso)
			if !strings.Contains(v, "No problems found") {
				t.Errorf("sgdisk -v:\n%s", v)
			}
			info := run(t, sgdisk, "-i", "1", iso)
			first, last := int64(2048), int64(2048)+tc.espSize/512-1
			for _, w := range []string{
				"Partition GUID code: " + partitions.TypeESP + " (EFI system partition)",
				"Partition unique GUID: " + partitions.DeriveGUID(volID, espGUIDName),
				fmt.Sprintf("First sector: %d ", first),
				fmt.Sprintf("Last sector: %d ", last),
				"Partition name: 'ISO-ESP'",
			} {
				if !strings.Contains(info, w) {
					t.Errorf("sgdisk -i 1 lacks %q:\n%s", w, info)
				}
			}
			p := run(t, sgdisk, "-p", iso)
			if !strings.Contains(p, "Disk identifier (GUID): "+partitions.DeriveGUID(volID, diskGUIDName)) {
				t.Errorf("sgdisk -p: disk GUID not derived from the volume ID:\n%s", p)
			}

			// The partition's bytes are the ESP.
			f, err := os.Open(iso)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			part := make([]byte, (last-first+1)*512)
			if _, err := f.ReadAt(part, first*512); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(part, espData) {
				t.Error("GPT partition 1 differs from the ESP")
			}
			if tc.fat {
				pimg := filepath.Join(dir, "part1.img")
				if err := os.WriteFile(pimg, part, 0o644); err != nil {
					t.Fatal(err)
				}
				run(t, tool(t, "fsck.vfat"), "-n", pimg)
			}
		})
	}
}

// memFile is an in-memory io.WriterAt, for a writer that is not a file.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	esp := buildESP(t, dir, 34*mib, []file{
		{"/EFI/BOOT/BOOTX64.EFI", noise(4, 64<<10)},
		{"/live/initrd.img", noise(5, 20*mib)},
	})
	a := filepath.Join(dir, "a.iso")
	writeISO(t, a, "DET", esp)

	// Over an existing, longer file full of garbage: every byte is
	// written and the rest cut off.
	b := filepath.Join(dir, "b.iso")
	if err := os.WriteFile(b, noise(6, 40*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	writeISO(t, b, "DET", esp)

	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Fatalf("two writes differ (%d and %d bytes)", len(ab), len(bb))
	}

	// Through a plain io.WriterAt, with the Epoch in another zone.
	espData, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	var m memFile
	n, err := Write(&m, Options{VolumeID: "DET", ESP: bytes.NewReader(espData), ESPSize: int64(len(espData)), Epoch: epoch.In(time.FixedZone("X", 5*3600))})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(m.b)) || !bytes.Equal(m.b, ab) {
		t.Fatalf("write to memory (%d bytes, returned %d) differs from the file (%d bytes)", len(m.b), n, len(ab))
	}

	// Another volume ID changes the GUIDs and the label, nothing else.
	c := filepath.Join(dir, "c.iso")
	writeISO(t, c, "OTHER", esp)
	cb, err := os.ReadFile(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cb) != len(ab) || bytes.Equal(cb, ab) {
		t.Fatalf("volume ID OTHER: %d bytes, equal=%v; want %d bytes, different", len(cb), bytes.Equal(cb, ab), len(ab))
	}
	if !bytes.Equal(cb[1<<20:len(cb)-64<<10], ab[1<<20:len(ab)-64<<10]) {
		t.Fatal("volume ID OTHER changed the ESP bytes")
	}
}

// failingReader fails reads that touch [from, to).
type failingReader struct {
	r        io.ReaderAt
	from, to int64
}

var errDisk = errors.New("disk on fire")

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off < f.to && off+int64(len(p)) > f.from {
		return 0, errDisk
	}
	return f.r.ReadAt(p, off)
}

// shortWriter accepts only limit bytes.
type shortWriter struct{ limit int64 }

func (s shortWriter) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.limit {
		return 0, errDisk
	}
	return len(p), nil
}

func TestBadOptions(t *testing.T) {
	esp := bytes.NewReader(make([]byte, 4*mib))
	good := Options{VolumeID: "OK", ESP: esp, ESPSize: 4 * mib, Epoch: epoch}
	for _, tc := range []struct {
		name    string
		mod     func(o *Options)
		w       io.WriterAt
		want    string // in the message
		invalid bool   // wraps ErrInvalid
		is      error
	}{
		{name: "empty VolumeID", mod: func(o *Options) { o.VolumeID = "" }, want: "VolumeID", invalid: true},
		{name: "lower-case VolumeID", mod: func(o *Options) { o.VolumeID = "slate" }, want: "VolumeID", invalid: true},
		{name: "VolumeID with a dash", mod: func(o *Options) { o.VolumeID = "SLATE-1" }, want: "VolumeID", invalid: true},
		{name: "VolumeID with a space", mod: func(o *Options) { o.VolumeID = "SLATE 1" }, want: "VolumeID", invalid: true},
		{name: "VolumeID non-ASCII", mod: func(o *Options) { o.VolumeID = "SLÄTE" }, want: "VolumeID", invalid: true},
		{name: "VolumeID of 33", mod: func(o *Options) { o.VolumeID = strings.Repeat("A", 33) }, want: "VolumeID", invalid: true},
		{name: "nil ESP", mod: func(o *Options) { o.ESP = nil }, want: "ESP is nil", invalid: true},
		{name: "zero ESPSize", mod: func(o *Options) { o.ESPSize = 0 }, want: "ESPSize", invalid: true},
		{name: "negative ESPSize", mod: func(o *Options) { o.ESPSize = -512 }, want: "ESPSize", invalid: true},
		{name: "ESPSize not whole sectors", mod: func(o *Options) { o.ESPSize = 4*mib - 100 }, want: "ESPSize", invalid: true},
		{name: "ESPSize over 4 GiB", mod: func(o *Options) { o.ESPSize = 4 << 30 }, want: "ESPSize", invalid: true},
		{name: "zero Epoch", mod: func(o *Options) { o.Epoch = time.Time{} }, want: "Epoch", invalid: true},
		{name: "Epoch before 1900", mod: func(o *Options) { o.Epoch = time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC) }, want: "Epoch", invalid: true},
		{name: "Epoch after 2155", mod: func(o *Options) { o.Epoch = time.Date(2156, 1, 1, 0, 0, 0, 0, time.UTC) }, want: "Epoch", invalid: true},
		{name: "ESP shorter than ESPSize", mod: func(o *Options) { o.ESPSize = 8 * mib }, want: "ESP: cannot read byte", is: io.ErrUnexpectedEOF},
		{name: "ESP empty", mod: func(o *Options) { o.ESP = bytes.NewReader(nil) }, want: "ESP: cannot read byte", is: io.ErrUnexpectedEOF},
		{name: "ESP read error in the middle", mod: func(o *Options) { o.ESP = failingReader{esp, 2 * mib, 2*mib + 1} }, want: "ESP: read at", is: errDisk},
		{name: "ESP read error at the end", mod: func(o *Options) { o.ESP = failingReader{esp, 4*mib - 1, 4 * mib} }, want: "ESP: cannot read byte", is: errDisk},
		{name: "short writer", w: shortWriter{2 * mib}, want: "write ESP image", is: errDisk},
		{name: "nil writer", w: (io.WriterAt)(nil), want: "nil writer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			if tc.mod != nil {
				tc.mod(&o)
			}
			var w io.WriterAt = &memFile{}
			if tc.w != nil || tc.name == "nil writer" {
				w = tc.w
			}
			n, err := Write(w, o)
			if err == nil {
				t.Fatalf("no error (size %d)", n)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if got := errors.Is(err, ErrInvalid); got != tc.invalid {
				t.Errorf("errors.Is(%q, ErrInvalid) = %v, want %v", err, got, tc.invalid)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
		})
	}
	if _, err := Write(&memFile{}, good); err != nil {
		t.Fatalf("good options: %v", err)
	}
}

// cpioEntry is one file of a newc archive with checksums ("070702"): the
// kernel verifies each file's byte sum, so a boot that unpacks the archive
// has read every byte of it intact.
func cpioEntry(w *bytes.Buffer, name string, mode uint32, data []byte) {
	var sum uint32
	for _, c := range data {
		sum += uint32(c)
	}
	fmt.Fprintf(w, "070702%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, sum)
	w.WriteString(name)
	w.WriteByte(0)
	for w.Len()%4 != 0 {
		w.WriteByte(0)
	}
	w.Write(data)
	for w.Len()%4 != 0 {
		w.WriteByte(0)
	}
}

// keyLine picks the console lines a verbose run shows.
var keyLine = regexp.MustCompile(`Linux version|Unpacking initramfs|Freeing initrd|Initramfs|Run /init|Failed to execute /init|Kernel panic`)

// bootFiles finds what the boot test needs.
func bootFiles(t *testing.T) (qemu, code, vars, sdboot, kernel string) {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	need(t, "qemu-system-x86_64", err)
	code, vars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, p := range []string{code, vars} {
		_, err := os.Stat(p)
		need(t, "OVMF", err)
	}
	cache := os.Getenv("SLATE_CACHE")
	if cache == "" {
		cache = filepath.Join("../../..", ".cache")
	}
	sd, _ := filepath.Glob(filepath.Join(cache, "systemd-boot", "usr", "lib", "systemd", "boot", "efi", "systemd-bootx64.efi"))
	if len(sd) == 0 {
		need(t, "systemd-boot", fmt.Errorf("no systemd-bootx64.efi under %s/systemd-boot (run scripts/fetch-kernel.sh)", cache))
	}
	k, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-amd64", "boot", "vmlinuz-*"))
	if len(k) == 0 {
		need(t, "kernel", fmt.Errorf("no vmlinuz-* under %s/kernel/linux-image-amd64/boot (run scripts/fetch-kernel.sh)", cache))
	}
	return qemu, code, vars, sd[0], k[len(k)-1]
}

// TestBoot boots the ISO in QEMU (TCG, OVMF) as a CD-ROM through El Torito
// and as a disk through the GPT. The ESP is larger than the 128 MiB a
// clamped El Torito sector count of 0xFFFF would expose, and the initrd,
// whose last entry is /init, fills most of it: the kernel finding /init
// proves the firmware read the whole image.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU twice")
	}
	qemu, code, vars, sdboot, kernel := bootFiles(t)
	dir := t.TempDir()
	sd, err := os.ReadFile(sdboot)
	if err != nil {
		t.Fatal(err)
	}
	kern, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	var initrd bytes.Buffer
	cpioEntry(&initrd, "pad", 0o100644, noise(7, 130*mib))
	cpioEntry(&initrd, "init", 0o100755, []byte("#!/no/such/interpreter\n"))
	cpioEntry(&initrd, "TRAILER!!!", 0, nil)
	espSize := roundUp(int64(len(kern)+initrd.Len()+len(sd))+8*mib, mib)
	esp := buildESP(t, dir, espSize, []file{
		{"/EFI/BOOT/BOOTX64.EFI", sd},
		{"/loader/loader.conf", []byte("timeout 0\n")},
		{"/loader/entries/live.conf", []byte("title slate live\nlinux /live/vmlinuz\ninitrd /live/initrd.img\noptions console=ttyS0 panic=-1\n")},
		{"/live/vmlinuz", kern},
		{"/live/initrd.img", initrd.Bytes()},
	})
	iso := filepath.Join(dir, "live.iso")
	writeISO(t, iso, "SLATE_LIVE", esp)

	for _, tc := range []struct {
		name  string
		drive []string
	}{
		{"cdrom", []string{"-drive", "file=" + iso + ",format=raw,media=cdrom,if=none,id=cd0,readonly=on", "-device", "ide-cd,drive=cd0"}},
		{"disk", []string{"-drive", "file=" + iso + ",format=raw,if=virtio,readonly=on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := filepath.Join(t.TempDir(), "vars.fd")
			b, err := os.ReadFile(vars)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(v, b, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{
				"-accel", "tcg", "-machine", "q35", "-m", "1G", "-nodefaults", "-display", "none",
				"-serial", "stdio", "-no-reboot",
				"-drive", "if=pflash,format=raw,readonly=on,file=" + code,
				"-drive", "if=pflash,format=raw,file=" + v,
			}, tc.drive...)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			start := time.Now()
			out, err := exec.CommandContext(ctx, qemu, args...).CombinedOutput()
			con := string(out)
			t.Logf("%s boot: %s, qemu: %v", tc.name, time.Since(start).Round(time.Second), err)
			for _, w := range []string{"Linux version", "Run /init as init process", "Kernel panic"} {
				if !strings.Contains(con, w) {
					t.Errorf("console lacks %q", w)
				}
			}
			if strings.Contains(con, "Initramfs unpacking failed") {
				t.Error("the kernel could not unpack the initrd")
			}
			if t.Failed() {
				t.Logf("console:\n%s", con)
			} else {
				for _, l := range strings.Split(con, "\n") {
					if keyLine.MatchString(l) {
						t.Log(strings.TrimSpace(l))
					}
				}
			}
		})
	}
}
