package fatfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// needTool returns the path of a host tool; without it the test fails in
// CI and is skipped elsewhere.
func needTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (install dosfstools and mtools)", name)
	}
	t.Skipf("%s not found", name)
	return ""
}

// pattern is deterministic file content, different per seed and offset,
// with a run of zeros every 64 KiB.
type pattern struct {
	seed byte
	size int64
	off  int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.size-p.off))
	for i := range n {
		o := p.off + int64(i)
		if o%65536 >= 61440 {
			b[i] = 0
		} else {
			b[i] = byte(o) ^ byte(o>>9)*13 ^ byte(o>>17)*7 ^ p.seed
		}
	}
	p.off += int64(n)
	return n, nil
}

func (p *pattern) Close() error { return nil }

func patternBytes(seed byte, size int64) []byte {
	b, _ := io.ReadAll(&pattern{seed: seed, size: size})
	return b
}

// tfile is a file of a content set.
type tfile struct {
	path string
	size int64
	seed byte
}

// contentSet is a tree to write: folders (possibly empty) and files.
type contentSet struct {
	name  string
	dirs  []string
	files []tfile
}

var testTime = time.Date(2024, 5, 17, 13, 45, 31, 0, time.UTC)

func espSet() contentSet {
	return contentSet{name: "esp",
		dirs: []string{"/slate/b"},
		files: []tfile{
			{"/EFI/BOOT/BOOTX64.EFI", 100*kib + 123, 1},
			{"/loader/loader.conf", 31, 2},
			{"/loader/entries/slate-1.0.0-a+3.conf", 214, 3},
			{"/loader/entries/slate-0.9.0-b.conf", 209, 4},
			{"/slate/a/vmlinuz", 8*mib + 4321, 5},
			{"/slate/a/initrd.img", 6*mib - 77, 6},
			{"/slate/a/cmdline", 0, 7},
		}}
}

func manySet() contentSet {
	c := contentSet{name: "many"}
	for i := range 300 {
		c.files = append(c.files, tfile{fmt.Sprintf("/many/a rather long file name, number %03d.txt", i), int64(i * 37 % 2000), byte(i)})
	}
	return c
}

func nestedSet() contentSet {
	c := contentSet{name: "nested", dirs: []string{"/x/y/z/empty"}}
	p := ""
	for i, n := range []string{"one", "Two", "THREE", "four four", "five.dir", "6", "seven-seven-seven", "8"} {
		p += "/" + n
		c.files = append(c.files, tfile{p + "/file.bin", int64(i) * 3000, byte(i)})
		c.files = append(c.files, tfile{p + "/zero", 0, 0})
	}
	return c
}

func tailSet() contentSet {
	c := contentSet{name: "tails"}
	for i := 1; i <= 12; i++ {
		c.files = append(c.files, tfile{fmt.Sprintf("/t/longfilename-%02d.txt", i), int64(i), byte(i)})
	}
	// Exact 8.3 names that a generated tail would otherwise take, names
	// that fit 8.3 only up to case, and other odd shapes.
	for i, n := range []string{"LONGFI~1.TXT", "longfi~3.txt", "README", "Readme.md", "vmlinuz", "a.b.c", ".hidden",
		"x+y=z[1].conf", "UPPER.TXT", "lower.txt", "MiXeD.TxT", "name.longext", "sp ace.txt", "1234567890123"} {
		c.files = append(c.files, tfile{"/t/" + n, int64(100 + i), byte(i)})
	}
	return c
}

func unicodeSet() contentSet {
	return contentSet{name: "unicode", files: []tfile{
		{"/uni/héllo-wörld.txt", 10, 1},
		{"/uni/日本語.txt", 20, 2},
		{"/uni/🚀 rocket.conf", 30, 3},
		{"/uni/" + strings.Repeat("ä", 100) + strings.Repeat("x", 55), 40, 4},
		{"/uni/" + strings.Repeat("long-", 50) + "end.t", 50, 5},
	}}
}

func emptySet() contentSet { return contentSet{name: "empty"} }

func allSets() []contentSet {
	return []contentSet{emptySet(), espSet(), manySet(), nestedSet(), tailSet(), unicodeSet()}
}

