package ignition

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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

// openTree opens root. A root folder other than "/" goes through os.Root so
// that no name, "..", or symbolic link in it reaches outside. For "/" there
// is nothing outside to protect, and os.Root would refuse to follow the
// absolute symbolic links a real system has, so plain calls are used.
func openTree(root string) (tree, func() error, error) {
	if filepath.Clean(root) == "/" {
		return hostTree{}, func() error { return nil }, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, nil, err
	}
	return r, r.Close, nil
}

// hostTree is the machine's own root; base is "" there (tests set it to
// a folder to run the same code).
type hostTree struct{ base string }

func (h hostTree) Lstat(n string) (fs.FileInfo, error) { return os.Lstat(h.abs(n)) }
func (h hostTree) Open(n string) (*os.File, error)     { return os.Open(h.abs(n)) }
func (h hostTree) OpenFile(n string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(h.abs(n), flag, perm)
}
func (h hostTree) ReadFile(n string) ([]byte, error)         { return os.ReadFile(h.abs(n)) }
func (h hostTree) Mkdir(n string, perm os.FileMode) error    { return os.Mkdir(h.abs(n), perm) }
func (h hostTree) MkdirAll(n string, perm os.FileMode) error { return os.MkdirAll(h.abs(n), perm) }
func (h hostTree) Chmod(n string, mode os.FileMode) error    { return os.Chmod(h.abs(n), mode) }
func (h hostTree) Chown(n string, uid, gid int) error        { return os.Chown(h.abs(n), uid, gid) }
func (h hostTree) Lchown(n string, uid, gid int) error       { return os.Lchown(h.abs(n), uid, gid) }
func (h hostTree) Rename(o, n string) error                  { return os.Rename(h.abs(o), h.abs(n)) }
func (h hostTree) Remove(n string) error                     { return os.Remove(h.abs(n)) }
func (h hostTree) RemoveAll(n string) error                  { return os.RemoveAll(h.abs(n)) }
func (h hostTree) Symlink(target, n string) error            { return os.Symlink(target, h.abs(n)) }
func (h hostTree) Link(o, n string) error                    { return os.Link(h.abs(o), h.abs(n)) }
func (h hostTree) Readlink(n string) (string, error)         { return os.Readlink(h.abs(n)) }

func (h hostTree) abs(name string) string { return h.base + "/" + name }

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
