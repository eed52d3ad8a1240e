package oci

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

const capValue = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// sampleLayers is a two-layer image with whiteouts, an opaque directory,
// hard links, symlinks, a setuid file, a capability and a user.
func sampleLayers(t testing.TB) ([]byte, []byte, string) {
	random := make([]byte, 100<<10)
	rand.Read(random)
	l1 := tarBytes(t,
		dirE("./", 0o755),
		dirE("etc/", 0o755),
		fileE("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o644),
		fileE("etc/group", "root:x:0:root\napp:x:1000:\nextra:x:2000:app\nother:x:3000:root,app\n", 0o644),
		dirE("bin/", 0o755),
		fileE("bin/hello", "hello v1", 0o755),
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		dirE("usr/bin/", 0o755),
		fileE("usr/bin/su", "su", 0o4755),
		tarEntry{name: "usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", pax: map[string]string{"SCHILY.xattr.security.capability": capValue}},
		tarEntry{name: "usr/bin/hello2", typ: tar.TypeLink, link: "bin/hello"},
		tarEntry{name: "usr/bin/hello3", typ: tar.TypeLink, link: "./bin/hello"},
		fileE("data/old/a.txt", "a", 0o600),
		dirE("data/old/sub/", 0o700),
		fileE("data/old/sub/b.txt", "b", 0o600),
		fileE("gone/x.txt", "x", 0o644),
		fileE("keep/file", "f", 0o644),
		fileE("keep/stays", "s", 0o644),
		tarEntry{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		tarEntry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		tarEntry{name: "home/app/", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000},
		tarEntry{name: "home/app/.profile", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, body: "x"},
		fileE("big", string(random), 0o644),
	)
	l2 := tarBytes(t,
		fileE(".wh.gone", "", 0),
		fileE("data/old/new.txt", "new", 0o644), // before the marker: it still stays
		fileE("data/old/.wh..wh..opq", "", 0),
		fileE("keep/.wh.file", "", 0),
		fileE("keep/added", "added", 0o644),
		fileE("bin/hello", "hello v2", 0o755),
		fileE(".wh..wh.plnk", "", 0), // aufs bookkeeping, ignored
		dirE("etc/", 0o711),          // a directory again: new mode, same contents
	)
	return l1, l2, string(random)
}

func sampleImage(t testing.TB) (v1.Image, string) {
	l1, l2, random := sampleLayers(t)
	img := imageOf(t, v1.Config{
		Entrypoint: []string{"/bin/hello"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "A=1"},
		User: "app", WorkingDir: "/home/app",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}}, StopSignal: "SIGQUIT",
	}, l1, l2)
	return img, random
}

