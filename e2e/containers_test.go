package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slateos/slate/internal/qemu"
)

// testRegistry is an in-memory OCI registry on the host's loopback. Only
// the build talks to it: the images are baked into the slot.
type testRegistry struct {
	srv  *httptest.Server
	host string // 127.0.0.1:PORT
	// tamper, when set, is a blob digest whose bytes the registry
	// changes on the way out.
	mu     sync.Mutex
	tamper string
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		bad := r.tamper
		r.mu.Unlock()
		if bad != "" && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+bad) {
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
			return
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// ctrImage is an image of ctrapp: /app, an "app" user (uid 1000) in the
// image's /etc/passwd, and the environment that names its version.
func ctrImage(t testing.TB, env ...string) v1.Image {
	t.Helper()
	app := ctrappOnce.get(t, func() (string, error) {
		p := filepath.Join(workDir, "ctrapp")
		return p, goBuild(p, "./e2e/testdata/ctrapp")
	})
	bin, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/passwd", Mode: 0o644}, []byte("root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000:app:/home/app:/sbin/nologin\n"))
	add(&tar.Header{Name: "etc/group", Mode: 0o644}, []byte("root:x:0:\napp:x:1000:\n"))
	add(&tar.Header{Name: "app", Mode: 0o755}, bin)
	// Each image's layer is its own (the cache is by digest).
	add(&tar.Header{Name: "etc/ctrapp-env", Mode: 0o644}, []byte(strings.Join(env, "\n")+"\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.User = "app"
	cf.Config.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// push writes img to the registry as repo:tag and returns the reference.
func (r *testRegistry) push(t testing.TB, img v1.Image, repoTag string) string {
	t.Helper()
	ref := r.host + "/" + repoTag
	nr, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nr, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

var ctrappOnce once

// containerSpec is an image whose one workload is the ctrapp container:
// its port 8080 published on the machine's 8080, its starts counted in
// the volume appdata, a memory limit small enough for /alloc to reach,
// and an HTTP health check the updater's gate waits for.
func (c *channel) containerSpec(t testing.TB, version, image string) string {
	t.Helper()
	body := fmt.Sprintf(`name: slate-ctr
version: %s
containers:
  - name: app
    image: %s
    ports: ["8080:8080"]
    volumes: ["appdata:/data"]
    memory: 48MiB
    health:
      http: /healthz
      port: 8080
      interval: 2s
      # The first answer takes seconds under TCG on a loaded machine:
      # failures before it do not count.
      start_period: 90s
update:
  channel: %s
  public_key: %s
  check_interval: 20s
  health:
    hold: 5s
`, version, image, c.guestURL(), filepath.Join(c.keys, "update.pub"))
	p := filepath.Join(c.dir, "ctr-"+version+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// appAnswer is ctrapp's GET / answer.
type appAnswer struct {
	Version      string   `json:"version"`
	UID          int      `json:"uid"`
	PID          int      `json:"pid"`
	Hostname     string   `json:"hostname"`
	RootReadOnly bool     `json:"root_read_only"`
	Starts       int      `json:"starts"`
	History      []string `json:"history"`
}

// askApp polls the container through the host's forward until it answers
// with want's version (any, when empty), or fails the test after d.
func askApp(t testing.TB, vm *qemu.VM, port int, want string, d time.Duration) (appAnswer, time.Duration) {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second}
	t0 := time.Now()
	var last string
	for time.Since(t0) < d {
		select {
		case <-vm.Exited():
			t.Fatalf("QEMU exited while waiting for the container (last: %s)", last)
		default:
		}
		resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			var a appAnswer
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err == nil && (want == "" || a.Version == want) {
				return a, time.Since(t0)
			}
			last = fmt.Sprintf("%+v %v", a, err)
		} else {
			last = err.Error()
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the container did not answer with version %q within %s (last: %s)", want, d, last)
	return appAnswer{}, 0
}

func hitApp(t testing.TB, port int, path string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
}

// TestContainers is one machine's life with a baked container: v1 runs
// it isolated (its own user, PID namespace, read-only root) and reachable
// through its published port; a container that exits or runs out of
// memory comes back and its volume keeps counting; an update to v2 brings
// v2's image with the slot, and an update to v3, whose container crashes,
// rolls back to v2 by itself with the volume intact.
func TestContainers(t *testing.T) {
	needQEMU(t)
	t.Parallel()
	reg := newRegistry(t)
	refs := map[string]string{}
	for v, env := range map[string][]string{
		"1.0.0": {"APP_VERSION=v1"},
		"2.0.0": {"APP_VERSION=v2"},
		"3.0.0": {"APP_VERSION=v3", "APP_MODE=crash"},
	} {
		refs[v] = reg.push(t, ctrImage(t, env...), "slate/app:"+strings.ReplaceAll(v, ".", "-"))
	}
	c := newChannel(t)
	publish := func(v string) string {
		return build(t, c.containerSpec(t, v, refs[v]), "--channel", c.root, "--sign", filepath.Join(c.keys, "update.key"))
	}
	out1 := publish("1.0.0")
	if info, err := slate(t, "inspect", filepath.Join(out1, "disk.raw")); err != nil || !strings.Contains(info, "app") || !strings.Contains(info, "sha256:") {
		t.Errorf("slate inspect does not list the baked container with its digest: %v\n%s", err, info)
	}
	vm := boot(t, machine(t, out1), qemu.Options{Network: true, Forwards: []qemu.Forward{{GuestPort: 8080}}})
	port := vm.Forwards()[0].HostPort

	waitLine(t, vm, `^SLATE-SERVICE name=app state=started`, 4*time.Minute)
	started := time.Now()
	waitLine(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 3*time.Minute)
	a, _ := askApp(t, vm, port, "v1", 2*time.Minute)
	t.Logf("container started to its first answer on the host: %s", time.Since(started).Round(time.Millisecond))
	if a.UID != 1000 || a.PID != 1 || !a.RootReadOnly || a.Hostname != "app" || a.Starts != 1 {
		t.Errorf("v1 answer %+v: want uid 1000 (the image's user), pid 1 (its own PID namespace), a read-only root, hostname app, 1 start", a)
	}

	// An exit is restarted (with backoff); the volume counts the start.
	hitApp(t, port, "/exit")
	waitLine(t, vm, `^SLATE-SERVICE name=app state=(exited|restarting)`, time.Minute)
	if a, _ = askApp(t, vm, port, "v1", 2*time.Minute); a.Starts != 2 {
		t.Errorf("after an exit: %d starts, want 2", a.Starts)
	}
	// Past its memory limit it is OOM-killed, said so, and restarted.
	hitApp(t, port, "/alloc")
	waitLine(t, vm, `^SLATE-SERVICE name=app .*oom`, 2*time.Minute)
	if a, _ = askApp(t, vm, port, "v1", 2*time.Minute); a.Starts != 3 {
		t.Errorf("after the OOM kill: %d starts, want 3", a.Starts)
	}

	// v2 comes with its slot; the volume survives the reboot.
	publish("2.0.0")
	waitLine(t, vm, `^SLATE-READY version=2\.0\.0 slot=b$`, 5*time.Minute)
	if a, _ = askApp(t, vm, port, "v2", 2*time.Minute); a.Starts != 4 || strings.Join(a.History, ",") != "v1,v1,v1,v2" {
		t.Errorf("on v2: %+v, want 4 starts: v1,v1,v1,v2", a)
	}
	waitLine(t, vm, `^SLATE-UPDATE state=blessed version=2\.0\.0 slot=b`, 3*time.Minute)

	// v3's container crashes: the machine goes back to v2 by itself.
	publish("3.0.0")
	waitLine(t, vm, `^SLATE-READY version=3\.0\.0 slot=a$`, 5*time.Minute)
	waitLine(t, vm, `^SLATE-READY version=2\.0\.0 slot=b$`, 6*time.Minute)
	a, _ = askApp(t, vm, port, "v2", 2*time.Minute)
	if len(a.History) < 6 || strings.Join(a.History[:4], ",") != "v1,v1,v1,v2" || a.History[len(a.History)-1] != "v2" {
		t.Errorf("back on v2, the volume's history is %v: want v1,v1,v1,v2, v3's crashed starts, then v2", a.History)
	}
}

// TestContainerBuildRefusals: each bad container input is refused by the
// build with the field at fault, and no output is written.
func TestContainerBuildRefusals(t *testing.T) {
	needBuild(t)
	t.Parallel()
	reg := newRegistry(t)
	img := ctrImage(t, "APP_VERSION=v1")
	good := reg.push(t, img, "slate/app:v1")
	tampered := reg.push(t, ctrImage(t, "APP_VERSION=tampered"), "slate/app:tampered")
	layers, err := ctrImage(t, "APP_VERSION=tampered").Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	// A closed port: a registry that is not there.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	otherDigest := "sha256:" + strings.Repeat("ab", 32)

	tests := []struct {
		name, containers, want string
	}{
		{"missing image", fmt.Sprintf("  - {name: app, image: %q}\n", reg.host+"/slate/nothere:v1"), "$.containers[0].image"},
		{"unreachable registry", fmt.Sprintf("  - {name: app, image: %q}\n", deadHost+"/slate/app:v1"), "$.containers[0].image"},
		{"pinned digest the registry does not have", fmt.Sprintf("  - {name: app, image: %q}\n", reg.host+"/slate/app@"+otherDigest), "$.containers[0].image"},
		{"a layer with other bytes", fmt.Sprintf("  - {name: app, image: %q}\n", tampered), "$.containers[0].image"},
		{"port used twice", fmt.Sprintf("  - {name: app, image: %q, ports: [\"8080:80\"]}\n  - {name: app2, image: %q, ports: [\"8080:81\"]}\n", good, good), "$.containers[1].ports[0]"},
		{"volume outside STATE", fmt.Sprintf("  - {name: app, image: %q, volumes: [\"../../etc:/data\"]}\n", good), "$.containers[0].volumes[0]"},
		{"name of a service", fmt.Sprintf("  - {name: web, image: %q}\n", good), "$.containers[0].name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "a layer with other bytes" {
				reg.mu.Lock()
				reg.tamper = ld.String()
				reg.mu.Unlock()
				defer func() { reg.mu.Lock(); reg.tamper = ""; reg.mu.Unlock() }()
			}
			dir := t.TempDir()
			spec := filepath.Join(dir, "spec.yaml")
			body := "name: bad\nversion: 1.0.0\nservices:\n  - {name: web, command: /usr/bin/slate, args: [version]}\ncontainers:\n" + tt.containers
			if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			msg, err := slate(t, "build", "-c", spec, "-o", out)
			if err == nil {
				t.Fatalf("build succeeded:\n%s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error does not name %s:\n%s", tt.want, msg)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output folder %s exists after a refused build", out)
			}
		})
	}
}
