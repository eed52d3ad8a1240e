package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/internal/deb"
	"github.com/slateos/slate/internal/deb/debtest"
)

func runSlate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	root.SetArgs(args)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

func TestPackagesLockUpdateFetch(t *testing.T) {
	repo := debtest.NewRepo(t, []debtest.Pkg{
		{Name: "hello", Version: "1.0-1", Depends: "libhello (>= 1), debconf", Files: []debtest.File{{Name: "./usr/bin/hello", Mode: 0o755, Body: "hi"}}},
		{Name: "libhello", Version: "1.2-1", Files: []debtest.File{{Name: "./lib/libhello.so.1", Body: "lib"}}},
		{Name: "other", Version: "2"},
	})
	dir := t.TempDir()
	ring := filepath.Join(dir, "test.gpg")
	os.WriteFile(ring, repo.Keyring, 0o644)
	spec := filepath.Join(dir, "slate.yaml")
	write := func(pkgs string) {
		y := "name: t\nversion: 1.0.0\npackages: [" + pkgs + "]\ndebian: {suite: test, mirror: '" + repo.Mirror() + "', keyring: test.gpg}\n"
		if err := os.WriteFile(spec, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hello")
	out, err := runSlate(t, "packages", "lock", "-c", spec)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "slate.yaml.lock: 2 packages") || !strings.Contains(out, "note: hello: dependency debconf dropped") {
		t.Fatalf("lock output:\n%s", out)
	}
	l, err := deb.ReadLock(spec + ".lock")
	if err != nil || len(l.Packages) != 2 || l.Packages[0].Name != "hello" || l.Packages[1].Version != "1.2-1" {
		t.Fatalf("lock: %v %+v", err, l)
	}
	// fetch fills the cache; a second fetch makes no request
	cache := t.TempDir()
	if out, err := runSlate(t, "packages", "fetch", "-c", spec, "--cache", cache); err != nil || !strings.Contains(out, "2 packages") {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	before := repo.Requests()
	if out, err := runSlate(t, "packages", "fetch", "-c", spec, "--cache", cache); err != nil {
		t.Fatalf("warm fetch: %v\n%s", err, out)
	}
	if n := repo.Requests() - before; n != 0 {
		t.Fatalf("a warm fetch made %d requests", n)
	}
	// the spec changed: lock and fetch refuse and name the package; update rewrites
	write("hello, other")
	if _, err := runSlate(t, "packages", "lock", "-c", spec); err == nil || !strings.Contains(err.Error(), `package "other" is not in the lock`) {
		t.Fatalf("stale lock: %v", err)
	}
	if _, err := runSlate(t, "packages", "fetch", "-c", spec, "--cache", cache); err == nil || !strings.Contains(err.Error(), `package "other" is not in the lock`) {
		t.Fatalf("stale fetch: %v", err)
	}
	if out, err := runSlate(t, "packages", "update", "-c", spec); err != nil || !strings.Contains(out, "3 packages") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	// an unknown package: the hint, and no lock is written
	os.Remove(spec + ".lock")
	write("helo")
	if _, err := runSlate(t, "packages", "lock", "-c", spec); err == nil || !strings.Contains(err.Error(), `did you mean "hello"?`) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := os.Stat(spec + ".lock"); !os.IsNotExist(err) {
		t.Fatalf("a failed lock wrote a file: %v", err)
	}
	// slate build reads SPEC.lock: one made for other packages is refused
	// before anything is built, and names the lock
	write("hello, other")
	if out, err := runSlate(t, "packages", "lock", "-c", spec); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	write("hello")
	out = filepath.Join(t.TempDir(), "out")
	if _, err := runSlate(t, "build", "-c", spec, "-o", out, "--cache", cache); err == nil || !strings.Contains(err.Error(), "slate.yaml.lock: the lock does not match the spec") {
		t.Fatalf("build with a stale lock: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused build made its output folder: %v", err)
	}
}
