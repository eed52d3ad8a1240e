package ext4fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needTool returns the path of a host tool; without it the test fails in
// CI and is skipped elsewhere.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (install e2fsprogs)", name)
	}
	t.Skipf("%s not found", name)
	return ""
}

// pattern is a deterministic file content: a byte pattern that differs per
// seed and per block, with a run of zeros every 64 KiB so that sparse-aware
// readers and writers see holes-like data too.
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
			b[i] = byte(o) ^ byte(o>>12)*7 ^ p.seed
		}
	}
	p.off += int64(n)
	return n, nil
}

func (p *pattern) Close() error { return nil }

func patternOpen(seed byte, size int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return &pattern{seed: seed, size: size}, nil }
}

func patternSum(seed byte, size int64) string {
	h := sha256.New()
	io.Copy(h, &pattern{seed: seed, size: size})
	return hex.EncodeToString(h.Sum(nil))
}

// entry is one item of a test content set.
type entry struct {
	path   string
	kind   byte // 'd' dir, 'f' file, 'l' symlink, 'h' hard link, 'n' mknod
	mode   fs.FileMode
	uid    uint32
	gid    uint32
	size   int64
	seed   byte
	target string // symlink target, or the existing path of a hard link
	major  uint32
	minor  uint32
}

// build creates a filesystem from the entries. With reorder, directories
// come deepest first and everything else in reverse, which must not change
// the output.
func build(t testing.TB, opts Options, entries []entry, reorder bool) *FS {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	order := entries
	if reorder {
		order = nil
		for _, k := range []string{"d", "fln", "h"} {
			for i := len(entries) - 1; i >= 0; i-- {
				if strings.IndexByte(k, entries[i].kind) >= 0 {
					order = append(order, entries[i])
				}
			}
		}
		// Directories created child-first get their parents' attributes
		// wrong until the parent's own Mkdir; the final state must match.
	}
	for _, e := range order {
		var err error
		switch e.kind {
		case 'd':
			err = f.Mkdir(e.path, e.mode, e.uid, e.gid)
		case 'f':
			var open func() (io.ReadCloser, error)
			if e.size > 0 {
				open = patternOpen(e.seed, e.size)
			}
			err = f.AddFile(e.path, e.mode, e.uid, e.gid, e.size, open)
		case 'l':
			err = f.Symlink(e.path, e.target, e.uid, e.gid)
		case 'h':
			err = f.Link(e.path, e.target)
		case 'n':
			err = f.Mknod(e.path, e.mode, e.major, e.minor, e.uid, e.gid)
		}
		if err != nil {
			t.Fatalf("%c %s: %v", e.kind, e.path, err)
		}
	}
	return f
}

// writeImage writes f into a new sparse file of size bytes.
func writeImage(t testing.TB, f *FS, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fs.img")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteTo(out, 0); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// imageSum hashes the logical content of a (sparse) image: the offset and
// bytes of every 64 KiB chunk that is not all zeros, found through
// SEEK_DATA so that the holes of a multi-GiB image are not read.
func imageSum(t testing.TB, path string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for off := int64(0); off < fi.Size(); {
		data, err := in.Seek(off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: only a hole remains
		}
		hole, err := in.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for c := data &^ int64(len(buf)-1); c < hole; c += int64(len(buf)) {
			n, err := in.ReadAt(buf, c)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				fmt.Fprintf(h, "%d:", c)
				h.Write(buf[:n])
			}
		}
		off = (hole + int64(len(buf)) - 1) &^ int64(len(buf)-1)
	}
	fmt.Fprintf(h, "size:%d", fi.Size())
	return hex.EncodeToString(h.Sum(nil))
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h := sha256.New()
	if _, err := io.Copy(h, in); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fsck runs e2fsck -fn and fails on any complaint. e2fsck -n exits 0
// for some problems it only reports (a bad descriptor checksum, for one), so
// every line that is not part of a clean run counts as a complaint.
func fsck(t testing.TB, img string) {
	t.Helper()
	if out, complaints := fsckComplaints(t, img); len(complaints) > 0 {
		t.Errorf("e2fsck -fn complains: %q\n%s", complaints, out)
	}
}

func fsckComplaints(t testing.TB, img string) (string, []string) {
	t.Helper()
	out, err := exec.Command(needTool(t, "e2fsck"), "-fn", img).CombinedOutput()
	var complaints []string
	if err != nil {
		complaints = append(complaints, err.Error())
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "Pass ") || strings.HasPrefix(l, "e2fsck ") ||
			strings.Contains(l, " files (") {
			continue
		}
		complaints = append(complaints, l)
	}
	return string(out), complaints
}

