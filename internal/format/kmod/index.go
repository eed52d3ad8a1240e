// Package kmod knows the kernel modules of a Debian kernel tree: on the build
// host it reads a /lib/modules/<kver> tree that has no depmod output (Debian
// runs depmod in the package's postinst), resolves the closure of the modules
// an image needs and writes them with depmod-format index files; on the
// target machine it loads modules by name or by the devices found in sysfs.
package kmod

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/google/renameio/v2"
	"github.com/sirupsen/logrus"
)

// Index is the parsed module tree of one kernel.
type Index struct {
	dir     string
	kver    string
	mods    []*Module          // modules.order order, then the others by path
	byName  map[string]*Module // canonical name → module
	builtin map[string]bool    // canonical names of modules.builtin
	// builtinRaw is modules.builtin as read, copied into written trees.
	builtinRaw []byte
	// builtinModinfo is modules.builtin.modinfo as read (may be nil).
	builtinModinfo []byte
	aliases        *aliasIndex // aliases of loadable and built-in modules
}

// indexCacheVersion changes whenever the cached form or what is read into it
// changes, so old cache files are never misread.
const indexCacheVersion = 1

// cachedIndex is what the index cache file holds.
type cachedIndex struct {
	Version        int
	Fingerprint    string
	KernelVersion  string
	Modules        []*Module
	Builtin        []byte
	BuiltinModinfo []byte
}

