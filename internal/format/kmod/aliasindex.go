package kmod

import "sort"

// aliasIndex finds the modules whose alias patterns match a name. A real
// kernel has some 36,000 aliases and a machine hundreds of devices, so trying
// every pattern on every modalias would cost seconds at boot. Every match of a
// pattern starts with the pattern's literal prefix, so patterns are grouped by
// that prefix and a lookup only tries the groups whose prefix is a prefix of
// the name: one map probe per distinct prefix length (a few dozen).
type aliasIndex struct {
	entries  []aliasEntry
	byPrefix map[string][]int32 // literal prefix → indexes into entries, in file order
	lens     []int              // distinct prefix lengths, ascending
}

type aliasEntry struct {
	pattern string
	module  string
}

func newAliasIndex(entries []aliasEntry) *aliasIndex {
	x := &aliasIndex{entries: entries, byPrefix: make(map[string][]int32)}
	seen := make(map[int]bool)
	for i, e := range entries {
		p := literalPrefix(e.pattern)
		x.byPrefix[p] = append(x.byPrefix[p], int32(i))
		if !seen[len(p)] {
			seen[len(p)] = true
			x.lens = append(x.lens, len(p))
		}
	}
	sort.Ints(x.lens)
	return x
}

// lookup returns the modules with an alias matching name, each once, in the
// order their first matching alias appears in the alias list (which is the
// order modprobe would use).
func (x *aliasIndex) lookup(name string) []string {
	if x == nil {
		return nil
	}
	var hits []int32
	for _, l := range x.lens {
		if l > len(name) {
			break
		}
		for _, i := range x.byPrefix[name[:l]] {
			if match(x.entries[i].pattern, name) {
				hits = append(hits, i)
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	sort.Slice(hits, func(a, b int) bool { return hits[a] < hits[b] })
	var mods []string
	seen := make(map[string]bool, len(hits))
	for _, i := range hits {
		m := x.entries[i].module
		if !seen[m] {
			seen[m] = true
			mods = append(mods, m)
		}
	}
	return mods
}
