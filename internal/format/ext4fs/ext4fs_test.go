package ext4fs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
)

func manyFiles() []entry {
	var es []entry
	for d := range 20 {
		dir := fmt.Sprintf("/d%02d", d)
		es = append(es, entry{path: dir, kind: 'd', mode: 0o755})
		for i := range 25 {
			size := int64((d*25+i)*997) % (40 * kib)
			es = append(es, entry{path: fmt.Sprintf("%s/file-%03d", dir, i), kind: 'f', mode: 0o644,
				size: size, seed: byte(d*25 + i)})
		}
	}
	return es
}

func bigDir() []entry {
	es := []entry{{path: "/big", kind: 'd', mode: 0o755}}
	for i := range 2000 {
		// Names of varying length so that entries pack unevenly.
		name := fmt.Sprintf("e%d-%s", i, strings.Repeat("n", i%37))
		es = append(es, entry{path: "/big/" + name, kind: 'f', mode: 0o600, size: int64(i % 3), seed: byte(i)})
	}
	return es
}

func deep() []entry {
	var es []entry
	p := ""
	for i := range 60 {
		p += fmt.Sprintf("/level%02d", i)
		es = append(es, entry{path: p, kind: 'd', mode: 0o750, uid: uint32(i), gid: uint32(i)})
	}
	es = append(es, entry{path: p + "/leaf", kind: 'f', mode: 0o644, size: 5000, seed: 9})
	return es
}

func emptyFiles() []entry {
	var es []entry
	for i := range 50 {
		es = append(es, entry{path: fmt.Sprintf("/empty%02d", i), kind: 'f', mode: 0o644})
	}
	return es
}

func mixed() []entry {
	return []entry{
		{path: "/", kind: 'd', mode: 0o755},
		{path: "/bin", kind: 'd', mode: 0o755},
		{path: "/etc", kind: 'd', mode: 0o755},
		{path: "/tmp", kind: 'd', mode: 0o777 | fs.ModeSticky},
		{path: "/srv", kind: 'd', mode: 0o2775 | fs.ModeSetgid, uid: 1000, gid: 1000},
		{path: "/dev", kind: 'd', mode: 0o755},
		{path: "/home", kind: 'd', mode: 0o755},
		{path: "/home/user", kind: 'd', mode: 0o700, uid: 70000, gid: 80000},
		{path: "/bin/su", kind: 'f', mode: 0o755 | fs.ModeSetuid, size: 12345, seed: 1},
		{path: "/bin/wall", kind: 'f', mode: 0o755 | fs.ModeSetgid, gid: 5, size: 4096, seed: 2},
		{path: "/bin/busybox", kind: 'f', mode: 0o755, size: 300 * kib, seed: 3},
		{path: "/etc/hostname", kind: 'f', mode: 0o644, size: 6, seed: 4},
		{path: "/etc/shadow", kind: 'f', mode: 0o640, gid: 42, size: 100, seed: 5},
		{path: "/home/user/.profile", kind: 'f', mode: 0o644, uid: 70000, gid: 80000, size: 1, seed: 6},
		{path: "/bin/sh", kind: 'l', target: "busybox"},
		{path: "/bin/fast59", kind: 'l', target: strings.Repeat("a", 59)},
		{path: "/bin/slow60", kind: 'l', target: strings.Repeat("b", 60)},
		{path: "/bin/slow", kind: 'l', target: "/" + strings.Repeat("long/", 190) + "end", uid: 3, gid: 4},
		{path: "/bin/ls", kind: 'h', target: "/bin/busybox"},
		{path: "/bin/cat", kind: 'h', target: "/bin/busybox"},
		{path: "/etc/hostname2", kind: 'h', target: "/etc/hostname"},
		{path: "/bin/sh2", kind: 'h', target: "/bin/sh"},
		{path: "/dev/null", kind: 'n', mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, major: 1, minor: 3},
		{path: "/dev/sda", kind: 'n', mode: fs.ModeDevice | 0o660, gid: 6, major: 8, minor: 0},
		{path: "/dev/nvme0n1p300", kind: 'n', mode: fs.ModeDevice | 0o660, major: 259, minor: 70000},
		{path: "/dev/big", kind: 'n', mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, major: 4095, minor: 1<<20 - 1},
		{path: "/dev/null2", kind: 'h', target: "/dev/null"},
		{path: "/dev/initctl", kind: 'n', mode: fs.ModeNamedPipe | 0o600},
		{path: "/dev/log", kind: 'n', mode: fs.ModeSocket | 0o666},
	}
}

