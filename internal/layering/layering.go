// Package layering checks the module's import graph against the rules of
// ARCHITECTURE.md: which package may import which, and which build-side
// packages may never be linked into the programs that run on a machine.
package layering

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Module is the module path; rules name packages relative to it.
const Module = "github.com/slateos/slate"

// Any allows a package to import every package of the module.
var Any = []string{"*"}

// Allowed lists, for every package of the module, the module's packages it
// may import directly (test files aside). A package missing from the table
// is an error too: a new package takes its place in ARCHITECTURE.md first.
var Allowed = map[string][]string{
	// Contracts and leaves: formats, the console, the command line.
	"bootinfo":        nil,
	"bootlog":         {"redact"},
	"redact":          nil,
	"accounts":        nil,
	"fetch":           {"redact"},
	"cmdline":         nil,
	"version":         nil,
	"ext4fs":          nil,
	"fatfs":           nil,
	"kmod":            nil,
	"netconf":         nil,
	"internal/cgroup": nil,
	"initramfs":       nil,
	"isoimage":        {"partitions"},
	"partitions":      nil,
	"bootentry":       {"fatfs", "partitions"},
	"configs":         {"cmdline", "version"},
	"imageinfo":       {"configs"},
	"ignition":        {"accounts", "configs", "fetch"},
	"updater/payload": {"cmdline", "version"},
	// Build.
	"builder": {"bootentry", "cmdline", "configs", "ext4fs", "fatfs", "ignition", "imageinfo", "initramfs", "isoimage",
		"kmod", "netroot", "partitions", "updater/payload", "version"},
	// Boot.
	"netroot":          {"cmdline", "fetch"},
	"initramfs/stage1": {"bootinfo", "bootlog", "cmdline", "ext4fs", "kmod", "netconf", "netroot", "partitions", "redact"},
	// Run.
	"bootdisk":   {"cmdline", "partitions"},
	"supervisor": {"accounts", "bootlog", "configs", "imageinfo", "internal/cgroup", "netconf"},
	"provision":  {"bootdisk", "cmdline", "configs", "ignition", "supervisor"},
	"updater":    {"bootdisk", "bootentry", "bootlog", "cmdline", "configs", "fetch", "partitions", "redact", "supervisor", "updater/payload"},
	"system": {"bootdisk", "bootinfo", "bootlog", "cmdline", "configs", "ignition", "imageinfo", "internal/cgroup", "kmod",
		"provision", "supervisor", "updater", "updater/payload"},
	// Harness and front ends.
	"qemu":              nil,
	"cmd/slate":         Any,
	"e2e":               Any,
	"internal/layering": nil,
}

// MachineSide are the packages that run on a machine (init, PID 1, the
// updater), and BuildOnly the ones that must never be linked into them:
// the machine reads contracts (imageinfo, partitions, bootentry,
// updater/payload), never build code.
var (
	MachineSide = []string{"initramfs/stage1", "netroot", "bootdisk", "supervisor", "provision", "updater", "system"}
	BuildOnly   = []string{"builder", "isoimage", "initramfs", "qemu", "cmd/slate", "e2e"}
)

// Package is one node of the graph: its path relative to Module, its direct
// imports and its whole dependency closure (both relative, module only).
type Package struct {
	Path    string
	Imports []string
	Deps    []string
}

// Check returns one line for every broken rule, sorted.
func Check(pkgs []Package) []string {
	var bad []string
	for _, p := range pkgs {
		allowed, ok := Allowed[p.Path]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: not in the layering table (add it to ARCHITECTURE.md and internal/layering)", p.Path))
			continue
		}
		for _, imp := range p.Imports {
			if !slices.Contains(allowed, imp) && !slices.Equal(allowed, Any) {
				bad = append(bad, fmt.Sprintf("%s imports %s: not allowed (may import: %s)", p.Path, imp, list(allowed)))
			}
		}
		if slices.Contains(MachineSide, p.Path) {
			for _, d := range p.Deps {
				if slices.Contains(BuildOnly, d) {
					bad = append(bad, fmt.Sprintf("%s depends on %s: build code must not run on a machine", p.Path, d))
				}
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// Rel turns a full import path into one relative to Module; ok is false
// for packages outside the module.
func Rel(imp string) (string, bool) {
	if imp == Module {
		return ".", true
	}
	return strings.CutPrefix(imp, Module+"/")
}

func list(s []string) string {
	if len(s) == 0 {
		return "nothing of the module"
	}
	return strings.Join(s, ", ")
}
