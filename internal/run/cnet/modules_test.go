package cnet

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/slateos/slate/internal/format/kmod"
)

// kernelTree is the Debian kernel's module tree that scripts/
// fetch-kernel.sh unpacks into $SLATE_CACHE (else .cache at the
// repository root); missing, it fails under CI and skips elsewhere.
func kernelTree(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("SLATE_CACHE")
	switch {
	case cache == "":
		cache = filepath.Join("..", "..", ".cache")
	case !filepath.IsAbs(cache):
		cache = filepath.Join("..", "..", cache)
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-amd64", "lib", "modules", "*"))
	for _, m := range matches {
		if st, err := os.Stat(filepath.Join(m, "kernel")); err == nil && st.IsDir() {
			return m
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no kernel module tree under %s (run scripts/fetch-kernel.sh)", cache)
	}
	t.Skipf("no kernel module tree under %s", cache)
	return ""
}

// TestModulesLoadFromARoot writes the tree the builder would put in a
// root for Modules and has PID 1's loader (kmod.Loader) probe them: every
// name is found and loads after what it needs.
func TestModulesLoadFromARoot(t *testing.T) {
	ix, err := kmod.Open(kernelTree(t), "")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ix.Resolve(Modules)
	if err != nil {
		t.Fatalf("Modules in %s: %v", ix.KernelVersion(), err)
	}
	var size int64
	for _, m := range mods {
		size += m.Size
	}
	t.Logf("%d modules, %d bytes", len(mods), size)
	// 2.18 MB on 6.1.0-57 (bridge, nf_tables and nf_conntrack lead).
	if size > 3<<20 {
		t.Errorf("the container network's modules are %d bytes, more than 3 MiB", size)
	}
	root := t.TempDir()
	if err := ix.WriteTree(dirWriter(root), mods); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	l := &kmod.Loader{Dir: filepath.Join(root, "lib", "modules", ix.KernelVersion()), Load: func(p, _ string) error {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("load of a missing file: %v", err)
		}
		loaded = append(loaded, filepath.Base(p))
		return nil
	}}
	if err := l.Probe(Modules...); err != nil {
		t.Fatal(err)
	}
	at := func(name string) int {
		i := slices.Index(loaded, name+".ko")
		if i < 0 {
			t.Errorf("%s not loaded (loaded %v)", name, loaded)
		}
		return i
	}
	for _, m := range Modules {
		at(m)
	}
	for _, order := range [][2]string{{"llc", "bridge"}, {"stp", "bridge"}, {"nfnetlink", "nf_tables"}, {"nf_conntrack", "nf_nat"},
		{"nf_nat", "nft_masq"}, {"nf_tables", "nft_chain_nat"}, {"nft_fib", "nft_fib_ipv4"}} {
		if at(order[0]) > at(order[1]) {
			t.Errorf("%s loaded after %s: %v", order[0], order[1], loaded)
		}
	}
}

type dirWriter string

func (w dirWriter) AddFile(path string, mode fs.FileMode, _ int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(filepath.Join(string(w), path), os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w dirWriter) Mkdir(path string, mode fs.FileMode) error {
	if err := os.Mkdir(filepath.Join(string(w), path), mode); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}
