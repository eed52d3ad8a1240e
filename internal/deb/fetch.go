package deb

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ulikunitz/xz"
)

// Timeouts of a mirror request.
const (
	DialTimeout   = 30 * time.Second
	HeaderTimeout = 60 * time.Second
	// IdleTimeout bounds a stalled body: no byte for this long fails.
	IdleTimeout = 60 * time.Second
)

// Client fetches from a mirror. The zero value uses its own http.Client
// with slate's timeouts.
type Client struct {
	HTTP *http.Client
}

func (c *Client) http() *http.Client {
	if c != nil && c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: DialTimeout}).DialContext,
		TLSHandshakeTimeout:   DialTimeout,
		ResponseHeaderTimeout: HeaderTimeout,
		MaxIdleConnsPerHost:   4,
	},
}

// get fetches mirror/rel into w, at most limit bytes.
func (c *Client) get(ctx context.Context, mirror, rel string, limit int64, w io.Writer) (int64, error) {
	u := strings.TrimSuffix(mirror, "/") + "/" + rel
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	if resp.ContentLength > limit {
		return 0, fmt.Errorf("fetch %s: %d bytes, more than the bound of %d", u, resp.ContentLength, limit)
	}
	// a body that stalls for IdleTimeout is cancelled
	timer := time.AfterFunc(IdleTimeout, cancel)
	defer timer.Stop()
	body := &idleReader{r: resp.Body, t: timer}
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	if err != nil {
		return n, fmt.Errorf("fetch %s: %w", u, err)
	}
	if n > limit {
		return n, fmt.Errorf("fetch %s: more than the bound of %d bytes", u, limit)
	}
	return n, nil
}

type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.t.Reset(IdleTimeout)
	return n, err
}

// FetchRelease fetches and verifies dists/SUITE/InRelease.
func (c *Client) FetchRelease(ctx context.Context, mirror, suite string, ring []byte, ringName string) (*Release, error) {
	keys, err := ParseKeyring(ring, ringName)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := c.get(ctx, mirror, "dists/"+suite+"/InRelease", MaxInRelease, &buf); err != nil {
		return nil, err
	}
	rel, err := ParseInRelease(buf.Bytes(), keys)
	if err != nil {
		return nil, fmt.Errorf("%s dists/%s: %w", mirror, suite, err)
	}
	// a release signed for another suite (an old one replayed) is refused
	if rel.Suite != suite && rel.Codename != suite {
		return nil, fmt.Errorf("%s dists/%s: the signed release is of suite %q (codename %q)", mirror, suite, rel.Suite, rel.Codename)
	}
	return rel, nil
}

// FetchIndex fetches a component's Packages index (xz, else gz) for
// amd64, checks its size and sha256 against the release and parses it.
func (c *Client) FetchIndex(ctx context.Context, mirror, suite, component string, rel *Release) ([]*Package, error) {
	for _, comp := range []string{".xz", ".gz"} {
		name := component + "/binary-" + Arch + "/Packages" + comp
		sum, ok := rel.Files[name]
		if !ok {
			continue
		}
		if sum.Size > MaxIndex {
			return nil, fmt.Errorf("%s: %d bytes, more than the bound of %d", name, sum.Size, MaxIndex)
		}
		var buf bytes.Buffer
		if _, err := c.get(ctx, mirror, "dists/"+suite+"/"+name, sum.Size, &buf); err != nil {
			return nil, err
		}
		if err := checkSum(buf.Bytes(), sum); err != nil {
			return nil, fmt.Errorf("dists/%s/%s: %w", suite, name, err)
		}
		r, err := decompress(comp, &buf)
		if err != nil {
			return nil, fmt.Errorf("dists/%s/%s: %w", suite, name, err)
		}
		pkgs, err := ParseIndex(&boundedReader{r: r, left: MaxIndexPlain, name: name})
		if err != nil {
			return nil, fmt.Errorf("dists/%s/%s: %w", suite, name, err)
		}
		return pkgs, nil
	}
	return nil, fmt.Errorf("dists/%s: the release lists no %s/binary-%s/Packages.xz or .gz", suite, component, Arch)
}

func checkSum(data []byte, want FileSum) error {
	if int64(len(data)) != want.Size {
		return fmt.Errorf("%d bytes, the release says %d", len(data), want.Size)
	}
	got := sha256.Sum256(data)
	if hex.EncodeToString(got[:]) != want.SHA256 {
		return fmt.Errorf("sha256 %x, the release says %s", got, want.SHA256)
	}
	return nil
}

func decompress(ext string, r io.Reader) (io.Reader, error) {
	switch ext {
	case ".xz":
		return xz.NewReader(bufio.NewReader(r))
	case ".gz":
		return gzip.NewReader(r)
	}
	return r, nil
}

type boundedReader struct {
	r    io.Reader
	left int64
	name string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s: more than %d bytes decompressed", b.name, int64(MaxIndexPlain))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Pinned is one package of a lock: what to fetch and how to check it.
type Pinned struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	Filename     string `json:"filename"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	// Source is the suite (of the lock's sources) it comes from.
	Source string `json:"source,omitempty"`
}

// Pin is p's lock entry.
func (p *Package) Pin() Pinned {
	return Pinned{Name: p.Name, Version: p.Version, Architecture: p.Architecture, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256, Source: p.Source}
}

// CachePath is where p's .deb lives in the cache: deb/<sha256>.deb.
func CachePath(cacheDir string, p Pinned) string {
	return filepath.Join(cacheDir, "deb", p.SHA256+".deb")
}

// ErrCorrupt marks a .deb whose size or sha256 is not the index's.
var ErrCorrupt = errors.New("does not match the index")

// verifyFile checks a cached file's size and sha256.
func verifyFile(path string, p Pinned) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, p.Size+1))
	if err != nil {
		return err
	}
	if n != p.Size {
		return fmt.Errorf("%s: %d bytes, want %d: %w", path, n, p.Size, ErrCorrupt)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%s: sha256 %s, want %s: %w", path, got, p.SHA256, ErrCorrupt)
	}
	return nil
}

// Fetch makes sure each package's .deb is in the cache and checked, and
// returns their paths in the order of pins. A cached file is verified
// again; one that fails is fetched again. Only missing files are fetched,
// by their pool path.
func (c *Client) Fetch(ctx context.Context, mirror, cacheDir string, pins []Pinned) ([]string, error) {
	dir := filepath.Join(cacheDir, "deb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := make([]string, len(pins))
	for i, p := range pins {
		if !isHexSHA256(p.SHA256) || checkPoolPath(p.Filename) != nil || p.Size <= 0 || p.Size > MaxDeb {
			return nil, fmt.Errorf("package %s %s: bad filename, size or sha256", p.Name, p.Version)
		}
		dst := CachePath(cacheDir, p)
		paths[i] = dst
		if err := verifyFile(dst, p); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		if err := c.download(ctx, mirror, dir, dst, p); err != nil {
			return nil, fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
		}
	}
	return paths, nil
}

func (c *Client) download(ctx context.Context, mirror, dir, dst string, p Pinned) error {
	tmp, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := c.get(ctx, mirror, p.Filename, p.Size, io.MultiWriter(tmp, h))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != p.Size {
		return fmt.Errorf("%s: %d bytes, the index says %d: %w", p.Filename, n, p.Size, ErrCorrupt)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%s: sha256 %s, the index says %s: %w", p.Filename, got, p.SHA256, ErrCorrupt)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
