package builder

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/imageinfo"
)

// PackageReport is one Debian package of the root in build.json.
type PackageReport struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	SHA256       string `json:"sha256"`
	// Source is the "MIRROR SUITE" the package came from.
	Source string `json:"source"`
}

// DebianSourceReport is one Debian suite the packages came from, with the
// release it was signed as.
type DebianSourceReport struct {
	Mirror     string   `json:"mirror"`
	Suite      string   `json:"suite"`
	Components []string `json:"components"`
	// Date is the release's Date field, InRelease the sha256 of the
	// release file the packages were resolved against.
	Date      string `json:"date"`
	InRelease string `json:"inrelease_sha256"`
}

// packageRoot is what the packages step hands to the root filesystem.
type packageRoot struct {
	unpacked *deb.Unpacked
	info     []imageinfo.Package
}

// resolvePackages takes the spec's packages from the lock (Options.Lock)
// or resolves them against the mirror, fetches what the cache lacks and
// unpacks them in memory. Nothing is written outside the cache: a package
// that cannot be had, or that would put a file where slate owns, fails
// the build before the output folder is touched.
func (j *job) resolvePackages(ctx context.Context) error {
	spec := j.spec
	t0 := time.Now()
	c := &deb.Client{}
	var l *deb.Lock
	if j.o.Lock != "" {
		var err error
		if l, err = deb.ReadLock(j.o.Lock); err != nil {
			return &OptionError{Field: "Lock", Msg: "the lock file", Err: err}
		}
		if l == nil {
			return &OptionError{Field: "Lock", Msg: fmt.Sprintf("%s does not exist (slate packages lock -c SPEC writes it)", j.o.Lock)}
		}
		if err := l.Matches(spec); err != nil {
			return fmt.Errorf("%s: %w", j.o.Lock, err)
		}
	} else {
		res, err := c.ResolveSpec(ctx, spec)
		if err != nil {
			return err
		}
		for _, n := range res.Notes {
			logrus.WithField("packages", "resolve").Debug(n)
		}
		if len(res.Notes) > 0 {
			logrus.WithField("notes", len(res.Notes)).Info("dependencies for maintainer scripts left out (--log-level debug lists them)")
		}
		l = res.Lock
	}
	names, paths, err := c.FetchLock(ctx, l, deb.MirrorOverrides(spec.Debian), j.o.CacheDir)
	if err != nil {
		return fmt.Errorf("$.packages: %w", err)
	}
	u, err := deb.Unpack(names, paths)
	if err != nil {
		return fmt.Errorf("$.packages: %w", err)
	}
	for _, w := range u.Warnings {
		// a folder of a mount point (/var/lib/foo) is routine; a file
		// in two packages is worth seeing
		if strings.Contains(w, " dropped (") {
			logrus.WithField("packages", "unpack").Debug(w)
		} else {
			logrus.WithField("packages", "unpack").Warn(w)
		}
	}
	pr := &packageRoot{unpacked: u}
	mirrors := map[string]string{}
	j.debSources = nil
	for _, s := range l.Sources {
		mirrors[s.Suite] = s.Mirror
		j.debSources = append(j.debSources, DebianSourceReport{Mirror: s.Mirror, Suite: s.Suite, Components: s.Components, Date: s.Date, InRelease: s.InRelease})
	}
	j.pkgReport = nil
	for _, p := range l.Packages {
		pr.info = append(pr.info, imageinfo.Package{Name: p.Name, Version: p.Version})
		j.pkgReport = append(j.pkgReport, PackageReport{Name: p.Name, Version: p.Version, Architecture: p.Architecture, SHA256: p.SHA256, Source: mirrors[p.Source] + " " + p.Source})
	}
	j.pkgs, j.pkgLock = pr, l
	logrus.WithFields(logrus.Fields{
		"packages": len(names), "unpacked": fmt.Sprintf("%.1f MiB", float64(u.Size())/(1<<20)),
		"locked": j.o.Lock != "", "took": time.Since(t0).Round(time.Millisecond),
	}).Info("Debian packages ready")
	return nil
}

// mergedLinks are the top-level links of a merged-/usr root, as Debian
// bookworm has them.
var mergedLinks = []struct{ path, target string }{
	{"/bin", "usr/bin"}, {"/sbin", "usr/sbin"}, {"/lib", "usr/lib"}, {"/lib64", "usr/lib64"},
}

