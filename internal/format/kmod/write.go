package kmod

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Writer receives the files of a module tree. The builder implements it for
// both the cpio initramfs and the ext4 root. Paths are slash-separated,
// relative to the image root, with no leading slash.
type Writer interface {
	// AddFile adds a regular file; open is called at most once, to read it.
	AddFile(path string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error
	// Mkdir adds a directory. WriteTree calls it for every directory it
	// uses, parents first, including "lib" and "lib/modules", so an
	// implementation must accept a directory it already has.
	Mkdir(path string, mode fs.FileMode) error
}

// WriteTree writes lib/modules/<kver>/ with the given modules (each at its
// path in the tree) and, for that set, the index files in depmod's text
// format: modules.dep, modules.alias, modules.softdep, modules.devname and
// modules.order; modules.builtin and modules.builtin.modinfo are copied as
// they are. mods must be closed under hard dependencies (what Resolve
// returns); a module whose dependency is missing is an error, since it could
// never load.
func (ix *Index) WriteTree(dst Writer, mods []*Module) error {
	set, err := ix.keptSet(mods)
	if err != nil {
		return err
	}
	root := "lib/modules/" + ix.kver
	made := make(map[string]bool)
	var mkdirAll func(dir string) error
	mkdirAll = func(dir string) error {
		if dir == "." || dir == "" || made[dir] {
			return nil
		}
		if err := mkdirAll(path.Dir(dir)); err != nil {
			return err
		}
		made[dir] = true
		if err := dst.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("kmod: mkdir %s: %w", dir, err)
		}
		return nil
	}
	if err := mkdirAll(root); err != nil {
		return err
	}
	for _, m := range set {
		p := root + "/" + m.Path
		if err := mkdirAll(path.Dir(p)); err != nil {
			return err
		}
		src := filepath.Join(ix.dir, filepath.FromSlash(m.Path))
		open := func() (io.ReadCloser, error) { return os.Open(src) }
		if err := dst.AddFile(p, 0o644, m.Size, open); err != nil {
			return fmt.Errorf("kmod: add %s: %w", p, err)
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"modules.order", orderFile(set)},
		{"modules.dep", depFile(set)},
		{"modules.alias", aliasFile(set)},
		{"modules.softdep", softdepFile(set)},
		{"modules.devname", devnameFile(set)},
		{"modules.builtin", ix.builtinRaw},
		{"modules.builtin.modinfo", ix.builtinModinfo},
	}
	for _, f := range files {
		if f.data == nil && strings.HasPrefix(f.name, "modules.builtin") {
			continue // the source tree has none
		}
		data := f.data
		open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		if err := dst.AddFile(root+"/"+f.name, 0o644, int64(len(data)), open); err != nil {
			return fmt.Errorf("kmod: add %s: %w", f.name, err)
		}
	}
	return nil
}

// keptSet returns mods without duplicates in the tree's order, and checks
// that it is closed under hard dependencies.
func (ix *Index) keptSet(mods []*Module) ([]*Module, error) {
	in := make(map[string]bool, len(mods))
	for _, m := range mods {
		if m == nil || ix.byName[m.Name] != m {
			name := "<nil>"
			if m != nil {
				name = m.Name
			}
			return nil, fmt.Errorf("kmod: module %s is not from the index of %s", name, ix.dir)
		}
		in[m.Name] = true
	}
	var set []*Module
	for _, m := range ix.mods {
		if !in[m.Name] {
			continue
		}
		for _, d := range m.Depends {
			if !in[d] && !ix.builtin[d] {
				return nil, fmt.Errorf("kmod: module %s needs %s, which is not in the set to write", m.Name, d)
			}
		}
		set = append(set, m)
	}
	return set, nil
}

