package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
)

// addContent copies a host file or folder into the root. A symbolic link
// named as src is followed (the spec names what it points at, and
// CheckFiles checked that); links inside a copied folder are copied as
// links with their target unchanged: they resolve in the image, never on
// the build host, so nothing outside the folder is read.
//
// Owners in the image are root, or the spec's owner and group: never the
// host's. setuid and setgid bits of host files are dropped unless the
// spec's mode sets them: a user's setuid program would otherwise become a
// setuid-root program.
func addContent(fsys *ext4fs.FS, spec *configs.Spec, f configs.File, log logrus.FieldLogger) error {
	src, err := filepath.EvalSymlinks(spec.Path(f.Src))
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	uid, gid, err := spec.Owner(f)
	if err != nil {
		return err
	}
	o := owner{uint32(uid), uint32(gid)}
	if err := fsys.Mkdir(path.Dir(f.Dst), 0o755, 0, 0); err != nil {
		return fmt.Errorf("%s: %w", path.Dir(f.Dst), err)
	}
	if !st.IsDir() {
		return addOne(fsys, src, f.Dst, st, f.Mode, o, log)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := path.Join(f.Dst, filepath.ToSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return fsys.Mkdir(dst, info.Mode().Perm(), o.uid, o.gid)
		}
		return addOne(fsys, p, dst, info, f.Mode, o, log)
	})
}

// owner is who owns copied files in the image.
type owner struct{ uid, gid uint32 }

func addOne(fsys *ext4fs.FS, src, dst string, st fs.FileInfo, mode configs.Mode, o owner, log logrus.FieldLogger) error {
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return fsys.Symlink(dst, t, o.uid, o.gid)
	case st.Mode().IsRegular():
		perm := st.Mode() & (fs.ModePerm | fs.ModeSticky)
		if mode != 0 {
			perm = mode.FileMode()
		} else if st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			log.WithFields(logrus.Fields{"src": src, "dst": dst}).Warn("setuid/setgid bits of a host file dropped: its owner on the build host is not its owner in the image; set mode in the spec to keep them")
		}
		return fsys.AddFile(dst, perm, o.uid, o.gid, st.Size(), openFile(src))
	default:
		return fmt.Errorf("%s: only files, folders and symbolic links can be copied, not %s", src, st.Mode().Type())
	}
}

// accountFiles renders /etc/passwd, /etc/group and /etc/shadow (no
// password: passwords come from Ignition, never from the public root;
// every account is locked but those that log in with ssh keys, see
// configs.Spec.ShadowHash).
func accountFiles(spec *configs.Spec) (passwd, group, shadow string) {
	users, groups := spec.Accounts()
	var p, g, s strings.Builder
	for _, u := range users {
		fmt.Fprintf(&p, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, *u.GID, u.Name, u.Home, u.Shell)
		// the last-change field stays empty: 0 would make sshd demand
		// a password change at every login
		fmt.Fprintf(&s, "%s:%s::0:99999:7:::\n", u.Name, spec.ShadowHash(u))
	}
	for _, gr := range groups {
		fmt.Fprintf(&g, "%s:x:%d:\n", gr.Name, gr.GID)
	}
	return p.String(), g.String(), s.String()
}

func addAccounts(fsys *ext4fs.FS, spec *configs.Spec) error {
	passwd, group, shadow := accountFiles(spec)
	for _, f := range []struct {
		path, text string
		perm       fs.FileMode
	}{{"/etc/passwd", passwd, 0o644}, {"/etc/group", group, 0o644}, {"/etc/shadow", shadow, 0o600}} {
		b := []byte(f.text)
		if err := fsys.AddFile(f.path, f.perm, 0, 0, int64(len(b)), staticBytes(b)); err != nil {
			return fmt.Errorf("root: %s: %w", f.path, err)
		}
	}
	return nil
}

// addCABundle installs the CA certificates (checked by ResolveInputs) where
// Go's crypto/x509 looks first on Linux.
func addCABundle(fsys *ext4fs.FS, spec *configs.Spec, in Inputs) error {
	field := "the CA bundle"
	if spec.Root.CABundle != "" {
		field = "$.root.ca_bundle"
	}
	st, err := os.Stat(in.CABundle)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if err := fsys.Mkdir(path.Dir(configs.CABundlePath), 0o755, 0, 0); err != nil {
		return fmt.Errorf("root: %s: %w", path.Dir(configs.CABundlePath), err)
	}
	if err := fsys.AddFile(configs.CABundlePath, 0o644, 0, 0, st.Size(), openFile(in.CABundle)); err != nil {
		return fmt.Errorf("root: %s: %w", configs.CABundlePath, err)
	}
	return nil
}

