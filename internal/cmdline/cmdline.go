// Package cmdline reads and writes the kernel command line the way the
// kernel does, for every part of slate that looks at it: init in the
// initramfs, PID 1, provisioning, the updater and the builder. One reader
// means a duplicated or quoted argument means the same thing to all of them.
//
// The rules are the kernel's (lib/cmdline.c next_arg): arguments are
// separated by whitespace; double quotes may surround a value with spaces
// (key="a b") or a whole argument ("key=a b"), and are not part of the
// value; "--" ends the kernel's parameters (what follows is init's argv).
// A key is matched exactly: slate.debug is not slate.debugger. When a key
// is given more than once, the last value wins, as it does for the
// kernel's own parameters.
package cmdline

import (
	"fmt"
	"os"
	"strings"
)

// Path is where the running kernel's command line is read from.
const Path = "/proc/cmdline"

// Arg is one kernel parameter.
type Arg struct {
	Key      string
	Value    string // without the quotes
	HasValue bool   // key=value (or key=), not a bare key
	Raw      string // as written, quotes included
}

// Cmdline is a parsed kernel command line: the kernel's parameters in
// order, without what follows "--".
type Cmdline struct {
	Args []Arg
}

// Parse splits s by the kernel's rules. It never fails: the kernel takes
// any command line, and so does slate; the readers of single keys decide
// what a bad value means.
func Parse(s string) Cmdline {
	var c Cmdline
	for _, raw := range Fields(s) {
		if raw == "--" {
			break
		}
		c.Args = append(c.Args, parseArg(raw))
	}
	return c
}

// Read parses the running kernel's command line.
func Read() (Cmdline, error) {
	b, err := os.ReadFile(Path)
	if err != nil {
		return Cmdline{}, fmt.Errorf("read kernel command line: %w", err)
	}
	return Parse(string(b)), nil
}

// isSpace is the kernel's isspace in the ASCII range.
func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f'
}

// Fields splits s into arguments as written (quotes kept): whitespace
// outside double quotes separates them.
func Fields(s string) []string {
	var out []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return out
		}
		start, inQuote := i, false
		for ; i < len(s); i++ {
			if isSpace(s[i]) && !inQuote {
				break
			}
			if s[i] == '"' {
				inQuote = !inQuote
			}
		}
		out = append(out, s[start:i])
	}
}

// parseArg splits one argument as next_arg does: a leading quote opens a
// quoted argument, the key ends at the first '=', a value that starts with
// a quote loses it, and a closing quote at the end is dropped.
func parseArg(raw string) Arg {
	a := Arg{Raw: raw}
	s := raw
	quoted := false
	if strings.HasPrefix(s, `"`) {
		s, quoted = s[1:], true
	}
	k, v, eq := strings.Cut(s, "=")
	if !eq {
		if quoted {
			k = strings.TrimSuffix(k, `"`)
		}
		a.Key = k
		return a
	}
	a.Key, a.HasValue = k, true
	if strings.HasPrefix(v, `"`) {
		v = v[1:]
		v = strings.TrimSuffix(v, `"`)
	} else if quoted {
		v = strings.TrimSuffix(v, `"`)
	}
	a.Value = v
	return a
}

// Lookup returns the last value of key and whether key is given at all.
func (c Cmdline) Lookup(key string) (string, bool) {
	for i := len(c.Args) - 1; i >= 0; i-- {
		if c.Args[i].Key == key {
			return c.Args[i].Value, true
		}
	}
	return "", false
}

// Get returns the last value of key, or "".
func (c Cmdline) Get(key string) string {
	v, _ := c.Lookup(key)
	return v
}

// Flag reads a boolean parameter as the kernel reads one: a bare key (or
// key=) is on, and so are 1, y, yes, on and true; 0, n, no, off and false
// are off. The last one given wins; an absent key, or a value that is
// neither, is off.
func (c Cmdline) Flag(key string) bool {
	for i := len(c.Args) - 1; i >= 0; i-- {
		a := c.Args[i]
		if a.Key != key {
			continue
		}
		switch strings.ToLower(a.Value) {
		case "", "1", "y", "yes", "on", "true":
			return true
		default:
			return false
		}
	}
	return false
}

// Map is every key with its last value, for readers that take a map.
func (c Cmdline) Map() map[string]string {
	m := make(map[string]string, len(c.Args))
	for _, a := range c.Args {
		m[a.Key] = a.Value
	}
	return m
}

// The parameters slate reads or writes, named once.
const (
	Root        = "root"        // root=PARTUUID=<guid>: the slot's root partition
	Init        = "init"        // the kernel's: never set by a spec
	Initrd      = "initrd"      // the loader's (boot.ipxe, systemd-boot)
	Slot        = "slate.slot"  // a or b
	Debug       = "slate.debug" // init waits instead of rebooting on failure
	Break       = "slate.break" // init fails at a stage, to rehearse a fall-back
	RootWait    = "slate.rootwait"
	RootURL     = "slate.root_url"    // a root in RAM: where to fetch it
	RootSHA256  = "slate.root_sha256" // a root in RAM: its hash
	RootSize    = "slate.root_size"   // a root in RAM: its size
	BootIf      = "BOOTIF"            // pxelinux's: the interface that netbooted
	IgnitionURL = "ignition.config.url"
)

// Reserved are the parameters slate writes itself: root= and slate.slot=
// name a disk slot in every boot entry, initrd= is the loader's, init= would
// bypass slate's init, and slate.root_* name a root held in RAM (network
// boot, live ISO). An image spec or an update manifest may not set them.
var Reserved = []string{Root, Init, Initrd, Slot, RootURL, RootSHA256, RootSize}

// ReservedKey returns the reserved key that arg sets, if any.
func ReservedKey(arg string) (string, bool) {
	k := parseArg(arg).Key
	for _, r := range Reserved {
		if k == r {
			return r, true
		}
	}
	return "", false
}

// ReservedList is Reserved for error messages: "root=, init=, ...".
func ReservedList() string {
	return strings.Join(Reserved, "=, ") + "="
}

// SlotOptions is the one way slate writes a disk slot's kernel command
// line, for the builder's entries and the updater's alike:
//
//	root=PARTUUID=<guid> ro slate.slot=<slot> <args>
//
// args are the version's own arguments (console=, panic=, the spec's
// kernel.args) in their order; what names a slot (root=, slate.slot=) and
// "ro", which are written here, are dropped from them, so that a running
// entry's line can be fed back in.
func SlotOptions(slot, partUUID string, args []string) string {
	out := []string{Root + "=PARTUUID=" + strings.ToLower(partUUID), "ro", Slot + "=" + slot}
	for _, a := range args {
		switch parseArg(a).Key {
		case Root, Slot, "ro":
			continue
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}
