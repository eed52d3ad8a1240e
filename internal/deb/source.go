package deb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/slateos/slate/configs"
)

// Mirrors used when the build host's apt sources name none (a host
// without apt).
const (
	DefaultMirror         = "http://deb.debian.org/debian"
	DefaultSecurityMirror = "http://security.debian.org/debian-security"
)

// aptEntry is one suite of one "deb" line or stanza of the apt sources.
type aptEntry struct {
	uri, suite string
}

// hostEntries are the http(s) deb entries of the apt sources in dir, in
// apt's reading order: sources.list (one-line form), then
// sources.list.d/*.list, then the deb822 sources.list.d/*.sources, each
// in name order.
func hostEntries(dir string) []aptEntry {
	var out []aptEntry
	if data, err := os.ReadFile(filepath.Join(dir, "sources.list")); err == nil {
		out = append(out, entriesOfList(string(data))...)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*.list"))
	deb822, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*.sources"))
	slices.Sort(files)
	slices.Sort(deb822)
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			out = append(out, entriesOfList(string(data))...)
		}
	}
	for _, f := range deb822 {
		if data, err := os.ReadFile(f); err == nil {
			out = append(out, entriesOfSources(string(data))...)
		}
	}
	return out
}

func mirrorIn(entries []aptEntry, suite string) string {
	for _, e := range entries {
		if e.suite == suite {
			return e.uri
		}
	}
	return ""
}

// HostMirror is the first deb URI of the build host's apt sources for
// suite; DefaultMirror when none names it.
func HostMirror(suite string) string {
	return hostMirror("/etc/apt", suite)
}

func hostMirror(dir, suite string) string {
	if m := mirrorIn(hostEntries(dir), suite); m != "" {
		return m
	}
	return DefaultMirror
}

// entriesOfList reads "deb [options] URI suite components..." lines.
func entriesOfList(text string) []aptEntry {
	var out []aptEntry
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
		if len(f) >= 2 && mirrorURI(f[0]) {
			out = append(out, aptEntry{uri: strings.TrimSuffix(f[0], "/"), suite: f[1]})
		}
	}
	return out
}

// entriesOfSources reads deb822 stanzas (Types, URIs, Suites, Enabled).
func entriesOfSources(text string) []aptEntry {
	var out []aptEntry
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
		for _, u := range strings.Fields(fields["uris"]) {
			if !mirrorURI(u) {
				continue
			}
			for _, s := range strings.Fields(fields["suites"]) {
				out = append(out, aptEntry{uri: strings.TrimSuffix(u, "/"), suite: s})
			}
		}
	}
	return out
}

// mirrorURI says whether an apt source's URI is one slate fetches from:
// http(s) with a host.
func mirrorURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && isHTTP(s) && u.Host != "" && u.User == nil
}

func isHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// Source is one suite the spec's packages come from, with its defaults
// taken.
type Source struct {
	Mirror     string
	Suite      string
	Components []string
	Keyring    string
	// KeyringField is the spec's field that names Keyring, for errors.
	KeyringField string
}

// SourcesOf are the suites of a spec's debian section, in order of
// preference for equal versions:
//   - debian.sources as given;
//   - with debian.mirror, that mirror's debian.suite alone;
//   - otherwise debian.suite (default bookworm) and, as Debian's own
//     sources.list has them, SUITE-updates (point-release fixes) and
//     SUITE-security (security fixes), each from the first mirror the
//     build host's apt sources give for it. A suite the host's apt
//     sources do not name is left out, as apt leaves it out; on a host
//     with no apt sources at all the three come from deb.debian.org and
//     security.debian.org.
func SourcesOf(d *configs.Debian) []Source {
	return sourcesOf(d, "/etc/apt")
}

func sourcesOf(d *configs.Debian, aptDir string) []Source {
	if d != nil && len(d.Sources) > 0 {
		out := make([]Source, len(d.Sources))
		for i, s := range d.Sources {
			out[i] = Source{Mirror: strings.TrimSuffix(s.Mirror, "/"), Suite: s.Suite, Components: s.Components, Keyring: s.Keyring,
				KeyringField: fmt.Sprintf("$.debian.sources[%d].keyring", i)}
			if len(out[i].Components) == 0 {
				out[i].Components = configs.DefaultDebianComponents
			}
			if out[i].Keyring == "" {
				out[i].Keyring = configs.DefaultDebianKeyring
			}
		}
		return out
	}
	base := Source{Suite: configs.DefaultDebianSuite, Components: configs.DefaultDebianComponents, Keyring: configs.DefaultDebianKeyring, KeyringField: "$.debian.keyring"}
	if d != nil {
		if d.Suite != "" {
			base.Suite = d.Suite
		}
		if len(d.Components) > 0 {
			base.Components = d.Components
		}
		if d.Keyring != "" {
			base.Keyring = d.Keyring
		}
		if d.Mirror != "" {
			base.Mirror = strings.TrimSuffix(d.Mirror, "/")
			return []Source{base}
		}
	}
	entries := hostEntries(aptDir)
	var out []Source
	for i, suite := range []string{base.Suite, base.Suite + "-updates", base.Suite + "-security"} {
		m := mirrorIn(entries, suite)
		if m == "" {
			switch {
			case i == 0:
				m = DefaultMirror
			case len(entries) > 0:
				continue // the host's apt does not use it either
			case i == 1:
				m = DefaultMirror
			default:
				m = DefaultSecurityMirror
			}
		}
		s := base
		s.Mirror, s.Suite = m, suite
		out = append(out, s)
	}
	return out
}

