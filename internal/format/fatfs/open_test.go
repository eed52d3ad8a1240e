package fatfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// memDisk is an in-memory disk image.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("write past the end of the disk")
	}
	return copy(m[off:], p), nil
}

// memImage writes c into a new in-memory image of size bytes.
func memImage(t testing.TB, size int64, c contentSet) memDisk {
	t.Helper()
	m := make(memDisk, size)
	b := build(t, Options{Size: size, Label: "ESP", VolumeID: 1, Time: testTime}, c)
	if err := b.WriteTo(m, 0); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOpenCorrupt(t *testing.T) {
	const size = 33 * mib
	base := memImage(t, size, espSet())
	le := binary.LittleEndian
	fsys, err := Open(base, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	root := fsys.root
	tests := []struct {
		name  string
		edit  func(m memDisk)
		field string
	}{
		{"bad signature", func(m memDisk) { m[510] = 0 }, "signature"},
		{"bad jump", func(m memDisk) { m[0] = 0 }, "jump instruction"},
		{"zero bytes per sector", func(m memDisk) { le.PutUint16(m[11:], 0) }, "bytes per sector"},
		{"odd bytes per sector", func(m memDisk) { le.PutUint16(m[11:], 513) }, "bytes per sector"},
		{"zero sectors per cluster", func(m memDisk) { m[13] = 0 }, "sectors per cluster"},
		{"sectors per cluster not a power of two", func(m memDisk) { m[13] = 3 }, "sectors per cluster"},
		{"clusters over 64 KiB", func(m memDisk) { le.PutUint16(m[11:], 4096); m[13] = 32 }, "sectors per cluster"},
		{"no reserved sectors", func(m memDisk) { le.PutUint16(m[14:], 0) }, "reserved sectors"},
		{"no FATs", func(m memDisk) { m[16] = 0 }, "number of FATs"},
		{"FAT16 root entries", func(m memDisk) { le.PutUint16(m[17:], 512) }, "root entry count"},
		{"FAT16 FAT size", func(m memDisk) { le.PutUint16(m[22:], 200) }, "FAT size (16-bit)"},
		{"FAT size 0", func(m memDisk) { le.PutUint32(m[36:], 0) }, "FAT size"},
		{"FAT too small", func(m memDisk) { le.PutUint32(m[36:], 100) }, "FAT size"},
		{"FATs fill the disk", func(m memDisk) { le.PutUint32(m[36:], 40000) }, "FAT size"},
		{"total sectors 0", func(m memDisk) { le.PutUint32(m[32:], 0) }, "total sectors"},
		{"too few clusters", func(m memDisk) { le.PutUint32(m[32:], 60000) }, "total sectors"},
		{"larger than the partition", func(m memDisk) { le.PutUint32(m[32:], size/512+1) }, "total sectors"},
		{"root cluster 0", func(m memDisk) { le.PutUint32(m[44:], 0) }, "root cluster"},
		{"root cluster 1", func(m memDisk) { le.PutUint32(m[44:], 1) }, "root cluster"},
		{"root cluster out of range", func(m memDisk) { le.PutUint32(m[44:], 70000) }, "root cluster"},
		{"version", func(m memDisk) { le.PutUint16(m[42:], 0x0100) }, "version"},
		{"active FAT out of range", func(m memDisk) { le.PutUint16(m[40:], 0x83) }, "extended flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := memDisk(bytes.Clone(base))
			tt.edit(m)
			_, err := Open(m, 0, size)
			var bse *BootSectorError
			if !errors.As(err, &bse) {
				t.Fatalf("Open: %v, want a BootSectorError", err)
			}
			if bse.Field != tt.field {
				t.Fatalf("Open: field %q (%v), want %q", bse.Field, err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %q", err, tt.field)
			}
		})
	}

	fatEntry := func(m memDisk, c uint32) []byte { return m[reservedSectors*512+c*4:] }
	chainTests := []struct {
		name string
		edit func(m memDisk)
		op   func(f *FS) error
		want string
	}{
		{"root loops on itself", func(m memDisk) { le.PutUint32(fatEntry(m, root), root) }, nil, "loops"},
		{"root chain too long", func(m memDisk) {
			// A chain through every cluster: longer than any folder.
			for c := root; c < 70000; c++ {
				le.PutUint32(fatEntry(m, c), c+1)
			}
		}, nil, "longer than"},
		{"root chain to a free cluster", func(m memDisk) { le.PutUint32(fatEntry(m, root), 0) }, nil, "outside clusters"},
		{"root chain to a bad cluster", func(m memDisk) { le.PutUint32(fatEntry(m, root), fatBad) }, nil, "bad cluster"},
		{"file chain loops", func(m memDisk) {
			c := fileCluster(t, m, "slate/a/vmlinuz")
			le.PutUint32(fatEntry(m, c+10), c+3)
		}, func(f *FS) error { _, err := f.ReadFile("slate/a/vmlinuz"); return err }, "loops"},
		{"file chain short", func(m memDisk) {
			c := fileCluster(t, m, "slate/a/vmlinuz")
			le.PutUint32(fatEntry(m, c+10), fatEOC)
		}, func(f *FS) error { _, err := f.ReadFile("slate/a/vmlinuz"); return err }, "ends after 11 clusters"},
		{"folder loops through its parent", func(m memDisk) {
			// loader/entries' chain continues into loader/.
			e := fileCluster(t, m, "loader/entries")
			l := fileCluster(t, m, "loader")
			le.PutUint32(fatEntry(m, e), l)
			le.PutUint32(fatEntry(m, l), e)
		}, func(f *FS) error { _, err := f.ReadDir("loader/entries"); return err }, "loops"},
	}
	for _, tt := range chainTests {
		t.Run(tt.name, func(t *testing.T) {
			m := memDisk(bytes.Clone(base))
			tt.edit(m)
			done := make(chan error, 1)
			go func() {
				f, err := Open(m, 0, size)
				if err == nil && tt.op != nil {
					err = tt.op(f)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error containing %q", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hangs")
			}
		})
	}
}

// fileCluster returns the first cluster of the entry p of an image.
func fileCluster(t testing.TB, m memDisk, p string) uint32 {
	t.Helper()
	f, err := Open(m, 0, int64(len(m)))
	if err != nil {
		t.Fatal(err)
	}
	_, e, err := f.lookup("test", p)
	if err != nil {
		t.Fatal(err)
	}
	return e.cluster
}

func TestReadErrors(t *testing.T) {
	m := memImage(t, 33*mib, espSet())
	f, err := Open(m, 0, int64(len(m)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFile("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(nope) = %v, want ErrNotExist", err)
	}
	if _, err := f.ReadFile("/loader/loader.conf"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ReadFile with a leading slash = %v, want ErrInvalid", err)
	}
	if _, err := f.ReadFile("loader"); err == nil {
		t.Error("ReadFile of a folder works")
	}
	if _, err := f.ReadDir("loader/loader.conf"); err == nil {
		t.Error("ReadDir of a file works")
	}
	if _, err := f.ReadFile("loader/loader.conf/x"); err == nil {
		t.Error("a file as a folder works")
	}
	// Lookup is case-insensitive, by long or short name.
	for _, n := range []string{"LOADER/LOADER.CONF", "loader/LOADER~1.CON", "Loader/Loader.Conf"} {
		b, err := f.ReadFile(n)
		if err != nil || !bytes.Equal(b, patternBytes(2, 31)) {
			t.Errorf("ReadFile(%q) = %v", n, err)
		}
	}
	if _, err := Open(m, 0, 0); err == nil {
		t.Error("Open with size 0 works")
	}
	if _, err := Open(m[:300], 0, 300); err == nil {
		t.Error("Open of 300 bytes works")
	}
}

// TestLayoutMatchesMkfs compares the cluster size with the one mkfs.fat
// picks for the same size, and the sizes at the FAT32 limit.
func TestLayoutMatchesMkfs(t *testing.T) {
	mkfs := needTool(t, "mkfs.fat")
	dir := t.TempDir()
	for _, size := range append(testSizes, 260*mib, 261*mib, 8*gib, 8*gib+mib, 20*gib, 40*gib) {
		g, err := layout(size)
		if err != nil {
			t.Fatalf("%d MiB: %v", size/mib, err)
		}
		img := filepath.Join(dir, "mkfs.img")
		os.Remove(img)
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(mkfs, "-F", "32", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.fat: %v\n%s", err, out)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := Open(f, 0, size)
		f.Close()
		if err != nil {
			t.Fatalf("%d MiB: Open of mkfs.fat's image: %v", size/mib, err)
		}
		if theirs.spc != g.spc {
			t.Errorf("%d MiB: %d sectors per cluster, mkfs.fat picks %d", size/mib, g.spc, theirs.spc)
		}
		if d := int64(theirs.clusters) - int64(g.clusters); d < -64 || d > 64 {
			t.Errorf("%d MiB: %d clusters, mkfs.fat makes %d", size/mib, g.clusters, theirs.clusters)
		}
		if (reservedSectors+numFATs*g.fatSectors)%g.spc != 0 {
			t.Errorf("%d MiB: data area not cluster-aligned", size/mib)
		}
	}
	for _, size := range []int64{0, 1 * mib, 32 * mib, 32*mib + 500*kib} {
		if _, err := layout(size); err == nil || !strings.Contains(err.Error(), "too small") {
			t.Errorf("layout(%d) = %v, want too small", size, err)
		}
	}
	if _, err := layout(32*mib + 600*kib); err != nil {
		t.Errorf("layout(32.6 MiB): %v", err)
	}
	if _, err := layout(3 << 40); err == nil {
		t.Error("layout(3 TiB) works")
	}
}

func TestBuilderErrors(t *testing.T) {
	opts := Options{Size: 33 * mib, Time: testTime}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }
	if err := b.AddFile("/a/file", 1, open); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		err  error
		want string
	}{
		{"duplicate", b.AddFile("/a/file", 1, open), "exists"},
		{"duplicate in other case", b.AddFile("/A/FILE", 1, open), "exists"},
		{"file as folder", b.Mkdir("/a/file/sub"), "is a file"},
		{"folder in other case", b.Mkdir("/A/sub"), "other case"},
		{"dot dot", b.Mkdir("/a/../b"), `".."`},
		{"bad char", b.AddFile("/a/b*c", 1, open), "not allowed"},
		{"trailing dot", b.AddFile("/a/b.", 1, open), "ends in a dot"},
		{"too long", b.AddFile("/a/"+strings.Repeat("x", 256), 1, open), "UTF-16 units"},
		{"root", b.AddFile("/", 1, open), "root folder"},
		{"negative size", b.AddFile("/a/neg", -1, open), "size"},
		{"4 GiB", b.AddFile("/a/big", 1<<32, open), "size"},
		{"nil open", b.AddFile("/a/nil", 1, nil), "nil open"},
	}
	for _, tt := range bad {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, tt.err, tt.want)
		}
	}
	for _, l := range []string{"TWELVE CHARS", "a*b", " x"} {
		if _, err := New(Options{Size: 33 * mib, Label: l}); err == nil {
			t.Errorf("label %q accepted", l)
		}
	}

	// Content that does not fit names the path.
	b, _ = New(opts)
	b.AddFile("/small", 1000, func() (io.ReadCloser, error) { return &pattern{size: 1000}, nil })
	b.AddFile("/huge", 40*mib, func() (io.ReadCloser, error) { return &pattern{size: 40 * mib}, nil })
	err = b.WriteTo(make(memDisk, opts.Size), 0)
	if err == nil || !strings.Contains(err.Error(), "/huge does not fit") {
		t.Errorf("WriteTo: %v, want /huge does not fit", err)
	}

	// Content shorter or longer than declared.
	for _, n := range []int64{99, 101} {
		b, _ = New(opts)
		b.AddFile("/f", 100, func() (io.ReadCloser, error) { return &pattern{size: n}, nil })
		err = b.WriteTo(make(memDisk, opts.Size), 0)
		if err == nil || !strings.Contains(err.Error(), "/f: content") {
			t.Errorf("content of %d bytes for 100: %v", n, err)
		}
	}
	// An open error names the path.
	b, _ = New(opts)
	b.AddFile("/g", 1, func() (io.ReadCloser, error) { return nil, errors.New("boom") })
	if err = b.WriteTo(make(memDisk, opts.Size), 0); err == nil || !strings.Contains(err.Error(), "/g: boom") {
		t.Errorf("open error: %v", err)
	}
}

// TestTimestamps checks the clamping of times FAT cannot store.
func TestTimestamps(t *testing.T) {
	for _, tt := range []struct{ in, want time.Time }{
		{testTime, testTime.Truncate(2 * time.Second)}, // 2-second resolution
		{time.Unix(0, 0).UTC(), time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2024, 1, 2, 3, 4, 4, 0, time.UTC)},
	} {
		m := make(memDisk, 33*mib)
		b, _ := New(Options{Size: 33 * mib, Time: tt.in})
		b.AddFile("/f", 0, func() (io.ReadCloser, error) { return &pattern{}, nil })
		if err := b.WriteTo(m, 0); err != nil {
			t.Fatal(err)
		}
		f, err := Open(m, 0, int64(len(m)))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat("f")
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(tt.want) {
			t.Errorf("time %v stored as %v, want %v", tt.in, fi.ModTime(), tt.want)
		}
	}
}
