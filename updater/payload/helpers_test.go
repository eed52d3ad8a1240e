package payload

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slateos/slate/internal/fetch"
)

// sparseImage is a deterministic stand-in for a root partition: blocks of
// 64 KiB, one in every `every` random (seeded), the rest zeros, as a mostly
// empty ext4 image is.
type sparseImage struct {
	size  int64
	every int64
	seed  uint64
	off   int64
	block [64 << 10]byte
	cur   int64 // index of the block in block, -1 if none
}

const imgBlock = 64 << 10

func newSparseImage(size, every int64, seed uint64) *sparseImage {
	return &sparseImage{size: size, every: every, seed: seed, cur: -1}
}

func (s *sparseImage) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if rem := s.size - s.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := 0
	for n < len(p) {
		bi := s.off / imgBlock
		if bi != s.cur {
			s.fill(bi)
		}
		k := copy(p[n:], s.block[s.off%imgBlock:])
		n += k
		s.off += int64(k)
	}
	return n, nil
}

func (s *sparseImage) fill(bi int64) {
	s.cur = bi
	if s.every > 0 && bi%s.every == s.every/2 {
		r := rand.New(rand.NewPCG(s.seed, uint64(bi)))
		for i := 0; i < len(s.block); i += 8 {
			binary.LittleEndian.PutUint64(s.block[i:], r.Uint64())
		}
		return
	}
	clear(s.block[:])
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// sameStream compares two readers chunk by chunk without holding either whole.
func sameStream(t testing.TB, want, got io.Reader) {
	t.Helper()
	const chunk = 1 << 20
	a, b := make([]byte, chunk), make([]byte, chunk)
	var off int64
	for {
		na, erra := io.ReadFull(want, a)
		nb, errb := io.ReadFull(got, b)
		if !bytes.Equal(a[:na], b[:nb]) {
			t.Fatalf("streams differ in the MiB at offset %d (lengths %d, %d)", off, na, nb)
		}
		off += int64(na)
		wantEnd := erra == io.EOF || erra == io.ErrUnexpectedEOF
		gotEnd := errb == io.EOF || errb == io.ErrUnexpectedEOF
		if erra != nil && !wantEnd {
			t.Fatalf("reading expected stream: %v", erra)
		}
		if errb != nil && !gotEnd {
			t.Fatalf("reading stream at %d: %v", off, errb)
		}
		if wantEnd || gotEnd {
			if wantEnd != gotEnd {
				t.Fatalf("streams end at different places (at %d)", off)
			}
			return
		}
	}
}

// testRelease describes one version in the shared fixture channel.
type testRelease struct {
	version         string
	rootSize, every int64
	kernel, initrd  []byte
}

func (r testRelease) root() *sparseImage {
	return newSparseImage(r.rootSize, r.every, seedOf(r.version))
}

func seedOf(s string) uint64 {
	h := sha256.Sum256([]byte(s))
	return binary.LittleEndian.Uint64(h[:])
}

// Versions are added out of order; the newest by semver is 1.2.0-rc.1.
var fixtureReleases = []testRelease{
	{version: "1.1.0", rootSize: 64 << 20, every: 4},
	{version: "1.0.0", rootSize: 4 << 20, every: 8},
	{version: "1.2.0-rc.1", rootSize: 2 << 20, every: 8},
	{version: "0.9.0", rootSize: 1 << 20, every: 2},
	{version: "1.2.0-beta.2", rootSize: 3<<20 + 12345, every: 3},
}

const fixtureNewest = "1.2.0-rc.1"

var fixtureCreated = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

type fixtureT struct {
	keyDir, channel string
	priv            ed25519.PrivateKey
	pub             ed25519.PublicKey
	releases        map[string]testRelease
	manifests       map[string]*Manifest
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixtureT
	fixtureErr  error
	fixtureTmp  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureTmp != "" {
		os.RemoveAll(fixtureTmp)
	}
	os.Exit(code)
}

// fixture builds, once per test binary, a key pair and a channel with several
// versions. Tests must not modify it.
func fixture(t testing.TB) *fixtureT {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = buildFixture() })
	if fixtureErr != nil {
		t.Fatalf("building the fixture channel: %v", fixtureErr)
	}
	return fixtureVal
}

