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
	"internal/boot/bootinfo":   nil,
	"internal/bootlog":         {"internal/redact"},
	"internal/redact":          nil,
	"internal/accounts":        nil,
	"internal/fetch":           {"internal/redact"},
	"internal/cmdline":         nil,
	"internal/version":         nil,
	"internal/machineid":       nil,
	"internal/format/ext4fs":   nil,
	"internal/format/fatfs":    nil,
	"internal/format/kmod":     nil,
	"internal/boot/netconf":    nil,
	"internal/run/cgroup":      {"configs"},
	"initramfs":                nil,
	"internal/format/isoimage": {"partitions"},
	"partitions":               nil,
	"internal/bootentry":       {"internal/format/fatfs", "partitions"},
	"configs":                  {"internal/cmdline", "internal/version"},
	"internal/imageinfo":       {"configs"},
	"internal/run/ignition":    {"internal/accounts", "configs", "internal/fetch"},
	"updater/payload":          {"internal/cmdline", "internal/version"},
	"updater/fleet":            {"configs", "internal/bootlog", "internal/redact"},
	"updater/fleet/fleettest":  nil,
	// Build.
	"builder": {"internal/bootentry", "internal/cmdline", "configs", "internal/format/ext4fs", "internal/format/fatfs", "internal/run/ignition", "internal/imageinfo", "initramfs", "internal/oci", "internal/run/cnet", "internal/format/isoimage",
		"internal/format/kmod", "internal/boot/netroot", "internal/run/sshd", "partitions", "updater/payload", "internal/version", "internal/deb"},
	"internal/oci":         {"internal/accounts", "configs", "internal/imageinfo"},
	"internal/deb":         {"configs"},
	"internal/deb/debtest": nil,
	// Boot.
	"internal/boot/netroot": {"internal/cmdline", "internal/fetch"},
	"initramfs/stage1":      {"internal/accounts", "internal/boot/bootinfo", "internal/bootlog", "internal/cmdline", "internal/format/ext4fs", "internal/format/kmod", "internal/boot/netconf", "internal/boot/netroot", "partitions", "internal/redact"},
	// Run.
	"internal/bootdisk":       {"internal/cmdline", "partitions"},
	"internal/run/supervisor": {"internal/accounts", "internal/bootlog", "configs", "internal/imageinfo", "internal/run/cgroup", "internal/boot/netconf"},
	"internal/run/provision":  {"internal/bootdisk", "internal/cmdline", "configs", "internal/run/ignition", "internal/run/supervisor"},
	"updater":                 {"internal/bootdisk", "internal/bootentry", "internal/bootlog", "internal/cmdline", "configs", "internal/fetch", "partitions", "internal/redact", "internal/run/supervisor", "updater/fleet", "updater/payload"},
	"internal/run/pid1": {"internal/bootdisk", "internal/boot/bootinfo", "internal/bootlog", "internal/cmdline", "configs", "internal/run/ignition", "internal/imageinfo", "internal/format/kmod",
		"internal/machineid", "internal/run/provision", "internal/run/supervisor", "internal/run/cnet", "internal/run/cgroup", "internal/run/sshd", "updater", "updater/payload"},
	"internal/run/cnet": {"configs", "internal/imageinfo"},
	"internal/run/sshd": {"internal/accounts", "internal/bootlog", "configs"},
	// Harness and front ends.
	"internal/qemu":     nil,
	"cmd/slate":         Any,
	"e2e":               Any,
	"internal/layering": nil,
}

// MachineSide are the packages that run on a machine (init, PID 1, the
// updater), and BuildOnly the ones that must never be linked into them:
// the machine reads contracts (imageinfo, partitions, bootentry,
// updater/payload), never build code.
var (
	MachineSide = []string{"initramfs/stage1", "internal/boot/netroot", "internal/bootdisk", "internal/run/supervisor", "internal/run/provision", "updater", "updater/fleet", "internal/run/pid1", "internal/run/cnet", "internal/run/sshd"}
	BuildOnly   = []string{"builder", "internal/oci", "internal/deb", "internal/deb/debtest", "internal/format/isoimage", "initramfs", "internal/qemu", "cmd/slate", "e2e", "updater/fleet/fleettest"}
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
