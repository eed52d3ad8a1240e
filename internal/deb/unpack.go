package deb

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	debfile "pault.ag/go/debian/deb"
)

// Tree receives the unpacked packages. Its method set is internal/oci's
// Tree, so the builder's adapter to ext4fs serves both.
type Tree interface {
	Mkdir(p string, perm fs.FileMode, uid, gid uint32) error
	AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error
	Symlink(p, target string, uid, gid uint32) error
	Link(p, existing string) error
	Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error
	SetXattr(p, name string, value []byte) error
}

// MaxUnpacked bounds the bytes of all unpacked files together (they are
// held in memory until WriteTo).
const MaxUnpacked = 4 << 30

// usrMerged are the top-level folders that Debian's merged-/usr layout
// (usrmerge) moves under /usr.
var usrMerged = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// MergeUsr maps an absolute, clean path into the merged-/usr layout:
// /bin/sh is /usr/bin/sh.
func MergeUsr(p string) string { return mergeUsr(p) }

// UsrMerged are the top-level folders that are links into /usr in a
// merged-/usr root.
func UsrMerged() []string { return slices.Clone(usrMerged) }

// mergeUsr maps an absolute, clean path into the merged-/usr layout.
func mergeUsr(p string) string {
	rest := strings.TrimPrefix(p, "/")
	top, _, _ := strings.Cut(rest, "/")
	if slices.Contains(usrMerged, top) {
		return "/usr/" + rest
	}
	return p
}

// SlateOwned says whether p (merged layout) belongs to slate: a package
// may not put a file there. "" when p is free.
func SlateOwned(p string) string {
	switch {
	case p == "/usr/lib/slate" || strings.HasPrefix(p, "/usr/lib/slate/"):
		return "/usr/lib/slate holds slate's image description and keys"
	case p == "/usr/bin/slate":
		return "slate's own binary"
	case p == "/usr/sbin/init" || p == "/sbin/init":
		return "PID 1 is slate"
	case p == "/var" || strings.HasPrefix(p, "/var/"):
		return "STATE is mounted on /var"
	case p == "/usr/lib/modules" || strings.HasPrefix(p, "/usr/lib/modules/") || strings.HasPrefix(p, "/lib/modules/"):
		return "the kernel's modules come from the spec's kernel"
	case p == "/etc/passwd" || p == "/etc/group" || p == "/etc/shadow" || p == "/etc/gshadow":
		return "slate writes the account files from the spec"
	}
	for _, m := range []string{"/proc", "/sys", "/dev", "/run", "/tmp"} {
		if p == m || strings.HasPrefix(p, m+"/") {
			return m + " is a mount point"
		}
	}
	return ""
}

type node struct {
	hdr  tar.Header
	data []byte
	pkg  string
}

// Unpacked is the merged content of several packages' data archives.
type Unpacked struct {
	nodes    map[string]*node
	Warnings []string
	size     int64
	dropped  map[string]bool
}

// Unpack reads the data archive of each .deb (named by its package in
// names, same order as paths) into one tree. Packages are taken in name
// order; a file in two packages is the later one's, with a warning (dpkg
// would refuse the second package; slate builds the root from a lock
// whose closure apt agreed to, so the overlap is nearly always a moved
// file, see Replaces). A file in a place slate owns is an error naming
// the package and the path; an empty directory there is dropped with a
// warning (nothing would be hidden by it but its own emptiness).
func Unpack(names, paths []string) (*Unpacked, error) {
	if len(names) != len(paths) {
		return nil, errors.New("unpack: names and paths differ in length")
	}
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	u := &Unpacked{nodes: map[string]*node{}, dropped: map[string]bool{}}
	for _, i := range order {
		if err := u.add(names[i], paths[i]); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (u *Unpacked) add(pkg, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := debfile.Load(f, file)
	if err != nil {
		return fmt.Errorf("package %s: %w", pkg, err)
	}
	defer d.Close()
	if d.Control.Package != pkg {
		return fmt.Errorf("package %s: the .deb is package %q", pkg, d.Control.Package)
	}
	return u.addTar(pkg, d.Data)
}

func (u *Unpacked) addTar(pkg string, tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("package %s: data archive: %w", pkg, err)
		}
		orig, ok := cleanPath(h.Name)
		if !ok {
			return fmt.Errorf("package %s: bad path %q in the data archive", pkg, h.Name)
		}
		if orig == "/" {
			continue
		}
		p := mergeUsr(orig)
		n := &node{hdr: *h, pkg: pkg}
		n.hdr.Name = p
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			if h.Size < 0 || u.size+h.Size > MaxUnpacked {
				return fmt.Errorf("package %s: %s: the packages unpack to more than %d bytes", pkg, orig, int64(MaxUnpacked))
			}
			n.data = make([]byte, h.Size)
			if _, err := io.ReadFull(tr, n.data); err != nil {
				return fmt.Errorf("package %s: %s: %w", pkg, orig, err)
			}
			u.size += h.Size
		case tar.TypeSymlink:
			n.hdr.Linkname = mapLinkTarget(orig, p, h.Linkname)
		case tar.TypeLink:
			lp, ok := cleanPath(h.Linkname)
			if !ok {
				return fmt.Errorf("package %s: %s: bad hard link target %q", pkg, orig, h.Linkname)
			}
			n.hdr.Linkname = mergeUsr(lp)
		default:
			return fmt.Errorf("package %s: %s: file type %q is not supported in a package", pkg, orig, h.Typeflag)
		}
		if why := SlateOwned(p); why != "" {
			if h.Typeflag == tar.TypeDir {
				if !u.dropped[p] {
					u.dropped[p] = true
					u.Warnings = append(u.Warnings, fmt.Sprintf("package %s: directory %s dropped (%s)", pkg, p, why))
				}
				continue
			}
			return fmt.Errorf("package %s: %s would land in %s, which slate owns (%s)", pkg, orig, p, why)
		}
		if old, ok := u.nodes[p]; ok {
			if old.hdr.Typeflag == tar.TypeDir && n.hdr.Typeflag == tar.TypeDir {
				continue // the first package's mode and owner
			}
			if old.pkg != pkg {
				u.Warnings = append(u.Warnings, fmt.Sprintf("%s is in packages %s and %s: %s's is kept", p, old.pkg, pkg, pkg))
			}
			if old.hdr.Typeflag == tar.TypeReg {
				u.size -= int64(len(old.data))
			}
		}
		u.nodes[p] = n
	}
}

