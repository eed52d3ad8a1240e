// Package machineid keeps the machine's identity: /etc/machine-id, 32
// lowercase hex digits as systemd writes it. The file lives in /etc, whose
// overlay has its upper layer on STATE (initramfs/stage1's setupEtc), so an
// id written once survives updates and rollbacks of the slots: both slots
// see the same upper layer.
package machineid

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/google/renameio/v2"
)

// Path is where the id lives.
const Path = "/etc/machine-id"

// Valid reports whether id is systemd's format: 32 lowercase hex digits,
// not all zero (systemd refuses the null id).
func Valid(id string) bool {
	if len(id) != 32 || id == strings.Repeat("0", 32) {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Read returns the id in path (one line, trailing newline allowed).
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("machine id: %w", err)
	}
	if len(b) > 64 {
		return "", fmt.Errorf("machine id: %s holds %d bytes: want 32 hex digits and a newline", path, len(b))
	}
	id := strings.TrimSuffix(string(b), "\n")
	if !Valid(id) {
		return "", fmt.Errorf("machine id: %s holds %q: want 32 lowercase hex digits (systemd's format)", path, id)
	}
	return id, nil
}

// New returns a fresh random id (a version 4 UUID's bits, as systemd
// makes them, without the dashes).
func New() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("machine id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:]), nil
}

// Ensure returns the id in path, writing a new one first when the file is
// missing or does not hold a valid id. It runs after provisioning, so an id
// an Ignition config wrote wins; a config's invalid one is replaced, and
// replaced is then true so the caller can say so. The image itself cannot
// carry an id (configs refuses /etc/machine-id in root.files): one found
// here is this machine's own.
func Ensure(path string) (id string, created, replaced bool, err error) {
	id, rerr := Read(path)
	if rerr == nil {
		return id, false, false, nil
	}
	_, statErr := os.Stat(path)
	replaced = statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return "", false, false, fmt.Errorf("machine id: %w", statErr)
	}
	if id, err = New(); err != nil {
		return "", false, false, err
	}
	if err := renameio.WriteFile(path, []byte(id+"\n"), 0o444); err != nil {
		return "", false, false, fmt.Errorf("machine id: write %s: %w", path, err)
	}
	return id, true, replaced, nil
}
