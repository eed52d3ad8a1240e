package fatfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// editor applies edits to an image file and tracks the expected tree.
type editor struct {
	t    *testing.T
	img  string
	size int64
	want map[string][]byte
}

func (e *editor) open() (*FS, *os.File) {
	e.t.Helper()
	f, err := os.OpenFile(e.img, os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	fsys, err := Open(f, 0, e.size)
	if err != nil {
		e.t.Fatal(err)
	}
	return fsys, f
}

// check runs fsck.vfat, mtools and the reader over the image.
func (e *editor) check(step string) {
	e.t.Helper()
	e.t.Logf("check after %s", step)
	fsck(e.t, e.img, 0, e.size)
	sameTree(e.t, step+": mcopy", asMtools(e.want), mcopyTree(e.t, e.img, 0))
	fsys, f := e.open()
	defer f.Close()
	sameTree(e.t, step+": Open", e.want, walkFS(e.t, fsys))
}

func (e *editor) do(step string, op func(f *FS) error) {
	e.t.Helper()
	fsys, f := e.open()
	defer f.Close()
	if err := op(fsys); err != nil {
		e.t.Fatalf("%s: %v", step, err)
	}
}

func (e *editor) writeFile(name string, data []byte) {
	e.t.Helper()
	e.do("WriteFile "+name, func(f *FS) error { return f.WriteFile(name, data, testTime) })
	e.want[name] = data
}

func (e *editor) rename(from, to string) {
	e.t.Helper()
	e.do("Rename "+from, func(f *FS) error { return f.Rename(from, to) })
	for k, v := range e.want {
		if k == from || strings.HasPrefix(k, from+"/") {
			delete(e.want, k)
			e.want[to+strings.TrimPrefix(k, from)] = v
		}
	}
}

func (e *editor) remove(name string) {
	e.t.Helper()
	e.do("Remove "+name, func(f *FS) error { return f.Remove(name) })
	delete(e.want, name)
	delete(e.want, name+"/")
}

func (e *editor) mkdir(name string) {
	e.t.Helper()
	e.do("Mkdir "+name, func(f *FS) error { return f.Mkdir(name, testTime) })
	e.want[name+"/"] = nil
}

func TestEdit(t *testing.T) {
	for _, size := range []int64{33 * mib, 300 * mib} {
		t.Run(fmt.Sprintf("%dMiB", size/mib), func(t *testing.T) {
			c := espSet()
			img := writeImage(t, t.TempDir(), Options{Size: size, Label: "ESP", Time: testTime}, c, 0)
			e := &editor{t: t, img: img, size: size, want: c.expected()}

			// An update of slot b, as the updater does it.
			e.writeFile("slate/b/vmlinuz", patternBytes(20, 8*mib+1))
			e.writeFile("slate/b/initrd.img", patternBytes(21, 6*mib-3))
			e.writeFile("loader/entries/slate-2.0.0-b+3.conf", patternBytes(22, 200))
			e.check("slot b written")
			e.rename("loader/entries/slate-2.0.0-b+3.conf", "loader/entries/slate-2.0.0-b+2-1.conf")
			e.rename("loader/entries/slate-2.0.0-b+2-1.conf", "loader/entries/slate-2.0.0-b.conf")
			e.remove("loader/entries/slate-0.9.0-b.conf")
			e.check("blessed")

			// Replace content, smaller and larger, and empty.
			e.writeFile("loader/loader.conf", patternBytes(23, 1500))
			e.writeFile("slate/a/vmlinuz", patternBytes(24, 100))
			e.writeFile("slate/a/cmdline", patternBytes(25, 10))
			e.writeFile("EFI/BOOT/BOOTX64.EFI", nil)
			// Case-only rename, and rename over an existing file.
			e.rename("loader/loader.conf", "loader/Loader.conf")
			e.writeFile("tmp.conf", patternBytes(26, 42))
			e.remove("loader/Loader.conf")
			e.rename("tmp.conf", "loader/loader.conf")
			e.writeFile("tmp2.conf", patternBytes(27, 43))
			e.do("Rename over a file", func(f *FS) error { return f.Rename("tmp2.conf", "loader/loader.conf") })
			delete(e.want, "tmp2.conf")
			e.want["loader/loader.conf"] = patternBytes(27, 43)
			e.check("replaced")

			// Folders: create, fill, move across parents (".." changes),
			// remove.
			e.mkdir("x")
			e.mkdir("x/y")
			e.writeFile("x/y/deep file.txt", patternBytes(28, 5000))
			e.rename("x", "slate/a/x")
			e.rename("slate/a/x/y", "y")
			e.check("folders moved")
			e.remove("y/deep file.txt")
			e.remove("y")

			// Grow a folder over several clusters, then punch holes and
			// fill them again.
			for i := range 120 {
				e.writeFile(fmt.Sprintf("loader/entries/slate-%d.%d.0-a+3.conf", i, i*7), patternBytes(byte(i), int64(i*13)))
			}
			for i := 0; i < 120; i += 2 {
				e.remove(fmt.Sprintf("loader/entries/slate-%d.%d.0-a+3.conf", i, i*7))
			}
			for i := range 30 {
				e.writeFile(fmt.Sprintf("loader/entries/new-entry-%02d.conf", i), patternBytes(byte(i), 77))
			}
			e.check("folder grown")

			// Errors leave the filesystem as it was.
			fsys, f := e.open()
			for _, tt := range []struct {
				name string
				err  error
				want string
			}{
				{"move into itself", fsys.Rename("slate", "slate/a/slate"), "into itself"},
				{"move onto a folder", fsys.Rename("loader/loader.conf", "slate"), "exists"},
				{"remove non-empty", fsys.Remove("slate"), "not empty"},
				{"write onto a folder", fsys.WriteFile("slate", []byte("x"), testTime), "is a folder"},
				{"no parent", fsys.WriteFile("nope/file", []byte("x"), testTime), "not exist"},
				{"mkdir exists", fsys.Mkdir("slate", testTime), "exists"},
				{"bad name", fsys.WriteFile("a:b", []byte("x"), testTime), "not allowed"},
				{"remove missing", fsys.Remove("nope"), "not exist"},
				{"no space", fsys.WriteFile("big", make([]byte, size), testTime), "no space"},
			} {
				if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
					t.Errorf("%s: %v, want an error containing %q", tt.name, tt.err, tt.want)
				}
			}
			f.Close()
			e.check("errors")
		})
	}
}