func largeFile(size int64) []entry {
	return []entry{
		{path: "/small", kind: 'f', mode: 0o644, size: 10, seed: 1},
		{path: "/large", kind: 'f', mode: 0o644, size: size, seed: 7},
		{path: "/after", kind: 'f', mode: 0o644, size: 5000, seed: 8},
	}
}

type contentCase struct {
	name    string
	opts    Options
	entries []entry
	tree    string // a file that must have an extent tree block
	blocks  uint64 // expected block count, if not Size/BlockSize
}

func contentCases() []contentCase {
	base := func(size int64) Options {
		return Options{Size: size, UUID: [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
			HashSeed: [16]byte{9, 8, 7}, Label: "slate-root", Time: testTime}
	}
	with := func(o Options, f func(*Options)) Options { f(&o); return o }
	return []contentCase{
		{"empty-64M", Options{Size: 64 * mib}, nil, "", 0},
		{"empty-odd-size", base(100*mib + 12345), nil, "", 0},
		{"odd-multi-group", base(300*mib + 7*4096 + 100), manyFiles(), "", 0},
		// Two groups and 10 blocks: the 10-block group is dropped.
		{"tail-group-dropped", base(256*mib + 40*kib), mixed(), "", 65536},
		{"many-files", base(64 * mib), manyFiles(), "", 0},
		{"dir-2000-entries", base(64 * mib), bigDir(), "", 0},
		{"deep-nesting", base(64 * mib), deep(), "", 0},
		{"empty-files", base(64 * mib), emptyFiles(), "", 0},
		{"mixed", base(64 * mib), mixed(), "", 0},
		{"mixed-journal", with(base(64*mib), func(o *Options) { o.JournalBlocks = 1024 }), mixed(), "", 0},
		{"mixed-1k-blocks", with(base(64*mib), func(o *Options) { o.BlockSize = 1024 }), mixed(), "", 0},
		{"mixed-2k-blocks-journal", with(base(64*mib), func(o *Options) { o.BlockSize = 2048; o.JournalBlocks = -1 }), mixed(), "", 0},
		{"large-file-1G", base(1 * gib), largeFile(150 * mib), "", 0},
		// 8 MiB groups: the file crosses ~20 groups and needs an extent
		// tree below the inode.
		{name: "large-file-1k-blocks", opts: with(base(256*mib), func(o *Options) { o.BlockSize = 1024 }),
			entries: largeFile(150 * mib), tree: "/large"},
		{"many-inodes-3G-journal", with(base(3*gib), func(o *Options) { o.JournalBlocks = -1; o.MinInodes = 100000 }), manyFiles(), "", 0},
		{"pre-1970-time", with(base(64*mib), func(o *Options) { o.Time = testTime.AddDate(-60, 0, 0) }), mixed(), "", 0},
	}
}

func TestContent(t *testing.T) {
	for _, c := range contentCases() {
		t.Run(c.name, func(t *testing.T) {
			f := build(t, c.opts, c.entries, false)
			img := writeImage(t, f, c.opts.Size)
			fsck(t, img)
			verifyDebugfs(t, img, c.opts, c.entries)

			st, err := f.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Blocks == 0 || st.FreeBlocks >= st.Blocks || st.FreeInodes >= st.Inodes {
				t.Errorf("implausible stats %+v", st)
			}
			checkDumpe2fs(t, img, st)
			wantBlocks := uint64(c.opts.Size / int64(st.BlockSize))
			if c.blocks != 0 {
				wantBlocks = c.blocks
			}
			if st.Blocks != wantBlocks {
				t.Errorf("%d blocks, want %d", st.Blocks, wantBlocks)
			}
			if c.tree != "" {
				if out := debugfs(t, img, []string{"stat " + c.tree})[0]; !strings.Contains(out, "(ETB0)") {
					t.Errorf("%s has no extent tree block:\n%s", c.tree, out)
				}
			}

			// Same content added in another order: same bytes.
			img2 := writeImage(t, build(t, c.opts, c.entries, true), c.opts.Size)
			if a, b := imageSum(t, img), imageSum(t, img2); a != b {
				t.Errorf("two writes of the same content differ: %s vs %s", a, b)
			}
		})
	}
}

// checkDumpe2fs compares Stats with what dumpe2fs reads back.
func checkDumpe2fs(t *testing.T, img string, st Stats) {
	t.Helper()
	out, err := exec.Command(needTool(t, "dumpe2fs"), "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("Block count:              %d\n", st.Blocks),
		fmt.Sprintf("Free blocks:              %d\n", st.FreeBlocks),
		fmt.Sprintf("Inode count:              %d\n", st.Inodes),
		fmt.Sprintf("Free inodes:              %d\n", st.FreeInodes),
		fmt.Sprintf("Block size:               %d\n", st.BlockSize),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dumpe2fs -h lacks %q", want)
		}
	}
	if st.JournalBlocks > 0 && !strings.Contains(string(out), fmt.Sprintf("Total journal blocks:     %d\n", st.JournalBlocks)) {
		t.Errorf("dumpe2fs: no journal of %d blocks:\n%s", st.JournalBlocks, out)
	}
}

