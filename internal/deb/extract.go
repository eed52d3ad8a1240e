package deb

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	debfile "pault.ag/go/debian/deb"
	"pault.ag/go/debian/dependency"
)

// Extract unpacks the data archive of the .deb at debPath into the folder
// dir as `dpkg -x` does: the package's own paths (no merged-/usr mapping,
// nothing refused for being slate's), folders, files with their modes
// and times, symbolic and hard links; no maintainer script, no owners.
// A member that would leave dir (a "..", or a path through a symbolic
// link of the archive) is an error, and so is a package other than name.
// It returns the bytes of the regular files.
func Extract(debPath, name, dir string) (int64, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	d, err := debfile.Load(f, debPath)
	if err != nil {
		return 0, fmt.Errorf("package %s: %w", name, err)
	}
	defer d.Close()
	if d.Control.Package != name {
		return 0, fmt.Errorf("package %s: the .deb is package %q", name, d.Control.Package)
	}
	x := &extractor{dir: dir, links: map[string]bool{}}
	if err := x.all(d.Data); err != nil {
		return x.size, fmt.Errorf("package %s: %w", name, err)
	}
	return x.size, nil
}

type extractor struct {
	dir   string
	size  int64
	links map[string]bool // symbolic links made, by clean archive path
}

// viaLink says whether a parent of p is a symbolic link of the archive:
// writing there would write wherever the link points.
func (x *extractor) viaLink(p string) bool {
	for q := path.Dir(p); q != "/"; q = path.Dir(q) {
		if x.links[q] {
			return true
		}
	}
	return false
}

func (x *extractor) all(tr *tar.Reader) error {
	var dirs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("data archive: %w", err)
		}
		p, ok := cleanPath(h.Name)
		if !ok {
			return fmt.Errorf("bad path %q in the data archive", h.Name)
		}
		if x.viaLink(p) {
			return fmt.Errorf("%s: a path through a symbolic link of the package", p)
		}
		dst := filepath.Join(x.dir, filepath.FromSlash(p))
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, h)
		case tar.TypeReg:
			if h.Size < 0 || x.size+h.Size > MaxUnpacked {
				return fmt.Errorf("%s: the package unpacks to more than %d bytes", p, int64(MaxUnpacked))
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			n, err := io.Copy(out, io.LimitReader(tr, h.Size))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err == nil && n != h.Size {
				err = fmt.Errorf("%s: %d of %d bytes", p, n, h.Size)
			}
			if err != nil {
				return err
			}
			x.size += n
			if err := os.Chmod(dst, mode|specialBits(h.Mode)); err != nil {
				return err
			}
			if err := os.Chtimes(dst, h.ModTime, h.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			_ = os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
			x.links[p] = true
		case tar.TypeLink:
			lp, ok := cleanPath(h.Linkname)
			if !ok || x.viaLink(lp) || x.links[lp] {
				return fmt.Errorf("%s: bad hard link target %q", p, h.Linkname)
			}
			_ = os.Remove(dst)
			if err := os.Link(filepath.Join(x.dir, filepath.FromSlash(lp)), dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: file type %q is not supported in a package", p, h.Typeflag)
		}
	}
	// folders last, deepest first: their modes (a folder without write
	// permission) and times must not stop or change what goes inside
	for i := len(dirs) - 1; i >= 0; i-- {
		h := dirs[i]
		p, _ := cleanPath(h.Name)
		dst := filepath.Join(x.dir, filepath.FromSlash(p))
		if err := os.Chmod(dst, os.FileMode(h.Mode)&os.ModePerm|specialBits(h.Mode)); err != nil {
			return err
		}
		if err := os.Chtimes(dst, h.ModTime, h.ModTime); err != nil {
			return err
		}
	}
	return nil
}

func specialBits(m int64) os.FileMode {
	var b os.FileMode
	if m&0o4000 != 0 {
		b |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		b |= os.ModeSticky
	}
	return b
}

// Newest is the highest version of the package called name in the
// index, nil when there is none.
func (ix *Index) Newest(name string) *Package {
	if ps := ix.byName[name]; len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// Version is the package called name at exactly version v, nil when the
// index has no such one.
func (ix *Index) Version(name, v string) *Package {
	for _, p := range ix.byName[name] {
		if p.Version == v {
			return p
		}
	}
	return nil
}

// DependsOn is the first package of p's Depends whose name starts with
// prefix, and the version an "=" relation asks for ("" for none): a
// meta package's target, as linux-image-amd64's linux-image-6.1.0-N-amd64.
func (p *Package) DependsOn(prefix string) (name, exact string, err error) {
	if p.Depends == "" {
		return "", "", nil
	}
	dep, err := dependency.Parse(p.Depends)
	if err != nil {
		return "", "", fmt.Errorf("%s %s: Depends: %w", p.Name, p.Version, err)
	}
	for _, rel := range dep.Relations {
		for _, poss := range rel.Possibilities {
			if strings.HasPrefix(poss.Name, prefix) {
				if poss.Version != nil && poss.Version.Operator == "=" {
					exact = poss.Version.Number
				}
				return poss.Name, exact, nil
			}
		}
	}
	return "", "", nil
}
