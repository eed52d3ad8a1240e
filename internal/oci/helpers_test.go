package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testRegistry is ggcr's in-memory registry on loopback, with a request
// counter and a hook to serve other bytes for a path.
type testRegistry struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	replace  map[string][]byte // URL path -> body served instead
	// fail503 answers that many manifest requests with 503 first.
	fail503 atomic.Int64
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{replace: map[string][]byte{}}
	inner := registry.New(registry.Logger(discardLogger()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if strings.Contains(req.URL.Path, "/manifests/") && r.fail503.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.mu.Lock()
		body, ok := r.replace[req.URL.Path]
		r.mu.Unlock()
		if ok && req.Method == http.MethodGet {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
			return
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// host is "127.0.0.1:PORT".
func (r *testRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *testRegistry) serveInstead(path string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replace[path] = body
}

// push writes img as host/repo:tag and returns its digest.
func (r *testRegistry) push(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.host() + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func (r *testRegistry) pushIndex(t testing.TB, repo, tag string, ix v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.host() + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, ix); err != nil {
		t.Fatal(err)
	}
	d, err := ix.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	pax      map[string]string
}

func dirE(name string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeDir, mode: mode}
}
func fileE(name, body string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}

func tarBytes(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link, PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf builds an image of the layers (tar bytes) with config cfg.
func imageOf(t testing.TB, cfg v1.Config, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, b := range layers {
		var err error
		if img, err = mutate.AppendLayers(img, layerOf(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// mapTree is a Tree in memory, recording the calls in order.
type mapTree struct {
	entries map[string]*treeEntry
	calls   []string
}

type treeEntry struct {
	kind     string // dir, file, symlink, link, fifo
	mode     fs.FileMode
	uid, gid uint32
	data     string
	target   string
	xattrs   map[string]string
}

func newMapTree() *mapTree { return &mapTree{entries: map[string]*treeEntry{}} }

func (m *mapTree) log(format string, a ...any) { m.calls = append(m.calls, fmt.Sprintf(format, a...)) }

func (m *mapTree) parentOK(p string) error {
	if p == "/" {
		return nil
	}
	dir := p[:strings.LastIndex(p, "/")]
	if dir == "" {
		dir = "/"
	}
	if e := m.entries[dir]; e == nil || e.kind != "dir" {
		return fmt.Errorf("parent of %s not added first", p)
	}
	return nil
}

func (m *mapTree) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	m.log("mkdir %s %v %d:%d", p, perm, uid, gid)
	if err := m.parentOK(p); err != nil {
		return err
	}
	m.entries[p] = &treeEntry{kind: "dir", mode: perm, uid: uid, gid: gid}
	return nil
}

func (m *mapTree) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	if err := m.parentOK(p); err != nil {
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if int64(len(b)) != size {
		return fmt.Errorf("%s: %d bytes, size %d", p, len(b), size)
	}
	m.log("file %s %v %d:%d %d", p, perm, uid, gid, size)
	m.entries[p] = &treeEntry{kind: "file", mode: perm, uid: uid, gid: gid, data: string(b)}
	return nil
}

func (m *mapTree) Symlink(p, target string, uid, gid uint32) error {
	m.log("symlink %s %s", p, target)
	if err := m.parentOK(p); err != nil {
		return err
	}
	m.entries[p] = &treeEntry{kind: "symlink", target: target, uid: uid, gid: gid}
	return nil
}

func (m *mapTree) Link(p, existing string) error {
	m.log("link %s %s", p, existing)
	if err := m.parentOK(p); err != nil {
		return err
	}
	e := m.entries[existing]
	if e == nil || e.kind == "dir" {
		return fmt.Errorf("link %s to %s: not there", p, existing)
	}
	m.entries[p] = &treeEntry{kind: "link", target: existing}
	return nil
}

func (m *mapTree) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	m.log("mknod %s %v", p, mode)
	if err := m.parentOK(p); err != nil {
		return err
	}
	m.entries[p] = &treeEntry{kind: "fifo", mode: mode, uid: uid, gid: gid}
	return nil
}

func (m *mapTree) SetXattr(p, name string, value []byte) error {
	m.log("xattr %s %s", p, name)
	e := m.entries[p]
	if e == nil {
		return fmt.Errorf("xattr on %s before the entry", p)
	}
	if e.xattrs == nil {
		e.xattrs = map[string]string{}
	}
	e.xattrs[name] = string(value)
	return nil
}

func (m *mapTree) paths() []string {
	var ps []string
	for p := range m.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
