package deb

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb/debtest"
)

// repoPkgs is the test repository: alternatives, Provides, version
// relations, a cycle, an excluded dependency, merged-/usr paths.
func repoPkgs() []debtest.Pkg {
	return []debtest.Pkg{
		{Name: "app", Version: "1.0-1", PreDepends: "libc6 (>= 2.36)", Depends: "mta | exim4, cyc-a, shell (>= 1), debconf (>= 0.5) | debconf-2.0, tool [amd64], notforus [arm64]",
			Files: []debtest.File{{Name: "./"}, {Name: "./usr/"}, {Name: "./usr/bin/"}, {Name: "./usr/bin/app", Mode: 0o4755, Body: "app"},
				{Name: "./etc/"}, {Name: "./etc/app.conf", Body: "conf"}}},
		{Name: "libc6", Version: "2.36-9", Zstd: true, Files: []debtest.File{{Name: "./lib/"}, {Name: "./lib/x86_64-linux-gnu/"}, {Name: "./lib/x86_64-linux-gnu/libc.so.6", Body: "libc"},
			{Name: "./lib64/"}, {Name: "./lib64/ld-linux-x86-64.so.2", Type: tar.TypeSymlink, Target: "../lib/x86_64-linux-gnu/libc.so.6"}}},
		{Name: "libc6", Version: "2.31-1", Files: []debtest.File{{Name: "./lib/old", Body: "old"}}},
		{Name: "exim4", Version: "4.96-15", Files: []debtest.File{{Name: "./usr/sbin/exim4", Body: "exim"}}},
		{Name: "postfix", Version: "3.7-1", Provides: "mta", Files: []debtest.File{{Name: "./usr/sbin/postfix", Body: "pf"}}},
		{Name: "cyc-a", Version: "1", Depends: "cyc-b", Files: []debtest.File{{Name: "./usr/share/a", Body: "a"}}},
		{Name: "cyc-b", Version: "1", Depends: "cyc-a (>= 1)", Files: []debtest.File{{Name: "./usr/share/b", Body: "b"}}},
		{Name: "dash", Version: "0.5.12-2", Provides: "shell (= 2)", Gzip: true, Files: []debtest.File{{Name: "./bin/"}, {Name: "./bin/dash", Mode: 0o755, Body: "dash"},
			{Name: "./bin/sh", Type: tar.TypeSymlink, Target: "dash"}, {Name: "./sbin/"}, {Name: "./sbin/dashlink", Type: tar.TypeLink, Target: "./bin/dash"}}},
		{Name: "debconf", Version: "1.5.82", Files: []debtest.File{{Name: "./usr/share/debconf", Body: "x"}}},
		{Name: "tool", Version: "1:2.0-1", Arch: "all", Files: []debtest.File{{Name: "./usr/bin/tool", Body: "tool"}}},
		{Name: "needs-new", Version: "1", Depends: "tool (>> 1:3)"},
		{Name: "mid", Version: "1", Depends: "needs-new"},
		{Name: "bad-slate", Version: "1", Files: []debtest.File{{Name: "./usr/lib/slate/evil", Body: "x"}}},
		{Name: "bad-init", Version: "1", Files: []debtest.File{{Name: "./sbin/init", Body: "x"}}},
		{Name: "bad-var", Version: "1", Files: []debtest.File{{Name: "./var/lib/x", Body: "x"}}},
		{Name: "var-dir", Version: "1", Files: []debtest.File{{Name: "./var/"}, {Name: "./var/lib/"}, {Name: "./usr/share/v", Body: "v"}}},
		{Name: "dup-a", Version: "1", Files: []debtest.File{{Name: "./usr/share/dup", Body: "from a"}}},
		{Name: "dup-b", Version: "1", Files: []debtest.File{{Name: "./usr/share/dup", Body: "from b"}}},
		{Name: "notforus", Version: "1"},
	}
}

