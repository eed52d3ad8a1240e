package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
	"github.com/slateos/slate/internal/deb/debtest"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/partitions"
)

// pkgRepo is a small Debian archive with what a root of packages meets:
// merged-/usr paths (./bin, ./lib64), a link between packages, a
// configuration file slate also writes (/etc/hosts), folders in /var and
// /run (dropped: they are mount points), and the packages the error
// cases need.
func pkgRepo() []debtest.Pkg {
	return []debtest.Pkg{
		{Name: "tool", Version: "1.2-1", Depends: "libt (>= 1), net-cfg", Files: []debtest.File{
			{Name: "./"}, {Name: "./bin/"}, {Name: "./bin/tool", Mode: 0o755, Body: "#!/bin/sh\necho tool\n"},
			{Name: "./usr/"}, {Name: "./usr/bin/"}, {Name: "./usr/bin/tool2", Type: tar.TypeSymlink, Target: "../../bin/tool"},
			{Name: "./var/"}, {Name: "./var/lib/"}, {Name: "./var/lib/tool/"}, {Name: "./run/"}, {Name: "./run/tool/"}}},
		{Name: "libt", Version: "1.0-3", Files: []debtest.File{
			{Name: "./lib/"}, {Name: "./lib/x86_64-linux-gnu/"}, {Name: "./lib/x86_64-linux-gnu/libt.so.1", Body: strings.Repeat("L", 5000)},
			{Name: "./lib64/"}, {Name: "./lib64/ld-t.so", Type: tar.TypeSymlink, Target: "../lib/x86_64-linux-gnu/libt.so.1"}}},
		{Name: "net-cfg", Version: "6.4", Arch: "all", Files: []debtest.File{
			{Name: "./etc/"}, {Name: "./etc/hosts", Body: "10.0.0.1 evil\n"}, {Name: "./etc/services", Body: "ssh 22/tcp\n"}}},
		{Name: "extra", Version: "2", Files: []debtest.File{{Name: "./usr/share/extra/x", Body: "x"}}},
		{Name: "into-var", Version: "1", Files: []debtest.File{{Name: "./var/lib/into-var/state", Body: "s"}}},
		{Name: "into-init", Version: "1", Files: []debtest.File{{Name: "./sbin/init", Body: "not slate"}}},
	}
}

// pkgSpec is a spec naming pkgs from repo r (its keyring beside the spec).
func pkgSpec(t testing.TB, r *debtest.Repo, body string, pkgs ...string) *configs.Spec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "archive.gpg"), r.Keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	y := "name: ptest\nversion: 1.0.0\npackages: [" + strings.Join(pkgs, ", ") + "]\n" +
		"debian: {suite: test, mirror: '" + r.Mirror() + "', keyring: archive.gpg}\n" + body
	p := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := configs.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeLock resolves spec and writes its lock beside it.
