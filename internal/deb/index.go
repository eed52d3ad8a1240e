package deb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// Arch is the only architecture slate builds for; "all" packages go with it.
const Arch = "amd64"

// Package is one entry of a Packages index, with the fields the resolver
// and the fetcher need. Relations are parsed when the resolver reaches the
// package, not when the index is read.
type Package struct {
	Name         string
	Version      string
	Architecture string
	Filename     string
	Size         int64
	SHA256       string
	Depends      string
	PreDepends   string
	Provides     string
	// Source is the suite whose index the package is from.
	Source string

	ver    version.Version
	verErr error
	parsed bool
}

// version returns the parsed version.
func (p *Package) version() (version.Version, error) {
	if !p.parsed {
		p.ver, p.verErr = version.Parse(p.Version)
		p.parsed = true
	}
	return p.ver, p.verErr
}

// Index is the packages of a suite's components, by name, and the
// virtual names each provides.
type Index struct {
	byName   map[string][]*Package
	provides map[string][]provider
	names    []string // sorted, for hints
}

type provider struct {
	pkg     *Package
	version string // the provided version, "" when unversioned
}

// NewIndex builds an index of pkgs.
func NewIndex(pkgs []*Package) (*Index, error) {
	ix := &Index{byName: map[string][]*Package{}, provides: map[string][]provider{}}
	for _, p := range pkgs {
		ix.byName[p.Name] = append(ix.byName[p.Name], p)
		if p.Provides == "" {
			continue
		}
		dep, err := dependency.Parse(p.Provides)
		if err != nil {
			return nil, fmt.Errorf("%s %s: Provides: %w", p.Name, p.Version, err)
		}
		for _, rel := range dep.Relations {
			for _, poss := range rel.Possibilities {
				v := ""
				if poss.Version != nil && poss.Version.Operator == "=" {
					v = poss.Version.Number
				}
				ix.provides[poss.Name] = append(ix.provides[poss.Name], provider{pkg: p, version: v})
			}
		}
	}
	ix.names = make([]string, 0, len(ix.byName))
	for n, ps := range ix.byName {
		ix.names = append(ix.names, n)
		// highest version first; equal versions keep the index order
		slices.SortStableFunc(ps, func(a, b *Package) int {
			va, _ := a.version()
			vb, _ := b.version()
			return version.Compare(vb, va)
		})
	}
	slices.Sort(ix.names)
	return ix, nil
}

// Len is the number of package names.
func (ix *Index) Len() int { return len(ix.names) }

// ParseIndex reads a Packages index (uncompressed), keeping amd64 and all
// packages. Paragraph syntax is pault.ag/go/debian's control reader; the
// fields are checked here.
func ParseIndex(r io.Reader) ([]*Package, error) {
	pr, err := control.NewParagraphReader(bufio.NewReaderSize(r, 1<<20), nil)
	if err != nil {
		return nil, err
	}
	var pkgs []*Package
	for n := 1; ; n++ {
		para, err := pr.Next()
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", n, err)
		}
		p, err := packageOf(para.Values)
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", n, err)
		}
		if p.Architecture != Arch && p.Architecture != "all" {
			continue
		}
		pkgs = append(pkgs, p)
	}
}

func packageOf(v map[string]string) (*Package, error) {
	p := &Package{
		Name:         v["Package"],
		Version:      v["Version"],
		Architecture: v["Architecture"],
		Filename:     v["Filename"],
		SHA256:       strings.ToLower(v["SHA256"]),
		Depends:      v["Depends"],
		PreDepends:   v["Pre-Depends"],
		Provides:     v["Provides"],
	}
	if p.Name == "" {
		return nil, errors.New("no Package field")
	}
	if p.Version == "" || p.Architecture == "" {
		return nil, fmt.Errorf("%s: no Version or Architecture", p.Name)
	}
	if _, err := p.version(); err != nil {
		return nil, fmt.Errorf("%s: version %q: %w", p.Name, p.Version, err)
	}
	if err := checkPoolPath(p.Filename); err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.Name, p.Version, err)
	}
	if !isHexSHA256(p.SHA256) {
		return nil, fmt.Errorf("%s %s: no SHA256", p.Name, p.Version)
	}
	size, err := strconv.ParseInt(v["Size"], 10, 64)
	if err != nil || size <= 0 || size > MaxDeb {
		return nil, fmt.Errorf("%s %s: bad Size %q", p.Name, p.Version, v["Size"])
	}
	p.Size = size
	return p, nil
}

// checkPoolPath accepts a relative path without "..", the form of a
// Filename field (pool/main/o/openssh/openssh-server_...deb).
func checkPoolPath(f string) error {
	if f == "" {
		return errors.New("no Filename")
	}
	if strings.HasPrefix(f, "/") || strings.Contains(f, "\\") || !strings.HasSuffix(f, ".deb") {
		return fmt.Errorf("bad Filename %q", f)
	}
	for _, part := range strings.Split(f, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("bad Filename %q", f)
		}
	}
	for _, r := range f {
		if r < 0x21 || r > 0x7e || r == '?' || r == '#' || r == '%' {
			return fmt.Errorf("bad Filename %q", f)
		}
	}
	return nil
}