// mergedRootDirs are rootDirs for a root with packages: /bin, /sbin, /lib
// and /lib64 are links into /usr (mergedLinks), so the programs and
// libraries of the packages find each other where Debian put them.
var mergedRootDirs = []struct {
	path string
	mode fs.FileMode
}{
	{"/etc", 0o755}, {"/usr/bin", 0o755}, {"/usr/sbin", 0o755}, {"/usr/lib", 0o755}, {"/usr/lib/slate", 0o755},
	{"/usr/lib/modules", 0o755}, {"/usr/lib64", 0o755},
	{"/proc", 0o555}, {"/sys", 0o555}, {"/dev", 0o755}, {"/run", 0o755},
	{"/var", 0o755}, {"/tmp", 0o777 | fs.ModeSticky}, {"/root", 0o700}, {"/home", 0o755}, {"/srv", 0o755}, {"/mnt", 0o755},
}

// pkgTree writes unpacked packages into a root that already holds slate's
// files and the spec's root.files: where both have a path, the image's
// is kept (a root.files entry overrides a package's file, as a layer on
// top of it would), with a note.
type pkgTree struct {
	fs   *ext4fs.FS
	u    *deb.Unpacked
	log  logrus.FieldLogger
	kept map[string]bool
	// reserved are paths slate writes after the packages (sshd_config
	// from the ssh section): a package's file there is left out.
	reserved map[string]string
}

// reservedPaths are the paths of the root that slate writes after the
// packages, with the reason.
func reservedPaths(spec *configs.Spec) map[string]string {
	r := map[string]string{}
	if spec.SSHEnabled() {
		r[configs.SSHConfigPath] = "slate writes it from the ssh section"
		r[configs.SSHAuthorizedKeysDir] = "slate writes it from the users' ssh_keys"
	}
	return r
}

// under says whether p is a kept path or below one.
func (t *pkgTree) under(p string) bool {
	for q := p; q != "/" && q != "."; q = path.Dir(q) {
		if t.kept[q] {
			return true
		}
		if why, ok := t.reserved[q]; ok {
			t.kept[q] = true
			t.log.WithFields(logrus.Fields{"package": t.u.Package(q), "path": q}).Infof("the package's file is left out: %s", why)
			return true
		}
	}
	return false
}

func (t *pkgTree) keep(p, what string) {
	t.kept[p] = true
	t.log.WithFields(logrus.Fields{"package": t.u.Package(p), "path": p}).Infof("the image's %s is kept over the package's", what)
}

// free says whether a package may write p: false when the image has
// something there (kept, with a note) or p is below a kept path.
func (t *pkgTree) free(p string) (bool, error) {
	if t.under(p) {
		return false, nil
	}
	e, err := t.fs.Lookup(p)
	if err == nil {
		t.keep(p, describe(e.Mode))
		return false, nil
	}
	// a package's folder may be missing when it was dropped (a place slate
	// owns) or never in the archive
	if err := t.fs.Mkdir(path.Dir(p), 0o755, 0, 0); err != nil {
		return false, err
	}
	return true, nil
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "file"
}

func (t *pkgTree) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	if t.under(p) {
		return nil
	}
	if e, err := t.fs.Lookup(p); err == nil {
		if !e.Mode.IsDir() {
			t.keep(p, describe(e.Mode))
		}
		return nil // the image's folder keeps its mode and owner
	}
	return t.fs.Mkdir(p, perm, uid, gid)
}

func (t *pkgTree) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	if ok, err := t.free(p); !ok {
		return err
	}
	return t.fs.AddFile(p, perm, uid, gid, size, open)
}

func (t *pkgTree) Symlink(p, target string, uid, gid uint32) error {
	if ok, err := t.free(p); !ok {
		return err
	}
	return t.fs.Symlink(p, target, uid, gid)
}

func (t *pkgTree) Link(p, existing string) error {
	if t.under(existing) {
		return nil // its file is the image's, not the package's
	}
	if ok, err := t.free(p); !ok {
		return err
	}
	return t.fs.Link(p, existing)
}

func (t *pkgTree) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	if ok, err := t.free(p); !ok {
		return err
	}
	return t.fs.Mknod(p, mode, major, minor, uid, gid)
}

func (t *pkgTree) SetXattr(p, name string, value []byte) error {
	if t.under(p) {
		return nil
	}
	return setXattr(t.fs, p, name, value)
}

var _ deb.Tree = (*pkgTree)(nil)

// mergedDst is a root.files destination in a merged-/usr root: /bin/x
// is /usr/bin/x, since /bin is a link there.
func mergedDst(dst string) string {
	return deb.MergeUsr(path.Clean("/" + strings.TrimPrefix(dst, "/")))
}
