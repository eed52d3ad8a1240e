package deb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/renameio/v2"
	"github.com/slateos/slate/configs"
)

// LockVersion is the format of the lock files slate writes: 2 has a
// list of sources and each package's source. Version 1 (one suite, the
// fields Mirror, Suite, Components, Date, InRelease) is still read.
const LockVersion = 2

// MaxLockSize bounds a lock file.
const MaxLockSize = 16 << 20

// LockSource is one suite a lock's packages come from and the signed
// release they were resolved against.
type LockSource struct {
	Mirror     string   `json:"mirror"`
	Suite      string   `json:"suite"`
	Components []string `json:"components"`
	// Date is the release's Date field; InRelease its file's sha256.
	Date      string `json:"date"`
	InRelease string `json:"inrelease_sha256"`
}

// Lock is SPEC.lock: the resolved closure of a spec's packages and the
// releases it came from. A build with a lock fetches exactly these files
// and needs no index.
type Lock struct {
	Version int `json:"lock_version"`
	// Mirror, Suite, Components, Date and InRelease are version 1's one
	// source; ParseLock puts them in Sources.
	Mirror     string   `json:"mirror,omitempty"`
	Suite      string   `json:"suite,omitempty"`
	Components []string `json:"components,omitempty"`
	Date       string   `json:"date,omitempty"`
	InRelease  string   `json:"inrelease_sha256,omitempty"`
	// Sources are the suites, in the order of preference they were
	// resolved with (version 2).
	Sources []LockSource `json:"sources,omitempty"`
	// Requested are the spec's packages as written (name or name=version).
	Requested []string `json:"requested"`
	// Exclude is the exclusion list in force, sorted.
	Exclude  []string `json:"exclude"`
	Packages []Pinned `json:"packages"`
}

// source is the lock's source of suite, nil when it has none.
func (l *Lock) source(suite string) *LockSource {
	for i := range l.Sources {
		if l.Sources[i].Suite == suite {
			return &l.Sources[i]
		}
	}
	return nil
}

// LockPath is the lock file beside a spec: SPEC.lock.
func LockPath(specPath string) string { return specPath + ".lock" }

