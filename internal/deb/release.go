// Package deb resolves, fetches and unpacks Debian binary packages in Go,
// without apt, dpkg or root: a suite's InRelease is verified against an
// OpenPGP keyring, its Packages index is checked by the release's SHA256
// list, the dependency closure of the spec's packages is resolved
// (Depends and Pre-Depends, alternatives, Provides, version relations),
// every .deb is cached by its sha256 and its data archive is unpacked
// into a Tree with Debian's merged-/usr layout. Maintainer scripts are
// never run. Build code only.
package deb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"pault.ag/go/debian/control"
)

// Bounds of what is read from a mirror.
const (
	MaxInRelease  = 16 << 20 // bookworm's is 150 KiB
	MaxIndex      = 256 << 20
	MaxIndexPlain = 1 << 30 // decompressed index
	MaxDeb        = 2 << 30
)

// FileSum is one line of a release file's SHA256 list.
type FileSum struct {
	Size   int64
	SHA256 string
}

// Release is a verified InRelease: its date, suite and file list.
type Release struct {
	Suite    string
	Codename string
	Date     string
	// SHA256 is the sha256 of the InRelease file as fetched.
	SHA256 string
	Files  map[string]FileSum
}

// LoadKeyring reads an OpenPGP keyring file, binary (Debian's .gpg) or
// armored (.asc).
func LoadKeyring(path string) (openpgp.EntityList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return ParseKeyring(data, path)
}

// ParseKeyring reads a binary or armored keyring.
func ParseKeyring(data []byte, name string) (openpgp.EntityList, error) {
	var ring openpgp.EntityList
	var err error
	if bytes.Contains(data[:min(len(data), 64)], []byte("-----BEGIN PGP")) {
		ring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		ring, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", name, err)
	}
	if len(ring) == 0 {
		return nil, fmt.Errorf("keyring %s: no keys", name)
	}
	return ring, nil
}

// ParseInRelease verifies a clear-signed release file against the keyring
// and reads its fields. Only the signed text is read: anything around the
// signed block is ignored.
func ParseInRelease(data []byte, ring openpgp.EntityList) (*Release, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(data, "\r\n"), []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		return nil, errors.New("InRelease is not a clear-signed OpenPGP message")
	}
	block, _ := clearsign.Decode(data)
	if block == nil || block.ArmoredSignature == nil {
		return nil, errors.New("InRelease: no clear-signed block")
	}
	if _, err := openpgp.CheckDetachedSignature(ring, bytes.NewReader(block.Bytes), block.ArmoredSignature.Body, nil); err != nil {
		return nil, fmt.Errorf("InRelease signature: %w", err)
	}
	rel, err := parseRelease(block.Plaintext)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	rel.SHA256 = hex.EncodeToString(sum[:])
	return rel, nil
}

// parseRelease reads the fields of a release file's text.
func parseRelease(text []byte) (*Release, error) {
	pr, err := control.NewParagraphReader(bytes.NewReader(text), nil)
	if err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	para, err := pr.Next()
	if err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	rel := &Release{
		Suite:    para.Values["Suite"],
		Codename: para.Values["Codename"],
		Date:     para.Values["Date"],
		Files:    map[string]FileSum{},
	}
	for i, line := range strings.Split(para.Values["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("InRelease: SHA256 line %d: want sum, size and path", i+1)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("InRelease: SHA256 line %d: bad size %q", i+1, f[1])
		}
		if !isHexSHA256(f[0]) {
			return nil, fmt.Errorf("InRelease: SHA256 line %d: bad sha256 %q", i+1, f[0])
		}
		rel.Files[f[2]] = FileSum{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(rel.Files) == 0 {
		return nil, errors.New("InRelease has no SHA256 list")
	}
	return rel, nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
