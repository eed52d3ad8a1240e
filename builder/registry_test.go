package builder

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-memory registry on loopback
// (plain http, which slate allows only there). Corrupt, when set, picks
// the requests whose answer gets one byte changed: a registry that
// serves other bytes than the digest it is asked for.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu      sync.Mutex
	corrupt func(*http.Request) bool
	gets    int // blob and manifest GETs served
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		bad := r.corrupt != nil && r.corrupt(req)
		if req.Method == http.MethodGet && (strings.Contains(req.URL.Path, "/blobs/") || strings.Contains(req.URL.Path, "/manifests/")) {
			r.gets++
		}
		r.mu.Unlock()
		if !bad {
			reg.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if len(body) > 0 {
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *testRegistry) setCorrupt(f func(*http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt = f
}

func (r *testRegistry) fetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets
}

// push uploads img as repo:tag and returns the reference and the
// manifest digest.
func (r *testRegistry) push(t testing.TB, repo, tag string, img v1.Image) (string, string) {
	t.Helper()
	ref := r.host + "/" + repo + ":" + tag
	tg, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tg, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d.String()
}

// testImage is a small image built in the test: a layer of random bytes
// (seeded: the same seed gives the same image) and a layer with account
// files and a program, run as the image's user app (1000:1000).
func testImage(t testing.TB, randomBytes, seed int64) v1.Image {
	t.Helper()
	rl, err := random.Layer(randomBytes, types.DockerLayer, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct {
		name, body string
		mode       int64
		dir, caps  bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"},
		{name: "etc/group", mode: 0o644, body: "root:x:0:\napp:x:1000:\n"},
		{name: "app/", mode: 0o755, dir: true},
		{name: "app/hello", mode: 0o755, body: "static program stand-in\n"},
		{name: "srv/", mode: 0o755, dir: true},
		// a file capability, as ping has in many images
		{name: "app/ping", mode: 0o755, body: "ping stand-in\n", caps: true},
	} {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.dir {
			h.Typeflag = tar.TypeDir
		}
		if e.caps {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(netRawCap)}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	static := b.Bytes()
	sl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(static)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, rl, sl)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = "app"
	cf.Config.Entrypoint = []string{"/app/hello"}
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	cf.Config.WorkingDir = "/srv"
	cf.Config.StopSignal = "SIGQUIT"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// withStopSignal is img with another STOPSIGNAL.
func withStopSignal(t testing.TB, img v1.Image, sig string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.StopSignal = sig
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// netRawCap is security.capability (VFS_CAP_REVISION_2, effective) with
// CAP_NET_RAW (13) permitted.
var netRawCap = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// testCache is a cache folder for one test: the kernel, systemd-boot,
// runc and module index of the real cache (linked, read only), and its
// own, empty, image cache.
func testCache(t testing.TB, withRunc bool) string {
	t.Helper()
	real := realCache(t)
	dir := t.TempDir()
	names := []string{"kernel", "systemd-boot", "modindex"}
	if withRunc {
		if _, err := os.Stat(filepath.Join(real, "runc", RuncVersion, "runc")); err != nil {
			msg := "no runc in " + real + " (run scripts/fetch-runc.sh)"
			if os.Getenv("CI") != "" {
				t.Fatal(msg + "; CI is set")
			}
			t.Skip(msg)
		}
		names = append(names, "runc")
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(real, n)); err == nil {
			if err := os.Symlink(filepath.Join(real, n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// realCache is the cache the integration tests and benchmarks build from.
// It skips them when it has no kernel, or fails them under CI.
func realCache(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("SLATE_CACHE")
	if cache == "" {
		cache = filepath.Join("..", ".cache")
	}
	cache, err := filepath.Abs(cache)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-amd64", "boot", "vmlinuz-*")); len(m) == 0 {
		msg := "no kernel in " + cache + " (run scripts/fetch-kernel.sh)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI is set")
		}
		t.Skip(msg)
	}
	return cache
}

var (
	sharedSlateOnce sync.Once
	sharedSlatePath string
	sharedSlateErr  error
	sharedSlateDir  string
)

// sharedSlate is staticSlate built once for every container test.
func sharedSlate(t testing.TB) string {
	t.Helper()
	sharedSlateOnce.Do(func() {
		sharedSlateDir, sharedSlateErr = os.MkdirTemp("", "slate-builder-test-")
		if sharedSlateErr != nil {
			return
		}
		sharedSlatePath = filepath.Join(sharedSlateDir, "slate")
		sharedSlateErr = buildSlate(sharedSlatePath)
	})
	if sharedSlateErr != nil {
		t.Fatal(sharedSlateErr)
	}
	return sharedSlatePath
}

func buildSlate(out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/slate")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/slate: %w\n%s", err, b)
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedSlateDir != "" {
		os.RemoveAll(sharedSlateDir)
	}
	os.Exit(code)
}