func writeLock(t testing.TB, spec *configs.Spec) string {
	t.Helper()
	res, err := (&deb.Client{}).ResolveSpec(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	lp := filepath.Join(spec.Dir, "p.yaml.lock")
	if err := res.Lock.Write(lp); err != nil {
		t.Fatal(err)
	}
	return lp
}

// rootOf opens slot A's root filesystem of a built disk.
func rootOf(t *testing.T, disk string) *ext4Reader {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
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
	return x
}

// linkTarget is the target of a short symbolic link (kept in the inode).
func linkTarget(t *testing.T, x *ext4Reader, p string) string {
	t.Helper()
	in, err := x.lookup(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if in.mode&0xf000 != 0xa000 || in.size >= 60 {
		t.Fatalf("%s is not a short symbolic link (mode %#o)", p, in.mode)
	}
	return string(in.block[:in.size])
}

// TestBuildPackages builds an image with packages three times: resolved
// against the mirror, from a lock with a cold cache, and from the lock
// with a warm cache. It counts the repository's requests each time (the
// index only without a lock, the .debs only with a cold cache, nothing
// with a warm one), checks the three disks are byte-identical and reads
// the merged-/usr root back.
func TestBuildPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	slate := sharedSlate(t)
	r := debtest.NewRepo(t, pkgRepo())
	spec := pkgSpec(t, r, "services:\n- {name: t, command: /bin/tool, type: oneshot}\n", "tool")
	base := t.TempDir()
	build := func(name, cache, lock string) (*Report, int64) {
		t.Helper()
		before := r.Requests()
		rep, err := Build(context.Background(), Options{Spec: spec, OutDir: filepath.Join(base, name), CacheDir: cache, Slate: slate, Lock: lock})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return rep, r.Requests() - before
	}
	const closure = 3 // tool, libt, net-cfg
	rep, n := build("resolved", testCache(t, false), "")
	if n != 2+closure {
		t.Errorf("a build without a lock made %d requests, want %d (InRelease, Packages.xz, %d .debs)", n, 2+closure, closure)
	}
	t.Logf("requests: no lock %d", n)
	lock := writeLock(t, spec)
	cache := testCache(t, false)
	_, n = build("cold", cache, lock)
	if n != closure {
		t.Errorf("a build with a lock and a cold cache made %d requests, want %d (the .debs only)", n, closure)
	}
	t.Logf("requests: lock, cold cache %d", n)
	_, n = build("warm", cache, lock)
	if n != 0 {
		t.Errorf("a build with a lock and a warm cache made %d requests, want none", n)
	}
	t.Logf("requests: lock, warm cache %d", n)
	sums := map[string]string{}
	for _, name := range []string{"resolved", "cold", "warm"} {
		sums[name] = fileSHA256(t, filepath.Join(base, name, "disk.raw"))
	}
	if sums["cold"] != sums["warm"] || sums["resolved"] != sums["cold"] {
		t.Errorf("disk.raw differs between builds of the same packages: %v", sums)
	}

	var got []string
	for _, p := range rep.Packages {
		got = append(got, p.Name+"="+p.Version+"/"+p.Architecture)
		if len(p.SHA256) != 64 || p.Source != r.Mirror()+" test" {
			t.Errorf("build.json package %+v", p)
		}
	}
	if want := []string{"libt=1.0-3/amd64", "net-cfg=6.4/all", "tool=1.2-1/amd64"}; !slices.Equal(got, want) {
		t.Errorf("build.json packages %v, want %v", got, want)
	}
	if len(rep.DebianSources) != 1 || rep.DebianSources[0].Suite != "test" || len(rep.DebianSources[0].InRelease) != 64 || rep.DebianSources[0].Date == "" {
		t.Errorf("build.json debian_sources %+v", rep.DebianSources)
	}
	if on := readReport(t, filepath.Join(base, "warm")); !slices.Equal(on.Packages, rep.Packages) {
		t.Errorf("build.json on disk: %+v", on.Packages)
	}

	x := rootOf(t, filepath.Join(base, "warm", "disk.raw"))
	for p, want := range map[string]string{
		"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64",
		"/usr/sbin/init": "../bin/slate", "/usr/bin/tool2": "../../bin/tool",
		"/usr/lib64/ld-t.so": "../lib/x86_64-linux-gnu/libt.so.1",
	} {
		if got := linkTarget(t, x, p); got != want {
			t.Errorf("%s -> %s, want %s", p, got, want)
		}
	}
	if b, err := x.readFile("/usr/bin/tool", 1<<20); err != nil || string(b) != "#!/bin/sh\necho tool\n" {
		t.Errorf("/usr/bin/tool: %q %v", b, err)
	}
	if b, err := x.readFile("/etc/hosts", 1<<20); err != nil || bytes.Contains(b, []byte("evil")) {
		t.Errorf("/etc/hosts is not slate's: %q %v", b, err)
	}
	if b, err := x.readFile("/etc/services", 1<<20); err != nil || string(b) != "ssh 22/tcp\n" {
		t.Errorf("/etc/services: %q %v", b, err)
	}
	if _, err := x.lookup("/usr/lib/modules/" + rep.Kernel + "/modules.dep"); err != nil {
		t.Errorf("the modules are not under /usr/lib/modules: %v", err)
	}
	for _, p := range []string{"/var/lib", "/run/tool"} {
		if _, err := x.lookup(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is in the root (%v): it is a mount point's", p, err)
		}
	}
	b, err := x.readFile(imageinfo.Path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var info imageinfo.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if want := []imageinfo.Package{{Name: "libt", Version: "1.0-3"}, {Name: "net-cfg", Version: "6.4"}, {Name: "tool", Version: "1.2-1"}}; !slices.Equal(info.Packages, want) {
		t.Errorf("image.json packages %+v, want %+v", info.Packages, want)
	}
}

// TestBuildPackageErrors: every bad package input fails the build with
// an error naming the package (or the lock) and leaves no output folder.
func TestBuildPackageErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves real build inputs")
	}
	slate := sharedSlate(t)
	tests := []struct {
		name   string
		pkgs   []string
		lockOf []string // a lock made for these packages instead
		break_ func(t *testing.T, r *debtest.Repo)
		want   []string
	}{
		{name: "unknown package", pkgs: []string{"toll"}, want: []string{"$.packages", "toll", "tool"}},
		{name: "bad signature", pkgs: []string{"tool"}, break_: func(t *testing.T, r *debtest.Repo) {
			r.SetFile(debtest.Release, bytes.Replace(r.File(debtest.Release), []byte("Origin: Test"), []byte("Origin: Evil"), 1))
		}, want: []string{"InRelease signature"}},
		{name: "corrupted deb", pkgs: []string{"tool"}, break_: func(t *testing.T, r *debtest.Repo) {
			p := debtest.PoolPath(debtest.Pkg{Name: "libt", Version: "1.0-3", Arch: "amd64"})
			b := bytes.Clone(r.File(p))
			b[len(b)-10] ^= 0xff
			r.SetFile(p, b)
		}, want: []string{"$.packages", "package libt 1.0-3", "sha256"}},
		{name: "file in /var", pkgs: []string{"into-var"}, want: []string{"$.packages", "package into-var", "/var/lib/into-var/state", "slate owns"}},
		{name: "file at /sbin/init", pkgs: []string{"into-init"}, want: []string{"$.packages", "package into-init", "/usr/sbin/init", "PID 1 is slate"}},
		{name: "lock of other packages", pkgs: []string{"tool", "extra"}, lockOf: []string{"tool"}, want: []string{"p.yaml.lock", "does not match the spec", "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := debtest.NewRepo(t, pkgRepo())
			spec := pkgSpec(t, r, "", tt.pkgs...)
			lock := ""
			if tt.lockOf != nil {
				other := pkgSpec(t, r, "", tt.lockOf...)
				lock = filepath.Join(spec.Dir, "p.yaml.lock")
				if err := os.Rename(writeLock(t, other), lock); err != nil {
					t.Fatal(err)
				}
			}
			if tt.break_ != nil {
				tt.break_(t, r)
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err := Build(context.Background(), Options{Spec: spec, OutDir: out, CacheDir: testCache(t, false), Slate: slate, Lock: lock})
			if err == nil {
				t.Fatal("Build accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Build created the output folder (stat: %v)", err)
			}
		})
	}
}

// TestBuildLockWithoutPackages: a lock beside a spec that names no
// packages (any more) is refused before anything is read.
func TestBuildLockWithoutPackages(t *testing.T) {
	_, err := Steps(Options{Spec: containerSpec(t, ""), Lock: "x.yaml.lock"})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "Lock" || !strings.Contains(err.Error(), "does not match the spec") {
		t.Errorf("Steps = %v", err)
	}
}