func orderFile(set []*Module) []byte {
	var b bytes.Buffer
	for _, m := range set {
		b.WriteString(m.Path)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// depFile renders modules.dep the way depmod does: one line per module in
// the tree's order, listing every module it needs (transitively). Within a
// line, dependencies are sorted by a topological order of the whole set in
// which a module comes before the modules it uses, computed as depmod does
// (Kahn's algorithm, taking modules without users from a stack).
func depFile(set []*Module) []byte {
	idx := make(map[string]int, len(set))
	for i, m := range set {
		idx[m.Name] = i
	}
	// Direct dependencies within the set, each once.
	deps := make([][]int, len(set))
	users := make([]int, len(set))
	for i, m := range set {
		seen := make(map[int]bool)
		for _, d := range m.Depends {
			j, ok := idx[d]
			if !ok || seen[j] {
				continue // built-in
			}
			seen[j] = true
			deps[i] = append(deps[i], j)
			users[j]++
		}
	}
	rank := make([]int, len(set))
	var stack []int
	for i := range set {
		if users[i] == 0 {
			stack = append(stack, i)
		}
	}
	n := 0
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		rank[i] = n
		n++
		for _, j := range deps[i] {
			users[j]--
			if users[j] == 0 {
				stack = append(stack, j)
			}
		}
	}
	// Modules in a dependency cycle (which a real tree does not have) keep
	// rank 0; they still get listed, so nothing is lost.

	var b bytes.Buffer
	for i, m := range set {
		b.WriteString(m.Path)
		b.WriteByte(':')
		all := closure(deps, i)
		sortStable(all, func(x, y int) bool { return rank[x] < rank[y] })
		for _, j := range all {
			b.WriteByte(' ')
			b.WriteString(set[j].Path)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// closure lists every module reachable from i through deps, without i.
func closure(deps [][]int, i int) []int {
	seen := map[int]bool{i: true}
	var out []int
	var walk func(int)
	walk = func(k int) {
		for _, j := range deps[k] {
			if !seen[j] {
				seen[j] = true
				out = append(out, j)
				walk(j)
			}
		}
	}
	walk(i)
	return out
}

func sortStable(s []int, less func(a, b int) bool) {
	// insertion sort: lines hold a handful of entries
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func aliasFile(set []*Module) []byte {
	var b bytes.Buffer
	b.WriteString("# Aliases extracted from modules themselves.\n")
	for _, m := range set {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return b.Bytes()
}

func softdepFile(set []*Module) []byte {
	var b bytes.Buffer
	b.WriteString("# Soft dependencies extracted from modules themselves.\n")
	for _, m := range set {
		for _, s := range m.SoftDeps {
			fmt.Fprintf(&b, "softdep %s %s\n", m.Name, s)
		}
	}
	return b.Bytes()
}

// devnameFile renders modules.devname: modules that name a device node
// (alias devname:X) and its number (alias char-major-M-N or block-major-M-N),
// for which /dev nodes can be made before the module is loaded.
func devnameFile(set []*Module) []byte {
	var b bytes.Buffer
	for _, m := range set {
		devname := ""
		var typ byte
		var major, minor uint
		for _, a := range m.Aliases {
			var maj, min uint
			switch {
			case strings.HasPrefix(a, "devname:"):
				devname = strings.TrimPrefix(a, "devname:")
			case scanMajorMinor(a, "char-major-", &maj, &min):
				typ, major, minor = 'c', maj, min
			case scanMajorMinor(a, "block-major-", &maj, &min):
				typ, major, minor = 'b', maj, min
			}
			if typ != 0 && devname != "" {
				break
			}
		}
		if devname != "" && typ != 0 {
			if b.Len() == 0 {
				// depmod writes the header only above a first entry.
				b.WriteString("# Device nodes to trigger on-demand module loading.\n")
			}
			fmt.Fprintf(&b, "%s %s %c%d:%d\n", m.Name, devname, typ, major, minor)
		}
	}
	return b.Bytes()
}

// scanMajorMinor parses "<prefix>M-N" where N may be followed by anything
// (as sscanf does).
func scanMajorMinor(a, prefix string, maj, min *uint) bool {
	if !strings.HasPrefix(a, prefix) {
		return false
	}
	rest := a[len(prefix):]
	m, rest, ok := scanUint(rest)
	if !ok || !strings.HasPrefix(rest, "-") {
		return false
	}
	n, _, ok := scanUint(rest[1:])
	if !ok {
		return false
	}
	*maj, *min = m, n
	return true
}

func scanUint(s string) (uint, string, bool) {
	i := 0
	var v uint
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		v = v*10 + uint(s[i]-'0')
		i++
	}
	return v, s[i:], i > 0
}
