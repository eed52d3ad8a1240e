package fatfs

import (
	"io"
	"path"
	"strings"
	"testing"
)

// tiled is a disk image that repeats data over size bytes, so that a
// small fuzz input reaches every structure of a large filesystem: FAT
// entries and folder entries are made of the same bytes as the boot
// sector.
type tiled struct {
	data []byte
	size int64
}

func (t tiled) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= t.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < t.size {
		k := copy(p[n:min(len(p), n+int(t.size-off))], t.data[off%int64(len(t.data)):])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzOpen opens random bytes as a filesystem and reads everything it
// lists: no panic, no hang, bounded memory.
func FuzzOpen(f *testing.F) {
	img := memImage(f, 33*mib, espSet())
	f.Add([]byte(img[:512]))
	f.Add([]byte(img[:4096]))
	f.Add(append([]byte(img[:512]), img[reservedSectors*512:reservedSectors*512+1024]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 512 {
			return
		}
		const size = 4 << 30
		readAll(t, tiled{data, size}, size)
	})
}

// FuzzOpenPatch overwrites part of a valid image (the boot sector, the
// FAT, the root folder or another folder) with fuzz bytes and reads
// everything: deep structures are reached that random bytes rarely form.
func FuzzOpenPatch(f *testing.F) {
	const size = 33 * mib
	base := memImage(f, size, espSet())
	fsys, err := Open(base, 0, size)
	if err != nil {
		f.Fatal(err)
	}
	regions := []int64{0, int64(reservedSectors) * 512, fsys.clusterOff(fsys.root), fsys.clusterOff(fileCluster(f, base, "loader"))}
	f.Add(uint8(0), uint16(13), []byte{4})
	f.Add(uint8(1), uint16(8), []byte{3, 0, 0, 0})
	f.Add(uint8(2), uint16(32*3+26), []byte{2, 0})
	f.Add(uint8(3), uint16(32*2), []byte{0x41, 'a', 0, 'b', 0})
	f.Fuzz(func(t *testing.T, region uint8, off uint16, patch []byte) {
		at := regions[int(region)%len(regions)] + int64(off)
		readAll(t, overlay{base, at, patch}, size)
	})
}

// overlay is an image with patch written over it at off.
type overlay struct {
	base  memDisk
	off   int64
	patch []byte
}

func (o overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.base.ReadAt(p, off)
	// Copy the part of the patch that falls into [off, off+n).
	lo, hi := max(off, o.off), min(off+int64(n), o.off+int64(len(o.patch)))
	if lo < hi {
		copy(p[lo-off:hi-off], o.patch[lo-o.off:hi-o.off])
	}
	return n, err
}

// readAll opens the image and reads every folder and file it lists, within
// bounds (folders may form cycles in a corrupt image).
func readAll(t *testing.T, r io.ReaderAt, size int64) {
	fsys, err := Open(r, 0, size)
	if err != nil {
		return
	}
	_ = fsys.Label()
	budget := 2000
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := fsys.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if budget--; budget < 0 {
				return
			}
			p := path.Join(dir, e.Name())
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Stat(p); err != nil && !e.IsDir() {
				// Names may repeat in a corrupt folder; Stat finds the
				// first, which exists.
				t.Fatalf("Stat(%q) of a listed name: %v", p, err)
			}
			switch {
			case e.IsDir() && depth < 6:
				walk(p, depth+1)
			case !e.IsDir() && info.Size() <= 1<<20:
				if b, err := fsys.ReadFile(p); err == nil && int64(len(b)) != info.Size() {
					b2, _ := fsys.ReadFile(p)
					if len(b2) != len(b) {
						t.Fatalf("%s: %d bytes, size %d", p, len(b), info.Size())
					}
				}
				if fl, err := fsys.Open(p); err == nil {
					io.Copy(io.Discard, fl)
					fl.Close()
				}
			}
		}
	}
	walk(".", 0)
}

// FuzzNames gives a folder the "/"-separated names, encodes it and
// decodes it: every valid name reads back, short names are unique and
// well-formed, and a name without an LFN is its own short name.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"slate-1.0.0-a+3.conf/slate-1.0.0-b+3.conf/loader.conf/vmlinuz/initrd.img",
		"LONGFI~1.TXT/longfilename-1.txt/longfilename-2.txt/longfi~2.txt",
		"README/Readme.md/a.b.c/.hidden/sp ace.txt/日本語.txt/🚀",
		"x/X/x.y/X.Y/x~1/...a/a...b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := New(Options{Size: 33 * mib})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		seen := map[string]bool{}
		for _, n := range strings.Split(s, "/") {
			if validName(n) != nil || seen[foldKey(n)] || n != strings.TrimSpace(n) && strings.TrimSpace(n) == "" {
				continue
			}
			if err := b.AddFile("/"+n, 0, func() (io.ReadCloser, error) { return &pattern{}, nil }); err != nil {
				t.Fatalf("AddFile(%q): %v", n, err)
			}
			seen[foldKey(n)] = true
			want[n] = true
		}
		if _, err := b.layoutTree(); err != nil {
			t.Fatal(err)
		}
		d := &dir{data: b.encodeDir(b.root, nil, stamp{})}
		d.decode()
		if len(d.entries) != len(want) {
			t.Fatalf("%d entries, want %d", len(d.entries), len(want))
		}
		shorts := map[[11]byte]bool{}
		for _, e := range d.entries {
			if !want[e.name] {
				t.Errorf("decoded %q, not a name given", e.name)
			}
			if shorts[e.short] {
				t.Errorf("short name %q used twice", e.short)
			}
			shorts[e.short] = true
			checkShort(t, e.short)
			node := b.root.children[foldKey(e.name)]
			if !node.lfn && displayShort(e.short, 0) != e.name {
				t.Errorf("%q has no LFN but its short name is %q", e.name, e.short)
			}
		}
	})
}

// checkShort fails unless s is a well-formed short name: upper-case
// allowed characters, a non-empty base, padding only at the ends.
func checkShort(t *testing.T, s [11]byte) {
	t.Helper()
	for i, part := range [][]byte{s[:8], s[8:]} {
		trimmed := strings.TrimRight(string(part), " ")
		if i == 0 && trimmed == "" {
			t.Errorf("short name %q: empty base", s)
		}
		for _, c := range []byte(trimmed) {
			if _, ok := shortChar(rune(c)); !ok || c >= 'a' && c <= 'z' {
				t.Errorf("short name %q: byte %q", s, c)
			}
		}
	}
}