// debugfs runs commands (one per line) and returns each command's output.
func debugfs(t testing.TB, img string, cmds []string) []string {
	t.Helper()
	cmdFile := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(cmdFile, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	c := exec.Command(needTool(t, "debugfs"), "-f", cmdFile, img)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, stderr.String())
	}
	// debugfs echoes "debugfs: CMD" before each command's output.
	parts := strings.Split(stdout.String(), "debugfs: ")
	var res []string
	for _, p := range parts[1:] {
		_, body, _ := strings.Cut(p, "\n")
		res = append(res, body)
	}
	if len(res) != len(cmds) {
		t.Fatalf("debugfs: %d outputs for %d commands\n%s", len(res), len(cmds), stdout.String())
	}
	return res
}

var (
	reInode = regexp.MustCompile(`Inode: (\d+)\s+Type: ([A-Za-z ]+?)\s+Mode:\s+(\d+)`)
	reUser  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+).*Size: (\d+)`)
	reLinks = regexp.MustCompile(`Links: (\d+)`)
	reDev   = regexp.MustCompile(`Device major/minor number: (\d+):(\d+)`)
	reTime  = regexp.MustCompile(`mtime: (0x[0-9a-f]+):([0-9a-f]+)`)
)

type statInfo struct {
	ino, mode, uid, gid, links int
	typ                        string
	size                       int64
	major, minor               int
	mtime                      string
}

func parseStat(t testing.TB, path, out string) statInfo {
	t.Helper()
	var s statInfo
	m := reInode.FindStringSubmatch(out)
	u := reUser.FindStringSubmatch(out)
	l := reLinks.FindStringSubmatch(out)
	if m == nil || u == nil || l == nil {
		t.Fatalf("debugfs stat %s: unexpected output:\n%s", path, out)
	}
	s.ino, _ = strconv.Atoi(m[1])
	s.typ = m[2]
	mode, _ := strconv.ParseInt(m[3], 8, 32)
	s.mode = int(mode)
	s.uid, _ = strconv.Atoi(u[1])
	s.gid, _ = strconv.Atoi(u[2])
	s.size, _ = strconv.ParseInt(u[3], 10, 64)
	s.links, _ = strconv.Atoi(l[1])
	if d := reDev.FindStringSubmatch(out); d != nil {
		s.major, _ = strconv.Atoi(d[1])
		s.minor, _ = strconv.Atoi(d[2])
	}
	if tm := reTime.FindStringSubmatch(out); tm != nil {
		s.mtime = tm[1] + ":" + tm[2]
	}
	return s
}

// unixPerm is the low 12 bits of a mode as stat(2) reports them.
func unixPerm(m fs.FileMode) int {
	return int(permBits(m))
}

// expected describes what each path of a content set should be once the
// hard links are resolved.
type expected struct {
	e     entry // the entry that created the inode
	links int
	nsub  int
}

func expectations(entries []entry) map[string]*expected {
	want := map[string]*expected{"/": {e: entry{path: "/", kind: 'd', mode: 0o755}},
		"/lost+found": {e: entry{path: "/lost+found", kind: 'd', mode: 0o700}}}
	want["/"].nsub = 1
	for _, e := range entries {
		switch e.kind {
		case 'd':
			if x, ok := want[e.path]; ok && e.path == "/" {
				x.e = e
				continue
			}
			want[e.path] = &expected{e: e}
			want[filepath.Dir(e.path)].nsub++
		case 'h':
			x := want[e.target]
			x.links++
			want[e.path] = x
		default:
			want[e.path] = &expected{e: e, links: 1}
		}
	}
	return want
}

// verifyDebugfs checks every path of the content set with debugfs stat and
// the contents and link targets with debugfs rdump.
func verifyDebugfs(t *testing.T, img string, opts Options, entries []entry) {
	t.Helper()
	want := expectations(entries)
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	// Sorted for stable failure messages.
	slices.Sort(paths)
	cmds := make([]string, len(paths))
	for i, p := range paths {
		cmds[i] = fmt.Sprintf("stat %q", p)
	}
	outs := debugfs(t, img, cmds)
	inoOf := map[*expected]int{}
	mt, extra := timeFields(opts.Time)
	wantTime := fmt.Sprintf("0x%08x:%08x", mt, extra)
	for i, p := range paths {
		x := want[p]
		s := parseStat(t, p, outs[i])
		e := x.e
		wantType := map[byte]string{'d': "directory", 'f': "regular", 'l': "symlink"}[e.kind]
		if e.kind == 'n' {
			switch e.mode.Type() {
			case fs.ModeDevice | fs.ModeCharDevice:
				wantType = "character special"
			case fs.ModeDevice:
				wantType = "block special"
			case fs.ModeNamedPipe:
				wantType = "FIFO"
			case fs.ModeSocket:
				wantType = "socket"
			}
		}
		wantMode := unixPerm(e.mode)
		if e.kind == 'l' {
			wantMode = 0o777
		}
		if s.typ != wantType || s.mode != wantMode || s.uid != int(e.uid) || s.gid != int(e.gid) {
			t.Errorf("%s: type %q mode %04o owner %d:%d, want %q %04o %d:%d",
				p, s.typ, s.mode, s.uid, s.gid, wantType, wantMode, e.uid, e.gid)
		}
		if s.mtime != wantTime {
			t.Errorf("%s: mtime %s, want %s", p, s.mtime, wantTime)
		}
		switch e.kind {
		case 'd':
			if s.links != 2+x.nsub {
				t.Errorf("%s: %d links, want %d", p, s.links, 2+x.nsub)
			}
		case 'f':
			if s.size != e.size {
				t.Errorf("%s: size %d, want %d", p, s.size, e.size)
			}
			fallthrough
		default:
			if s.links != x.links {
				t.Errorf("%s: %d links, want %d", p, s.links, x.links)
			}
		}
		if e.kind == 'l' && s.size != int64(len(e.target)) {
			t.Errorf("%s: size %d, want %d", p, s.size, len(e.target))
		}
		if e.kind == 'n' && e.mode&fs.ModeDevice != 0 && (s.major != int(e.major) || s.minor != int(e.minor)) {
			t.Errorf("%s: device %d:%d, want %d:%d", p, s.major, s.minor, e.major, e.minor)
		}
		if ino, ok := inoOf[x]; ok && ino != s.ino {
			t.Errorf("%s: inode %d, want %d (hard link)", p, s.ino, ino)
		}
		inoOf[x] = s.ino
	}

	// Contents and link targets through rdump.
	dir := t.TempDir()
	debugfs(t, img, []string{"rdump / " + dir})
	for p, x := range want {
		local := filepath.Join(dir, p)
		switch x.e.kind {
		case 'f':
			if got, w := fileSum(t, local), patternSum(x.e.seed, x.e.size); got != w {
				t.Errorf("%s: content differs", p)
			}
		case 'l':
			if got, err := os.Readlink(local); err != nil || got != x.e.target {
				t.Errorf("%s: link target %q (%v), want %q", p, got, err, x.e.target)
			}
		case 'd':
			if fi, err := os.Lstat(local); err != nil || !fi.IsDir() {
				t.Errorf("%s: not a directory after rdump (%v)", p, err)
			}
		}
	}
}

var testTime = time.Date(2024, 5, 17, 12, 30, 45, 123456789, time.UTC)