// Open reads the module tree at modulesDir (a /lib/modules/<kver> folder):
// the .modinfo ELF section of every module file (plain or .xz/.zst/.gz),
// modules.order, modules.builtin and modules.builtin.modinfo. The kernel
// version is taken from the modules' vermagic, else the folder's name.
//
// Reading Debian's 4023 modules takes 140-250 ms with the files in the page
// cache (450 ms cold) on the 2-core build machine, so when cacheDir is not
// empty the result is kept there, in a file named after the folder (the
// kernel version) and a fingerprint of the tree (path, size and mtime of
// every file Open reads), written atomically and reused while the tree is
// unchanged: 40-80 ms, most of it the fingerprint's walk.
func Open(modulesDir string, cacheDir string) (*Index, error) {
	st, err := os.Stat(modulesDir)
	if err != nil {
		return nil, fmt.Errorf("kmod: open module tree: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("kmod: open module tree: %s is not a directory", modulesDir)
	}
	files, fp, err := scanTree(modulesDir)
	if err != nil {
		return nil, err
	}
	cacheFile := ""
	if cacheDir != "" {
		name := fmt.Sprintf("kmod-index-%s-%s.gob", sanitize(filepath.Base(modulesDir)), fp[:16])
		cacheFile = filepath.Join(cacheDir, name)
		if c, err := readCache(cacheFile, fp); err == nil {
			return newIndex(modulesDir, c)
		} else if !os.IsNotExist(err) {
			logrus.WithError(err).WithField("file", cacheFile).Warn("kmod: ignoring unreadable index cache")
		}
	}
	c, err := buildIndex(modulesDir, files)
	if err != nil {
		return nil, err
	}
	c.Fingerprint = fp
	if cacheFile != "" {
		if err := writeCache(cacheFile, c); err != nil {
			// The cache only saves time; a build must not fail for it.
			logrus.WithError(err).WithField("file", cacheFile).Warn("kmod: could not write index cache")
		}
	}
	return newIndex(modulesDir, c)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

// treeFile is one module file found in the tree.
type treeFile struct {
	rel  string // slash-separated, relative to the tree
	size int64
}

// scanTree lists the module files of dir and fingerprints everything Open
// reads from it.
func scanTree(dir string) ([]treeFile, string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "slate-kmod-index v%d\n", indexCacheVersion)
	var files []treeFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		top := filepath.Dir(p) == dir
		if !isModuleFile(name) && !(top && (name == "modules.order" || name == "modules.builtin" || name == "modules.builtin.modinfo")) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", rel, info.Size(), info.ModTime().UnixNano())
		if isModuleFile(name) {
			files = append(files, treeFile{rel: rel, size: info.Size()})
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("kmod: scan %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("kmod: no kernel modules (*.ko*) under %s", dir)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

// buildIndex reads the modinfo of every file, in parallel (the work is
// mostly system calls and copying).
func buildIndex(dir string, files []treeFile) (*cachedIndex, error) {
	order, err := readLines(filepath.Join(dir, "modules.order"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	rank := make(map[string]int, len(order))
	for i, p := range order {
		if _, dup := rank[p]; !dup {
			rank[p] = i
		}
	}
	sort.SliceStable(files, func(a, b int) bool {
		ra, oka := rank[files[a].rel]
		rb, okb := rank[files[b].rel]
		switch {
		case oka && okb:
			return ra < rb
		case oka != okb:
			return oka
		}
		return files[a].rel < files[b].rel
	})

	mods := make([]*Module, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f := files[i]
				data, err := readModinfo(filepath.Join(dir, filepath.FromSlash(f.rel)))
				if err != nil {
					errs[i] = err
					continue
				}
				m := &Module{Name: moduleName(f.rel), Path: f.rel, Size: f.size}
				parseModinfo(m, data)
				mods[i] = m
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("kmod: read module info: %w", err)
		}
	}

	c := &cachedIndex{Version: indexCacheVersion, Modules: mods}
	for _, m := range mods {
		if v, _, _ := strings.Cut(m.Vermagic, " "); v != "" {
			c.KernelVersion = v
			break
		}
	}
	if c.KernelVersion == "" {
		c.KernelVersion = filepath.Base(dir)
	}
	c.Builtin, err = os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	c.BuiltinModinfo, err = os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	return c, nil
}

func newIndex(dir string, c *cachedIndex) (*Index, error) {
	ix := &Index{
		dir:            dir,
		kver:           c.KernelVersion,
		byName:         make(map[string]*Module, len(c.Modules)),
		builtin:        make(map[string]bool),
		builtinRaw:     c.Builtin,
		builtinModinfo: c.BuiltinModinfo,
	}
	var aliases []aliasEntry
	for _, m := range c.Modules {
		if m == nil {
			return nil, fmt.Errorf("kmod: corrupt index of %s", dir)
		}
		if _, dup := ix.byName[m.Name]; dup {
			// Same name twice (e.g. an out-of-tree copy): the first in
			// modules.order order wins, as it would for modprobe.
			continue
		}
		ix.byName[m.Name] = m
		ix.mods = append(ix.mods, m)
		for _, a := range m.Aliases {
			aliases = append(aliases, aliasEntry{pattern: a, module: m.Name})
		}
	}
	for _, p := range parseLines(c.Builtin) {
		ix.builtin[moduleName(p)] = true
	}
	aliases = append(aliases, parseBuiltinModinfo(c.BuiltinModinfo)...)
	ix.aliases = newAliasIndex(aliases)
	return ix, nil
}

func readCache(file, fp string) (*cachedIndex, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c cachedIndex
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		return nil, fmt.Errorf("decode index cache: %w", err)
	}
	if c.Version != indexCacheVersion || c.Fingerprint != fp {
		return nil, fmt.Errorf("index cache %s is for another tree", file)
	}
	return &c, nil
}

func writeCache(file string, c *cachedIndex) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Errorf("encode index cache: %w", err)
	}
	if err := renameio.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		return err
	}
	// Older caches of the same kernel are stale now: remove them so the
	// folder does not grow with every rebuilt tree.
	prefix := file[:strings.LastIndexByte(file, '-')+1]
	old, _ := filepath.Glob(globEscape(prefix) + "*.gob")
	for _, o := range old {
		if o != file {
			os.Remove(o)
		}
	}
	return nil
}

// globEscape quotes the glob metacharacters of a literal path.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// KernelVersion is the kernel release the modules were built for (what
// uname -r prints on the target, and the folder name under /lib/modules).
func (ix *Index) KernelVersion() string { return ix.kver }

// Modules returns every loadable module of the tree, in modules.order order.
func (ix *Index) Modules() []*Module { return append([]*Module(nil), ix.mods...) }

// readLines returns the non-empty lines of a file.
func readLines(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return parseLines(data), nil
}

func parseLines(data []byte) []string {
	var out []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