// MirrorOverrides are the mirrors the spec names, by suite: a lock's
// packages are fetched from them rather than from the mirror the lock
// was made with (a local mirror of the same archive).
func MirrorOverrides(d *configs.Debian) map[string]string {
	m := map[string]string{}
	if d == nil {
		return m
	}
	if d.Mirror != "" {
		m[d.Suite] = strings.TrimSuffix(d.Mirror, "/")
	}
	for _, s := range d.Sources {
		m[s.Suite] = strings.TrimSuffix(s.Mirror, "/")
	}
	return m
}

// Resolved is a fresh resolution of a spec: its lock and the notes.
type Resolved struct {
	Lock  *Lock
	Notes []string
	// IndexSize is the number of package names in the indexes.
	IndexSize int
}

// ResolveSpec fetches the release and indexes of every source of the
// spec and resolves its packages into a lock: the newest version of a
// package across the sources wins (the first source on a tie), unless
// the spec pins name=version. A relative keyring path is from the spec's
// folder.
func (c *Client) ResolveSpec(ctx context.Context, spec *configs.Spec) (*Resolved, error) {
	if len(spec.Packages) == 0 {
		return nil, errors.New("the spec names no packages")
	}
	ix, sources, err := c.LoadSources(ctx, SourcesOf(spec.Debian), spec.Dir)
	if err != nil {
		return nil, err
	}
	ex := Excluded(spec.Debian)
	res, err := ix.Resolve(spec.PackageRefs(), ex)
	if err != nil {
		return nil, fmt.Errorf("$.packages: %w", err)
	}
	l := &Lock{Version: LockVersion, Sources: sources, Requested: slices.Clone(spec.Packages), Exclude: sortedKeys(ex)}
	for _, p := range res.Packages {
		l.Packages = append(l.Packages, p.Pin())
	}
	return &Resolved{Lock: l, Notes: res.Notes, IndexSize: ix.Len()}, nil
}

// LoadSources fetches and verifies each source's release and indexes and
// makes one index of them, every package tagged with its suite. dir
// resolves relative keyring paths.
func (c *Client) LoadSources(ctx context.Context, srcs []Source, dir string) (*Index, []LockSource, error) {
	var all []*Package
	var out []LockSource
	for _, src := range srcs {
		ringPath := src.Keyring
		if !filepath.IsAbs(ringPath) && dir != "" {
			ringPath = filepath.Join(dir, ringPath)
		}
		ring, err := os.ReadFile(ringPath)
		if err != nil {
			field := src.KeyringField
			if field == "" {
				field = "the keyring"
			}
			return nil, nil, fmt.Errorf("%s (suite %s): %w", field, src.Suite, err)
		}
		rel, err := c.FetchRelease(ctx, src.Mirror, src.Suite, ring, ringPath)
		if err != nil {
			return nil, nil, err
		}
		for _, comp := range src.Components {
			pkgs, err := c.FetchIndex(ctx, src.Mirror, src.Suite, comp, rel)
			if err != nil {
				return nil, nil, err
			}
			for _, p := range pkgs {
				p.Source = src.Suite
			}
			all = append(all, pkgs...)
		}
		out = append(out, LockSource{Mirror: src.Mirror, Suite: src.Suite, Components: slices.Clone(src.Components), Date: rel.Date, InRelease: rel.SHA256})
	}
	ix, err := NewIndex(all)
	if err != nil {
		return nil, nil, err
	}
	return ix, out, nil
}

// FetchLock makes sure every package of the lock is in the cache and
// returns the names and paths (name order). Only missing files touch the
// network. Each package comes from its source's mirror in the lock, or
// from mirrors[suite] when the spec names one for its suite.
func (c *Client) FetchLock(ctx context.Context, l *Lock, mirrors map[string]string, cacheDir string) (names, paths []string, err error) {
	for _, p := range l.Packages {
		src := l.source(p.Source)
		if src == nil {
			return nil, nil, fmt.Errorf("package %s: source %q is not in the lock", p.Name, p.Source)
		}
		mirror := src.Mirror
		if m := mirrors[src.Suite]; m != "" {
			mirror = m
		}
		got, err := c.Fetch(ctx, mirror, cacheDir, []Pinned{p})
		if err != nil {
			return nil, nil, err
		}
		names = append(names, p.Name)
		paths = append(paths, got[0])
	}
	return names, paths, nil
}
