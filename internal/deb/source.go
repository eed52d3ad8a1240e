package deb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/slateos/slate/configs"
)

// DefaultMirror is the mirror when the build host's apt sources name none.
const DefaultMirror = "http://deb.debian.org/debian"

// HostMirror is the first deb URI of the build host's apt sources for
// suite: /etc/apt/sources.list (one-line form), then the deb822
// /etc/apt/sources.list.d/*.sources files in name order; DefaultMirror
// when none names the suite.
func HostMirror(suite string) string {
	return hostMirror("/etc/apt", suite)
}

func hostMirror(dir, suite string) string {
	if data, err := os.ReadFile(filepath.Join(dir, "sources.list")); err == nil {
		if m := mirrorOfList(string(data), suite); m != "" {
			return m
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*.list"))
	deb822, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*.sources"))
	slices.Sort(files)
	slices.Sort(deb822)
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			if m := mirrorOfList(string(data), suite); m != "" {
				return m
			}
		}
	}
	for _, f := range deb822 {
		if data, err := os.ReadFile(f); err == nil {
			if m := mirrorOfSources(string(data), suite); m != "" {
				return m
			}
		}
	}
	return DefaultMirror
}

// mirrorOfList reads "deb [options] URI suite components..." lines.
func mirrorOfList(text, suite string) string {
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) >= 2 && f[1] == suite && isHTTP(f[0]) {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

// mirrorOfSources reads deb822 stanzas (Types, URIs, Suites, Enabled).
func mirrorOfSources(text, suite string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") || !slices.Contains(strings.Fields(fields["types"]), "deb") {
			continue
		}
		if !slices.Contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		for _, u := range strings.Fields(fields["uris"]) {
			if isHTTP(u) {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

func isHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// Source is where a spec's packages come from, with its defaults taken.
type Source struct {
	Mirror     string
	Suite      string
	Components []string
	Keyring    string
}

// SourceOf is the spec's debian section with the host's mirror when it
// names none.
func SourceOf(d *configs.Debian) Source {
	s := Source{Suite: configs.DefaultDebianSuite, Components: configs.DefaultDebianComponents, Keyring: configs.DefaultDebianKeyring}
	if d != nil {
		if d.Suite != "" {
			s.Suite = d.Suite
		}
		if len(d.Components) > 0 {
			s.Components = d.Components
		}
		if d.Keyring != "" {
			s.Keyring = d.Keyring
		}
		s.Mirror = d.Mirror
	}
	if s.Mirror == "" {
		s.Mirror = HostMirror(s.Suite)
	}
	return s
}

// Resolved is a fresh resolution of a spec: its lock and the notes.
type Resolved struct {
	Lock  *Lock
	Notes []string
	// IndexSize is the number of package names in the index.
	IndexSize int
}

// ResolveSpec fetches the release and indexes of the spec's source and
// resolves its packages into a lock. keyringDir resolves a relative
// keyring path (the spec's folder).
func (c *Client) ResolveSpec(ctx context.Context, spec *configs.Spec) (*Resolved, error) {
	if len(spec.Packages) == 0 {
		return nil, errors.New("the spec names no packages")
	}
	src := SourceOf(spec.Debian)
	ringPath := src.Keyring
	if !filepath.IsAbs(ringPath) && spec.Dir != "" {
		ringPath = filepath.Join(spec.Dir, ringPath)
	}
	ring, err := os.ReadFile(ringPath)
	if err != nil {
		return nil, fmt.Errorf("$.debian.keyring: %w", err)
	}
	rel, err := c.FetchRelease(ctx, src.Mirror, src.Suite, ring, ringPath)
	if err != nil {
		return nil, err
	}
	var all []*Package
	for _, comp := range src.Components {
		pkgs, err := c.FetchIndex(ctx, src.Mirror, src.Suite, comp, rel)
		if err != nil {
			return nil, err
		}
		all = append(all, pkgs...)
	}
	ix, err := NewIndex(all)
	if err != nil {
		return nil, err
	}
	ex := Excluded(spec.Debian)
	res, err := ix.Resolve(spec.PackageRefs(), ex)
	if err != nil {
		return nil, fmt.Errorf("$.packages: %w", err)
	}
	l := &Lock{
		Version: LockVersion, Mirror: src.Mirror, Suite: src.Suite, Components: slices.Clone(src.Components),
		Date: rel.Date, InRelease: rel.SHA256, Requested: slices.Clone(spec.Packages), Exclude: sortedKeys(ex),
	}
	for _, p := range res.Packages {
		l.Packages = append(l.Packages, p.Pin())
	}
	return &Resolved{Lock: l, Notes: res.Notes, IndexSize: ix.Len()}, nil
}

// FetchLock makes sure every package of the lock is in the cache and
// returns the names and paths (name order). Only missing files touch the
// network; the lock's mirror is used unless mirror is set.
func (c *Client) FetchLock(ctx context.Context, l *Lock, mirror, cacheDir string) (names, paths []string, err error) {
	if mirror == "" {
		mirror = l.Mirror
	}
	paths, err = c.Fetch(ctx, mirror, cacheDir, l.Packages)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range l.Packages {
		names = append(names, p.Name)
	}
	return names, paths, nil
}
