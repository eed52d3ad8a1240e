package payload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Key file names written by GenerateKey.
const (
	PrivateKeyFile = "update.key"
	PublicKeyFile  = "update.pub"
)

const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// GenerateKey creates a new ed25519 signing key in dir: update.key (PKCS#8 PEM,
// mode 0600) and update.pub (PKIX PEM, mode 0644). It never overwrites: losing
// the private key of a channel strands every machine that trusts it.
func GenerateKey(dir string) error {
	privPath := filepath.Join(dir, PrivateKeyFile)
	pubPath := filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("generate key: %s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("generate key: %w", err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: privDER}), 0o600); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: pubDER}), 0o644); err != nil {
		// A private key without its public half is useless and confusing.
		_ = os.Remove(privPath)
		return fmt.Errorf("generate key: %w", err)
	}
	return nil
}

// writeNew creates path exclusively (O_EXCL closes the race with a concurrent
// writer that the Lstat check above leaves open) and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// The umask must not loosen or tighten the documented modes.
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadPrivateKey reads an ed25519 private key written by GenerateKey.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKey parses a PEM "PRIVATE KEY" block holding a PKCS#8 ed25519 key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	der, err := decodePEM(data, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %s, not ed25519", keyKind(k))
	}
	return priv, nil
}

// LoadPublicKey reads an ed25519 public key written by GenerateKey.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public key: %w", err)
	}
	key, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" block holding a PKIX ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	der, err := decodePEM(data, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %s, not ed25519", keyKind(k))
	}
	return pub, nil
}

func decodePEM(data []byte, want string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found (want %q)", want)
	}
	if block.Type != want {
		hint := ""
		switch {
		case want == pemPublic && block.Type == pemPrivate:
			hint = " (this is the private key; use update.pub)"
		case want == pemPrivate && block.Type == pemPublic:
			hint = " (this is the public key; use update.key)"
		}
		return nil, fmt.Errorf("PEM block is %q, want %q%s", block.Type, want, hint)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the %q PEM block", want)
	}
	return block.Bytes, nil
}

// keyKind names a key type for error messages (*rsa.PublicKey, *ecdsa.PrivateKey, ...).
func keyKind(k any) string { return fmt.Sprintf("%T", k) }

// MaxKeyringFile bounds a keyring file: a few PEM blocks, never megabytes.
const MaxKeyringFile = 64 << 10

// MaxTrustedKeys bounds the keys an image trusts.
const MaxTrustedKeys = 16

// ParsePublicKeys parses a keyring: one or more PEM "PUBLIC KEY" blocks,
// each a PKIX ed25519 key, and nothing else. A private key anywhere in the
// data is an error that says so (an image built with it would publish it).
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	if ContainsPrivateKey(data) {
		return nil, errors.New("this is a private key; name the public key (update.pub) instead, and keep the private key off the image")
	}
	var keys []ed25519.PublicKey
	rest := data
	for n := 1; ; n++ {
		if len(bytes.TrimSpace(rest)) == 0 {
			break
		}
		block, r := pem.Decode(rest)
		if block == nil {
			if n == 1 {
				return nil, fmt.Errorf("no PEM block found (want %q)", pemPublic)
			}
			return nil, fmt.Errorf("unexpected data after PEM block %d", n-1)
		}
		rest = r
		if block.Type != pemPublic {
			return nil, fmt.Errorf("PEM block %d is %q, want %q", n, block.Type, pemPublic)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: not a PKIX public key: %w", n, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d: public key is %s, not ed25519", n, keyKind(k))
		}
		for _, have := range keys {
			if have.Equal(pub) {
				return nil, fmt.Errorf("PEM block %d: key %s appears twice", n, KeyID(pub))
			}
		}
		if len(keys) == MaxTrustedKeys {
			return nil, fmt.Errorf("more than %d keys", MaxTrustedKeys)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no PEM block found (want %q)", pemPublic)
	}
	return keys, nil
}

// LoadPublicKeys reads a keyring file (see ParsePublicKeys), such as an
// image's /usr/lib/slate/update.pub.
func LoadPublicKeys(path string) ([]ed25519.PublicKey, error) {
	data, err := readBounded(path, MaxKeyringFile)
	if err != nil {
		return nil, fmt.Errorf("load public keys: %w", err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("load public keys %s: %w", path, err)
	}
	return keys, nil
}

// MarshalPublicKeys writes keys as a keyring (PKIX PEM blocks). The builder
// writes the image's trusted keys this way, re-encoded from the parsed
// keys, so whatever else the spec's key file held never reaches the image.
func MarshalPublicKeys(keys []ed25519.PublicKey) ([]byte, error) {
	var b bytes.Buffer
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil, err
		}
		if err := pem.Encode(&b, &pem.Block{Type: pemPublic, Bytes: der}); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// ContainsPrivateKey reports whether data holds a PEM private key of any
// kind (PKCS#8, encrypted PKCS#8, OpenSSH, RSA, EC): what must never be
// published.
func ContainsPrivateKey(data []byte) bool {
	return bytes.Contains(data, []byte("PRIVATE KEY-----"))
}

// FindPrivateKeys walks a channel folder and returns the files that hold
// a private key. Only files up to MaxKeyringFile are read: key files are
// small, images are not. Symlinks are not followed (Serve does not follow
// them out of the folder either).
func FindPrivateKeys(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > MaxKeyringFile {
			return nil //nolint:nilerr // a file that cannot be stat-ed or is too big is not a keyring
		}
		data, err := os.ReadFile(p)
		if err != nil {
			// unreadable to us: Serve would not send it either
			return nil //nolint:nilerr // unreadable to us: Serve would not send it either
		}
		if ContainsPrivateKey(data) {
			found = append(found, p)
		}
		return nil
	})
	return found, err
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", path, max)
	}
	return data, nil
}
