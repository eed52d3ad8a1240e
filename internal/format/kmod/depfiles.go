package kmod

import (
	"fmt"
	"strings"
)

// depEntry is one line of modules.dep.
type depEntry struct {
	path string   // relative to the modules dir (or absolute, as depmod allows)
	deps []string // paths of every module it needs, in depmod's order
}

// parseModulesDep parses modules.dep: "path: dep dep ..." lines. Blank lines
// and '#' comments are skipped; any other line without a ':' is an error.
func parseModulesDep(data string) (map[string]depEntry, error) {
	out := make(map[string]depEntry)
	for n, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		p, rest, ok := strings.Cut(line, ":")
		p = strings.TrimSpace(p)
		if !ok || p == "" || strings.ContainsAny(p, " \t") {
			return nil, fmt.Errorf("modules.dep line %d: want \"path: deps\", got %q", n+1, line)
		}
		name := moduleName(p)
		if _, dup := out[name]; dup {
			continue // depmod lists higher-priority copies first
		}
		out[name] = depEntry{path: p, deps: strings.Fields(rest)}
	}
	return out, nil
}

// parseModulesAlias parses modules.alias: "alias PATTERN MODULE" lines.
func parseModulesAlias(data string) ([]aliasEntry, error) {
	var out []aliasEntry
	for n, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias line %d: want \"alias PATTERN MODULE\", got %q", n+1, line)
		}
		out = append(out, aliasEntry{pattern: f[1], module: canonical(f[2])})
	}
	return out, nil
}

// softdeps is what modules.softdep says about one module.
type softdeps struct {
	pre, post []string
}

// parseModulesSoftdep parses modules.softdep: "softdep MODULE pre: a post: b"
// lines; lines for one module add up.
func parseModulesSoftdep(data string) (map[string]softdeps, error) {
	out := make(map[string]softdeps)
	for n, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 || f[0] != "softdep" {
			return nil, fmt.Errorf("modules.softdep line %d: want \"softdep MODULE pre: ... post: ...\", got %q", n+1, line)
		}
		name := canonical(f[1])
		pre, post := parseSoftdep(strings.Join(f[2:], " "))
		s := out[name]
		s.pre = append(s.pre, pre...)
		s.post = append(s.post, post...)
		out[name] = s
	}
	return out, nil
}