func testSpec(t *testing.T, r *debtest.Repo, pkgs ...string) *configs.Spec {
	dir := t.TempDir()
	ring := filepath.Join(dir, "archive.gpg")
	if err := os.WriteFile(ring, r.Keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &configs.Spec{Name: "t", Version: "1.0.0", Packages: pkgs, Debian: &configs.Debian{Suite: "test", Mirror: r.Mirror(), Keyring: ring}, Dir: dir}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func names(l *Lock) []string {
	var n []string
	for _, p := range l.Packages {
		n = append(n, p.Name+"="+p.Version)
	}
	return n
}

func TestResolveClosure(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	res, err := (&Client{}).ResolveSpec(context.Background(), testSpec(t, r, "app"))
	if err != nil {
		t.Fatal(err)
	}
	got := names(res.Lock)
	// "mta | exim4": the first alternative is satisfiable through its
	// only provider, postfix; libc6 is the highest version; debconf is
	// excluded; tool keeps its epoch; the cycle installs both; shell
	// (>= 1) is dash's versioned Provides; the arm64-only dependency is
	// skipped.
	want := []string{"app=1.0-1", "cyc-a=1", "cyc-b=1", "dash=0.5.12-2", "libc6=2.36-9", "postfix=3.7-1", "tool=1:2.0-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("closure:\n got %v\nwant %v", got, want)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "debconf is excluded") }) {
		t.Errorf("no note of the excluded debconf: %v", res.Notes)
	}
	if len(res.Lock.Sources) != 1 || res.Lock.Sources[0].Date != "Sat, 10 May 2025 09:00:00 UTC" || res.Lock.Sources[0].InRelease != debtest.SHA256(r.File(debtest.Release)) ||
		res.Lock.Sources[0].Suite != "test" || res.Lock.Sources[0].Mirror != r.Mirror() {
		t.Errorf("lock sources: %+v", res.Lock.Sources)
	}
	for _, p := range res.Lock.Packages {
		if p.Source != "test" {
			t.Errorf("%s has source %q", p.Name, p.Source)
		}
	}
}

func TestResolveInclude(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	s := testSpec(t, r, "app")
	s.Debian.Include = []string{"debconf"}
	s.Debian.Exclude = []string{"postfix"}
	res, err := (&Client{}).ResolveSpec(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	got := names(res.Lock)
	if !slices.Contains(got, "debconf=1.5.82") || slices.Contains(got, "postfix=3.7-1") || slices.Contains(got, "exim4=4.96-15") {
		t.Fatalf("include/exclude: %v (notes %v)", got, res.Notes)
	}
}

func TestResolveErrors(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	for _, tc := range []struct {
		pkgs []string
		want string
	}{
		{[]string{"mid"}, "mid -> needs-new -> tool (>> 1:3): no version satisfies it (the index has tool 1:2.0-1)"},
		{[]string{"dahs"}, `package "dahs" is not in the index; did you mean "dash"?`},
		{[]string{"zzzzzzzz"}, `package "zzzzzzzz" is not in the index`},
		{[]string{"mta"}, `package "mta" is virtual: name one of its providers (postfix)`},
		{[]string{"libc6=2.99"}, "package libc6=2.99: the index has 2.36-9, 2.31-1"},
		{[]string{"debconf"}, `package "debconf" is asked for but excluded`},
	} {
		_, err := (&Client{}).ResolveSpec(context.Background(), testSpec(t, r, tc.pkgs...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.pkgs, err, tc.want)
		}
	}
	res, err := (&Client{}).ResolveSpec(context.Background(), testSpec(t, r, "libc6=2.31-1"))
	if err != nil || names(res.Lock)[0] != "libc6=2.31-1" {
		t.Fatalf("exact Version: %v %v", err, res)
	}
}

func TestBadSignatureAndIndex(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	ctx := context.Background()
	// signed by another key
	other := debtest.NewKey(t)
	good := r.File(debtest.Release)
	block := clearSignedText(t, good)
	r.SetFile(debtest.Release, debtest.ClearSign(t, other, block))
	if _, err := (&Client{}).ResolveSpec(ctx, testSpec(t, r, "app")); err == nil || !strings.Contains(err.Error(), "InRelease signature") {
		t.Fatalf("foreign key: %v", err)
	}
	// the signed text changed after signing
	r.SetFile(debtest.Release, []byte(strings.Replace(string(good), "Date: Sat", "Date: Sun", 1)))
	if _, err := (&Client{}).ResolveSpec(ctx, testSpec(t, r, "app")); err == nil || !strings.Contains(err.Error(), "InRelease signature") {
		t.Fatalf("edited release: %v", err)
	}
	// a release signed for another suite
	r.SetFile(debtest.Release, debtest.ClearSign(t, r.Entity, []byte(strings.ReplaceAll(string(block), ": test", ": oldstable"))))
	if _, err := (&Client{}).ResolveSpec(ctx, testSpec(t, r, "app")); err == nil || !strings.Contains(err.Error(), `the signed release is of suite "oldstable"`) {
		t.Fatalf("other suite: %v", err)
	}
	// not signed at all
	r.SetFile(debtest.Release, block)
	if _, err := (&Client{}).ResolveSpec(ctx, testSpec(t, r, "app")); err == nil || !strings.Contains(err.Error(), "not a clear-signed") {
		t.Fatalf("unsigned release: %v", err)
	}
	// an index that is not the one the release names
	r.SetFile(debtest.Release, good)
	x := r.File(debtest.Index)
	bad := append([]byte(nil), x...)
	bad[len(bad)/2] ^= 1
	r.SetFile(debtest.Index, bad)
	if _, err := (&Client{}).ResolveSpec(ctx, testSpec(t, r, "app")); err == nil || !strings.Contains(err.Error(), "the release says") {
		t.Fatalf("bad index: %v", err)
	}
}

func clearSignedText(t *testing.T, signed []byte) []byte {
	s := string(signed)
	i := strings.Index(s, "\n\n")
	j := strings.Index(s, "\n-----BEGIN PGP SIGNATURE")
	if i < 0 || j < 0 {
		t.Fatal("not clear-signed")
	}
	return []byte(s[i+2:j] + "\n")
}

// memTree records what Unpack writes.
type memTree struct {
	entries []string
	files   map[string]string
	modes   map[string]fs.FileMode
	owners  map[string]uint32
}

func newMemTree() *memTree {
	return &memTree{files: map[string]string{}, modes: map[string]fs.FileMode{}, owners: map[string]uint32{}}
}

func (m *memTree) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	m.entries = append(m.entries, "d "+p)
	m.modes[p] = perm
	return nil
}

func (m *memTree) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	m.files[p] = string(b)
	m.modes[p] = perm
	m.owners[p] = uid
	m.entries = append(m.entries, "f "+p)
	return nil
}

func (m *memTree) Symlink(p, target string, uid, gid uint32) error {
	m.entries = append(m.entries, "l "+p+" -> "+target)
	return nil
}

func (m *memTree) Link(p, existing string) error {
	m.entries = append(m.entries, "h "+p+" = "+existing)
	return nil
}

func (m *memTree) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	return errors.New("no nodes")
}

