package kmod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// Loader loads kernel modules on the running machine from a module tree with
// depmod-format index files (modules.dep, modules.alias, modules.softdep,
// modules.builtin), as WriteTree or depmod make them.
//
// slate uses this small loader rather than u-root's pkg/kmodule (v0.16): that
// one panics on a modules.dep line without ':', knows no soft dependencies
// and no aliases (so it cannot match devices), looks a name up by scanning
// every entry, and reads every module into memory for init_module(2) even
// when it is not compressed (its FileInit never reaches finit_module for a
// plain .ko). Here a plain .ko is passed to finit_module(2) by descriptor.
//
// A Loader is safe for concurrent use; it reads the index files once.
type Loader struct {
	// Dir is the module tree, /lib/modules/<kernel release>. Empty means
	// that of the running kernel.
	Dir string
	// Load loads one module file with the given parameters. Nil means
	// finit_module(2) (init_module(2) after decompressing .ko.xz, .ko.zst
	// and .ko.gz files), with EEXIST (already loaded) counted as success.
	Load func(path string, params string) error
	// SysModule, when set (normally "/sys/module"), is checked before a
	// load: a module already in the running kernel is skipped and not
	// reported as loaded (PID 1 probes again after init did).
	SysModule string
	// Params are passed to every module load ("async_probe" lets a driver
	// probe its devices in the background instead of blocking the load).
	Params string

	mu     sync.Mutex
	db     *loaderDB
	done   map[string]bool  // modules loaded by this Loader (or found loaded)
	failed map[string]error // modules whose load failed
}

// maxDevicePasses bounds ProbeDevices: each pass may create devices (a bus
// driver such as virtio_pci makes the devices of its bus) that need another.
const maxDevicePasses = 5

type loaderDB struct {
	dir      string
	deps     map[string]depEntry
	aliases  *aliasIndex
	softdeps map[string]softdeps
	builtin  map[string]bool
}

func (l *Loader) index() (*loaderDB, error) {
	if l.db != nil {
		return l.db, nil
	}
	dir := l.Dir
	if dir == "" {
		var err error
		if dir, err = runningModulesDir(); err != nil {
			return nil, err
		}
	}
	db := &loaderDB{dir: dir, builtin: make(map[string]bool)}
	data, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	if db.deps, err = parseModulesDep(string(data)); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", dir, err)
	}
	var aliases []aliasEntry
	if data, err = readOptional(filepath.Join(dir, "modules.alias")); err != nil {
		return nil, err
	} else if aliases, err = parseModulesAlias(string(data)); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", dir, err)
	}
	db.aliases = newAliasIndex(aliases)
	if data, err = readOptional(filepath.Join(dir, "modules.softdep")); err != nil {
		return nil, err
	} else if db.softdeps, err = parseModulesSoftdep(string(data)); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", dir, err)
	}
	if data, err = readOptional(filepath.Join(dir, "modules.builtin")); err != nil {
		return nil, err
	}
	for _, p := range parseLines(data) {
		db.builtin[moduleName(p)] = true
	}
	l.db = db
	l.done = make(map[string]bool)
	l.failed = make(map[string]error)
	return db, nil
}

func readOptional(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	return data, nil
}

// lookup finds the loadable modules a name stands for: the module of that
// name, else those with a matching alias. found is false when the name is
// neither a module, a built-in module nor an alias.
func (db *loaderDB) lookup(name string) (mods []string, found bool) {
	c := canonical(name)
	if _, ok := db.deps[c]; ok {
		return []string{c}, true
	}
	if db.builtin[c] {
		return nil, true
	}
	for _, m := range db.aliases.lookup(name) {
		if _, ok := db.deps[m]; ok {
			mods = append(mods, m)
		}
		found = true
	}
	return mods, found
}

// Probe loads the named modules (names or aliases, '-' and '_' alike), each
// after its dependencies and soft "pre:" dependencies. Built-in modules and
// modules already loaded are fine; a name found nowhere is an error, and so
// is an alias none of whose modules loads. All names are tried; the errors
// are joined.
func (l *Loader) Probe(names ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	db, err := l.index()
	if err != nil {
		return err
	}
	var errs []error
	var loaded []string
	for _, n := range names {
		mods, found := db.lookup(n)
		if !found {
			errs = append(errs, fmt.Errorf("kmod: module %q not found in %s", n, db.dir))
			continue
		}
		// An alias may stand for several modules (crc32c: crc32c_intel and
		// crc32c_generic); as with modprobe, all are loaded, and the name
		// is satisfied when one of them loads (crc32c_intel refuses a CPU
		// without SSE4.2, crc32c_generic then does the job).
		var aliasErrs []error
		for _, m := range mods {
			if err := l.loadRec(db, m, nil, &loaded); err != nil {
				aliasErrs = append(aliasErrs, err)
			}
		}
		if len(aliasErrs) == len(mods) || len(mods) == 1 {
			errs = append(errs, aliasErrs...)
		} else if len(aliasErrs) > 0 {
			logrus.WithError(errors.Join(aliasErrs...)).WithField("name", n).Debug("kmod: some modules of an alias did not load")
		}
	}
	return errors.Join(errs...)
}

