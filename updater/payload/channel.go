package payload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/zstd"
)

// Names of the stored files inside a version folder.
const (
	RootFile   = "root.img.zst"
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
)

// encoderWindow is the zstd window AddToChannel writes; well below MaxWindow so
// every machine can read what any builder writes.
const encoderWindow = 8 << 20

// Release is one version to publish with AddToChannel.
type Release struct {
	Name          string
	Version       string
	KernelVersion string
	KernelArgs    []string // see Manifest.KernelArgs
	Created       time.Time
	Root          io.Reader // the raw root partition image, streamed once
	RootSize      int64     // exact length of Root
	Kernel        string    // path of the kernel image
	Initrd        string    // path of the initramfs
}

// AddToChannel publishes in into the channel folder dir (created if missing):
//
//	dir/<version>/root.img.zst, vmlinuz, initrd.img, manifest.json, manifest.json.sig
//	dir/manifest.json, dir/manifest.json.sig   (only if <version> is the newest)
//
// The root image is compressed with zstd as it streams in, and every size and
// hash is computed while writing, so memory stays bounded whatever the image
// size. The version folder is assembled under a hidden temporary name and
// renamed into place, so a reader never sees half a version; the top-level
// files are replaced atomically one after the other (manifest first), so a
// client may for a moment see the new manifest with the old signature and must
// treat that as "try again later".
//
// Publishing a version that already exists succeeds if its content (name,
// kernel version, creation time, and each file's size and sha256) is the same
// and its manifest is signed by key; otherwise it is an error naming the
// version. One writer per channel at a time.
func AddToChannel(dir string, key ed25519.PrivateKey, in Release) (*Manifest, error) {
	m, err := addToChannel(dir, key, in)
	if err != nil {
		return nil, fmt.Errorf("add %s to channel %s: %w", in.Version, dir, err)
	}
	return m, nil
}

