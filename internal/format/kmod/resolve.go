package kmod

import (
	"errors"
	"fmt"
	"strings"
)

// Resolve returns the modules named by specs with everything they need to
// load: hard dependencies (depends=) and soft "pre:" dependencies, followed
// transitively. The order is stable for the same input and has every module
// after its dependencies.
//
// A spec is a module name ("e1000e"; '-' and '_' are the same), an alias
// ("crc32c", "fs-ext4": every module that provides it), a module path
// relative to the tree ("kernel/fs/ext4/ext4.ko") or a folder of the tree
// ("kernel/drivers/net/ethernet/intel": every module under it). A spec that
// names a built-in module resolves to nothing. A spec that matches nothing is
// an error naming it; all such specs are reported at once.
func (ix *Index) Resolve(specs []string) ([]*Module, error) {
	var roots []*Module
	var errs []error
	for _, spec := range specs {
		mods, err := ix.resolveSpec(spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		roots = append(roots, mods...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := resolver{ix: ix, state: make(map[*Module]uint8)}
	for _, m := range roots {
		if err := r.visit(m); err != nil {
			return nil, err
		}
	}
	return r.out, nil
}

// resolveSpec turns one spec into modules (nil for a built-in one).
func (ix *Index) resolveSpec(spec string) ([]*Module, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, fmt.Errorf("kmod: empty module name")
	}
	if strings.Contains(s, "/") {
		s = strings.Trim(s, "/")
		var out []*Module
		for _, m := range ix.mods {
			if m.Path == s || strings.HasPrefix(m.Path, s+"/") {
				out = append(out, m)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		for _, p := range parseLines(ix.builtinRaw) {
			if p == s || strings.HasPrefix(p, s+"/") {
				return nil, nil // only built-in modules there
			}
		}
		return nil, fmt.Errorf("kmod: no module file or folder %q in %s", spec, ix.dir)
	}
	mods, found := ix.lookupName(s)
	if !found {
		return nil, fmt.Errorf("kmod: unknown module %q (neither a module, a built-in module nor an alias in %s)", spec, ix.dir)
	}
	return mods, nil
}

// lookupName finds the modules a name stands for, as modprobe would: the
// module of that name, else every module with a matching alias. Built-in
// modules count as found but return no module.
func (ix *Index) lookupName(name string) ([]*Module, bool) {
	c := canonical(name)
	if m := ix.byName[c]; m != nil {
		return []*Module{m}, true
	}
	if ix.builtin[c] {
		return nil, true
	}
	names := ix.aliases.lookup(name)
	if len(names) == 0 {
		return nil, false
	}
	var out []*Module
	for _, n := range names {
		if m := ix.byName[n]; m != nil {
			out = append(out, m)
		}
	}
	return out, true
}

type resolver struct {
	ix    *Index
	state map[*Module]uint8 // 1: being visited, 2: done
	out   []*Module
}

func (r *resolver) visit(m *Module) error {
	if r.state[m] != 0 {
		return nil
	}
	r.state[m] = 1
	for _, sd := range m.SoftDeps {
		pre, _ := parseSoftdep(sd)
		for _, name := range pre {
			// A soft dependency that is missing is not an error: modprobe
			// skips it too.
			mods, _ := r.ix.lookupName(name)
			for _, d := range mods {
				// Loading d first is only a wish; when d needs m itself
				// (through hard dependencies), the hard order wins.
				if r.state[d] == 0 && !r.hardNeeds(d, m, make(map[*Module]bool)) {
					if err := r.visit(d); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, name := range m.Depends {
		d := r.ix.byName[name]
		if d == nil {
			if r.ix.builtin[name] {
				continue
			}
			return fmt.Errorf("kmod: module %s (%s) depends on %s, which is not in %s", m.Name, m.Path, name, r.ix.dir)
		}
		if err := r.visit(d); err != nil {
			return err
		}
	}
	r.state[m] = 2
	r.out = append(r.out, m)
	return nil
}

// hardNeeds tells whether from depends on target through depends= alone.
func (r *resolver) hardNeeds(from, target *Module, seen map[*Module]bool) bool {
	if from == target {
		return true
	}
	if seen[from] {
		return false
	}
	seen[from] = true
	for _, name := range from.Depends {
		if d := r.ix.byName[name]; d != nil && r.hardNeeds(d, target, seen) {
			return true
		}
	}
	return false
}
