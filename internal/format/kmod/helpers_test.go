package kmod

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// kernelTree returns the modules dir of the Debian kernel that
// scripts/fetch-kernel.sh unpacks into the cache ($SLATE_CACHE, else .cache
// at the repository root). It fails under CI when the tree is missing, and
// skips elsewhere.
func kernelTree(tb testing.TB) string {
	tb.Helper()
	cache := os.Getenv("SLATE_CACHE")
	switch {
	case cache == "":
		cache = filepath.Join("../../..", ".cache")
	case !filepath.IsAbs(cache):
		// fetch-kernel.sh is run from the repository root.
		cache = filepath.Join("../../..", cache)
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-amd64", "lib", "modules", "*"))
	for _, m := range matches {
		if st, err := os.Stat(filepath.Join(m, "kernel")); err == nil && st.IsDir() {
			return m
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("no kernel module tree under %s/kernel/linux-image-amd64/lib/modules (run scripts/fetch-kernel.sh)", cache)
	}
	tb.Skipf("no kernel module tree under %s (run scripts/fetch-kernel.sh)", cache)
	return ""
}

var (
	realOnce sync.Once
	realIx   *Index
	realErr  error
)

// realIndex opens the cached kernel tree once for all tests.
func realIndex(tb testing.TB) *Index {
	tb.Helper()
	dir := kernelTree(tb)
	realOnce.Do(func() { realIx, realErr = Open(dir, "") })
	if realErr != nil {
		tb.Fatalf("Open(%s): %v", dir, realErr)
	}
	return realIx
}

// hostTool returns the path of a host tool, failing under CI when it is
// missing and skipping elsewhere.
func hostTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s not found (Debian package kmod)", name)
	}
	tb.Skipf("%s not found (Debian package kmod)", name)
	return ""
}

// memWriter keeps the generated index files in memory and only notes the
// module files, so a whole tree can be "written" cheaply.
type memWriter struct {
	files map[string][]byte // index files (names not ending in .ko*)
	sizes map[string]int64
	dirs  []string
}

func newMemWriter() *memWriter {
	return &memWriter{files: map[string][]byte{}, sizes: map[string]int64{}}
}

func (w *memWriter) AddFile(path string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	w.sizes[path] = size
	if isModuleFile(path) {
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	w.files[path] = data
	return nil
}

func (w *memWriter) Mkdir(path string, mode fs.FileMode) error {
	w.dirs = append(w.dirs, path)
	return nil
}

// dirWriter writes for real under root.
type dirWriter struct{ root string }

func (w dirWriter) AddFile(path string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(filepath.Join(w.root, path), os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		return &fs.PathError{Op: "write", Path: path, Err: io.ErrShortWrite}
	}
	return err
}

func (w dirWriter) Mkdir(path string, mode fs.FileMode) error {
	err := os.Mkdir(filepath.Join(w.root, path), mode)
	if os.IsExist(err) {
		return nil
	}
	return err
}

// depmodSections runs depmod -n on root and splits its output into the
// files it would write, by their header lines.
func depmodSections(tb testing.TB, root, kver string) map[string]string {
	tb.Helper()
	depmod := hostTool(tb, "depmod")
	cmd := exec.Command(depmod, "-b", root, "-n", kver)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("depmod -b %s -n %s: %v\n%s", root, kver, err, stderr.String())
	}
	headers := map[string]string{
		"# Aliases extracted from modules themselves.":           "modules.alias",
		"# Soft dependencies extracted from modules themselves.": "modules.softdep",
		"# Aliases for symbols, used by symbol_request().":       "modules.symbols",
		"# Device nodes to trigger on-demand module loading.":    "modules.devname",
	}
	sections := map[string]string{}
	cur := "modules.dep"
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if name, ok := headers[strings.TrimSpace(line)]; ok {
			sections[cur] = b.String()
			b.Reset()
			cur = name
		}
		b.WriteString(line)
	}
	sections[cur] = b.String()
	return sections
}

// depLines parses modules.dep text into path → dependency list, keeping the
// order of lines.
func depLines(tb testing.TB, text string) (order []string, deps map[string][]string) {
	tb.Helper()
	deps = map[string][]string{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		p, rest, ok := strings.Cut(line, ":")
		if !ok {
			tb.Fatalf("bad modules.dep line %q", line)
		}
		order = append(order, p)
		deps[p] = strings.Fields(rest)
	}
	return order, deps
}