func addToChannel(dir string, key ed25519.PrivateKey, in Release) (*Manifest, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := validateName(in.Name); err != nil {
		return nil, err
	}
	if err := ValidateVersion(in.Version); err != nil {
		return nil, err
	}
	if err := validateKernelVersion(in.KernelVersion); err != nil {
		return nil, err
	}
	if in.Created.IsZero() {
		return nil, errors.New("release has no creation time")
	}
	created, err := parseCreated(in.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return nil, err
	}
	if in.Root == nil {
		return nil, errors.New("release has no root image")
	}
	if in.RootSize <= 0 || in.RootSize > MaxFileSize {
		return nil, fmt.Errorf("root size %d is out of range (1 to %d)", in.RootSize, MaxFileSize)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	// Build the version in a hidden folder next to its final place, so the
	// rename is within one file system. Serve hides dot names.
	tmp, err := os.MkdirTemp(dir, ".incoming-"+in.Version+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}

	m := &Manifest{
		Format:        FormatVersion,
		Name:          in.Name,
		Version:       in.Version,
		KernelVersion: in.KernelVersion,
		KernelArgs:    in.KernelArgs,
		Created:       created,
	}
	root, err := writeZstd(filepath.Join(tmp, RootFile), in.Root, in.RootSize)
	if err != nil {
		return nil, fmt.Errorf("root image: %w", err)
	}
	root.Role, root.Path = RoleRoot, path.Join(in.Version, RootFile)
	kernel, err := copyFile(filepath.Join(tmp, KernelFile), in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	kernel.Role, kernel.Path = RoleKernel, path.Join(in.Version, KernelFile)
	initrd, err := copyFile(filepath.Join(tmp, InitrdFile), in.Initrd)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	initrd.Role, initrd.Path = RoleInitrd, path.Join(in.Version, InitrdFile)
	m.Files = []File{root, kernel, initrd}

	data := m.Marshal()
	// What we write must be what every reader accepts.
	if _, err := ParseManifest(data); err != nil {
		return nil, fmt.Errorf("internal error: generated manifest does not parse: %w", err)
	}
	sig := Sign(key, data)
	if err := writeSynced(filepath.Join(tmp, ManifestFile), data); err != nil {
		return nil, err
	}
	if err := writeSynced(filepath.Join(tmp, SignatureFile), sig); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}

	final := filepath.Join(dir, in.Version)
	existing, err := readVersion(final, key.Public().(ed25519.PublicKey))
	switch {
	case err == nil:
		if !sameContent(existing.m, m) {
			return nil, fmt.Errorf("version %s already exists in the channel with different content; publish a new version instead", in.Version)
		}
		// Identical: keep what is there (its compressed bytes may differ
		// if an older zstd wrote them) and make sure the top level is right.
		m, data, sig = existing.m, existing.data, existing.sig
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(tmp, final); err != nil {
			return nil, fmt.Errorf("version %s: %w", in.Version, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("version %s already exists in the channel but cannot be used: %w", in.Version, err)
	}

	if err := updateTop(dir, m, data, sig); err != nil {
		return nil, err
	}
	return m, nil
}

type signedManifest struct {
	m         *Manifest
	data, sig []byte
}

// readVersion loads and checks the manifest of an existing version folder. A
// missing folder gives an error wrapping fs.ErrNotExist.
func readVersion(dir string, pub ed25519.PublicKey) (*signedManifest, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, noExist(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, noExist(err)
	}
	m, err := OpenManifest(pub, data, sig)
	if err != nil {
		return nil, err
	}
	return &signedManifest{m: m, data: data, sig: sig}, nil
}

// noExist hides fs.ErrNotExist for files inside a folder that exists: that
// folder is damaged, not absent, and must not be replaced silently.
func noExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("incomplete version folder: %s", err.Error())
	}
	return err
}

func sameContent(a, b *Manifest) bool {
	if a.Name != b.Name || a.Version != b.Version || a.KernelVersion != b.KernelVersion || !a.Created.Equal(b.Created) ||
		strings.Join(a.KernelArgs, " ") != strings.Join(b.KernelArgs, " ") {
		return false
	}
	for _, r := range roles {
		fa, oka := a.File(r)
		fb, okb := b.File(r)
		if !oka || !okb || fa.Size != fb.Size || fa.SHA256 != fb.SHA256 || fa.Path != fb.Path {
			return false
		}
	}
	return true
}

// updateTop points the channel's top-level manifest at m if m is newer than
// the one there. The top-level manifest is a copy of the version's own bytes:
// paths are relative to the channel folder, so the same signed bytes are valid
// in both places.
func updateTop(dir string, m *Manifest, data, sig []byte) error {
	top := filepath.Join(dir, ManifestFile)
	cur, err := os.ReadFile(top)
	switch {
	case err == nil:
		cm, err := ParseManifest(cur)
		if err != nil {
			return fmt.Errorf("current top-level manifest: %w", err)
		}
		if CompareVersions(m.Version, cm.Version) < 0 {
			return nil
		}
		if CompareVersions(m.Version, cm.Version) == 0 && bytes.Equal(cur, data) {
			// Already current; rewrite only the signature if it differs
			// (a crash between the two renames leaves them apart).
			if s, err := os.ReadFile(filepath.Join(dir, SignatureFile)); err == nil && bytes.Equal(s, sig) {
				return nil
			}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return err
	}
	if err := renameio.WriteFile(top, data, 0o644); err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(dir, SignatureFile), sig, 0o644)
}

// writeZstd compresses size bytes from r into the new file dst and returns
// the sizes and hashes of both sides.
func writeZstd(dst string, r io.Reader, size int64) (File, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	f, err := Compress(out, r, size)
	if err != nil {
		return File{}, err
	}
	if err := out.Sync(); err != nil {
		return File{}, err
	}
	return f, out.Close()
}

// Compress streams exactly size bytes from r through zstd into w, as a
// channel stores a root image, and returns both sides' sizes and hashes. Memory use
// is the encoder's window and buffers, independent of size.
func Compress(w io.Writer, r io.Reader, size int64) (File, error) {
	stored := &hashWriter{w: w, sum: sha256.New()}
	enc, err := zstd.NewWriter(stored,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(encoderWindow),
		// One goroutine: the output is the same for the same input and
		// options on any machine, which reproducible builds need.
		zstd.WithEncoderConcurrency(1),
	)
	if err != nil {
		return File{}, err
	}
	raw := &hashWriter{w: enc, sum: sha256.New()}
	// Read one byte past size to catch a source longer than promised.
	n, err := io.Copy(raw, io.LimitReader(r, size+1))
	if err != nil {
		enc.Close()
		return File{}, fmt.Errorf("after %d bytes: %w", n, err)
	}
	if n != size {
		enc.Close()
		if n > size {
			return File{}, fmt.Errorf("image is longer than its stated size %d", size)
		}
		return File{}, fmt.Errorf("image has %d bytes, stated size is %d", n, size)
	}
	if err := enc.Close(); err != nil {
		return File{}, err
	}
	return File{
		Size:             raw.n,
		SHA256:           hex.EncodeToString(raw.sum.Sum(nil)),
		CompressedSize:   stored.n,
		CompressedSHA256: hex.EncodeToString(stored.sum.Sum(nil)),
		Compression:      CompressionZstd,
	}, nil
}

// copyFile copies src to dst uncompressed: kernels and initramfs images are
// already compressed.
func copyFile(dst, src string) (File, error) {
	if src == "" {
		return File{}, errors.New("no file given")
	}
	in, err := os.Open(src)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	w := &hashWriter{w: out, sum: sha256.New()}
	if _, err := io.Copy(w, io.LimitReader(in, MaxFileSize+1)); err != nil {
		return File{}, fmt.Errorf("copy %s: %w", src, err)
	}
	if w.n == 0 || w.n > MaxFileSize {
		return File{}, fmt.Errorf("%s: size %d is out of range (1 to %d)", src, w.n, MaxFileSize)
	}
	if err := out.Sync(); err != nil {
		return File{}, err
	}
	if err := out.Close(); err != nil {
		return File{}, err
	}
	h := hex.EncodeToString(w.sum.Sum(nil))
	return File{Size: w.n, CompressedSize: w.n, SHA256: h, CompressedSHA256: h, Compression: CompressionNone}, nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
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
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type hashWriter struct {
	w   io.Writer
	sum hash.Hash
	n   int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.sum.Write(p[:n])
	h.n += int64(n)
	return n, err
}
