package deb

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb/debtest"
)

// twoSuites is a main suite ("test") on one server and its security suite
// ("test-security") on another, as deb.debian.org and security.debian.org.
func twoSuites(t *testing.T) (main, sec *debtest.Repo, spec *configs.Spec) {
	main = debtest.NewRepo(t, []debtest.Pkg{
		{Name: "app", Version: "1.0-1", Depends: "libx (>= 1.0), tool", Files: []debtest.File{{Name: "./usr/bin/app", Body: "app"}}},
		{Name: "libx", Version: "1.0-1", Files: []debtest.File{{Name: "./usr/lib/libx.so", Body: "old"}}},
		{Name: "tool", Version: "2.0-1", Files: []debtest.File{{Name: "./usr/bin/tool", Body: "tool 2.0"}}},
	})
	sec = debtest.NewRepo(t, nil)
	sec.AddSuite(t, "test-security", []debtest.Pkg{
		{Name: "libx", Version: "1.0-1+deb1", Files: []debtest.File{{Name: "./usr/lib/libx.so", Body: "fixed"}}},
		// older than the main suite's: the newest wins, whatever its suite
		{Name: "tool", Version: "1.9-1+deb1", Files: []debtest.File{{Name: "./usr/bin/tool", Body: "tool 1.9"}}},
	})
	dir := t.TempDir()
	// two keys: each source has its own keyring
	if err := os.WriteFile(filepath.Join(dir, "main.gpg"), main.Keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sec.gpg"), sec.Keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	y := "name: t\nversion: 1.0.0\npackages: [app]\ndebian:\n  sources:\n" +
		"  - {mirror: '" + main.Mirror() + "', suite: test, keyring: main.gpg}\n" +
		"  - {mirror: '" + sec.Mirror() + "', suite: test-security, keyring: sec.gpg}\n"
	p := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := configs.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return main, sec, spec
}

func pinned(l *Lock) []string {
	var out []string
	for _, p := range l.Packages {
		out = append(out, p.Name+"="+p.Version+"@"+p.Source)
	}
	return out
}

// TestResolveSources: the newest version across the suites wins, each
// package is pinned with its suite, the lock (version 2) lists both
// releases, and a build fetches each .deb from its own suite's mirror.
func TestResolveSources(t *testing.T) {
	main, sec, spec := twoSuites(t)
	res, err := (&Client{}).ResolveSpec(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	l := res.Lock
	if want := []string{"app=1.0-1@test", "libx=1.0-1+deb1@test-security", "tool=2.0-1@test"}; !slices.Equal(pinned(l), want) {
		t.Errorf("pinned %v, want %v", pinned(l), want)
	}
	if l.Version != 2 || len(l.Sources) != 2 || l.Sources[0].Suite != "test" || l.Sources[1].Mirror != sec.Mirror() || len(l.Sources[1].InRelease) != 64 {
		t.Errorf("lock sources %+v", l.Sources)
	}
	b, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseLock(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Matches(spec); err != nil {
		t.Fatal(err)
	}
	m0, s0 := main.Requests(), sec.Requests()
	names, paths, err := (&Client{}).FetchLock(context.Background(), back, MirrorOverrides(spec.Debian), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if m, s := main.Requests()-m0, sec.Requests()-s0; m != 2 || s != 1 {
		t.Errorf("fetch asked the main mirror %d times and the security mirror %d times, want 2 and 1", m, s)
	}
	u, err := Unpack(names, paths)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(u.nodes["/usr/lib/libx.so"].data); got != "fixed" {
		t.Errorf("libx.so is %q, want the security suite's", got)
	}

	// a pin takes the version from whichever suite has it
	spec.Packages = []string{"app", "libx=1.0-1"}
	res, err = (&Client{}).ResolveSpec(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"app=1.0-1@test", "libx=1.0-1@test", "tool=2.0-1@test"}; !slices.Equal(pinned(res.Lock), want) {
		t.Errorf("with a pin: %v, want %v", pinned(res.Lock), want)
	}

	// the lock names the suites: another list is a mismatch
	spec.Packages = []string{"app"}
	spec.Debian.Sources = spec.Debian.Sources[:1]
	if err := back.Matches(spec); err == nil || !strings.Contains(err.Error(), "suites [test test-security], the spec says [test]") {
		t.Errorf("Matches with one suite: %v", err)
	}

	// a keyring that is not there names its field
	spec.Debian.Sources = append(spec.Debian.Sources, configs.DebianSource{Mirror: sec.Mirror(), Suite: "test-security", Components: []string{"main"}, Keyring: "nope.gpg"})
	if _, err := (&Client{}).ResolveSpec(context.Background(), spec); err == nil || !strings.HasPrefix(err.Error(), "$.debian.sources[1].keyring (suite test-security): ") {
		t.Errorf("missing keyring: %v", err)
	}
	spec.Debian.Sources = spec.Debian.Sources[:1]

	// a source signed by another key is refused, naming its suite
	spec.Debian.Sources = append(spec.Debian.Sources, configs.DebianSource{Mirror: sec.Mirror(), Suite: "test-security", Components: []string{"main"}, Keyring: "main.gpg"})
	if _, err := (&Client{}).ResolveSpec(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "dists/test-security: InRelease signature") {
		t.Errorf("wrong key: %v", err)
	}
}

// TestLockVersion1: a lock written before sources existed still reads,
// as a lock of one source, and still matches its spec.
func TestLockVersion1(t *testing.T) {
	ex, _ := json.Marshal(sortedKeys(Excluded(nil)))
	v1 := `{"lock_version":1,"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x","requested":["aa"],"exclude":` + string(ex) + `,"packages":[{"name":"aa","version":"1","architecture":"amd64","filename":"pool/main/a/aa/aa_1_amd64.deb","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`
	l, err := ParseLock([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Sources) != 1 || l.Sources[0].Mirror != "http://m/debian" || l.Sources[0].Suite != "bookworm" || l.Packages[0].Source != "bookworm" {
		t.Fatalf("v1 lock read as %+v", l)
	}
	spec, err := configs.Parse([]byte("name: t\nversion: 1.0.0\npackages: [aa]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Matches(spec); err != nil {
		t.Errorf("a v1 lock of bookworm does not match a spec of bookworm: %v", err)
	}
	// written back, it is a version 2 lock that reads the same
	b, _ := l.Marshal()
	l2, err := ParseLock(b)
	if err != nil || !slices.Equal(l2.Packages, l.Packages) || l2.Version != 2 {
		t.Errorf("rewritten v1 lock: %v %+v", err, l2)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`"lock_version":1`, `"lock_version":3`, "lock_version 3"},
		{`"suite":"bookworm",`, ``, "no suite"},
		{`"sha256":"a`, `"source":"x","sha256":"a`, "names no source"},
	} {
		if _, err := ParseLock([]byte(strings.Replace(v1, tc.old, tc.new, 1))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.new, err, tc.want)
		}
	}
	v2 := `{"lock_version":2,"sources":[{"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x"}],"requested":["aa"],"exclude":[],"packages":[{"name":"aa","version":"1","architecture":"amd64","filename":"pool/main/a/aa/aa_1_amd64.deb","size":3,"sha256":"` + strings.Repeat("a", 64) + `","source":"bookworm"}]}`
	if _, err := ParseLock([]byte(v2)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`"source":"bookworm"`, `"source":"sid"`, `source "sid" is not in sources`},
		{`"lock_version":2,`, `"lock_version":2,"suite":"bookworm",`, "in sources only"},
		{`"sources":[`, `"sources":[{"mirror":"http://n/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x"},`, "suite bookworm twice"},
		{`"mirror":"http://m/debian"`, `"mirror":"file:///debian"`, "not an http(s) URL"},
		{`"sources":[{"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x"}]`, `"sources":[]`, "no sources"},
	} {
		if _, err := ParseLock([]byte(strings.Replace(v2, tc.old, tc.new, 1))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.new, err, tc.want)
		}
	}
}

// TestSourcesOf: the suites a spec's debian section means, with the
// build host's apt sources in a folder of the test's.
func TestSourcesOf(t *testing.T) {
	debian := "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
		"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
	apt := func(t *testing.T, sources string) string {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
		if sources != "" {
			os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(sources), 0o644)
		}
		return dir
	}
	str := func(ss []Source) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Mirror+" "+s.Suite+" "+strings.Join(s.Components, ",")+" "+s.Keyring)
			if !strings.HasPrefix(s.KeyringField, "$.debian.") || !strings.HasSuffix(s.KeyringField, "keyring") {
				t.Errorf("%s: keyring field %q", s.Suite, s.KeyringField)
			}
		}
		return out
	}
	ring := configs.DefaultDebianKeyring
	for _, tc := range []struct {
		name, apt string
		d         *configs.Debian
		want      []string
	}{
		{"the host's three suites", debian, &configs.Debian{Suite: "bookworm", Components: []string{"main"}, Keyring: ring}, []string{
			"http://mirror.example/debian bookworm main " + ring,
			"http://mirror.example/debian bookworm-updates main " + ring,
			"http://mirror.example/debian-security bookworm-security main " + ring}},
		{"a host without security", "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\n", nil, []string{
			"http://m.example/debian bookworm main " + ring}},
		{"a host without apt sources", "", &configs.Debian{Suite: "bookworm", Components: []string{"main", "contrib"}, Keyring: "k.gpg"}, []string{
			DefaultMirror + " bookworm main,contrib k.gpg",
			DefaultMirror + " bookworm-updates main,contrib k.gpg",
			DefaultSecurityMirror + " bookworm-security main,contrib k.gpg"}},
		{"another suite than the host's", debian, &configs.Debian{Suite: "trixie", Components: []string{"main"}, Keyring: ring}, []string{
			DefaultMirror + " trixie main " + ring}},
		{"the spec's mirror: its suite alone", debian, &configs.Debian{Suite: "bookworm", Mirror: "http://local/debian/", Components: []string{"main"}, Keyring: ring}, []string{
			"http://local/debian bookworm main " + ring}},
		{"the spec's sources as given", debian, &configs.Debian{Sources: []configs.DebianSource{{Mirror: "http://a/debian", Suite: "x"}, {Mirror: "http://b/d", Suite: "y", Components: []string{"non-free"}, Keyring: "y.gpg"}}}, []string{
			"http://a/debian x main " + ring, "http://b/d y non-free y.gpg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := str(sourcesOf(tc.d, apt(t, tc.apt))); !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