// writablePrefixes are places a program may be put at run time (by
// Ignition or a service): a command there need not be in the image.
var writablePrefixes = []string{"/etc/", "/var/", "/home/", "/root/", "/srv/", "/tmp/", "/run/"}

// checkPrograms makes sure every service's command (and every health
// check's) is an executable file in the root: otherwise the build is
// fine and every boot fails.
func checkPrograms(fsys *ext4fs.FS, spec *configs.Spec, log logrus.FieldLogger) error {
	type prog struct{ path, cmd string }
	var progs []prog
	for i, s := range spec.Services {
		progs = append(progs, prog{"$.services[" + strconv.Itoa(i) + "].command", s.Command})
	}
	if spec.Update != nil {
		for i, c := range spec.Update.Health.Commands {
			progs = append(progs, prog{"$.update.health.commands[" + strconv.Itoa(i) + "].command", c.Command})
		}
	}
	var errs configs.ErrorList
	for _, p := range progs {
		msg := checkProgram(fsys, p.cmd)
		if msg == "" {
			continue
		}
		if isWritable(p.cmd) {
			log.WithFields(logrus.Fields{"field": p.path, "problem": msg}).Warnf("%s is not an executable file of the image: it must be created at run time (by Ignition) before the service starts", p.cmd)
			continue
		}
		errs = append(errs, &configs.Error{Path: p.path, Msg: msg})
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errs
}

func isWritable(p string) bool {
	for _, w := range writablePrefixes {
		if strings.HasPrefix(p, w) {
			return true
		}
	}
	return false
}

func checkProgram(fsys *ext4fs.FS, cmd string) string {
	_, e, err := resolveInImage(fsys, cmd)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s is not in the image; copy it in with root.files", cmd)
	case err != nil:
		return fmt.Sprintf("%s: %v", cmd, err)
	case !e.Mode.IsRegular():
		return fmt.Sprintf("%s is not a regular file in the image (%s)", cmd, e.Mode.Type())
	case e.Mode&0o111 == 0:
		return fmt.Sprintf("%s is not executable in the image (mode %#o); set mode: \"0755\" on its root.files entry", cmd, uint32(e.Mode.Perm()))
	}
	return ""
}

// resolveInImage follows symbolic links in the image being built, as the
// kernel would in the booted system.
func resolveInImage(fsys *ext4fs.FS, p string) (string, ext4fs.Entry, error) {
	const maxLinks = 40
	for hops := 0; hops <= maxLinks; hops++ {
		parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
		cur := "/"
		linked := false
		for i, c := range parts {
			next := path.Join(cur, c)
			e, err := fsys.Lookup(next)
			if err != nil {
				return "", e, err
			}
			if e.Mode&fs.ModeSymlink != 0 {
				t := e.Target
				if !strings.HasPrefix(t, "/") {
					t = path.Join(cur, t)
				}
				p = path.Join(append([]string{t}, parts[i+1:]...)...)
				linked = true
				break
			}
			if i == len(parts)-1 {
				return next, e, nil
			}
			if !e.Mode.IsDir() {
				return "", e, fmt.Errorf("%s is not a folder: %w", next, fs.ErrNotExist)
			}
			cur = next
		}
		if !linked {
			return "/", ext4fs.Entry{Mode: fs.ModeDir}, nil
		}
	}
	return "", ext4fs.Entry{}, fmt.Errorf("more than %d symbolic links", maxLinks)
}

// warnDanglingLinks warns about links in copied folders that lead nowhere
// in the image (a target left on the build host, usually). They are kept:
// a link may point at a place created at run time.
func warnDanglingLinks(fsys *ext4fs.FS, spec *configs.Spec, log logrus.FieldLogger) {
	for i, f := range spec.Root.Files {
		src, err := filepath.EvalSymlinks(spec.Path(f.Src))
		if err != nil {
			continue
		}
		_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil //nolint:nilerr // a walk error only means fewer warnings
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return nil //nolint:nilerr // a walk error only means fewer warnings
			}
			dst := path.Join(f.Dst, filepath.ToSlash(rel))
			if _, _, err := resolveInImage(fsys, dst); err != nil {
				e, _ := fsys.Lookup(dst)
				// /var and /run are filled at run time (resolv.conf -> /run/...)
				t := e.Target
				if !strings.HasPrefix(t, "/") {
					t = path.Join(path.Dir(dst), t)
				}
				if strings.HasPrefix(t, "/var/") || strings.HasPrefix(t, "/run/") {
					return nil
				}
				log.WithFields(logrus.Fields{"field": fmt.Sprintf("$.root.files[%d].src", i), "link": dst, "target": e.Target}).Warn("a copied link leads nowhere in the image (it is copied as it is, never followed on the build host)")
			}
			return nil
		})
	}
}
