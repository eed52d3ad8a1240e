package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The cache is content-addressed: CacheDir/blobs/sha256/<hex> holds
// manifests, indexes, config blobs and layer blobs (compressed, as the
// registry serves them), and CacheDir/tags/<sha256 of the reference>.json
// the digest a tag last resolved to (for PullOptions.Offline). A file
// appears only by rename after its digest was checked, so an interrupted
// build leaves at most a temporary file, never a bad blob; a blob is
// hashed again whenever it is used.
type cache struct{ dir string }

// Digest is "sha256:" and 64 lowercase hex digits; nothing else is
// accepted from a manifest (it becomes a file name).
func checkDigest(d string) (string, error) {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return "", fmt.Errorf("digest %q: not sha256:<64 hex digits>", d)
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("digest %q: not sha256:<64 hex digits>", d)
		}
	}
	return hexPart, nil
}

func (c *cache) blobPath(d string) (string, error) {
	h, err := checkDigest(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.dir, "blobs", "sha256", h), nil
}

// errMiss is a blob that is not in the cache (or was there with the wrong
// content and has been removed).
var errMiss = errors.New("not in the cache")

// verify hashes the cached blob d and checks its size (size < 0: any).
// A blob with other content is removed and reported as a miss, so that
// the next fetch replaces it.
func (c *cache) verify(d string, size int64) (string, error) {
	p, err := c.blobPath(d)
	if err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", errMiss
	}
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("cache: read %s: %w", p, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d || (size >= 0 && n != size) {
		_ = os.Remove(p)
		return "", errMiss
	}
	return p, nil
}

// read returns a small cached blob (a manifest or a config), verified.
func (c *cache) read(d string, limit int64) ([]byte, error) {
	p, err := c.verify(d, -1)
	if err != nil {
		return nil, err
	}
	b, err := readLimited(p, limit)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return b, nil
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, limit)
	}
	return b, nil
}

// digestMismatch is content whose digest is not the one asked for.
type digestMismatch struct{ want, got string }

func (e *digestMismatch) Error() string {
	return fmt.Sprintf("the registry served content with digest %s for %s", e.got, e.want)
}

// put stores r as blob d: it reads at most size bytes (size < 0: up to
// limit), hashes them, and renames the temporary file into place only if
// the digest (and the size) is d's.
func (c *cache) put(d string, size, limit int64, r io.Reader) (string, error) {
	p, err := c.blobPath(d)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	defer tmp.Close()
	max := limit
	if size >= 0 {
		max = size
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, max+1))
	if err != nil {
		return "", err
	}
	if n > max {
		return "", fmt.Errorf("more than the %d bytes expected", max)
	}
	if size >= 0 && n != size {
		return "", fmt.Errorf("%d bytes instead of the %d of the descriptor", n, size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
		return "", &digestMismatch{want: d, got: got}
	}
	// No fsync: a blob a crash left short is caught by the digest check
	// every use makes, and fetched again.
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return p, nil
}

// tagRecord is what a tag resolved to.
type tagRecord struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

func (c *cache) tagPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(c.dir, "tags", hex.EncodeToString(sum[:])+".json")
}

func (c *cache) tag(ref string) (string, error) {
	b, err := readLimited(c.tagPath(ref), 4096)
	if errors.Is(err, os.ErrNotExist) {
		return "", errMiss
	}
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	var t tagRecord
	if err := json.Unmarshal(b, &t); err != nil || t.Ref != ref {
		return "", errMiss
	}
	if _, err := checkDigest(t.Digest); err != nil {
		return "", errMiss
	}
	return t.Digest, nil
}

func (c *cache) setTag(ref, digest string) error {
	b, err := json.Marshal(tagRecord{Ref: ref, Digest: digest})
	if err != nil {
		return err
	}
	p := c.tagPath(ref)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// hashingReader hashes what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingReader) digest() string { return "sha256:" + hex.EncodeToString(h.h.Sum(nil)) }
