package ignition

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// tree is the target root Apply writes into. Names are slash-separated and
// relative to the root ("etc/passwd").
type tree interface {
	Lstat(name string) (fs.FileInfo, error)
	Open(name string) (*os.File, error)
	OpenFile(name string, flag int, perm os.FileMode) (*os.File, error)
	ReadFile(name string) ([]byte, error)
	Mkdir(name string, perm os.FileMode) error
	MkdirAll(name string, perm os.FileMode) error
	Chmod(name string, mode os.FileMode) error
	Chown(name string, uid, gid int) error
	Lchown(name string, uid, gid int) error
	Rename(oldname, newname string) error
	Remove(name string) error
	RemoveAll(name string) error
	Symlink(oldname, newname string) error
	Link(oldname, newname string) error
	Readlink(name string) (string, error)
}

// openTree opens root as a prefixTree. A root folder other than "/" is
// opened through os.Root, so that not even a writable top folder may be a
// link out of it; on "/" the top folders are the system's own (one may be
// a link the image made) and are opened as they are.
func openTree(root string) (tree, func() error, error) {
	if filepath.Clean(root) == "/" {
		t := &prefixTree{base: "/"}
		return t, t.Close, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, nil, err
	}
	t := &prefixTree{base: root, outer: r}
	return t, t.Close, nil
}

// prefixTree is the target root as one os.Root per writable top folder
// (/etc, /var, ...): every name is resolved beneath its top folder, as
// openat2's RESOLVE_BENEATH does, so a link that exists already (made by
// the image, an earlier boot or the config itself) can never lead a write
// out of the writable layer, to another top folder or onto the read-only
// root. A link that stays beneath its top folder is followed, as
// Ignition follows links inside its root.
type prefixTree struct {
	base  string
	outer *os.Root // nil: base is "/"
	roots map[string]*os.Root
}

func (t *prefixTree) Close() error {
	for _, r := range t.roots {
		r.Close()
	}
	if t.outer != nil {
		return t.outer.Close()
	}
	return nil
}

// split returns the root of name's top folder and the name beneath it
// ("." for the folder itself), creating the top folder when missing.
func (t *prefixTree) split(name string) (*os.Root, string, error) {
	top, rest, _ := strings.Cut(path.Clean(name), "/")
	if !isPrefixRoot("/" + top) {
		return nil, "", fmt.Errorf("/%s is outside the writable layer (%s)", name, strings.Join(WritablePrefixes, ", "))
	}
	if rest == "" {
		rest = "."
	}
	if r := t.roots[top]; r != nil {
		return r, rest, nil
	}
	var r *os.Root
	var err error
	if t.outer != nil {
		if err = t.outer.Mkdir(top, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, "", err
		}
		r, err = t.outer.OpenRoot(top)
	} else {
		dir := filepath.Join(t.base, top)
		if err = os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, "", err
		}
		r, err = os.OpenRoot(dir)
	}
	if err != nil {
		return nil, "", err
	}
	if t.roots == nil {
		t.roots = map[string]*os.Root{}
	}
	t.roots[top] = r
	return r, rest, nil
}

func (t *prefixTree) Lstat(n string) (fs.FileInfo, error) {
	r, n, err := t.split(n)
	if err != nil {
		return nil, err
	}
	return r.Lstat(n)
}

func (t *prefixTree) Open(n string) (*os.File, error) {
	r, n, err := t.split(n)
	if err != nil {
		return nil, err
	}
	return r.Open(n)
}

func (t *prefixTree) OpenFile(n string, flag int, perm os.FileMode) (*os.File, error) {
	r, n, err := t.split(n)
	if err != nil {
		return nil, err
	}
	return r.OpenFile(n, flag, perm)
}

func (t *prefixTree) ReadFile(n string) ([]byte, error) {
	r, n, err := t.split(n)
	if err != nil {
		return nil, err
	}
	return r.ReadFile(n)
}

func (t *prefixTree) Mkdir(n string, perm os.FileMode) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Mkdir(n, perm)
}

func (t *prefixTree) MkdirAll(n string, perm os.FileMode) error {
	r, n, err := t.split(n)
	if err != nil || n == "." {
		return err
	}
	return r.MkdirAll(n, perm)
}

func (t *prefixTree) Chmod(n string, mode os.FileMode) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Chmod(n, mode)
}

func (t *prefixTree) Chown(n string, uid, gid int) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Chown(n, uid, gid)
}

func (t *prefixTree) Lchown(n string, uid, gid int) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Lchown(n, uid, gid)
}

func (t *prefixTree) Rename(o, n string) error {
	ro, o, err := t.split(o)
	if err != nil {
		return err
	}
	rn, n, err := t.split(n)
	if err != nil {
		return err
	}
	if ro != rn {
		return fmt.Errorf("rename of %s across top folders", o)
	}
	return ro.Rename(o, n)
}

func (t *prefixTree) Remove(n string) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Remove(n)
}

func (t *prefixTree) RemoveAll(n string) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	if n == "." {
		return errors.New("refusing to remove a top folder of the writable layer")
	}
	return r.RemoveAll(n)
}

func (t *prefixTree) Symlink(target, n string) error {
	r, n, err := t.split(n)
	if err != nil {
		return err
	}
	return r.Symlink(target, n)
}

func (t *prefixTree) Link(o, n string) error {
	ro, o2, err := t.split(o)
	if err != nil {
		return err
	}
	rn, n2, err := t.split(n)
	if err != nil {
		return err
	}
	if ro == rn {
		return ro.Link(o2, n2)
	}
	// Across top folders: both ends are opened beneath their own folder,
	// then linked by descriptor (the kernel refuses it with EXDEV when
	// they are different filesystems, as /etc's overlay and /var are on a
	// machine).
	src, err := ro.Open(o2)
	if err != nil {
		return err
	}
	defer src.Close()
	dir, err := rn.Open(path.Dir(n2))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", src.Fd()), int(dir.Fd()), path.Base(n2), unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: "/" + o, New: "/" + n, Err: err}
	}
	return nil
}

func (t *prefixTree) Readlink(n string) (string, error) {
	r, n, err := t.split(n)
	if err != nil {
		return "", err
	}
	return r.Readlink(n)
}

// rel turns a cleaned absolute config path into a tree name.
func rel(p string) string {
	return strings.TrimPrefix(path.Clean(p), "/")
}

// tempName returns an unused name next to name for a file that is renamed
// over it once complete.
func tempName(t tree, name string) (string, error) {
	var b [6]byte
	for range 10 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		n := path.Join(path.Dir(name), "."+path.Base(name)+".slate-"+hex.EncodeToString(b[:]))
		if _, err := t.Lstat(n); errors.Is(err, fs.ErrNotExist) {
			return n, nil
		}
	}
	return "", errors.New("no free temporary name")
}

// writeAtomic replaces name with data, mode and owner, through a temporary
// file in the same folder and a rename.
func writeAtomic(t tree, name string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := t.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	tmp, err := tempName(t, name)
	if err != nil {
		return err
	}
	f, err := t.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.Chown(tmp, uid, gid)
	}
	if err == nil { // after chown, which clears setuid and setgid bits
		err = t.Chmod(tmp, mode)
	}
	if err == nil {
		err = t.Rename(tmp, name)
	}
	if err != nil {
		t.Remove(tmp)
	}
	return err
}
