package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// localImage is an Image of uncompressed layers put straight into a cache
// (no registry).
func localImage(t testing.TB, layers ...[]byte) *Image {
	t.Helper()
	c := &cache{dir: t.TempDir()}
	img := &Image{Ref: "local", cache: c}
	for _, b := range layers {
		d := sha(b)
		if _, err := c.put(d, int64(len(b)), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		img.layers = append(img.layers, layer{digest: d, size: int64(len(b))})
		img.diffIDs = append(img.diffIDs, d)
	}
	return img
}

func TestUnpackRefuses(t *testing.T) {
	long := strings.Repeat("a/", 2100) + "f"
	cases := []struct {
		name    string
		entries []tarEntry
		opts    UnpackOptions
		want    string
	}{
		{"dot dot", []tarEntry{fileE("a/../../etc/passwd", "x", 0o644)}, UnpackOptions{}, `".." in the path`},
		{"hard link outside", []tarEntry{{name: "l", typ: tar.TypeLink, link: "../../etc/shadow"}}, UnpackOptions{}, `".." in the path`},
		{"hard link to nothing", []tarEntry{{name: "l", typ: tar.TypeLink, link: "etc/shadow"}}, UnpackOptions{}, "not in the image"},
		{"hard link to a directory", []tarEntry{dirE("d/", 0o755), {name: "l", typ: tar.TypeLink, link: "d"}}, UnpackOptions{}, "hard link to the directory"},
		{"hard link through a symlink", []tarEntry{fileE("usr/x", "x", 0o644), {name: "u", typ: tar.TypeSymlink, link: "usr"}, {name: "l", typ: tar.TypeLink, link: "u/x"}}, UnpackOptions{}, "not in the image"},
		{"write through a symlink", []tarEntry{{name: "lib", typ: tar.TypeSymlink, link: "/etc"}, fileE("lib/passwd", "x", 0o644)}, UnpackOptions{}, "/lib is a symlink"},
		{"file under a file", []tarEntry{fileE("a", "x", 0o644), fileE("a/b", "x", 0o644)}, UnpackOptions{}, "/a is not a directory"},
		{"device outside /dev", []tarEntry{{name: "tmp/sda", typ: tar.TypeBlock, mode: 0o600}}, UnpackOptions{}, `"tmp/sda": a device node outside /dev`},
		{"root a file", []tarEntry{fileE(".", "x", 0o644)}, UnpackOptions{}, `".": the root is not a directory`},
		{"root a hard link ./", []tarEntry{fileE("f", "x", 0o644), {name: "./", typ: tar.TypeLink, link: "f"}}, UnpackOptions{}, `"./": the root is not a directory`},
		{"root a hard link /", []tarEntry{fileE("f", "x", 0o644), {name: "/", typ: tar.TypeLink, link: "f"}}, UnpackOptions{}, `"/": the root is not a directory`},
		{"root a hard link .", []tarEntry{fileE("f", "x", 0o644), {name: ".", typ: tar.TypeLink, link: "f"}}, UnpackOptions{}, `".": the root is not a directory`},
		{"root a symlink", []tarEntry{{name: "./", typ: tar.TypeSymlink, link: "/etc"}}, UnpackOptions{}, `"./": the root is not a directory`},
		{"root a fifo", []tarEntry{{name: ".", typ: tar.TypeFifo}}, UnpackOptions{}, `".": the root is not a directory`},
		{"long path", []tarEntry{fileE(long, "x", 0o644)}, UnpackOptions{}, "longer than 4096"},
		{"long name", []tarEntry{fileE(strings.Repeat("n", 256), "x", 0o644)}, UnpackOptions{}, "longer than 255"},
		{"too many entries", []tarEntry{fileE("a", "", 0o644), fileE("b", "", 0o644), fileE("c", "", 0o644)}, UnpackOptions{MaxEntries: 2}, "more than 2 entries"},
		{"implicit parents count", []tarEntry{fileE("a/b/c/d/e/f", "", 0o644)}, UnpackOptions{MaxEntries: 3}, "more than 3 entries"},
		{"too many bytes", []tarEntry{fileE("a", "12345", 0o644), fileE("b", "123456", 0o644)}, UnpackOptions{MaxBytes: 10}, "larger than 10 bytes"},
		{"empty whiteout", []tarEntry{fileE("d/.wh.", "", 0)}, UnpackOptions{}, "whiteout of no name"},
		{"empty symlink", []tarEntry{{name: "s", typ: tar.TypeSymlink}}, UnpackOptions{}, "symlink target empty"},
		{"unknown type", []tarEntry{{name: "c", typ: tar.TypeCont}}, UnpackOptions{}, "not supported"},
		{"huge xattr", []tarEntry{{name: "f", typ: tar.TypeReg, pax: map[string]string{"SCHILY.xattr.user.x": strings.Repeat("v", 70<<10)}}}, UnpackOptions{}, "larger than 65536"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := localImage(t, tarBytes(t, tc.entries...))
			tc.opts.StageDir = t.TempDir()
			r, err := img.Unpack(tc.opts)
			if err == nil {
				r.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "layer 0") {
				t.Errorf("error %q does not say %q and the layer", err, tc.want)
			}
		})
	}
}