// TestLazyGroups checks that a large empty filesystem leaves the unused
// groups uninitialised and writes little besides the journal.
func TestLazyGroups(t *testing.T) {
	for _, c := range []struct {
		size, maxMeta int64
	}{
		{8 * gib, 4 * mib},
		// 16384 groups: 512 KiB of descriptors in each of 17 copies.
		{2 << 40, 16 * mib},
	} {
		t.Run(fmt.Sprint(c.size>>30, "G"), func(t *testing.T) {
			opts := Options{Size: c.size, JournalBlocks: 16384} // fits in group 0
			f, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			cw := &countingWriter{}
			if err := f.WriteTo(cw, 0); err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stats()
			journal := int64(st.JournalBlocks) * int64(st.BlockSize)
			if meta := cw.n - journal; meta > c.maxMeta {
				t.Errorf("wrote %d bytes of metadata for an empty filesystem of %d bytes", meta, c.size)
			}
			img := writeImage(t, f, opts.Size)
			fsck(t, img)
			out, err := exec.Command(needTool(t, "dumpe2fs"), img).CombinedOutput()
			if err != nil {
				t.Fatalf("dumpe2fs: %v", err)
			}
			// Group 0 holds the root and the journal; the last group's
			// block bitmap is always initialised.
			if n := strings.Count(string(out), "[INODE_UNINIT, BLOCK_UNINIT]"); n != st.Groups-2 {
				t.Errorf("%d groups fully uninitialised, want %d", n, st.Groups-2)
			}
		})
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) WriteAt(b []byte, off int64) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

func TestErrors(t *testing.T) {
	small := Options{Size: 8 * mib}
	cases := []struct {
		name string
		opts Options
		do   func(f *FS) error
		want string
	}{
		{"label too long", Options{Size: 64 * mib, Label: strings.Repeat("x", 17)}, nil, "label"},
		{"bad block size", Options{Size: 64 * mib, BlockSize: 512}, nil, "block size"},
		{"zero size", Options{}, nil, "size"},
		{"tiny journal", Options{Size: 64 * mib, JournalBlocks: 100}, nil, "journal"},
		{"too small", Options{Size: 100 * kib}, func(f *FS) error { _, err := f.Stats(); return err }, "too small"},
		{"content too large", small, func(f *FS) error {
			f.AddFile("/a", 0o644, 0, 0, 1*mib, patternOpen(1, 1*mib))
			f.AddFile("/huge", 0o644, 0, 0, 20*mib, patternOpen(1, 20*mib))
			return f.WriteTo(&countingWriter{}, 0)
		}, "/huge does not fit"},
		{"journal too large", Options{Size: 8 * mib, JournalBlocks: 4096}, func(f *FS) error {
			return f.WriteTo(&countingWriter{}, 0)
		}, "journal does not fit"},
		{"duplicate file", small, func(f *FS) error {
			f.AddFile("/a", 0o644, 0, 0, 0, nil)
			return f.AddFile("/a", 0o644, 0, 0, 0, nil)
		}, "exists"},
		{"duplicate symlink over dir", small, func(f *FS) error {
			f.Mkdir("/d", 0o755, 0, 0)
			return f.Symlink("/d", "x", 0, 0)
		}, "exists"},
		{"mkdir over file", small, func(f *FS) error {
			f.AddFile("/a", 0o644, 0, 0, 0, nil)
			return f.Mkdir("/a/b", 0o755, 0, 0)
		}, "not a directory"},
		{"parent missing", small, func(f *FS) error { return f.AddFile("/no/such", 0o644, 0, 0, 0, nil) }, "does not exist"},
		{"parent is a file", small, func(f *FS) error {
			f.AddFile("/a", 0o644, 0, 0, 0, nil)
			return f.Mknod("/a/b", fs.ModeNamedPipe, 0, 0, 0, 0)
		}, "not a directory"},
		{"link to missing", small, func(f *FS) error { return f.Link("/l", "/missing") }, "not exist"},
		{"link to directory", small, func(f *FS) error { return f.Link("/l", "/lost+found") }, "directory"},
		{"dotdot", small, func(f *FS) error { return f.Mkdir("/a/../b", 0o755, 0, 0) }, `".."`},
		{"name too long", small, func(f *FS) error { return f.Mkdir("/"+strings.Repeat("n", 256), 0o755, 0, 0) }, "255"},
		{"root again", small, func(f *FS) error { return f.AddFile("/", 0o644, 0, 0, 0, nil) }, "root"},
		{"empty symlink", small, func(f *FS) error { return f.Symlink("/l", "", 0, 0) }, "empty target"},
		{"symlink too long", small, func(f *FS) error { return f.Symlink("/l", strings.Repeat("x", 4096), 0, 0) }, "too long"},
		{"mknod regular", small, func(f *FS) error { return f.Mknod("/n", 0o644, 1, 1, 0, 0) }, "not a device"},
		{"device out of range", small, func(f *FS) error { return f.Mknod("/n", fs.ModeDevice, 4096, 0, 0, 0) }, "out of range"},
		{"file with dir mode", small, func(f *FS) error { return f.AddFile("/x", fs.ModeDir|0o755, 0, 0, 0, nil) }, "regular"},
		{"no source", small, func(f *FS) error { return f.AddFile("/x", 0o644, 0, 0, 5, nil) }, "no source"},
		{"short source", small, func(f *FS) error {
			f.AddFile("/short", 0o644, 0, 0, 5000, patternOpen(1, 4000))
			return f.WriteTo(&countingWriter{}, 0)
		}, "/short: source ended after 4000 of 5000"},
		{"long source", small, func(f *FS) error {
			f.AddFile("/long", 0o644, 0, 0, 4000, patternOpen(1, 4001))
			return f.WriteTo(&countingWriter{}, 0)
		}, "/long: source is longer"},
		{"open fails", small, func(f *FS) error {
			f.AddFile("/bad", 0o644, 0, 0, 1, func() (io.ReadCloser, error) { return nil, os.ErrPermission })
			return f.WriteTo(&countingWriter{}, 0)
		}, "/bad: open"},
		{"write fails", small, func(f *FS) error { return f.WriteTo(failWriter{}, 0) }, "disk on fire"},
		{"too large", Options{Size: 17 << 40}, func(f *FS) error { _, err := f.Stats(); return err }, "2^32 blocks"},
		{"too large for 1k blocks", Options{Size: 3 << 40, BlockSize: 1024}, func(f *FS) error { _, err := f.Stats(); return err }, "too large for 1024-byte blocks"},
		{"too many inodes", Options{Size: 8 * mib, MinInodes: 1 << 20}, func(f *FS) error { _, err := f.Stats(); return err }, "inodes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := New(c.opts)
			if err == nil && c.do != nil {
				err = c.do(f)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestNoSpaceIs(t *testing.T) {
	f, err := New(Options{Size: 8 * mib})
	if err != nil {
		t.Fatal(err)
	}
	f.AddFile("/huge", 0o644, 0, 0, 9*mib, patternOpen(1, 9*mib))
	if err := f.WriteTo(&countingWriter{}, 0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("error %v, want ErrNoSpace", err)
	}
}

type failWriter struct{}

func (failWriter) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

// TestMkdirUpdates checks that Mkdir on an existing directory sets its
// attributes and that intermediate directories are created.
func TestMkdirUpdates(t *testing.T) {
	f, err := New(Options{Size: 64 * mib})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Mkdir("/a/b/c", 0o700, 5, 6); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkdir("/a", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkdir("/", 0o750, 1, 2); err != nil {
		t.Fatal(err)
	}
	img := writeImage(t, f, 64*mib)
	fsck(t, img)
	outs := debugfs(t, img, []string{"stat /", "stat /a", "stat /a/b", "stat /a/b/c"})
	want := [][3]int{{0o750, 1, 2}, {0o755, 0, 0}, {0o700, 5, 6}, {0o700, 5, 6}}
	for i, o := range outs {
		s := parseStat(t, "", o)
		if s.mode != want[i][0] || s.uid != want[i][1] || s.gid != want[i][2] {
			t.Errorf("dir %d: mode %04o owner %d:%d, want %v", i, s.mode, s.uid, s.gid, want[i])
		}
	}
}

// TestWriteOffset writes at an offset inside a larger file, as the builder
// does for a partition inside a disk image.
func TestWriteOffset(t *testing.T) {
	opts := Options{Size: 64 * mib, Time: testTime}
	f := build(t, opts, mixed(), false)
	path := t.TempDir() + "/disk.img"
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const off = 1 * mib
	if err := out.Truncate(off + opts.Size + mib); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteTo(out, off); err != nil {
		t.Fatal(err)
	}
	out.Close()
	o, err := exec.Command(needTool(t, "e2fsck"), "-fn", fmt.Sprintf("%s?offset=%d", path, off)).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck at offset: %v\n%s", err, o)
	}
}

// TestManySubdirs goes past the 65000 link limit of a directory, where
// dir_nlink stores a link count of 1.
func TestManySubdirs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	opts := Options{Size: 256 * mib, BlockSize: 1024}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 65100
	for i := range n {
		if err := f.Mkdir(fmt.Sprintf("/many/%05d", i), 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	img := writeImage(t, f, opts.Size)
	fsck(t, img)
	outs := debugfs(t, img, []string{"stat /many", "stat /many/65099"})
	if s := parseStat(t, "/many", outs[0]); s.links != 1 {
		t.Errorf("/many: %d links, want 1", s.links)
	}
	if s := parseStat(t, "/many/65099", outs[1]); s.links != 2 {
		t.Errorf("/many/65099: %d links, want 2", s.links)
	}
}

// TestFsckDetectsCorruption makes sure the e2fsck check above can fail: a
// damaged group descriptor checksum must be reported.
func TestFsckDetectsCorruption(t *testing.T) {
	opts := Options{Size: 64 * mib}
	f := build(t, opts, mixed(), false)
	img := writeImage(t, f, opts.Size)
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Group 0's descriptor is at the start of block 1; bg_checksum at 30.
	if _, err := fh.WriteAt([]byte{0x12, 0x34}, 4096+30); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	out, complaints := fsckComplaints(t, img)
	if len(complaints) == 0 || !strings.Contains(out, "checksum") {
		t.Fatalf("bad descriptor checksum not reported:\n%s", out)
	}
}
