package kmod

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// smallTree copies a few real modules of the cached kernel into a new tree,
// some of them compressed as other distributions ship them.
func smallTree(t *testing.T) string {
	t.Helper()
	src := kernelTree(t)
	dir := filepath.Join(t.TempDir(), "lib", "modules", filepath.Base(src))
	files := map[string]string{ // source → name in the new tree
		"kernel/fs/ext4/ext4.ko":          "kernel/fs/ext4/ext4.ko",
		"kernel/fs/jbd2/jbd2.ko":          "kernel/fs/jbd2/jbd2.ko.zst",
		"kernel/fs/mbcache.ko":            "kernel/fs/mbcache.ko.xz",
		"kernel/lib/crc16.ko":             "kernel/lib/crc16.ko.gz",
		"kernel/crypto/crc32c_generic.ko": "kernel/crypto/crc32c_generic.ko",
	}
	for from, to := range files {
		data, err := os.ReadFile(filepath.Join(src, from))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		var w io.WriteCloser
		switch filepath.Ext(to) {
		case ".zst":
			w, err = zstd.NewWriter(&b)
		case ".xz":
			w, err = xz.NewWriter(&b)
		case ".gz":
			w = gzip.NewWriter(&b)
		}
		if err != nil {
			t.Fatal(err)
		}
		if w != nil {
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data = b.Bytes()
		}
		p := filepath.Join(dir, to)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	builtin, err := os.ReadFile(filepath.Join(src, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "modules.builtin"), builtin, 0o644)
	return dir
}

func TestOpenCompressed(t *testing.T) {
	dir := smallTree(t)
	ix, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ix.Resolve([]string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}
	if got := names(mods); !slices.Equal(got, want) {
		t.Errorf("Resolve(ext4) = %v, want %v", got, want)
	}
	if ix.byName["jbd2"].Path != "kernel/fs/jbd2/jbd2.ko.zst" {
		t.Errorf("jbd2 path %q", ix.byName["jbd2"].Path)
	}
	w := newMemWriter()
	if err := ix.WriteTree(w, mods); err != nil {
		t.Fatal(err)
	}
	dep := string(w.files["lib/modules/"+ix.KernelVersion()+"/modules.dep"])
	if !strings.Contains(dep, "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko.gz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.zst\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
}

func TestOpenCache(t *testing.T) {
	dir := smallTree(t)
	cache := filepath.Join(t.TempDir(), "cache")
	first, err := Open(dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 || !strings.Contains(entries[0].Name(), first.KernelVersion()) {
		t.Fatalf("cache dir holds %v, want one file named after the kernel", entries)
	}

	// Spoil a module but keep its size and mtime: only a cached read still
	// works, which shows the cache is used.
	ext4 := filepath.Join(dir, "kernel/fs/ext4/ext4.ko")
	st, _ := os.Stat(ext4)
	os.WriteFile(ext4, make([]byte, st.Size()), 0o644)
	os.Chtimes(ext4, st.ModTime(), st.ModTime())
	second, err := Open(dir, cache)
	if err != nil {
		t.Fatalf("cached Open: %v", err)
	}
	if !reflect.DeepEqual(first.Modules(), second.Modules()) || first.KernelVersion() != second.KernelVersion() {
		t.Error("cached index differs from the built one")
	}

	// Touching a module changes the fingerprint: the tree is read again
	// (and the spoiled module shows).
	os.Chtimes(ext4, time.Now(), time.Now())
	if _, err := Open(dir, cache); err == nil || !strings.Contains(err.Error(), "ext4.ko") {
		t.Errorf("Open after touching a broken module = %v, want an error naming ext4.ko", err)
	}

	// A corrupt cache file is ignored and replaced.
	good, _ := os.ReadFile(filepath.Join(kernelTree(t), "kernel/fs/ext4/ext4.ko"))
	os.WriteFile(ext4, good, 0o644)
	if _, err := Open(dir, cache); err != nil {
		t.Fatal(err)
	}
	entries, _ = os.ReadDir(cache)
	for _, e := range entries {
		os.WriteFile(filepath.Join(cache, e.Name()), []byte("garbage"), 0o644)
	}
	third, err := Open(dir, cache)
	if err != nil {
		t.Fatalf("Open with a corrupt cache: %v", err)
	}
	if !reflect.DeepEqual(first.Modules(), third.Modules()) {
		t.Error("index rebuilt after a corrupt cache differs")
	}

	// No cache dir: nothing written.
	empty := t.TempDir()
	if _, err := Open(smallTree(t), ""); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("wrote %v without a cache dir", entries)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope"), ""); err == nil {
		t.Error("Open of a missing dir succeeded")
	}
	empty := t.TempDir()
	if _, err := Open(empty, ""); err == nil || !strings.Contains(err.Error(), "no kernel modules") {
		t.Errorf("Open of an empty dir = %v", err)
	}
	os.WriteFile(filepath.Join(empty, "bad.ko"), []byte("not elf"), 0o644)
	if _, err := Open(empty, ""); err == nil || !strings.Contains(err.Error(), "bad.ko") {
		t.Errorf("Open of a tree with a bad module = %v, want an error naming it", err)
	}
}

func BenchmarkOpen(b *testing.B) {
	dir := kernelTree(b)
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			if _, err := Open(dir, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := b.TempDir()
		if _, err := Open(dir, cache); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := Open(dir, cache); err != nil {
				b.Fatal(err)
			}
		}
	})
}