// loadRec loads name after what it needs and appends every module it loads
// to loaded. stack holds the modules being loaded, to stop on a cycle.
func (l *Loader) loadRec(db *loaderDB, name string, stack []string, loaded *[]string) error {
	if l.done[name] {
		return nil
	}
	if err := l.failed[name]; err != nil {
		return err
	}
	for _, s := range stack {
		if s == name {
			return nil
		}
	}
	e, ok := db.deps[name]
	if !ok {
		if db.builtin[name] {
			return nil
		}
		return fmt.Errorf("kmod: module %s not found in %s", name, db.dir)
	}
	stack = append(stack, name)
	sd := db.softdeps[name]
	l.loadSoft(db, name, sd.pre, stack, loaded)
	// modules.dep lists the whole closure with users before the modules
	// they use; walking it backwards loads the bottom ones first, and the
	// recursion orders anything else.
	for i := len(e.deps) - 1; i >= 0; i-- {
		dep := moduleName(e.deps[i])
		if err := l.loadRec(db, dep, stack, loaded); err != nil {
			err = fmt.Errorf("kmod: load %s: dependency: %w", name, err)
			l.failed[name] = err
			return err
		}
	}
	if l.SysModule != "" {
		if _, err := os.Stat(filepath.Join(l.SysModule, name)); err == nil {
			l.done[name] = true
			l.loadSoft(db, name, sd.post, stack, loaded)
			return nil
		}
	}
	p := e.path
	if !filepath.IsAbs(p) {
		p = filepath.Join(db.dir, filepath.FromSlash(p))
	}
	load := l.Load
	if load == nil {
		load = loadModuleFile
	}
	if err := load(p, l.Params); err != nil {
		err = fmt.Errorf("kmod: load %s (%s): %w", name, p, err)
		l.failed[name] = err
		return err
	}
	l.done[name] = true
	*loaded = append(*loaded, name)
	l.loadSoft(db, name, sd.post, stack, loaded)
	return nil
}

// loadSoft loads soft dependencies. They are a wish, not a need: one that
// is missing or fails is logged and skipped, as modprobe does.
func (l *Loader) loadSoft(db *loaderDB, user string, names []string, stack []string, loaded *[]string) {
	for _, n := range names {
		mods, _ := db.lookup(n)
		for _, m := range mods {
			if err := l.loadRec(db, m, stack, loaded); err != nil {
				logrus.WithError(err).WithField("module", user).Debugf("kmod: soft dependency %s not loaded", m)
			}
		}
	}
}

// ProbeDevices loads the modules for the devices under sysRoot/devices
// (sysRoot is normally "/sys"): it reads every device's modalias file and
// loads each module with a matching alias in modules.alias, dependencies
// first. Loading a bus driver creates new devices (virtio_pci makes the
// virtio devices that virtio_blk drives), so it scans again while a pass
// loaded something, at most 5 passes. It returns the modules it loaded, in
// load order, also when some failed: their errors are joined into err.
func (l *Loader) ProbeDevices(sysRoot string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	db, err := l.index()
	if err != nil {
		return nil, err
	}
	devRoot := filepath.Join(sysRoot, "devices")
	seen := make(map[string]bool)  // modaliases already matched
	tried := make(map[string]bool) // modules already tried by this call
	var loaded []string
	var errs []error
	for pass := 0; pass < maxDevicePasses; pass++ {
		aliases, err := readModaliases(devRoot)
		if err != nil {
			errs = append(errs, err)
			break
		}
		var want []string
		for _, a := range aliases {
			if seen[a] {
				continue
			}
			seen[a] = true
			for _, m := range db.aliases.lookup(a) {
				if _, ok := db.deps[m]; !ok || tried[m] || l.done[m] {
					continue // built-in, absent from this tree, or done
				}
				tried[m] = true
				want = append(want, m)
			}
		}
		if len(want) == 0 {
			break
		}
		before := len(loaded)
		for _, m := range want {
			if err := l.loadRec(db, m, nil, &loaded); err != nil {
				errs = append(errs, err)
			}
		}
		logrus.WithField("pass", pass+1).WithField("loaded", loaded[before:]).Debug("kmod: device probe pass")
		if len(loaded) == before {
			break
		}
	}
	return loaded, errors.Join(errs...)
}

// readModaliases returns the distinct modalias strings of the devices under
// root, in walk order. Devices come and go while it walks (a driver may
// be binding), so entries that vanish or cannot be read are skipped.
func readModaliases(root string) ([]string, error) {
	if _, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("kmod: device tree: %w", err)
	}
	var out []string
	seen := make(map[string]bool)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && p != root {
				return fs.SkipDir
			}
			return nil
		}
		if d.Name() != "modalias" || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil //nolint:nilerr // an unreadable modalias names no module to load
		}
		a := strings.TrimSpace(string(data))
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kmod: walk %s: %w", root, err)
	}
	return out, nil
}

// LoadFile is the default Loader.Load: finit_module(2) for a .ko,
// init_module(2) after decompressing a compressed one; EEXIST is success.
// Exported so callers can wrap it (to time loads, for example).
func LoadFile(path, params string) error { return loadModuleFile(path, params) }
