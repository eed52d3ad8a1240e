package sshd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// HostKeyType is one kind of host key the machine has.
type HostKeyType struct {
	// Name is the key's short name, as in ssh_host_NAME_key.
	Name     string
	generate func() (crypto.Signer, error)
	// matches says whether a parsed private key is of this type.
	matches func(any) bool
}

// Path is where the private key lives on the machine; the public half is
// beside it with ".pub".
func (t HostKeyType) Path() string {
	return HostKeyDir + "/ssh_host_" + t.Name + "_key"
}

// HostKeys are made on first boot: ed25519, which clients prefer, and
// ECDSA P-256 for clients without it. No RSA: generating a 3072-bit key
// takes many seconds on a slow or emulated CPU, and it would add nothing
// a client of this decade needs.
var HostKeys = []HostKeyType{
	{Name: "ed25519", generate: func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}, matches: func(k any) bool { _, ok := k.(*ed25519.PrivateKey); return ok }},
	{Name: "ecdsa", generate: func() (crypto.Signer, error) {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}, matches: func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P256() }},
}

// HostKey is one host key after EnsureHostKeys.
type HostKey struct {
	Type   string
	Path   string
	Public ssh.PublicKey
	// New is true when the key was made now (first boot, or a key that
	// was missing or unreadable).
	New bool
}

// Fingerprint is OpenSSH's SHA256:... form, as ssh-keygen -l and the
// client's host key prompt show it.
func (k HostKey) Fingerprint() string { return ssh.FingerprintSHA256(k.Public) }

// EnsureHostKeys keeps the host keys under root+HostKeyDir and makes the
// missing ones. A key file that does not parse as its type is moved
// aside to NAME.bad (sshd could not use it either) and replaced. Every
// new file is written to a temporary name, synced and renamed, so a
// power cut leaves the old key or the new one, never half a key.
func EnsureHostKeys(root string, log logrus.FieldLogger) ([]HostKey, error) {
	dir := filepath.Join(root, HostKeyDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	var out []HostKey
	for _, t := range HostKeys {
		p := filepath.Join(root, t.Path())
		pub, err := loadHostKey(p, t)
		switch {
		case err == nil:
			out = append(out, HostKey{Type: t.Name, Path: t.Path(), Public: pub})
			continue
		case errors.Is(err, fs.ErrNotExist):
		default:
			log.WithError(err).WithField("path", t.Path()).Warn("ssh: host key unusable; moved aside to .bad and replaced")
			if err := os.Rename(p, p+".bad"); err != nil {
				return nil, fmt.Errorf("host key %s: %w", t.Path(), err)
			}
		}
		pub, err = newHostKey(p, t)
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w", t.Path(), err)
		}
		out = append(out, HostKey{Type: t.Name, Path: t.Path(), Public: pub, New: true})
	}
	return out, syncDir(dir)
}

// maxKeyFile bounds a host key file: an ed25519 or ECDSA key in OpenSSH's
// format is well under 1 KiB.
const maxKeyFile = 64 << 10

// loadHostKey reads a private key of type t and gives it mode 0600 (sshd
// refuses a key others can read).
func loadHostKey(p string, t HostKeyType) (ssh.PublicKey, error) {
	st, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() > maxKeyFile {
		return nil, fmt.Errorf("%d bytes: too large for a host key", st.Size())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	k, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, err
	}
	if !t.matches(k) {
		return nil, fmt.Errorf("holds a %T, not an %s key", k, t.Name)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm() != 0o600 {
		if err := os.Chmod(p, 0o600); err != nil {
			return nil, err
		}
	}
	return s.PublicKey(), nil
}

func newHostKey(p string, t HostKeyType) (ssh.PublicKey, error) {
	k, err := t.generate()
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		return nil, err
	}
	pub := s.PublicKey()
	// the public half first: a key file without its .pub is fine, the
	// other way round would name a key that is not there
	if err := writeFileSync(p+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileSync(p, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return pub, nil
}

// writeFileSync writes data to a temporary file beside p, syncs it and
// renames it over p.
func writeFileSync(p string, data []byte, perm fs.FileMode) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
