package configs

import (
	"net/url"
	"strings"
)

// Defaults of the debian section, applied by SetDefaults when the spec
// names packages.
const (
	DefaultDebianSuite   = "bookworm"
	DefaultDebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// DefaultDebianComponents are the archive components searched when the
// spec names none.
var DefaultDebianComponents = []string{"main"}

// Debian says where the spec's packages come from: one suite (Suite,
// Components, Mirror, Keyring) or a list of Sources. With neither a
// mirror nor sources, the packages come from Suite and, where the build
// host's apt sources name them, Suite-updates and Suite-security, each
// from the host's mirror for it (internal/deb.SourcesOf).
type Debian struct {
	// Sources, when given, are the suites searched, in order of
	// preference for equal versions; Suite, Components, Mirror and
	// Keyring are then not given.
	Sources    []DebianSource `yaml:"sources,omitempty" json:"sources,omitempty"`
	Suite      string         `yaml:"suite,omitempty" json:"suite,omitempty"`
	Components []string       `yaml:"components,omitempty" json:"components,omitempty"`
	Mirror     string         `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	// Keyring is an OpenPGP keyring file (binary or armored) that must
	// have signed the suite's InRelease.
	Keyring string `yaml:"keyring,omitempty" json:"keyring,omitempty"`
	// Exclude is added to the default exclusion list (packages needed only
	// by maintainer scripts); Include is removed from it.
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty"`
	Include []string `yaml:"include,omitempty" json:"include,omitempty"`
}

// DebianSource is one suite of a mirror.
type DebianSource struct {
	Mirror     string   `yaml:"mirror" json:"mirror"`
	Suite      string   `yaml:"suite" json:"suite"`
	Components []string `yaml:"components,omitempty" json:"components,omitempty"`
	// Keyring signs the suite's InRelease (default DefaultDebianKeyring).
	Keyring string `yaml:"keyring,omitempty" json:"keyring,omitempty"`
}

// PackageRef is one entry of the spec's packages: a name and, after '=',
// an exact version.
type PackageRef struct {
	Name    string
	Version string
}

// ParsePackage splits "name" or "name=version".
func ParsePackage(s string) PackageRef {
	n, v, _ := strings.Cut(s, "=")
	return PackageRef{Name: n, Version: v}
}

// PackageRefs are the spec's packages, parsed.
func (s *Spec) PackageRefs() []PackageRef {
	refs := make([]PackageRef, len(s.Packages))
	for i, p := range s.Packages {
		refs[i] = ParsePackage(p)
	}
	return refs
}

// CheckPackageName says what is wrong with a Debian package name (policy
// 5.6.1: lower case letters, digits, '+', '-', '.', at least two
// characters, starting with a letter or digit), or "" when it is fine.
func CheckPackageName(n string) string {
	if len(n) < 2 {
		return "a package name has at least two characters"
	}
	if len(n) > 128 {
		return "package name longer than 128 characters"
	}
	for i, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '+' || r == '-' || r == '.'):
		default:
			return "not a Debian package name (lower case letters, digits, + - ., starting with a letter or digit)"
		}
	}
	return ""
}

func checkDebVersion(v string) string {
	if v == "" {
		return "empty version after '='"
	}
	for _, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".+-~:", r)
		if !ok {
			return "not a Debian version"
		}
	}
	if v[0] < '0' || v[0] > '9' {
		return "a Debian version starts with a digit"
	}
	return ""
}

func (s *Spec) setPackageDefaults() {
	if len(s.Packages) == 0 && s.Debian == nil {
		return
	}
	if s.Debian == nil {
		s.Debian = &Debian{}
	}
	d := s.Debian
	for i := range d.Sources {
		src := &d.Sources[i]
		if len(src.Components) == 0 {
			src.Components = append([]string(nil), DefaultDebianComponents...)
		}
		if src.Keyring == "" {
			src.Keyring = DefaultDebianKeyring
		}
	}
	if len(d.Sources) > 0 {
		return
	}
	if d.Suite == "" {
		d.Suite = DefaultDebianSuite
	}
	if len(d.Components) == 0 {
		d.Components = append([]string(nil), DefaultDebianComponents...)
	}
	if d.Keyring == "" {
		d.Keyring = DefaultDebianKeyring
	}
}