func TestPullUnpack(t *testing.T) {
	reg := newRegistry(t)
	img, random := sampleImage(t)
	digest := reg.push(t, "app", "v1", img)
	cache := t.TempDir()

	got, err := Pull(context.Background(), reg.host()+"/app:v1", PullOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest || got.Manifest != digest {
		t.Errorf("digest %s manifest %s, want %s", got.Digest, got.Manifest, digest)
	}
	wantCfg := ImageConfig{
		Entrypoint: []string{"/bin/hello"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "A=1"},
		User: "app", WorkingDir: "/home/app", ExposedPorts: []string{"53/udp", "8080/tcp"}, StopSignal: "SIGQUIT",
	}
	if !reflect.DeepEqual(got.Config, wantCfg) {
		t.Errorf("config %+v, want %+v", got.Config, wantCfg)
	}

	stageDir := t.TempDir()
	root, err := got.Unpack(UnpackOptions{StageDir: stageDir})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if left, _ := os.ReadDir(stageDir); len(left) != 0 {
		t.Errorf("the stage is visible in its folder: %v", left)
	}
	tree := newMapTree()
	if err := root.WriteTo(tree); err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind   string
		mode   fs.FileMode
		data   string
		target string
	}
	wants := map[string]want{
		"/":                  {kind: "dir", mode: 0o755},
		"/etc":               {kind: "dir", mode: 0o711},
		"/etc/passwd":        {kind: "file", mode: 0o644},
		"/etc/group":         {kind: "file", mode: 0o644},
		"/bin":               {kind: "dir", mode: 0o755},
		"/bin/hello":         {kind: "file", mode: 0o755, data: "hello v2"},
		"/bin/sh":            {kind: "symlink", target: "/bin/busybox"},
		"/usr":               {kind: "dir", mode: 0o755},
		"/usr/bin":           {kind: "dir", mode: 0o755},
		"/usr/bin/su":        {kind: "file", mode: 0o755 | fs.ModeSetuid, data: "su"},
		"/usr/bin/ping":      {kind: "file", mode: 0o755, data: "ping"},
		"/usr/bin/hello2":    {kind: "file", mode: 0o755, data: "hello v1"}, // the old inode
		"/usr/bin/hello3":    {kind: "link", target: "/usr/bin/hello2"},
		"/data":              {kind: "dir", mode: 0o755},
		"/data/old":          {kind: "dir", mode: 0o755},
		"/data/old/new.txt":  {kind: "file", mode: 0o644, data: "new"},
		"/keep":              {kind: "dir", mode: 0o755},
		"/keep/stays":        {kind: "file", mode: 0o644, data: "s"},
		"/keep/added":        {kind: "file", mode: 0o644, data: "added"},
		"/run":               {kind: "dir", mode: 0o755},
		"/run/fifo":          {kind: "fifo", mode: fs.ModeNamedPipe | 0o600},
		"/home":              {kind: "dir", mode: 0o755},
		"/home/app":          {kind: "dir", mode: 0o750},
		"/home/app/.profile": {kind: "file", mode: 0o640, data: "x"},
		"/big":               {kind: "file", mode: 0o644, data: random},
	}
	for p, w := range wants {
		e := tree.entries[p]
		if e == nil {
			t.Errorf("%s missing", p)
			continue
		}
		if e.kind != w.kind || (w.kind != "link" && w.kind != "symlink" && e.mode != w.mode) ||
			(w.data != "" && e.data != w.data) || e.target != w.target {
			t.Errorf("%s: %s %v %q -> %q, want %s %v %q -> %q", p, e.kind, e.mode, trunc(e.data), e.target, w.kind, w.mode, trunc(w.data), w.target)
		}
	}
	for _, p := range tree.paths() {
		if _, ok := wants[p]; !ok {
			t.Errorf("unexpected %s", p)
		}
	}
	if e := tree.entries["/home/app/.profile"]; e != nil && (e.uid != 1000 || e.gid != 1000) {
		t.Errorf(".profile owner %d:%d", e.uid, e.gid)
	}
	if e := tree.entries["/usr/bin/ping"]; e == nil || e.xattrs["security.capability"] != capValue {
		t.Errorf("ping's capability not passed: %+v", e)
	}
	if root.Files != 11 {
		t.Errorf("Files %d", root.Files)
	}

	// The same layers give the same calls.
	again, err := got.Unpack(UnpackOptions{StageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	tree2 := newMapTree()
	if err := again.WriteTo(tree2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tree.calls, tree2.calls) {
		t.Error("two unpackings called the tree differently")
	}

	u, err := root.ResolveUser("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u, User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}) {
		t.Errorf("image user: %+v", u)
	}
	if _, err := root.ResolveUser("nobody"); err == nil || !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Errorf("unknown user: %v", err)
	}

	// Mount points: missing ones are created, a symlink is replaced.
	if err := root.AddMountPoints([]MountPoint{{Path: "/proc", Dir: true}, {Path: "/etc/resolv.conf"}, {Path: "/bin/sh", Dir: true}, {Path: "/var/lib/data", Dir: true}}); err != nil {
		t.Fatal(err)
	}
	tree3 := newMapTree()
	if err := root.WriteTo(tree3); err != nil {
		t.Fatal(err)
	}
	for p, kind := range map[string]string{"/proc": "dir", "/etc/resolv.conf": "file", "/bin/sh": "dir", "/var": "dir", "/var/lib/data": "dir", "/etc/passwd": "file"} {
		if e := tree3.entries[p]; e == nil || e.kind != kind {
			t.Errorf("after AddMountPoints %s is %+v, want a %s", p, e, kind)
		}
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	if err := root.WriteTo(newMapTree()); err == nil {
		t.Error("WriteTo after Close read contents")
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

func TestPullIndexAndCache(t *testing.T) {
	reg := newRegistry(t)
	img, _ := sampleImage(t)
	other := imageOf(t, v1.Config{Cmd: []string{"arm"}}, tarBytes(t, fileE("arm", "arm", 0o644)))
	ix := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ixDigest := reg.pushIndex(t, "multi", "latest", ix)
	imgDigest, _ := img.Digest()
	cache := t.TempDir()
	ctx := context.Background()

	got, err := Pull(ctx, reg.host()+"/multi:latest", PullOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != ixDigest || got.Manifest != imgDigest.String() {
		t.Fatalf("digest %s manifest %s, want %s and %s", got.Digest, got.Manifest, ixDigest, imgDigest)
	}

	cases := []struct {
		name    string
		ref     string
		opts    PullOptions
		maxReqs int64
	}{
		// The registry is asked only what the tag names now.
		{"warm tag", reg.host() + "/multi:latest", PullOptions{}, 2}, // GET /v2/, HEAD
		{"warm pinned", reg.host() + "/multi@" + ixDigest, PullOptions{}, 0},
		{"warm pinned, tag too", reg.host() + "/multi:latest@" + ixDigest, PullOptions{}, 0},
		{"offline tag", reg.host() + "/multi:latest", PullOptions{Offline: true}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := reg.requests.Load()
			tc.opts.CacheDir = cache
			g, err := Pull(ctx, tc.ref, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if n := reg.requests.Load() - before; n > tc.maxReqs {
				t.Errorf("%d requests, want at most %d", n, tc.maxReqs)
			}
			if g.Digest != ixDigest || g.Manifest != imgDigest.String() {
				t.Errorf("digest %s manifest %s", g.Digest, g.Manifest)
			}
		})
	}

	// A damaged cached blob is noticed and fetched again.
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	p := filepath.Join(cache, "blobs", "sha256", ld.Hex)
	if err := os.WriteFile(p, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, reg.host()+"/multi@"+ixDigest, PullOptions{CacheDir: cache, Offline: true}); err == nil || !strings.Contains(err.Error(), "not in the cache") {
		t.Errorf("offline with a damaged blob: %v", err)
	}
	os.WriteFile(p, []byte("damaged"), 0o644)
	if _, err := Pull(ctx, reg.host()+"/multi@"+ixDigest, PullOptions{CacheDir: cache}); err != nil {
		t.Fatalf("refetch: %v", err)
	}
	// Unpack checks the blob again as it reads it.
	g, err := Pull(ctx, reg.host()+"/multi@"+ixDigest, PullOptions{CacheDir: cache, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, err := g.Unpack(UnpackOptions{StageDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), ld.String()) {
		t.Errorf("unpack of a damaged blob: %v", err)
	}
	// No temporary files are left behind.
	tmps, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", ".tmp-*"))
	if len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

func TestPullErrors(t *testing.T) {
	reg := newRegistry(t)
	img, _ := sampleImage(t)
	digest := reg.push(t, "app", "v1", img)
	otherImg := imageOf(t, v1.Config{Cmd: []string{"x"}}, tarBytes(t, fileE("x", "x", 0o644)))
	otherDigest := reg.push(t, "other", "v1", otherImg)
	otherManifest, _ := otherImg.RawManifest()
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	compressed, _ := layers[1].Compressed()
	var blob []byte
	{
		b := make([]byte, 0, 1<<20)
		buf := make([]byte, 32<<10)
		for {
			n, err := compressed.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		blob = b
	}
	tampered := append([]byte(nil), blob...)
	tampered[len(tampered)-10] ^= 0xff

	// Tampering registries, each on its own repository.
	reg.push(t, "tampered", "v1", img)
	reg.serveInstead("/v2/tampered/blobs/"+ld.String(), tampered)
	reg.push(t, "swapped", "v1", img)
	reg.serveInstead("/v2/swapped/manifests/"+digest, otherManifest)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadHost := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name, ref string
		want      []string
	}{
		{"tampered layer", reg.host() + "/tampered:v1", []string{"layer 1 digest mismatch", ld.String(), "tampered"}},
		{"other bytes for a pinned digest", reg.host() + "/swapped@" + digest, []string{"manifest digest mismatch", "pinned " + digest, "served " + otherDigest, "swapped"}},
		{"unknown pinned digest", reg.host() + "/app@sha256:" + strings.Repeat("ab", 32), []string{"not found", "app"}},
		{"missing tag", reg.host() + "/app:v9", []string{"not found", "app:v9"}},
		{"missing repository", reg.host() + "/nothing:v1", []string{"not found", "nothing"}},
		{"unreachable registry", deadHost + "/app:v1", []string{"unreachable", deadHost}},
		{"bad reference", "UPPER/Case:v1", []string{"UPPER"}},
		{"bad digest", reg.host() + "/app@sha256:abc", []string{"sha256:abc"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			_, err := Pull(context.Background(), tc.ref, PullOptions{CacheDir: cache})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Nothing bad was cached.
			files, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", "*"))
			for _, f := range files {
				if filepath.Base(f) == ld.Hex && strings.Contains(tc.name, "tampered") {
					t.Errorf("the tampered blob was cached")
				}
			}
		})
	}
	_ = otherDigest
}

func TestPullOfflineCold(t *testing.T) {
	reg := newRegistry(t)
	img, _ := sampleImage(t)
	digest := reg.push(t, "app", "v1", img)
	before := reg.requests.Load()
	for _, ref := range []string{reg.host() + "/app:v1", reg.host() + "/app@" + digest} {
		_, err := Pull(context.Background(), ref, PullOptions{CacheDir: t.TempDir(), Offline: true})
		if err == nil || !strings.Contains(err.Error(), "offline") {
			t.Errorf("%s offline with an empty cache: %v", ref, err)
		}
	}
	if n := reg.requests.Load() - before; n != 0 {
		t.Errorf("offline made %d requests", n)
	}
}

func TestPullRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a retry's backoff")
	}
	reg := newRegistry(t)
	img, _ := sampleImage(t)
	digest := reg.push(t, "app", "v1", img)
	reg.fail503.Store(1) // the one manifest GET of a pinned pull
	got, err := Pull(context.Background(), reg.host()+"/app@"+digest, PullOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("a 503 was not retried: %v", err)
	}
	if got.Digest != digest {
		t.Errorf("digest %s", got.Digest)
	}
}

func TestSchemeGuard(t *testing.T) {
	ok := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	cases := []struct {
		registry string // the image's registry
		url      string
		insecure bool
		allowed  bool
	}{
		{"127.0.0.1:5000", "http://127.0.0.1:5000/v2/", false, true},
		{"localhost:5000", "http://localhost:5000/v2/", false, true},
		{"[::1]:5000", "http://[::1]:5000/v2/", false, true},
		{"10.0.0.5:5000", "http://10.0.0.5:5000/v2/", false, false},
		{"registry.local", "http://registry.local/v2/", false, false},
		{"registry.example", "http://registry.example/v2/", false, false},
		{"registry.example", "http://registry.example/v2/", true, true},
		{"registry.example", "http://registry.example:80/v2/", true, true},
		{"registry.example", "https://registry.example/v2/", false, true},
		// Plain http goes to the image's registry only: not to a token
		// realm or a redirect target on another host, insecure or not.
		{"registry.example", "http://auth.example/token", true, false},
		{"registry.example", "http://blobs.example/sha256:1", true, false},
		{"registry.example", "http://registry.example:8080/v2/", true, false},
		{"127.0.0.1:5000", "http://127.0.0.1:5001/token", false, false},
		{"127.0.0.1:5000", "http://localhost:5000/v2/", false, false},
		{"registry.example", "https://auth.example/token", true, true},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		resp, err := (&schemeGuard{inner: ok, registry: tc.registry, insecure: tc.insecure}).RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tc.allowed {
			t.Errorf("%s (registry %s) insecure=%v: err %v, want allowed=%v", tc.url, tc.registry, tc.insecure, err, tc.allowed)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// tlsRegistry is ggcr's registry behind TLS only, and a transport that
// trusts it and reaches it whatever address a reference names.
func tlsRegistry(t *testing.T) (*httptest.Server, http.RoundTripper) {
	t.Helper()
	srv := httptest.NewTLSServer(registry.New(registry.Logger(discardLogger())))
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	addr := srv.Listener.Addr().String()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return srv, tr
}

// TestPullTLSPrivateAddress pulls over https from registries ggcr itself
// would speak http to (an RFC 1918 address, a .local name), and from a
// loopback registry that speaks TLS only.
func TestPullTLSPrivateAddress(t *testing.T) {
	srv, tr := tlsRegistry(t)
	img, _ := sampleImage(t)
	host := strings.TrimPrefix(srv.URL, "https://")
	ref, err := name.ParseReference(host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	for _, reg := range []string{"10.0.0.5:5000", "192.168.1.2", "registry.local:5000", host} {
		var schemes []string
		var mu sync.Mutex
		rec := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			schemes = append(schemes, req.URL.Scheme+" "+req.URL.Path)
			mu.Unlock()
			return tr.RoundTrip(req)
		})
		got, err := Pull(context.Background(), reg+"/app:v1", PullOptions{CacheDir: t.TempDir(), Transport: rec})
		if err != nil {
			t.Errorf("%s: %v", reg, err)
			continue
		}
		if got.Digest != want.String() {
			t.Errorf("%s: digest %s, want %s", reg, got.Digest, want)
		}
		for _, s := range schemes {
			if strings.HasPrefix(s, "http ") && !loopbackHost(strings.Split(reg, ":")[0]) {
				t.Errorf("%s: plain http request %s", reg, s)
			}
		}
	}
}

func TestRegistryScheme(t *testing.T) {
	cases := []struct {
		ref      string
		insecure bool
		want     string
	}{
		{"registry.example/app", false, "https"},
		{"registry.example/app", true, "http"},
		{"10.0.0.5:5000/app", false, "https"},
		{"172.16.0.1/app", false, "https"},
		{"192.168.1.2:443/app", false, "https"},
		{"registry.local/app", false, "https"},
		{"registry.local/app", true, "http"},
		{"localhost:5000/app", false, "http"},
		{"127.0.0.1:5000/app", false, "http"},
		{"127.1.2.3/app", false, "http"},
		{"[::1]:5000/app", false, "http"},
		{"alpine", false, "https"},
	}
	for _, tc := range cases {
		var opts []name.Option
		if tc.insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(tc.ref, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := registryScheme(ref.Context().Registry, tc.insecure); got != tc.want {
			t.Errorf("%s insecure=%v: %s, want %s", tc.ref, tc.insecure, got, tc.want)
		}
	}
}