func (m *memTree) SetXattr(p, name string, value []byte) error { return nil }

func lockAndFetch(t *testing.T, r *debtest.Repo, cache string, pkgs ...string) ([]string, []string) {
	t.Helper()
	res, err := (&Client{}).ResolveSpec(context.Background(), testSpec(t, r, pkgs...))
	if err != nil {
		t.Fatal(err)
	}
	n, p, err := (&Client{}).FetchLock(context.Background(), res.Lock, nil, cache)
	if err != nil {
		t.Fatal(err)
	}
	return n, p
}

func TestUnpackMergedUsr(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	n, p := lockAndFetch(t, r, t.TempDir(), "app")
	u, err := Unpack(n, p)
	if err != nil {
		t.Fatal(err)
	}
	m := newMemTree()
	if err := u.WriteTo(m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"f /usr/lib/x86_64-linux-gnu/libc.so.6",
		"l /usr/lib64/ld-linux-x86-64.so.2 -> ../lib/x86_64-linux-gnu/libc.so.6",
		"f /usr/bin/dash", "l /usr/bin/sh -> dash", "h /usr/sbin/dashlink = /usr/bin/dash",
		"f /etc/app.conf",
	} {
		if !slices.Contains(m.entries, want) {
			t.Errorf("missing %q in %v", want, m.entries)
		}
	}
	for _, e := range m.entries {
		if strings.HasPrefix(e[2:], "/bin") || strings.HasPrefix(e[2:], "/lib") || strings.HasPrefix(e[2:], "/sbin") {
			t.Errorf("not merged: %s", e)
		}
	}
	if m.modes["/usr/bin/app"] != 0o755|fs.ModeSetuid {
		t.Errorf("setuid lost: %v", m.modes["/usr/bin/app"])
	}
	if m.files["/usr/bin/dash"] != "dash" {
		t.Errorf("dash content %q", m.files["/usr/bin/dash"])
	}
	// parents come before children, and a second write is the same
	m2 := newMemTree()
	u.WriteTo(m2)
	if !slices.Equal(m.entries, m2.entries) || !slices.IsSorted(u.Paths()) {
		t.Error("unpacking is not deterministic")
	}
}