// build adds c to a new Builder.
func build(t testing.TB, opts Options, c contentSet) *Builder {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.dirs {
		if err := b.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range c.files {
		f := f
		err := b.AddFile(f.path, f.size, func() (io.ReadCloser, error) { return &pattern{seed: f.seed, size: f.size}, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// writeImage writes c into a sparse file of offset+opts.Size bytes.
func writeImage(t testing.TB, dir string, opts Options, c contentSet, offset int64) string {
	t.Helper()
	b := build(t, opts, c)
	img := filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(offset + opts.Size); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteTo(f, offset); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

// expected is the tree of c as relative slash paths: folders end in "/",
// files map to their content.
func (c contentSet) expected() map[string][]byte {
	m := map[string][]byte{}
	addDirs := func(p string) {
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			m[d[1:]+"/"] = nil
		}
	}
	for _, d := range c.dirs {
		m[d[1:]+"/"] = nil
		addDirs(d)
	}
	for _, f := range c.files {
		m[f.path[1:]] = patternBytes(f.seed, f.size)
		addDirs(f.path)
	}
	return m
}

// walkOS reads a host folder tree in the form of expected.
func walkOS(t testing.TB, root string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			m[filepath.ToSlash(rel)+"/"] = nil
			return nil
		}
		b, err := os.ReadFile(p)
		m[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// walkFS reads an fs.FS in the form of expected.
func walkFS(t testing.TB, fsys fs.FS) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		if d.IsDir() {
			m[p+"/"] = nil
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		m[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameTree reports the differences between two trees.
func sameTree(t testing.TB, what string, want, got map[string][]byte) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	bad := 0
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !wok:
			t.Errorf("%s: unexpected %q", what, k)
		case !gok:
			t.Errorf("%s: missing %q", what, k)
		case !bytes.Equal(w, g):
			t.Errorf("%s: %q: content differs (%d bytes, want %d)", what, k, len(g), len(w))
		default:
			continue
		}
		if bad++; bad > 10 {
			t.Fatalf("%s: too many differences", what)
		}
	}
}

// fsck runs fsck.vfat -n on the filesystem at offset in img and fails on
// a non-zero exit or any line beyond the version banner and the summary.
func fsck(t testing.TB, img string, offset, size int64) {
	t.Helper()
	tool := needTool(t, "fsck.vfat")
	if offset != 0 {
		// fsck.vfat has no offset option: check a copy of the partition.
		part := img + ".part"
		if err := copyRange(img, part, offset, size); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(part)
		img = part
	}
	out, err := exec.Command(tool, "-n", "-v", img).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !fsckQuiet(l) {
			t.Fatalf("fsck.vfat -n: unexpected output %q\nfull output:\n%s", l, out)
		}
	}
}

// fsckQuiet reports whether a line of fsck.vfat -n -v output is
// informational (the verbose dump of the boot sector and the summary), as
// opposed to a warning or a repair.
func fsckQuiet(l string) bool {
	l = strings.TrimSpace(l)
	for _, p := range []string{"fsck.fat ", "Checking ", "Boot sector contents:", "System ID ", "Media byte ",
		"First FAT starts", "Root directory start", "Data area starts", "Volume ID is", "Reclaiming ",
		"Starting check/repair pass.", "Starting verification pass.", "Volume label is"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	for _, s := range []string{"bytes per logical sector", "bytes per cluster", "reserved sectors", "FATs, 32 bit entries",
		"bytes per FAT", "data clusters", "sectors/track", "hidden sectors", "sectors total", "files, ", "physical sector size"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return l == ""
}

func copyRange(src, dst string, off, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := out.Truncate(n); err != nil {
		out.Close()
		return err
	}
	// Copy only the non-hole ranges would be faster; the reserved area,
	// FATs and used data are at the start, so copy up to the last data.
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < n; pos += int64(len(buf)) {
		k := min(int64(len(buf)), n-pos)
		if _, err := in.ReadAt(buf[:k], off+pos); err != nil && !errors.Is(err, io.EOF) {
			out.Close()
			return err
		}
		if !allZero(buf[:k]) {
			if _, err := out.WriteAt(buf[:k], pos); err != nil {
				out.Close()
				return err
			}
		}
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// mtoolsEnv runs mtools without a user config and with UTF-8 names.
func mtoolsEnv() []string {
	return append(os.Environ(), "MTOOLSRC=/dev/null", "LC_ALL=C.UTF-8", "MTOOLS_SKIP_CHECK=0")
}

// mcopyTree copies the whole filesystem out with mcopy -s.
func mcopyTree(t testing.TB, img string, offset int64) map[string][]byte {
	t.Helper()
	tool := needTool(t, "mcopy")
	dst := t.TempDir()
	arg := fmt.Sprintf("%s@@%d", img, offset)
	// List the root with mdir so that an empty filesystem copies nothing.
	names := mdirNames(t, img, offset, "::/")
	for _, n := range names {
		cmd := exec.Command(tool, "-s", "-n", "-m", "-i", arg, "::/"+n, dst+"/")
		cmd.Env = mtoolsEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s: %v\n%s", n, err, out)
		}
	}
	return walkOS(t, dst)
}

// mdirNames lists a folder with mdir -b (bare: one full path per line).
func mdirNames(t testing.TB, img string, offset int64, dir string) []string {
	t.Helper()
	tool := needTool(t, "mdir")
	cmd := exec.Command(tool, "-b", "-a", "-i", fmt.Sprintf("%s@@%d", img, offset), dir)
	cmd.Env = mtoolsEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No files") || strings.Contains(string(out), "File not found") {
			return nil
		}
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, strings.TrimPrefix(strings.TrimPrefix(l, "::"), "/"))
		}
	}
	return names
}

// asMtools renames as mtools shows names: it knows UCS-2 only and shows
// each half of a surrogate pair (a character outside the Basic
// Multilingual Plane) as '_'.
func asMtools(m map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		var sb strings.Builder
		for _, r := range k {
			if r > 0xffff {
				sb.WriteString("__")
			} else {
				sb.WriteRune(r)
			}
		}
		out[sb.String()] = v
	}
	return out
}
