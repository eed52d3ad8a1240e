package configs

import (
	"strings"
	"testing"
)

func TestPackagesDefaults(t *testing.T) {
	s, err := Parse([]byte("name: t\nversion: 1.0.0\npackages: [busybox-static, ca-certificates=20230311]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := s.Debian
	if d == nil || d.Suite != "bookworm" || len(d.Components) != 1 || d.Components[0] != "main" || d.Keyring != DefaultDebianKeyring || d.Mirror != "" {
		t.Fatalf("defaults: %+v", d)
	}
	refs := s.PackageRefs()
	if refs[1].Name != "ca-certificates" || refs[1].Version != "20230311" || refs[0].Version != "" {
		t.Fatalf("refs: %+v", refs)
	}
	// sources take their own defaults; the one-suite fields stay empty
	s, err = Parse([]byte("name: t\nversion: 1.0.0\npackages: [bash]\ndebian: {sources: [{mirror: 'http://m/debian', suite: bookworm}, {mirror: 'http://s/debian-security', suite: bookworm-security, keyring: k.gpg}]}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Debian; d.Suite != "" || d.Keyring != "" || len(d.Sources) != 2 || d.Sources[0].Keyring != DefaultDebianKeyring || d.Sources[1].Keyring != "k.gpg" || d.Sources[1].Components[0] != "main" {
		t.Fatalf("sources: %+v", d)
	}
	// a spec without packages keeps no debian section (its JSON is unchanged)
	s, err = Parse([]byte("name: t\nversion: 1.0.0\n"), "t.yaml")
	if err != nil || s.Debian != nil {
		t.Fatalf("no packages: %v %+v", err, s.Debian)
	}
}

func TestPackagesErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"packages: [ok, Bad]\n", "$.packages[1]: \"Bad\": not a Debian package name"},
		{"packages: [a]\n", "$.packages[0]: \"a\": a package name has at least two characters"},
		{"packages: [bash, bash=5.2]\n", "$.packages[1]: package \"bash\" is already at $.packages[0]"},
		{"packages: [bash=]\n", "$.packages[0]: \"bash=\": empty version after '='"},
		{"packages: [bash=x y]\n", "$.packages[0]: \"bash=x y\": not a Debian version"},
		{"packages: [bash]\ndebian: {mirror: ftp://x/debian}\n", "$.debian.mirror:"},
		{"packages: [bash]\ndebian: {mirror: 'http://u:p@x/debian'}\n", "$.debian.mirror: credentials"},
		{"packages: [bash]\ndebian: {suite: 'a b'}\n", "$.debian.suite:"},
		{"packages: [bash]\ndebian: {components: [main, 'x/y']}\n", "$.debian.components[1]:"},
		{"packages: [bash]\ndebian: {exclude: [bash]}\n", "$.debian.exclude[0]: \"bash\" is also asked for at $.packages[0]"},
		{"packages: [bash]\ndebian: {include: [Perl]}\n", "$.debian.include[0]:"},
		{"packages: [bash]\ndebian: {suit: trixie}\n", "$.debian.suit"},
		{"packages: [bash]\ndebian: {suite: bookworm, sources: [{mirror: 'http://m/debian', suite: bookworm}]}\n", "$.debian.suite: give the suites either as debian.sources"},
		{"packages: [bash]\ndebian: {sources: [{suite: bookworm}]}\n", "$.debian.sources[0].mirror: a source needs its mirror"},
		{"packages: [bash]\ndebian: {sources: [{mirror: 'http://m/debian'}]}\n", "$.debian.sources[0].suite: a source needs its suite"},
		{"packages: [bash]\ndebian: {sources: [{mirror: 'http://m/d', suite: a}, {mirror: 'http://n/d', suite: a}]}\n", "$.debian.sources[1].suite: suite \"a\" is already at $.debian.sources[0]"},
		{"packages: [bash]\ndebian: {sources: [{mirror: 'ftp://m/d', suite: a}]}\n", "$.debian.sources[0].mirror:"},
		{"packages: [bash]\ndebian: {sources: [{mirror: 'http://m/d', suite: a, components: ['x y']}]}\n", "$.debian.sources[0].components[0]:"},
	} {
		_, err := Parse([]byte("name: t\nversion: 1.0.0\n"+tc.yaml), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