func TestUnpackRefusesSlatePaths(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	cache := t.TempDir()
	for _, tc := range []struct{ pkg, want string }{
		{"bad-slate", "package bad-slate: /usr/lib/slate/evil would land in /usr/lib/slate/evil, which slate owns"},
		{"bad-init", "package bad-init: /sbin/init would land in /usr/sbin/init, which slate owns (PID 1 is slate)"},
		{"bad-var", "package bad-var: /var/lib/x would land in /var/lib/x, which slate owns (STATE is mounted on /var)"},
	} {
		n, p := lockAndFetch(t, r, cache, tc.pkg)
		if _, err := Unpack(n, p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.pkg, err, tc.want)
		}
	}
	n, p := lockAndFetch(t, r, cache, "var-dir")
	u, err := Unpack(n, p)
	if err != nil || len(u.Warnings) != 2 || slices.Contains(u.Paths(), "/var") {
		t.Fatalf("empty /var dirs: %v %v %v", err, u.Warnings, u.Paths())
	}
}

func TestUnpackOverlap(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	n, p := lockAndFetch(t, r, t.TempDir(), "dup-b", "dup-a")
	u, err := Unpack(n, p)
	if err != nil {
		t.Fatal(err)
	}
	m := newMemTree()
	u.WriteTo(m)
	if m.files["/usr/share/dup"] != "from b" || len(u.Warnings) != 1 || !strings.Contains(u.Warnings[0], "dup-b's is kept") {
		t.Fatalf("overlap: %q %v", m.files["/usr/share/dup"], u.Warnings)
	}
}

func TestCorruptDeb(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	res, err := (&Client{}).ResolveSpec(context.Background(), testSpec(t, r, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	pp := res.Lock.Packages[0].Filename
	good := r.File(pp)
	bad := append([]byte(nil), good...)
	bad[len(bad)-3] ^= 0xff
	r.SetFile(pp, bad)
	cache := t.TempDir()
	if _, _, err := (&Client{}).FetchLock(context.Background(), res.Lock, nil, cache); err == nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt download: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "deb")); len(ents) != 0 {
		t.Fatalf("a corrupt download was left in the cache: %v", ents)
	}
	// a good download, then the cached file is damaged: fetched again
	r.SetFile(pp, good)
	_, paths, err := (&Client{}).FetchLock(context.Background(), res.Lock, nil, cache)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(paths[0], bad, 0o644)
	before := r.Requests()
	if _, _, err := (&Client{}).FetchLock(context.Background(), res.Lock, nil, cache); err != nil {
		t.Fatal(err)
	}
	if r.Requests() != before+1 {
		t.Fatalf("a damaged cached file was not fetched again")
	}
	if err := verifyFile(paths[0], res.Lock.Packages[0]); err != nil {
		t.Fatal(err)
	}
}

