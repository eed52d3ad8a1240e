package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/slateos/slate/internal/run/cnet"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/partitions"
)

func containerSpec(t testing.TB, body string) *configs.Spec {
	t.Helper()
	s, err := configs.Parse([]byte("name: ctest\nversion: 1.0.0\n"+body), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContainerModules(t *testing.T) {
	if m := ContainerModules(containerSpec(t, "")); m != nil {
		t.Errorf("no containers: %q", m)
	}
	ro := ContainerModules(containerSpec(t, "containers:\n- {name: a, image: r.example/a:1}\n"))
	if !slices.Contains(ro, "bridge") || !slices.Contains(ro, "nft_masq") || slices.Contains(ro, "overlay") {
		t.Errorf("read-only container: %q", ro)
	}
	rw := ContainerModules(containerSpec(t, "containers:\n- {name: a, image: r.example/a:1}\n- {name: b, image: r.example/b:1, read_only: false}\n"))
	if !slices.Contains(rw, "overlay") {
		t.Errorf("writable container without overlay: %q", rw)
	}
}

// TestContainerSteps: a spec with containers has one step more, before
// anything is written.
func TestContainerSteps(t *testing.T) {
	got, err := Steps(Options{Spec: containerSpec(t, "containers:\n- {name: a, image: r.example/a:1}\n")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"inputs", "kernel modules", "container images", "disk image", "initramfs", "root filesystem", "ESP", "checksums", "output folder"}
	if !slices.Equal(got, want) {
		t.Errorf("Steps = %q, want %q", got, want)
	}
}

func TestResolveRunc(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "runc", RuncVersion, "runc")
	if _, err := resolveRunc(dir); err == nil || !strings.Contains(err.Error(), "scripts/fetch-runc.sh") || !strings.HasPrefix(err.Error(), "$.containers: ") {
		t.Errorf("missing runc: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveRunc(dir); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("a script as runc: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveRunc(dir); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("runc without x bits: %v", err)
	}
	// a dynamic program of the build host
	if host, err := os.ReadFile("/bin/true"); err == nil {
		if err := os.WriteFile(p, host, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := resolveRunc(dir); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("a dynamic runc: %v", err)
		}
	}
	// The real one, and the same with a sidecar that disagrees.
	realRunc := filepath.Join(os.Getenv("SLATE_CACHE"), "runc", RuncVersion, "runc")
	b, err := os.ReadFile(realRunc)
	if err != nil {
		t.Skipf("no runc in the cache to check the good case: %v", err)
	}
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := resolveRunc(dir); err != nil || got != p {
		t.Errorf("resolveRunc = %q, %v", got, err)
	}
	if err := os.WriteFile(p+".sha256", []byte(strings.Repeat("0", 64)+"  runc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveRunc(dir); err == nil || !strings.Contains(err.Error(), "runc.sha256") {
		t.Errorf("sidecar mismatch: %v", err)
	}
}

// TestPrefixTree: whatever path an image names, its entries land under
// the bundle's rootfs.
func TestPrefixTree(t *testing.T) {
	fsys, err := ext4fs.New(ext4fs.Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const root = "/usr/lib/slate/containers/a/rootfs"
	if err := fsys.Mkdir(root, 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	tr := &prefixTree{fs: fsys, prefix: root}
	if err := tr.Mkdir("/", 0o700, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/../../etc/evil", "etc/passwd", "/a/../../b"} {
		if d := filepath.Dir(filepath.Clean("/" + p)); d != "/" {
			if err := tr.Mkdir(d, 0o755, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.AddFile(p, 0o644, 1, 1, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Link("/etc/hard", "/../etc/passwd"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root + "/etc/evil", root + "/etc/passwd", root + "/b", root + "/etc/hard"} {
		if _, err := fsys.Lookup(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := fsys.Lookup("/etc/evil"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/etc/evil outside the rootfs: %v", err)
	}
	if e, _ := fsys.Lookup(root); e.Mode.Perm() != 0o700 {
		t.Errorf("rootfs mode %v, want the image's root mode 0700", e.Mode)
	}
}

// TestBuildContainerErrors: each bad container is refused with its field
// path, and the build writes nothing.
func TestBuildContainerErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves real build inputs")
	}
	slate := sharedSlate(t)
	reg := newTestRegistry(t)
	ref, digest := reg.push(t, "web", "v1", testImage(t, 4096, 1))
	pinnedRepo := reg.host + "/web@" + digest
	badSig, _ := reg.push(t, "badsig", "v1", withStopSignal(t, testImage(t, 4096, 1), "SIGNOPE"))
	tests := []struct {
		name    string
		spec    string
		corrupt func(*http.Request) bool
		noRunc  bool
		path    string
		msg     string
	}{
		{name: "image that does not exist", spec: "containers:\n- {name: web, image: '" + reg.host + "/nope:v1'}\n",
			path: "$.containers[0].image"},
		{name: "tag that does not exist", spec: "containers:\n- {name: web, image: '" + reg.host + "/web:v9'}\n",
			path: "$.containers[0].image"},
		{name: "unreachable registry", spec: "containers:\n- {name: web, image: '" + closedAddr(t) + "/web:v1'}\n",
			path: "$.containers[0].image", msg: "unreachable"},
		{name: "digest mismatch in a layer", spec: "containers:\n- {name: web, image: '" + ref + "'}\n",
			corrupt: func(r *http.Request) bool {
				return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
			},
			path: "$.containers[0].image", msg: "sha256"},
		{name: "digest mismatch of a pinned manifest", spec: "containers:\n- {name: web, image: '" + pinnedRepo + "'}\n",
			corrupt: func(r *http.Request) bool {
				return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
			},
			path: "$.containers[0].image", msg: "sha256"},
		{name: "second container fails", spec: "containers:\n- {name: web, image: '" + ref + "'}\n- {name: db, image: '" + reg.host + "/db:v1'}\n",
			path: "$.containers[1].image"},
		{name: "no runc", spec: "containers:\n- {name: web, image: '" + ref + "'}\n", noRunc: true,
			path: "$.containers", msg: "scripts/fetch-runc.sh"},
		{name: "user not in the image", spec: "containers:\n- {name: web, image: '" + ref + "', user: ghost}\n",
			path: "$.containers[0].user"},
		{name: "a STOPSIGNAL PID 1 cannot send", spec: "containers:\n- {name: web, image: '" + badSig + "'}\n",
			path: "$.containers[0].image", msg: `STOPSIGNAL: unknown signal "SIGNOPE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg.setCorrupt(tt.corrupt)
			defer reg.setCorrupt(nil)
			out := filepath.Join(t.TempDir(), "out")
			o := Options{Spec: containerSpec(t, tt.spec), OutDir: out, CacheDir: testCache(t, !tt.noRunc), Slate: slate}
			_, err := Build(context.Background(), o)
			if err == nil {
				t.Fatal("Build accepted it")
			}
			if !strings.HasPrefix(err.Error(), tt.path+": ") && !strings.HasPrefix(err.Error(), tt.path+".") {
				t.Errorf("error %q does not start with %s", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Build created the output folder (stat: %v)", err)
			}
		})
	}
}

// TestBuildRefusesBadContainerSpecs: what the spec alone says is wrong is
// refused before any input is looked at, with the field path, writing
// nothing.
func TestBuildRefusesBadContainerSpecs(t *testing.T) {
	for _, tt := range []struct{ name, yaml, path, msg string }{
		{"port used twice", "containers:\n- {name: a, image: r.example/a:1, ports: ['80:80']}\n- {name: b, image: r.example/b:1, ports: ['80:81']}\n",
			"$.containers[1].ports[0]", "already published"},
		{"volume outside STATE", "containers:\n- {name: a, image: r.example/a:1, volumes: ['/etc:/etc']}\n",
			"$.containers[0].volumes[0]", "a volume outside STATE is refused"},
		{"name clashing with a service", "services:\n- {name: a, command: /a}\ncontainers:\n- {name: a, image: r.example/a:1}\n",
			"$.containers[0].name", "also the name of $.services[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configs.Parse([]byte("name: ctest\nversion: 1.0.0\n"+tt.yaml), "c.yaml")
			var e *configs.Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v", err)
			}
			// The same spec built in code reaches Build unchecked by
			// Parse: Build validates it again.
			spec := &configs.Spec{Name: "ctest", Version: "1.0.0"}
			if err := parseInto(tt.yaml, spec); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			_, err = Build(context.Background(), Options{Spec: spec, OutDir: out, CacheDir: filepath.Join(dir, "cache"), Slate: filepath.Join(dir, "no-slate")})
			if err == nil || !strings.Contains(err.Error(), tt.path+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Build = %v; want %q at %s", err, tt.msg, tt.path)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Build created the output folder (stat: %v)", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "cache")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Build created the cache (stat: %v)", err)
			}
		})
	}
}

// parseInto decodes YAML into spec with the defaults but without Parse's
// validation, as a program that builds a spec in code would have it.
func parseInto(y string, spec *configs.Spec) error {
	if err := yaml.Unmarshal([]byte(y), spec); err != nil {
		return err
	}
	spec.SetDefaults()
	return nil
}

// TestBuildContainersReproducible builds an image with two containers
// from a loopback registry twice, cold and warm cache: the disks are
// byte-identical, the warm build fetches no blob, build.json records the
// digests and runc, and the root's image.json (read back as slate
// inspect does) lists the containers with their user and address.
func TestBuildContainersReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	slate := sharedSlate(t)
	reg := newTestRegistry(t)
	ref, digest := reg.push(t, "web", "v1", testImage(t, 256<<10, 7))
	spec := containerSpec(t, "containers:\n"+
		"- {name: web, image: '"+ref+"', ports: ['8080:80'], volumes: ['data:/srv/data'], memory: 64MiB}\n"+
		"- {name: pinned, image: '"+reg.host+"/web@"+digest+"', user: '0:0', read_only: false, network: none}\n")
	cache := testCache(t, true)
	base := t.TempDir()
	dir1, dir2 := filepath.Join(base, "one"), filepath.Join(base, "two")
	rep1, err := Build(context.Background(), Options{Spec: spec, OutDir: dir1, CacheDir: cache, Slate: slate})
	if err != nil {
		t.Fatal(err)
	}
	cold := reg.fetches()
	if _, err := Build(context.Background(), Options{Spec: spec, OutDir: dir2, CacheDir: cache, Slate: slate}); err != nil {
		t.Fatal(err)
	}
	// a tag is resolved again (a manifest HEAD, or a GET where HEAD has
	// no digest); no blob is fetched
	if warm := reg.fetches() - cold; warm > 1 {
		t.Errorf("the warm build made %d manifest or blob GETs", warm)
	}
	a, err := os.ReadFile(filepath.Join(dir1, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir2, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("disk.raw differs between two builds of the same digests")
	}

	if len(rep1.Containers) != 2 || rep1.Containers[0].Digest != digest || rep1.Containers[1].Digest != digest ||
		rep1.Containers[0].Image != ref || rep1.Containers[0].Address != "10.88.0.2/16" || rep1.Containers[1].Address != "" {
		t.Errorf("build.json containers %+v; want both at %s", rep1.Containers, digest)
	}
	if rep1.Containers[0].UnpackedBytes < 256<<10 || rep1.Containers[0].Files < 4 {
		t.Errorf("unpacked %d bytes in %d files", rep1.Containers[0].UnpackedBytes, rep1.Containers[0].Files)
	}
	if r := rep1.Runc; r == nil || r.Version != RuncVersion || len(r.SHA256) != 64 {
		t.Errorf("build.json runc %+v", r)
	}
	if on := readReport(t, dir1); !slices.Equal(on.Containers, rep1.Containers) {
		t.Errorf("build.json on disk %+v", on.Containers)
	}

	slots, err := InspectContainers(filepath.Join(dir1, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 1 || slots[0].Slot != "a" || slots[0].Problem != "" || len(slots[0].Containers) != 2 {
		t.Fatalf("InspectContainers = %+v", slots)
	}
	// the same slot reader serves vm run --ssh; this image has no ssh
	if c, err := InspectSSH(filepath.Join(dir1, "disk.raw")); !errors.Is(err, ErrNoSSH) {
		t.Errorf("InspectSSH = %+v, %v; want ErrNoSSH", c, err)
	}
	web, pinned := slots[0].Containers[0], slots[0].Containers[1]
	if web.Name != "web" || web.Digest != digest || web.UID != 1000 || web.GID != 1000 ||
		web.Address != "10.88.0.2/16" || web.Gateway != "10.88.0.1" || web.Bundle != "/usr/lib/slate/containers/web" || web.StopSignal != "SIGQUIT" {
		t.Errorf("web in image.json: %+v", web)
	}
	if pinned.UID != 0 || pinned.Address != "" || pinned.IsReadOnly() {
		t.Errorf("pinned in image.json: %+v", pinned)
	}
	// The bundles and runc are in the root, read back as the machine
	// would see them.
	rootFile := func(p string) []byte {
		t.Helper()
		f, err := os.Open(filepath.Join(dir1, "disk.raw"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		l, err := partitions.ReadGPT(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		part := l.Part(partitions.NumRootA)
		x, err := openExt4(f, part.Start, part.Size)
		if err != nil {
			t.Fatal(err)
		}
		b, err := x.readFile(p, 64<<20)
		if err != nil {
			t.Fatalf("root %s: %v", p, err)
		}
		return b
	}
	var cfg struct {
		Root    struct{ Path string }
		Process struct {
			User struct{ UID, GID uint32 }
			Args []string
		}
		Linux struct{ CgroupsPath string }
	}
	if err := json.Unmarshal(rootFile("/usr/lib/slate/containers/web/config.json"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Root.Path != "rootfs" || cfg.Process.User.UID != 1000 || !slices.Equal(cfg.Process.Args, []string{"/app/hello"}) || cfg.Linux.CgroupsPath != "/slate/web" {
		t.Errorf("web's config.json: %+v", cfg)
	}
	if got := rootFile("/usr/lib/slate/containers/web/rootfs/etc/passwd"); !bytes.Contains(got, []byte("app:x:1000")) {
		t.Errorf("web's /etc/passwd: %q", got)
	}
	if got, want := sha256.Sum256(rootFile("/usr/lib/slate/runc")), rep1.Runc.SHA256; hex.EncodeToString(got[:]) != want {
		t.Errorf("/usr/lib/slate/runc has sha256 %x, build.json says %s", got, want)
	}
	checkCapability(t, filepath.Join(dir1, "disk.raw"), "/usr/lib/slate/containers/web/rootfs/app/ping")

	// the containers' kernel modules are in the root's set
	plain, err := Build(context.Background(), Options{Spec: containerSpec(t, ""), OutDir: filepath.Join(base, "plain"), CacheDir: cache, Slate: slate})
	if err != nil {
		t.Fatal(err)
	}
	if rep1.RootModules <= plain.RootModules+len(cnet.Modules) {
		t.Errorf("root modules: %d with containers, %d without; want at least %d more", rep1.RootModules, plain.RootModules, len(cnet.Modules)+1)
	}
	rootFile("/lib/modules/" + rep1.Kernel + "/kernel/fs/overlayfs/overlay.ko")

	var text bytes.Buffer
	if err := WriteContainersText(&text, slots); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"web", digest, "1000:1000", "10.88.0.2/16", "8080:80", "none"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("inspect text lacks %q:\n%s", w, text.String())
		}
	}
}

// checkCapability reads a file's security.capability back from slot A's
// root with debugfs (e2fsprogs), when the build host has it.
func checkCapability(t *testing.T, disk, p string) {
	t.Helper()
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		t.Log("no debugfs: the file capability is not read back")
		return
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	l, err := partitions.ReadGPT(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	part := l.Part(partitions.NumRootA)
	img := filepath.Join(t.TempDir(), "root.img")
	out, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(f, part.Start, part.Size)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	b, err := exec.Command(debugfs, "-R", "ea_get -x "+p+" security.capability", img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, b)
	}
	t.Logf("debugfs ea_get %s: %s", p, strings.TrimSpace(string(b)))
	if !strings.Contains(strings.ReplaceAll(string(b), " ", ""), "security.capability(20)="+hex.EncodeToString(netRawCap)) {
		t.Errorf("security.capability of %s in the root, as debugfs reads it:\n%s\nwant %x", p, b, netRawCap)
	}
}