// cleanPath makes an archive member's name absolute and clean; false for
// a name that leaves the root.
func cleanPath(name string) (string, bool) {
	n := strings.TrimPrefix(name, ".")
	if n == "" {
		return "/", true
	}
	if !strings.HasPrefix(n, "/") {
		n = "/" + n
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", false
		}
	}
	return path.Clean(n), true
}

// mapLinkTarget keeps a symlink pointing where it pointed before its
// path was moved under /usr: a relative target is resolved from the old
// place, mapped, and made relative to the new place again.
func mapLinkTarget(oldPath, newPath, target string) string {
	if strings.HasPrefix(target, "/") || oldPath == newPath {
		return target
	}
	abs := path.Clean(path.Join(path.Dir(oldPath), target))
	abs = mergeUsr(abs)
	rel, ok := relPath(path.Dir(newPath), abs)
	if !ok {
		return target
	}
	return rel
}

// relPath is target relative to dir, both absolute and clean.
func relPath(dir, target string) (string, bool) {
	ds := strings.Split(strings.Trim(dir, "/"), "/")
	ts := strings.Split(strings.Trim(target, "/"), "/")
	if dir == "/" {
		ds = nil
	}
	if target == "/" {
		ts = nil
	}
	i := 0
	for i < len(ds) && i < len(ts) && ds[i] == ts[i] {
		i++
	}
	var parts []string
	for range ds[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, ts[i:]...)
	if len(parts) == 0 {
		return ".", true
	}
	return strings.Join(parts, "/"), true
}

// Paths are the unpacked paths, sorted.
func (u *Unpacked) Paths() []string {
	ps := make([]string, 0, len(u.nodes))
	for p := range u.nodes {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Package is the package whose file p is ("" when none is).
func (u *Unpacked) Package(p string) string {
	if n, ok := u.nodes[p]; ok {
		return n.pkg
	}
	return ""
}

// Size is the bytes of the regular files.
func (u *Unpacked) Size() int64 { return u.size }

// WriteTo writes the tree in path order (parents first): owners, modes
// and setuid/setgid bits as the packages have them. Hard links come last,
// after every file they may name.
func (u *Unpacked) WriteTo(t Tree) error {
	var links []*node
	for _, p := range u.Paths() {
		n := u.nodes[p]
		h := &n.hdr
		uid, gid := uint32(h.Uid), uint32(h.Gid)
		perm := fs.FileMode(h.Mode) & fs.ModePerm
		if h.Mode&0o4000 != 0 {
			perm |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			perm |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			perm |= fs.ModeSticky
		}
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = t.Mkdir(p, perm, uid, gid)
		case tar.TypeReg:
			data := n.data
			err = t.AddFile(p, perm, uid, gid, int64(len(data)), func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(data)), nil
			})
		case tar.TypeSymlink:
			err = t.Symlink(p, h.Linkname, uid, gid)
		case tar.TypeLink:
			links = append(links, n)
			continue
		}
		if err != nil {
			return fmt.Errorf("package %s: %s: %w", n.pkg, p, err)
		}
	}
	for _, n := range links {
		if _, ok := u.nodes[n.hdr.Linkname]; !ok {
			return fmt.Errorf("package %s: %s: hard link to %s, which no package has", n.pkg, n.hdr.Name, n.hdr.Linkname)
		}
		if err := t.Link(n.hdr.Name, n.hdr.Linkname); err != nil {
			return fmt.Errorf("package %s: %s: %w", n.pkg, n.hdr.Name, err)
		}
	}
	return nil
}