// ParseLock reads and checks a lock file's text.
func ParseLock(data []byte) (*Lock, error) {
	if len(data) > MaxLockSize {
		return nil, fmt.Errorf("lock: more than %d bytes", MaxLockSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Lock
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if dec.More() {
		return nil, errors.New("lock: data after the JSON object")
	}
	switch l.Version {
	case 1:
		if l.Suite == "" {
			return nil, errors.New("lock: no suite")
		}
		if len(l.Sources) > 0 {
			return nil, errors.New("lock: a lock_version 1 lock has no sources list")
		}
		for i := range l.Packages {
			if l.Packages[i].Source != "" {
				return nil, fmt.Errorf("lock: packages[%d]: a lock_version 1 lock names no source", i)
			}
			l.Packages[i].Source = l.Suite
		}
		// read as the version 2 lock it is equivalent to
		l.Sources = []LockSource{{Mirror: l.Mirror, Suite: l.Suite, Components: l.Components, Date: l.Date, InRelease: l.InRelease}}
		l.Version, l.Mirror, l.Suite, l.Components, l.Date, l.InRelease = LockVersion, "", "", nil, "", ""
	case LockVersion:
		if l.Mirror != "" || l.Suite != "" || len(l.Components) > 0 || l.Date != "" || l.InRelease != "" {
			return nil, errors.New("lock: a lock_version 2 lock has its suites in sources only")
		}
		if len(l.Sources) == 0 {
			return nil, errors.New("lock: no sources")
		}
	default:
		return nil, fmt.Errorf("lock: lock_version %d, this slate reads 1 and %d", l.Version, LockVersion)
	}
	for i, src := range l.Sources {
		if src.Suite == "" || src.Mirror == "" {
			return nil, fmt.Errorf("lock: sources[%d]: no mirror or suite", i)
		}
		if !mirrorURI(src.Mirror) {
			return nil, fmt.Errorf("lock: sources[%d]: mirror %q is not an http(s) URL", i, src.Mirror)
		}
		if l.source(src.Suite) != &l.Sources[i] {
			return nil, fmt.Errorf("lock: sources[%d]: suite %s twice", i, src.Suite)
		}
	}
	for i, p := range l.Packages {
		if l.source(p.Source) == nil {
			return nil, fmt.Errorf("lock: packages[%d]: %s: source %q is not in sources", i, p.Name, p.Source)
		}
	}
	seen := map[string]bool{}
	for i, p := range l.Packages {
		where := fmt.Sprintf("lock: packages[%d]", i)
		if msg := configs.CheckPackageName(p.Name); msg != "" {
			return nil, fmt.Errorf("%s: name %q: %s", where, p.Name, msg)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("%s: %s twice", where, p.Name)
		}
		seen[p.Name] = true
		if i > 0 && l.Packages[i-1].Name > p.Name {
			return nil, fmt.Errorf("%s: %s is out of name order", where, p.Name)
		}
		if p.Version == "" || (p.Architecture != Arch && p.Architecture != "all") {
			return nil, fmt.Errorf("%s: %s: bad version or architecture", where, p.Name)
		}
		if err := checkPoolPath(p.Filename); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", where, p.Name, err)
		}
		if p.Size <= 0 || p.Size > MaxDeb || !isHexSHA256(p.SHA256) || strings.ToLower(p.SHA256) != p.SHA256 {
			return nil, fmt.Errorf("%s: %s: bad size or sha256", where, p.Name)
		}
	}
	return &l, nil
}

// ReadLock reads a lock file; (nil, nil) when there is none.
func ReadLock(path string) (*Lock, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := ParseLock(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Marshal is the lock's file text: indented JSON, one stable form.
func (l *Lock) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Write writes the lock atomically.
func (l *Lock) Write(path string) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o644)
}

// Matches says how the lock differs from the spec's packages and debian
// section, or nil when the lock was made for them.
func (l *Lock) Matches(spec *configs.Spec) error {
	want := slices.Clone(spec.Packages)
	slices.Sort(want)
	have := slices.Clone(l.Requested)
	slices.Sort(have)
	for _, w := range want {
		if !slices.Contains(have, w) {
			return fmt.Errorf("the lock does not match the spec: package %q is not in the lock (run slate packages update)", w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			return fmt.Errorf("the lock does not match the spec: the lock has package %q, which the spec no longer asks for (run slate packages update)", h)
		}
	}
	d := spec.Debian
	if d == nil {
		return errors.New("the lock does not match the spec: the spec has no packages")
	}
	if len(l.Sources) == 0 {
		return errors.New("the lock does not match the spec: the lock has no sources")
	}
	if len(d.Sources) > 0 {
		// the spec's own list: the same suites in the same order
		var have, want []string
		for _, s := range l.Sources {
			have = append(have, s.Suite)
		}
		for _, s := range d.Sources {
			want = append(want, s.Suite)
		}
		if !slices.Equal(have, want) {
			return fmt.Errorf("the lock does not match the spec: suites %v, the spec says %v (run slate packages update)", have, want)
		}
		for i, s := range d.Sources {
			if !slices.Equal(s.Components, l.Sources[i].Components) {
				return fmt.Errorf("the lock does not match the spec: suite %s has components %v, the spec says %v (run slate packages update)", s.Suite, l.Sources[i].Components, s.Components)
			}
		}
	} else {
		// debian.suite and the suites derived from the build host's apt
		// sources: only the spec's own suite is compared, so a lock made
		// on one host builds on another
		first := l.Sources[0]
		if d.Suite != first.Suite {
			return fmt.Errorf("the lock does not match the spec: suite %q, the spec says %q (run slate packages update)", first.Suite, d.Suite)
		}
		if !slices.Equal(d.Components, first.Components) {
			return fmt.Errorf("the lock does not match the spec: components %v, the spec says %v (run slate packages update)", first.Components, d.Components)
		}
	}
	ex := sortedKeys(Excluded(d))
	if !slices.Equal(ex, l.Exclude) {
		return errors.New("the lock does not match the spec: the exclusion list changed (run slate packages update)")
	}
	for _, r := range spec.PackageRefs() {
		i := slices.IndexFunc(l.Packages, func(p Pinned) bool { return p.Name == r.Name })
		if i < 0 {
			return fmt.Errorf("the lock does not match the spec: package %q is requested but not pinned", r.Name)
		}
		if r.Version != "" && l.Packages[i].Version != r.Version {
			return fmt.Errorf("the lock does not match the spec: package %s is %s in the lock, the spec asks for %s", r.Name, l.Packages[i].Version, r.Version)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
