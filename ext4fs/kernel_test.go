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
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountImage loop-mounts img (as root). Without root or loop devices the
// test is skipped, unless CI is set.
func mountImage(t *testing.T, img string, opts string) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		skip("kernel mount needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skip("no loop devices: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,"+opts, img, dir).CombinedOutput()
	if err != nil {
		skip("mount -o loop,%s: %v\n%s", opts, err, out)
	}
	t.Cleanup(func() { unmount(t, dir, img) })
	return dir
}

// unmount unmounts dir and waits until the loop device has let go of img:
// umount(2) can return while the filesystem is still being released (when
// another mount namespace saw the mount), and checking or remounting the
// image before that sees a filesystem still in use.
func unmount(t *testing.T, dir, img string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil && err != unix.EINVAL {
		t.Errorf("umount %s: %v", dir, err)
		return
	}
	abs, err := filepath.Abs(img)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := ""
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == abs {
				busy = f
			}
		}
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still attached (%s) 30s after umount", img, busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sumFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestKernelMount mounts an image read-only and compares every path with
// the content set as the kernel sees it.
func TestKernelMount(t *testing.T) {
	opts := Options{Size: 256 * mib, Time: testTime, JournalBlocks: 1024, UUID: [16]byte{1}}
	entries := append(mixed(), manyFiles()...)
	entries = append(entries, entry{path: "/big", kind: 'd', mode: 0o755})
	for i := range 600 {
		entries = append(entries, entry{path: fmt.Sprintf("/big/entry-%04d", i), kind: 'f', mode: 0o644, size: int64(i), seed: byte(i)})
	}
	entries = append(entries, entry{path: "/large", kind: 'f', mode: 0o644, size: 140 * mib, seed: 42})
	img := writeImage(t, build(t, opts, entries, false), opts.Size)
	fsck(t, img)
	dir := mountImage(t, img, "ro")

	want := expectations(entries)
	seen := map[*expected]uint64{}
	count := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		x, ok := want[rel]
		if !ok {
			t.Errorf("unexpected path %s", rel)
			return nil
		}
		count++
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := x.e
		wantPerm := uint32(unixPerm(e.mode))
		if e.kind == 'l' {
			wantPerm = 0o777
		}
		if st.Mode&0o7777 != wantPerm || st.Uid != e.uid || st.Gid != e.gid {
			t.Errorf("%s: mode %04o owner %d:%d, want %04o %d:%d", rel, st.Mode&0o7777, st.Uid, st.Gid, wantPerm, e.uid, e.gid)
		}
		if !fi.ModTime().Equal(testTime) || st.Ctim.Nano() != testTime.UnixNano() || st.Atim.Nano() != testTime.UnixNano() {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime(), testTime)
		}
		wantLinks := uint64(x.links)
		if e.kind == 'd' {
			wantLinks = uint64(2 + x.nsub)
		}
		if uint64(st.Nlink) != wantLinks {
			t.Errorf("%s: %d links, want %d", rel, st.Nlink, wantLinks)
		}
		if ino, ok := seen[x]; ok && ino != st.Ino {
			t.Errorf("%s: inode %d, want %d (hard link)", rel, st.Ino, ino)
		}
		seen[x] = st.Ino
		switch e.kind {
		case 'd':
			if !fi.IsDir() {
				t.Errorf("%s: not a directory", rel)
			}
		case 'f':
			if !fi.Mode().IsRegular() || fi.Size() != e.size {
				t.Errorf("%s: mode %v size %d, want regular of %d", rel, fi.Mode(), fi.Size(), e.size)
			} else if got, err := sumFile(p); err != nil || got != patternSum(e.seed, e.size) {
				t.Errorf("%s: content differs (%v)", rel, err)
			}
		case 'l':
			if got, err := os.Readlink(p); err != nil || got != e.target {
				t.Errorf("%s: target %q (%v), want %q", rel, got, err, e.target)
			}
		case 'n':
			if fi.Mode().Type() != e.mode.Type() {
				t.Errorf("%s: type %v, want %v", rel, fi.Mode().Type(), e.mode.Type())
			}
			if e.mode&fs.ModeDevice != 0 && (unix.Major(st.Rdev) != e.major || unix.Minor(st.Rdev) != e.minor) {
				t.Errorf("%s: device %d:%d, want %d:%d", rel, unix.Major(st.Rdev), unix.Minor(st.Rdev), e.major, e.minor)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != len(want) {
		t.Errorf("saw %d paths, want %d", count, len(want))
	}
}

// TestKernelWritable formats an empty journaled filesystem, as slate's
// init does for STATE, uses it read-write and checks it afterwards.
func TestKernelWritable(t *testing.T) {
	for _, c := range []struct{ bs, journal int }{
		{4096, -1},
		{1024, -1},
		// 64 MiB over 8 MiB groups: the journal inode needs an extent
		// tree block.
		{1024, 65536},
	} {
		t.Run(fmt.Sprintf("bs%d-journal%d", c.bs, c.journal), func(t *testing.T) {
			opts := Options{Size: 1 * gib, BlockSize: c.bs, JournalBlocks: c.journal, Label: "STATE", Time: testTime}
			f, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			img := writeImage(t, f, opts.Size)
			fsck(t, img)
			dir := mountImage(t, img, "rw")
			for i := range 300 {
				sub := filepath.Join(dir, fmt.Sprintf("dir%d", i%7))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), []byte(strings.Repeat("x", i*100)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Enough data to spread over several block groups.
			big, err := os.Create(filepath.Join(dir, "big"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(big, &pattern{seed: 3, size: 300 * mib}); err != nil {
				t.Fatal(err)
			}
			if err := big.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("dir0/f0", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "dir1", "f1")); err != nil {
				t.Fatal(err)
			}
			unmount(t, dir, img)
			fsck(t, img)

			dir = mountImage(t, img, "ro")
			if got, err := sumFile(filepath.Join(dir, "big")); err != nil || got != patternSum(3, 300*mib) {
				t.Errorf("big file after remount: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "dir6", "f300")); err == nil {
				t.Errorf("unexpected file")
			}
			if b, err := os.ReadFile(filepath.Join(dir, "dir6", "f293")); err != nil || len(b) != 29300 {
				t.Errorf("dir6/f293: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestKernelTimes checks the timestamp encoding (epoch bits, nanoseconds)
// against the kernel's reading of it.
func TestKernelTimes(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1930, 1, 2, 3, 4, 5, 6, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 999999999, time.UTC),
		time.Date(2240, 6, 7, 8, 9, 10, 11, time.UTC),
	} {
		t.Run(tm.Format("2006"), func(t *testing.T) {
			opts := Options{Size: 16 * mib, Time: tm}
			f, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.AddFile("/f", 0o644, 0, 0, 0, nil); err != nil {
				t.Fatal(err)
			}
			img := writeImage(t, f, opts.Size)
			if tm.Before(time.Now()) {
				// e2fsck rightly complains about a superblock
				// written in the future.
				fsck(t, img)
			}
			dir := mountImage(t, img, "ro")
			for _, p := range []string{dir, filepath.Join(dir, "f")} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if !fi.ModTime().Equal(tm) {
					t.Errorf("%s: mtime %v, want %v", p, fi.ModTime().UTC(), tm)
				}
			}
		})
	}
}

// kernelXattrs lists and reads p's attributes through the kernel.
func kernelXattrs(t *testing.T, p string) map[string][]byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", p, err)
	}
	got := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vn, err := unix.Lgetxattr(p, name, buf)
		if err != nil {
			t.Errorf("lgetxattr %s %s: %v", p, name, err)
			continue
		}
		got[name] = bytes.Clone(buf[:vn])
	}
	return got
}

// TestKernelXattrs reads attributes in the inode, in private and in shared
// blocks through the kernel, then changes some on a writable mount (the
// kernel unshares a shared block and drops its reference) and checks the
// result with e2fsck.
func TestKernelXattrs(t *testing.T) {
	big := bytes.Repeat([]byte("kernel!!"), 100)
	want := xattrSet{
		"/":              {"trusted.overlay.opaque": []byte("y")},
		"/bin/ping":      {"security.capability": capV2(capNetRaw)},
		"/data/labelled": {"user.a": []byte("1"), "user.b": big[:300], "trusted.c": nil},
		"/data/acl":      {"system.posix_acl_access": testACL},
		"/data/null":     {"trusted.dev": []byte("null")},
	}
	for i := range 20 {
		want[fmt.Sprintf("/data/same-%02d", i)] = map[string][]byte{"user.shared": big}
	}
	opts := Options{Size: 64 * mib, Time: testTime, JournalBlocks: 1024}
	f := xattrTree(t, opts)
	setAll(t, f, want)
	img := writeImage(t, f, opts.Size)
	fsck(t, img)

	check := func(dir string, want xattrSet) {
		t.Helper()
		for p, w := range want {
			got := kernelXattrs(t, filepath.Join(dir, p))
			if len(got) != len(w) {
				t.Errorf("%s: kernel lists %d attributes, want %d", p, len(got), len(w))
			}
			for n, v := range w {
				g, ok := got[n]
				if isACL(n) {
					g, v = aclCanon(g), aclCanon(v)
				}
				if !ok || !bytes.Equal(g, v) {
					t.Errorf("%s %s: kernel reads %x (%v), want %x", p, n, g, ok, v)
				}
			}
		}
	}
	dir := mountImage(t, img, "ro")
	check(dir, want)
	unmount(t, dir, img)

	dir = mountImage(t, img, "rw")
	for _, c := range []struct {
		path, name string
		value      []byte
	}{
		{"/data/same-03", "user.shared", []byte("changed")},
		{"/data/same-04", "user.more", big[:100]},
		{"/bin/ping", "user.note", big[:60]},
	} {
		if err := unix.Lsetxattr(filepath.Join(dir, c.path), c.name, c.value, 0); err != nil {
			t.Fatalf("setxattr %s %s: %v", c.path, c.name, err)
		}
		want[c.path][c.name] = c.value
	}
	if err := unix.Lremovexattr(filepath.Join(dir, "/data/same-05"), "user.shared"); err != nil {
		t.Fatal(err)
	}
	delete(want["/data/same-05"], "user.shared")
	unmount(t, dir, img)
	fsck(t, img)
	dir = mountImage(t, img, "ro")
	check(dir, want)
}