func buildFixture() (*fixtureT, error) {
	tmp, err := os.MkdirTemp("", "slate-payload-test-")
	if err != nil {
		return nil, err
	}
	fixtureTmp = tmp
	f := &fixtureT{
		keyDir:    filepath.Join(tmp, "keys"),
		channel:   filepath.Join(tmp, "channel"),
		releases:  map[string]testRelease{},
		manifests: map[string]*Manifest{},
	}
	if err := os.Mkdir(f.keyDir, 0o700); err != nil {
		return nil, err
	}
	if err := GenerateKey(f.keyDir); err != nil {
		return nil, err
	}
	if f.priv, err = LoadPrivateKey(filepath.Join(f.keyDir, PrivateKeyFile)); err != nil {
		return nil, err
	}
	if f.pub, err = LoadPublicKey(filepath.Join(f.keyDir, PublicKeyFile)); err != nil {
		return nil, err
	}
	for i, r := range fixtureReleases {
		r.kernel = randomBytes(3<<20+i*1000, seedOf("kernel"+r.version))
		r.initrd = randomBytes(1<<20+i*777, seedOf("initrd"+r.version))
		m, err := addTestRelease(f.channel, f.priv, r, filepath.Join(tmp, "in-"+r.version))
		if err != nil {
			return nil, err
		}
		f.releases[r.version] = r
		f.manifests[r.version] = m
	}
	return f, nil
}

func addTestRelease(channel string, key ed25519.PrivateKey, r testRelease, scratch string) (*Manifest, error) {
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, err
	}
	kernel := filepath.Join(scratch, "vmlinuz")
	initrd := filepath.Join(scratch, "initrd.img")
	if err := os.WriteFile(kernel, r.kernel, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(initrd, r.initrd, 0o644); err != nil {
		return nil, err
	}
	return AddToChannel(channel, key, Release{
		Name: "slate-demo", Version: r.version, KernelVersion: "6.1.0-56-amd64",
		Created: fixtureCreated, Root: r.root(), RootSize: r.rootSize,
		Kernel: kernel, Initrd: initrd,
	})
}

// expected returns the raw content a file of the fixture must decompress to.
func (f *fixtureT) expected(version, role string) io.Reader {
	r := f.releases[version]
	switch role {
	case RoleRoot:
		return r.root()
	case RoleKernel:
		return bytes.NewReader(r.kernel)
	default:
		return bytes.NewReader(r.initrd)
	}
}

// download is what the updater does with a channel URL: fetch and verify the
// top-level manifest, then stream every file through a Verifier. It returns
// the manifest and the number of HTTP requests per file.
func download(ctx context.Context, t testing.TB, client *http.Client, base string, pub ed25519.PublicKey, sink func(File, io.Reader) error) (*Manifest, map[string]int, error) {
	t.Helper()
	get := func(name string) ([]byte, error) {
		body, err := fetch.Open(ctx, client, base+"/"+name, 0, fetch.DefaultTimeouts.Idle)
		if err != nil {
			return nil, err
		}
		defer body.Close()
		return io.ReadAll(io.LimitReader(body, 1<<20))
	}
	data, err := get(ManifestFile)
	if err != nil {
		return nil, nil, err
	}
	m, err := OpenEnvelope([]ed25519.PublicKey{pub}, data)
	if err != nil {
		return nil, nil, err
	}
	requests := map[string]int{}
	for _, f := range m.Files {
		rr := fetch.NewResumingReader(ctx, client, base+"/"+f.Path)
		rr.Size = f.CompressedSize
		rr.Backoff, rr.MaxBackoff = time.Millisecond, 10*time.Millisecond
		v, err := OpenFile(f, rr)
		if err != nil {
			return m, requests, err
		}
		if sink == nil {
			sink = func(_ File, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
		}
		err = sink(f, v)
		v.Close()
		rr.Close()
		requests[f.Role] = rr.Requests()
		if err != nil {
			return m, requests, err
		}
	}
	return m, requests, nil
}

// readTop reads and verifies a channel's top manifest.
func readTop(t testing.TB, dir string, pubs ...ed25519.PublicKey) *Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenEnvelope(pubs, data)
	if err != nil {
		t.Fatalf("top-level manifest: %v", err)
	}
	return m
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
