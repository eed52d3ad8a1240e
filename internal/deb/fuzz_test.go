package deb

import (
	"bytes"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

// FuzzParseIndex: any index text either fails or gives packages whose
// fields passed the checks (a pool path without "..", a sha256, a size),
// and an index of them resolves without panicking.
func FuzzParseIndex(f *testing.F) {
	f.Add(genIndex(5))
	f.Add([]byte("Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\nSize: 1\nSHA256: " + strings.Repeat("0", 64) + "\nDepends: b | c (>= 1), a\nProvides: c (= 2)\n\n"))
	f.Add([]byte("Package: a\nVersion: 1:\nArchitecture: amd64\nFilename: ../x.deb\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseIndex(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if checkPoolPath(p.Filename) != nil || !isHexSHA256(p.SHA256) || p.Size <= 0 {
				t.Fatalf("unchecked package %+v", p)
			}
		}
		ix, err := NewIndex(pkgs)
		if err != nil {
			return
		}
		for _, p := range pkgs {
			_, _ = ix.Resolve([]configs.PackageRef{{Name: p.Name}}, DefaultExclude)
		}
		_ = ix.Hint("a")
	})
}

// FuzzParseRelease: the signed text of a release parses or fails cleanly;
// every file it lists has a sha256 and a size.
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Suite: test\nDate: x\nSHA256:\n " + strings.Repeat("ab", 32) + " 12 main/binary-amd64/Packages.xz\n"))
	f.Add([]byte("SHA256:\n x y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rel, err := parseRelease(data)
		if err != nil {
			return
		}
		for name, s := range rel.Files {
			if !isHexSHA256(s.SHA256) || s.Size < 0 || name == "" {
				t.Fatalf("unchecked file %q %+v", name, s)
			}
		}
	})
}

// FuzzParseLock: a lock parses or fails cleanly; one that parses
// marshals to a text that parses to the same lock.
func FuzzParseLock(f *testing.F) {
	f.Add([]byte(`{"lock_version":1,"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x","requested":["aa"],"exclude":["dpkg"],"packages":[{"name":"aa","version":"1","architecture":"amd64","filename":"pool/main/a/aa/aa_1_amd64.deb","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"lock_version":1}`))
	f.Add([]byte(`{"lock_version":2,"sources":[{"mirror":"http://m/debian","suite":"bookworm","components":["main"],"date":"d","inrelease_sha256":"x"},{"mirror":"http://s/debian-security","suite":"bookworm-security","components":["main"],"date":"d","inrelease_sha256":"y"}],"requested":["aa"],"exclude":[],"packages":[{"name":"aa","version":"1","architecture":"amd64","filename":"pool/main/a/aa/aa_1_amd64.deb","size":3,"sha256":"` + strings.Repeat("a", 64) + `","source":"bookworm-security"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock(data)
		if err != nil {
			return
		}
		text, err := l.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		l2, err := ParseLock(text)
		if err != nil {
			t.Fatalf("a marshalled lock does not parse: %v\n%s", err, text)
		}
		text2, _ := l2.Marshal()
		if !bytes.Equal(text, text2) {
			t.Fatalf("not stable:\n%s\n%s", text, text2)
		}
	})
}

// FuzzArchivePaths: a data archive member's path is either refused or
// becomes an absolute clean path inside the root, and a mapped symlink
// target stays relative when it was.
func FuzzArchivePaths(f *testing.F) {
	f.Add("./bin/sh", "dash")
	f.Add("./lib64/ld.so", "../lib/x86_64-linux-gnu/ld.so")
	f.Add("../etc/passwd", "/x")
	f.Fuzz(func(t *testing.T, name, target string) {
		p, ok := cleanPath(name)
		if !ok {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			t.Fatalf("%q -> %q", name, p)
		}
		m := mergeUsr(p)
		if l := mapLinkTarget(p, m, target); strings.HasPrefix(l, "/") != strings.HasPrefix(target, "/") && target != "" {
			t.Fatalf("target %q -> %q", target, l)
		}
	})
}

// FuzzAptSources: whatever the host's apt sources hold, an entry is an
// http(s) URI and one suite word.
func FuzzAptSources(f *testing.F) {
	f.Add("deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main\ndeb-src http://x/ y main\n")
	f.Add("Types: deb\nURIs: http://deb.debian.org/debian https://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://x/\nSuites: s\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, e := range append(entriesOfList(text), entriesOfSources(text)...) {
			if !mirrorURI(e.uri) || e.suite == "" || strings.ContainsAny(e.suite, " \t\n") {
				t.Fatalf("entry %+v of %q", e, text)
			}
		}
	})
}