func (s *Spec) validatePackages(c *collector) {
	seen := map[string]int{}
	for i, p := range s.Packages {
		pp := index("$.packages", i)
		r := ParsePackage(p)
		if msg := CheckPackageName(r.Name); msg != "" {
			c.add(pp, "%q: %s", p, msg)
			continue
		}
		if strings.Contains(p, "=") {
			if msg := checkDebVersion(r.Version); msg != "" {
				c.add(pp, "%q: %s", p, msg)
				continue
			}
		}
		if j, dup := seen[r.Name]; dup {
			c.add(pp, "package %q is already at $.packages[%d]", r.Name, j)
			continue
		}
		seen[r.Name] = i
	}
	d := s.Debian
	if d == nil {
		return
	}
	if len(d.Sources) > 0 {
		for _, f := range []struct {
			name string
			set  bool
		}{{"suite", d.Suite != ""}, {"components", len(d.Components) > 0}, {"mirror", d.Mirror != ""}, {"keyring", d.Keyring != ""}} {
			if f.set {
				c.add("$.debian."+f.name, "give the suites either as debian.sources or as suite, components, mirror and keyring, not both")
			}
		}
	}
	if len(d.Sources) > MaxDebianSources {
		c.add("$.debian.sources", "%d sources, at most %d", len(d.Sources), MaxDebianSources)
	}
	suites := map[string]int{}
	for i, src := range d.Sources {
		sp := index("$.debian.sources", i)
		if src.Mirror == "" {
			c.add(sp+".mirror", "a source needs its mirror, like http://deb.debian.org/debian")
		}
		if src.Suite == "" {
			c.add(sp+".suite", "a source needs its suite, like bookworm-security")
		} else if j, dup := suites[src.Suite]; dup {
			c.add(sp+".suite", "suite %q is already at $.debian.sources[%d]", src.Suite, j)
		} else {
			suites[src.Suite] = i
		}
		checkSuite(c, sp, src.Suite, src.Components, src.Mirror)
	}
	checkSuite(c, "$.debian", d.Suite, d.Components, d.Mirror)
	for _, l := range []struct {
		path  string
		names []string
	}{{"$.debian.exclude", d.Exclude}, {"$.debian.include", d.Include}} {
		for i, n := range l.names {
			if msg := CheckPackageName(n); msg != "" {
				c.add(index(l.path, i), "%q: %s", n, msg)
			}
		}
	}
	implied := s.impliedPackages()
	for i, n := range d.Exclude {
		if by, ok := implied[n]; ok {
			c.add(index("$.debian.exclude", i), "%q is what %s brings; it cannot be excluded", n, by)
			continue
		}
		for j, p := range s.Packages {
			if ParsePackage(p).Name == n {
				c.add(index("$.debian.exclude", i), "%q is also asked for at $.packages[%d]", n, j)
			}
		}
	}
}

// MaxDebianSources bounds debian.sources.
const MaxDebianSources = 16

// checkSuite checks a suite's name, components and mirror at path p.
func checkSuite(c *collector, p, suite string, components []string, mirror string) {
	if suite != "" && !isSimpleWord(suite) {
		c.add(p+".suite", "%q: a suite is one word like bookworm", suite)
	}
	for i, comp := range components {
		if !isSimpleWord(comp) {
			c.add(index(p+".components", i), "%q: a component is one word like main", comp)
		}
	}
	if mirror != "" {
		u, err := url.Parse(mirror)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add(p+".mirror", "%q: the mirror is an http(s) URL like http://deb.debian.org/debian", mirror)
		} else if u.User != nil {
			c.add(p+".mirror", "credentials in the mirror URL are not supported")
		}
	}
}

func isSimpleWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