func TestLockRoundTripAndWarmBuild(t *testing.T) {
	r := debtest.NewRepo(t, repoPkgs())
	spec := testSpec(t, r, "app", "libc6=2.36-9")
	res, err := (&Client{}).ResolveSpec(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	lp := filepath.Join(spec.Dir, "slate.yaml.lock")
	if err := res.Lock.Write(lp); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLock(lp)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := res.Lock.Marshal()
	b, _ := l.Marshal()
	if string(a) != string(b) {
		t.Fatalf("round trip:\n%s\n%s", a, b)
	}
	if err := l.Matches(spec); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, _, err := (&Client{}).FetchLock(context.Background(), l, nil, cache); err != nil {
		t.Fatal(err)
	}
	// warm: the lock and the cache, no request at all
	before := r.Requests()
	n, p, err := (&Client{}).FetchLock(context.Background(), l, nil, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Requests() - before; got != 0 {
		t.Fatalf("a warm build made %d requests", got)
	}
	if _, err := Unpack(n, p); err != nil {
		t.Fatal(err)
	}
	// the spec changed: the lock names the package that differs
	for _, tc := range []struct {
		change func(*configs.Spec)
		want   string
	}{
		{func(s *configs.Spec) { s.Packages = append(s.Packages, "tool") }, `package "tool" is not in the lock`},
		{func(s *configs.Spec) { s.Packages = s.Packages[:1] }, `the lock has package "libc6=2.36-9", which the spec no longer asks for`},
		{func(s *configs.Spec) { s.Debian.Suite = "other" }, `suite "test", the spec says "other"`},
		{func(s *configs.Spec) { s.Debian.Exclude = []string{"cyc-b"} }, "the exclusion list changed"},
	} {
		s2 := *spec
		d := *spec.Debian
		s2.Debian = &d
		s2.Packages = slices.Clone(spec.Packages)
		tc.change(&s2)
		if err := l.Matches(&s2); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestParseLockErrors(t *testing.T) {
	good := `{"lock_version":1,"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x","requested":["a"],"exclude":[],"packages":[{"name":"aa","version":"1","architecture":"amd64","filename":"pool/main/a/aa/aa_1_amd64.deb","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`
	if _, err := ParseLock([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`"lock_version":1`, `"lock_version":3`, "lock_version 3, this slate reads 1 and 2"},
		{`pool/main`, `../main`, "bad Filename"},
		{`"size":3`, `"size":0`, "bad size"},
		{`"name":"aa"`, `"name":"AA"`, "not a Debian package name"},
		{`"suite"`, `"suit"`, "unknown field"},
	} {
		_, err := ParseLock([]byte(strings.Replace(good, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.new, err, tc.want)
		}
	}
}

func TestHostMirror(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	if m := hostMirror(dir, "bookworm"); m != DefaultMirror {
		t.Fatalf("empty: %s", m)
	}
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(
		"Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"+
			"Types: deb\n# comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"), 0o644)
	if m := hostMirror(dir, "bookworm"); m != "http://mirror.example/debian" {
		t.Fatalf("deb822: %s", m)
	}
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte("# x\ndeb [signed-by=/k.gpg arch=amd64] https://list.example/debian bookworm main\n"), 0o644)
	if m := hostMirror(dir, "bookworm"); m != "https://list.example/debian" {
		t.Fatalf("sources.list: %s", m)
	}
	if m := hostMirror(dir, "trixie"); m != DefaultMirror {
		t.Fatalf("other suite: %s", m)
	}
}
