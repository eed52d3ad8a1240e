package oci

import (
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/ext4fs"
)

// ext4Tree is the adapter the builder writes: an ext4fs.FS under the
// bundle's rootfs. ext4fs has no extended attributes yet, so they are
// only recorded here.
type ext4Tree struct {
	fs     *ext4fs.FS
	prefix string
	xattrs map[string]string
}

func (e *ext4Tree) p(p string) string { return path.Join(e.prefix, p) }

func (e *ext4Tree) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	return e.fs.Mkdir(e.p(p), perm, uid, gid)
}

func (e *ext4Tree) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	return e.fs.AddFile(e.p(p), perm, uid, gid, size, open)
}

func (e *ext4Tree) Symlink(p, target string, uid, gid uint32) error {
	return e.fs.Symlink(e.p(p), target, uid, gid)
}
func (e *ext4Tree) Link(p, existing string) error { return e.fs.Link(e.p(p), e.p(existing)) }
func (e *ext4Tree) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	return e.fs.Mknod(e.p(p), mode, major, minor, uid, gid)
}

func (e *ext4Tree) SetXattr(p, name string, value []byte) error {
	e.xattrs[p+" "+name] = string(value)
	return nil
}

// TestIntoExt4 writes a pulled image into an ext4 filesystem the way the
// builder will, and checks it with e2fsck and debugfs.
func TestIntoExt4(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a filesystem image")
	}
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	reg := newRegistry(t)
	img, _ := sampleImage(t)
	reg.push(t, "app", "v1", img)
	got, err := Pull(context.Background(), reg.host()+"/app:v1", PullOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	root, err := got.Unpack(UnpackOptions{StageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := ext4fs.New(ext4fs.Options{Size: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "/usr/lib/slate/containers/app/rootfs"
	if err := f.Mkdir(prefix, 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	u, err := root.ResolveUser("")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := RuntimeSpec(bridgeContainer(), got.Config, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.AddMountPoints(MountPoints(spec)); err != nil {
		t.Fatal(err)
	}
	tree := &ext4Tree{fs: f, prefix: prefix, xattrs: map[string]string{}}
	if err := root.WriteTo(tree); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "root.img")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteTo(w, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if o, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, o)
	}
	run := func(cmd string) string {
		o, err := exec.Command("debugfs", "-R", cmd, out).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", cmd, err, o)
		}
		return string(o)
	}
	if o := run("cat " + prefix + "/bin/hello"); !strings.Contains(o, "hello v2") {
		t.Errorf("bin/hello: %q", o)
	}
	if o := run("stat " + prefix + "/usr/bin/hello2"); !strings.Contains(o, "Links: 2") {
		t.Errorf("hello2 is not a hard link pair: %s", o)
	}
	if o := run("stat " + prefix + "/usr/bin/su"); !strings.Contains(o, "Mode:  04755") {
		t.Errorf("su lost setuid: %s", o)
	}
	if o := run("stat " + prefix + "/home/app"); !strings.Contains(o, "User:  1000") {
		t.Errorf("home/app owner: %s", o)
	}
	for _, mp := range []string{"/proc", "/dev", "/sys", "/tmp", "/etc/resolv.conf", "/var/lib/web", "/etc/web"} {
		if o := run("stat " + prefix + mp); strings.Contains(o, "File not found") {
			t.Errorf("mount point %s missing", mp)
		}
	}
	if tree.xattrs["/usr/bin/ping security.capability"] != capValue {
		t.Errorf("capability not passed: %v", tree.xattrs)
	}
}