func TestUnpackDiffID(t *testing.T) {
	b := tarBytes(t, fileE("a", "x", 0o644))
	img := localImage(t, b)
	img.diffIDs[0] = sha([]byte("other"))
	if _, err := img.Unpack(UnpackOptions{StageDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("diff_id mismatch: %v", err)
	}
}

func TestUnpackZstdAndOrder(t *testing.T) {
	// Whiteouts act on lower layers only, wherever they are in the tar;
	// an entry of the same layer survives its own whiteout.
	l1 := tarBytes(t, fileE("a/x", "1", 0o644), fileE("a/y", "1", 0o644), fileE("b", "1", 0o644))
	l2 := tarBytes(t, fileE("b", "2", 0o644), fileE(".wh.b", "", 0), fileE("a/y", "2", 0o644), fileE("a/.wh..wh..opq", "", 0))
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	zw.Write(l2)
	zw.Close()
	img := localImage(t, l1)
	c := img.cache
	d := sha(z.Bytes())
	if _, err := c.put(d, int64(z.Len()), int64(z.Len()), bytes.NewReader(z.Bytes())); err != nil {
		t.Fatal(err)
	}
	img.layers = append(img.layers, layer{digest: d, size: int64(z.Len())})
	img.diffIDs = append(img.diffIDs, sha(l2))
	r, err := img.Unpack(UnpackOptions{StageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tree := newMapTree()
	if err := r.WriteTo(tree); err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/a", "/a/y", "/b"}
	if got := tree.paths(); !reflect.DeepEqual(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
	if tree.entries["/b"].data != "2" || tree.entries["/a/y"].data != "2" {
		t.Errorf("contents: b %q a/y %q", tree.entries["/b"].data, tree.entries["/a/y"].data)
	}
}

// FuzzUnpack feeds arbitrary layers to the tar walker: it must not panic,
// and whatever it accepts must be a tree a Tree can take (parents first,
// hard links to existing non-directories, sizes as announced).
func FuzzUnpack(f *testing.F) {
	// Small seeds: the mutator works on the whole input.
	f.Add(tarBytes(f, dirE("etc/", 0o755), fileE("etc/passwd", "app:x:1:2::/:/bin/sh\n", 0o644),
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		tarEntry{name: "f", typ: tar.TypeReg, pax: map[string]string{"SCHILY.xattr.security.capability": "v"}}))
	f.Add(tarBytes(f, fileE(".wh.gone", "", 0), fileE("d/.wh..wh..opq", "", 0), tarEntry{name: "dev/x", typ: tar.TypeChar}, tarEntry{name: "p", typ: tar.TypeFifo}))
	f.Add(tarBytes(f, fileE("a/b/c", "x", 0o644), tarEntry{name: "l", typ: tar.TypeLink, link: "a/b/c"}, fileE("a/.wh.b", "", 0)))
	f.Add(tarBytes(f, fileE("f", "x", 0o644), tarEntry{name: "./", typ: tar.TypeLink, link: "f"}))
	// One stage file for every run, and no cache: the walker only.
	stage, err := os.CreateTemp(f.TempDir(), "stage")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := stage.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := stage.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		r, u := newRootfs(&Image{Ref: "fuzz"}, stage, UnpackOptions{MaxBytes: 1 << 20, MaxEntries: 1000})
		if err := u.stream(bytes.NewReader(b), sha(b), sha(b)); err != nil {
			return
		}
		if err := u.w.Flush(); err != nil {
			t.Fatal(err)
		}
		tree := newMapTree()
		if err := r.WriteTo(tree); err != nil {
			t.Fatalf("accepted layer, but WriteTo: %v", err)
		}
		for _, p := range tree.paths() {
			if strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") {
				t.Fatalf("path %q", p)
			}
		}
		if _, err := r.ResolveUser(""); err != nil && !strings.Contains(err.Error(), "the image's") {
			t.Fatalf("ResolveUser: %v", err)
		}
	})
}

func BenchmarkUnpack(b *testing.B) {
	// About 2000 files, 40 MiB, in two layers.
	var e1, e2 []tarEntry
	body := strings.Repeat("0123456789abcdef", 1<<10) // 16 KiB
	for i := range 2000 {
		e := fileE(fmt.Sprintf("usr/lib/d%02d/f%04d", i%50, i), body+fmt.Sprint(i), 0o644)
		if i%2 == 0 {
			e1 = append(e1, e)
		} else {
			e2 = append(e2, e)
		}
	}
	img := localImage(b, tarBytes(b, e1...), tarBytes(b, e2...))
	stage := b.TempDir()
	b.ResetTimer()
	for b.Loop() {
		r, err := img.Unpack(UnpackOptions{StageDir: stage})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.WriteTo(discardTree{}); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// discardTree reads every file, as ext4fs would.
type discardTree struct{}

type fsMode = fs.FileMode

func (discardTree) Mkdir(string, fsMode, uint32, uint32) error { return nil }
func (discardTree) AddFile(_ string, _ fsMode, _, _ uint32, _ int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}
func (discardTree) Symlink(string, string, uint32, uint32) error               { return nil }
func (discardTree) Link(string, string) error                                  { return nil }
func (discardTree) Mknod(string, fsMode, uint32, uint32, uint32, uint32) error { return nil }
func (discardTree) SetXattr(string, string, []byte) error                      { return nil }

func TestAddMountPointsParentNotADirectory(t *testing.T) {
	cases := []struct {
		name    string
		entries []tarEntry
		mp      MountPoint
		want    string // "" for no error
	}{
		{"symlinked parent", []tarEntry{dirE("run/", 0o755), {name: "var/run", typ: tar.TypeSymlink, link: "/run"}}, MountPoint{Path: "/var/run/x", Dir: true},
			"mount point /var/run/x: /var/run is a symlink (to /run) in the image, not a directory"},
		{"file parent", []tarEntry{fileE("opt", "x", 0o644)}, MountPoint{Path: "/opt/data/v", Dir: true},
			"mount point /opt/data/v: /opt is not a directory in the image"},
		{"missing parents", []tarEntry{fileE("etc/passwd", "x", 0o644)}, MountPoint{Path: "/var/lib/data", Dir: true}, ""},
		{"symlinked mount point itself", []tarEntry{{name: "data", typ: tar.TypeSymlink, link: "/tmp"}}, MountPoint{Path: "/data", Dir: true}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := localImage(t, tarBytes(t, tc.entries...))
			r, err := img.Unpack(UnpackOptions{StageDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = r.AddMountPoints([]MountPoint{tc.mp})
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.want != "" {
				return
			}
			tree := newMapTree()
			if err := r.WriteTo(tree); err != nil {
				t.Fatal(err)
			}
			if e := tree.entries[tc.mp.Path]; e == nil || e.kind != "dir" {
				t.Errorf("%s is %+v, want a dir", tc.mp.Path, e)
			}
		})
	}
}
