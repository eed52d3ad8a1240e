package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/run/sshd"
)

// addSSH writes what slate adds to OpenSSH's package in the root when
// the spec enables ssh: sshd_config, the spec users' keys (root-owned,
// read-only: a user cannot change which keys the image lets in) and the
// login shell's path. It runs after the packages and root.files are in
// the root, and checks that the server and the shell came with them.
func addSSH(fsys *ext4fs.FS, spec *configs.Spec) error {
	if !spec.SSHEnabled() {
		return nil
	}
	for _, need := range []string{sshd.Binary} {
		if _, e, err := resolveInImage(fsys, need); err != nil || !e.Mode.IsRegular() {
			return fmt.Errorf("$.ssh.enable: %s is not in the image (package %s)", need, configs.SSHServerPackage)
		}
	}
	sh, _ := spec.LoginShell()
	if err := ensureLink(fsys, sh.Path, sh.Binary); err != nil {
		return fmt.Errorf("$.ssh.shell: %w", err)
	}
	conf := sshd.Config(sshd.Options{Port: spec.SSH.Port, PermitRootLogin: spec.SSH.PermitRootLogin})
	if err := fsys.Mkdir(path.Dir(sshd.ConfigPath), 0o755, 0, 0); err != nil {
		return fmt.Errorf("root: %s: %w", path.Dir(sshd.ConfigPath), err)
	}
	if err := fsys.AddFile(sshd.ConfigPath, 0o644, 0, 0, int64(len(conf)), staticBytes(conf)); err != nil {
		return fmt.Errorf("root: %s: %w", sshd.ConfigPath, err)
	}
	if err := fsys.Mkdir(sshd.AuthorizedKeysDir, 0o755, 0, 0); err != nil {
		return fmt.Errorf("root: %s: %w", sshd.AuthorizedKeysDir, err)
	}
	for i, u := range spec.Users {
		if len(u.SSHKeys) == 0 {
			continue
		}
		var b strings.Builder
		for _, k := range u.SSHKeys {
			b.WriteString(strings.TrimSpace(k) + "\n")
		}
		data := []byte(b.String())
		p := sshd.AuthorizedKeysDir + "/" + u.Name
		if err := fsys.AddFile(p, 0o644, 0, 0, int64(len(data)), staticBytes(data)); err != nil {
			return fmt.Errorf("$.users[%d].ssh_keys: %s: %w", i, p, err)
		}
	}
	return nil
}

// ensureLink makes p a symbolic link to target unless p already exists in
// the image (following links, as the kernel would: with /bin a link to
// usr/bin, /bin/bash is the package's /usr/bin/bash). target must exist.
func ensureLink(fsys *ext4fs.FS, p, target string) error {
	if _, e, err := resolveInImage(fsys, target); err != nil || !e.Mode.IsRegular() || e.Mode&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file of the image", target)
	}
	if _, _, err := resolveInImage(fsys, p); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", p, err)
	}
	dir, e, err := resolveInImage(fsys, path.Dir(p))
	if err != nil || !e.Mode.IsDir() {
		return fmt.Errorf("%s: the folder %s is not in the image", p, path.Dir(p))
	}
	// relative when the link sits beside its target (/usr/bin/sh ->
	// busybox), absolute otherwise
	t := target
	if path.Dir(target) == dir {
		t = path.Base(target)
	}
	if err := fsys.Symlink(path.Join(dir, path.Base(p)), t, 0, 0); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
