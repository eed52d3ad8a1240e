// Package bootentry owns the Boot Loader Specification entries that decide
// which slot boots: their names (slate-<version>-<slot>[+L[-D]].conf),
// boot counting, bless and mark bad, which entry systemd-boot boots next,
// and reading and writing them on an ESP (mounted, or inside an image for
// `slate inspect`), every write atomic.
package bootentry

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// EntriesDir is where boot entries live on the ESP.
const EntriesDir = "/loader/entries"

// DefaultTries is how many boots a freshly installed slot gets before
// systemd-boot gives up on it.
const DefaultTries = 3

// Entry is one slot's boot entry, as its file name on the ESP tells it.
// systemd-boot's boot counting renames "+L" to "+L-D" on every try
// (L tries left, D done); an entry with no counter is blessed.
type Entry struct {
	Version string
	Slot    string // "a" or "b"
	Counted bool   // name carries a "+L[-D]" counter
	Left    int    // tries left (when Counted)
	Done    int    // tries used (when Counted)
}

var entryRE = regexp.MustCompile(`^slate-([0-9A-Za-z.-]+)-([ab])(?:\+([0-9]+)(?:-([0-9]+))?)?\.conf$`)

// ParseName parses "slate-<version>-<slot>[+L[-D]].conf".
func ParseName(name string) (Entry, error) {
	m := entryRE.FindStringSubmatch(name)
	if m == nil {
		return Entry{}, fmt.Errorf("boot entry %q: not slate-<version>-<a|b>[+tries].conf", name)
	}
	e := Entry{Version: m[1], Slot: m[2]}
	if m[3] != "" {
		e.Counted = true
		n, err := strconv.Atoi(m[3])
		if err != nil || n > 1000 {
			return Entry{}, fmt.Errorf("boot entry %q: bad tries-left counter", name)
		}
		e.Left = n
		if m[4] != "" {
			d, err := strconv.Atoi(m[4])
			if err != nil || d > 1000 {
				return Entry{}, fmt.Errorf("boot entry %q: bad tries-done counter", name)
			}
			e.Done = d
		}
	}
	return e, nil
}

// Name is the entry's file name.
func (e Entry) Name() string {
	n := "slate-" + e.Version + "-" + e.Slot
	if e.Counted {
		n += "+" + strconv.Itoa(e.Left)
		if e.Done > 0 {
			n += "-" + strconv.Itoa(e.Done)
		}
	}
	return n + ".conf"
}

// Bad reports whether systemd-boot considers the entry failed.
func (e Entry) Bad() bool { return e.Counted && e.Left == 0 }

// State is a word for people: good (blessed), trying (has tries left) or bad.
func (e Entry) State() string {
	switch {
	case e.Bad():
		return "bad"
	case e.Counted:
		return "trying"
	default:
		return "good"
	}
}

// Config is what goes into an entry file.
type Config struct {
	Title   string
	Version string
	Slot    string
	Linux   string // path on the ESP
	Initrd  string // path on the ESP
	Options string // kernel command line
}

// Render writes the entry file in the Boot Loader Specification format.
func (c Config) Render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "title %s\n", c.Title)
	fmt.Fprintf(&b, "version %s\n", c.Version)
	// sort-key keeps slate entries together and lets systemd-boot order
	// them by version alone.
	fmt.Fprintf(&b, "sort-key slate\n")
	fmt.Fprintf(&b, "linux %s\n", c.Linux)
	fmt.Fprintf(&b, "initrd %s\n", c.Initrd)
	fmt.Fprintf(&b, "options %s\n", c.Options)
	return []byte(b.String())
}

// SlotDir is the slot's folder on the ESP ("/slate/a").
func SlotDir(slot string) string { return "/slate/" + slot }

// NextBoot returns the entry systemd-boot boots next when loader.conf has
// no default: entries that are not bad come first, then the highest
// version. This mirrors systemd-boot's ordering (boot_entry_compare:
// bad entries last, then sort-key, then version descending), which
// DESIGN.md records as measured on this stack. ok is false when every
// entry is bad or there is none.
func NextBoot(entries []Entry) (Entry, bool) {
	es := append([]Entry(nil), entries...)
	Sort(es)
	if len(es) == 0 || es[0].Bad() {
		return Entry{}, false
	}
	return es[0], true
}

// Sort orders entries as systemd-boot's menu does.
func Sort(es []Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Bad() != es[j].Bad() {
			return !es[i].Bad()
		}
		if c := CompareVersions(es[i].Version, es[j].Version); c != 0 {
			return c > 0
		}
		return es[i].Slot < es[j].Slot
	})
}

// CompareVersions compares two versions the way systemd's
// strverscmp_improved does for the versions slate allows: numeric runs
// numerically, "-" (a pre-release) sorts before the end of the string,
// letters before digits, "." as separator.
func CompareVersions(a, b string) int {
	for {
		if a == "" || b == "" {
			switch {
			case a == b:
				return 0
			case a == "":
				// "1.0" vs "1.0-rc1": the pre-release is older.
				if b[0] == '-' || b[0] == '~' {
					return 1
				}
				return -1
			default:
				if a[0] == '-' || a[0] == '~' {
					return -1
				}
				return 1
			}
		}
		// '-' and '~' sort lower than anything else
		if (a[0] == '-') != (b[0] == '-') {
			if a[0] == '-' {
				return -1
			}
			return 1
		}
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := digits(a)
			nb, rb := digits(b)
			na = strings.TrimLeft(na, "0")
			nb = strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				if len(na) < len(nb) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if isDigit(a[0]) != isDigit(b[0]) {
			// a number is newer than a word in the same place
			if isDigit(a[0]) {
				return 1
			}
			return -1
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