// TestEditReadOnly refuses edits over a plain io.ReaderAt.
func TestEditReadOnly(t *testing.T) {
	m := memImage(t, 33*mib, emptySet())
	fsys, err := Open(readerOnly{m}, 0, int64(len(m)))
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile("x", nil, testTime); !errors.Is(err, errNotWritable) {
		t.Fatalf("WriteFile: %v", err)
	}
}

type readerOnly struct{ m memDisk }

func (r readerOnly) ReadAt(p []byte, off int64) (int, error) { return r.m.ReadAt(p, off) }

// TestForeign reads and edits filesystems made by mkfs.fat and mtools.
func TestForeign(t *testing.T) {
	mkfs := needTool(t, "mkfs.fat")
	mcopy := needTool(t, "mcopy")
	for _, size := range []int64{40 * mib, 600 * mib} {
		t.Run(fmt.Sprintf("%dMiB", size/mib), func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, size); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(mkfs, "-F", "32", "-n", "MKFS", img).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.fat: %v\n%s", err, out)
			}
			src := filepath.Join(dir, "src")
			os.MkdirAll(filepath.Join(src, "EFI", "Boot"), 0o755)
			want := map[string][]byte{"EFI/": nil, "EFI/Boot/": nil}
			for i, n := range []string{"EFI/Boot/bootx64.efi", "EFI/Boot/A Long Name.txt", "EFI/Boot/UPPER.TXT", "EFI/Boot/lower.txt"} {
				data := patternBytes(byte(i), int64(i*7000+1))
				os.WriteFile(filepath.Join(src, n), data, 0o644)
				want[n] = data
			}
			cmd := exec.Command(mcopy, "-s", "-i", img, filepath.Join(src, "EFI"), "::/")
			cmd.Env = mtoolsEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mcopy: %v\n%s", err, out)
			}
			e := &editor{t: t, img: img, size: size, want: want}
			fsys, f := e.open()
			if fsys.Label() != "MKFS" {
				t.Errorf("Label() = %q", fsys.Label())
			}
			sameTree(t, "Open", want, walkFS(t, fsys))
			if _, err := fsys.Stat("EFI/BOOT/LOWER.TXT"); err != nil {
				t.Errorf("case-insensitive Stat: %v", err)
			}
			f.Close()
			e.mkdir("loader")
			e.writeFile("loader/loader.conf", patternBytes(9, 300))
			e.rename("EFI/Boot/A Long Name.txt", "EFI/Boot/another long name.txt")
			e.remove("EFI/Boot/UPPER.TXT")
			e.check("edited")
		})
	}
}

var _ fs.ReadDirFS = (*FS)(nil)
