package deb

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/slateos/slate/configs"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// DefaultExclude are packages that Debian's dependencies pull in for
// maintainer scripts only. slate runs no maintainer script, so they would
// be dead weight in the root; a dependency on one is dropped with a note.
// A spec adds to the list with debian.exclude and takes from it with
// debian.include.
var DefaultExclude = map[string]string{
	"debconf":             "asks configuration questions in maintainer scripts; slate runs none",
	"debconf-2.0":         "the virtual package of debconf and its alternatives",
	"cdebconf":            "an alternative debconf frontend, for maintainer scripts",
	"adduser":             "creates system users in postinst; slate writes /etc/passwd from the spec's users",
	"passwd":              "useradd and groupadd for postinst; slate writes the account files",
	"perl-base":           "the interpreter of debconf and many maintainer scripts",
	"init-system-helpers": "deb-systemd-helper and invoke-rc.d for postinst; PID 1 is slate's",
	"dpkg":                "runs maintainer scripts and keeps a database; slate unpacks without it",
	"sensible-utils":      "editor and pager choosers used by scripts",
	"lsb-base":            "init.d script helpers; slate has no init.d",
	"ucf":                 "conffile merging in postinst",
	"systemd-sysv":        "an init alternative; PID 1 is slate",
	"systemd":             "an init system; PID 1 is slate (services belong in the spec)",
	"libpam-systemd":      "registers sessions with systemd-logind, which slate does not run",
	"install-info":        "updates the info directory in postinst",
	"dpkg-dev":            "build tools pulled by scripts",
}

// Excluded is the exclusion list of a debian section: the defaults plus
// Exclude, minus Include.
func Excluded(d *configs.Debian) map[string]string {
	ex := make(map[string]string, len(DefaultExclude))
	for k, v := range DefaultExclude {
		ex[k] = v
	}
	if d == nil {
		return ex
	}
	for _, n := range d.Exclude {
		ex[n] = "excluded by the spec (debian.exclude)"
	}
	for _, n := range d.Include {
		delete(ex, n)
	}
	return ex
}

// Resolution is the closure of a spec's packages.
type Resolution struct {
	// Packages are sorted by name.
	Packages []*Package
	// Notes say what was dropped or chosen (excluded dependencies, a
	// virtual package with several providers).
	Notes []string
}

type resolver struct {
	ix       *Index
	exclude  map[string]string
	selected map[string]*Package
	// why is how a package came in: its parent and the relation.
	why   map[string]edge
	queue []*Package
	notes []string
}

type edge struct {
	parent string
	rel    string
}

// Resolve finds the dependency closure of refs, apt's way for a simple
// install into an empty root: Depends and Pre-Depends, the first
// satisfiable alternative (one already chosen satisfies a relation
// first), a virtual name by its providers, version relations. Essential
// and priority packages are not added: the root holds the closure only.
func (ix *Index) Resolve(refs []configs.PackageRef, exclude map[string]string) (*Resolution, error) {
	r := &resolver{ix: ix, exclude: exclude, selected: map[string]*Package{}, why: map[string]edge{}}
	for _, ref := range refs {
		p, err := r.request(ref)
		if err != nil {
			return nil, err
		}
		r.pick(p, edge{})
	}
	for len(r.queue) > 0 {
		p := r.queue[0]
		r.queue = r.queue[1:]
		if err := r.depends(p); err != nil {
			return nil, err
		}
	}
	res := &Resolution{Notes: r.notes}
	for _, p := range r.selected {
		res.Packages = append(res.Packages, p)
	}
	slices.SortFunc(res.Packages, func(a, b *Package) int { return strings.Compare(a.Name, b.Name) })
	return res, nil
}

func (r *resolver) request(ref configs.PackageRef) (*Package, error) {
	cands := r.ix.byName[ref.Name]
	if len(cands) == 0 {
		if provs := r.ix.provides[ref.Name]; len(provs) > 0 {
			return nil, fmt.Errorf("package %q is virtual: name one of its providers (%s)", ref.Name, providerNames(provs))
		}
		msg := fmt.Sprintf("package %q is not in the index", ref.Name)
		if h := r.ix.Hint(ref.Name); h != "" {
			msg += fmt.Sprintf("; did you mean %q?", h)
		}
		return nil, fmt.Errorf("%s", msg)
	}
	if _, ex := r.exclude[ref.Name]; ex {
		return nil, fmt.Errorf("package %q is asked for but excluded (%s); add it to debian.include", ref.Name, r.exclude[ref.Name])
	}
	if ref.Version == "" {
		return cands[0], nil
	}
	want, err := version.Parse(ref.Version)
	if err != nil {
		return nil, fmt.Errorf("package %s=%s: %w", ref.Name, ref.Version, err)
	}
	var have []string
	for _, p := range cands {
		v, _ := p.version()
		if version.Compare(v, want) == 0 {
			return p, nil
		}
		have = append(have, p.Version)
	}
	return nil, fmt.Errorf("package %s=%s: the index has %s", ref.Name, ref.Version, strings.Join(have, ", "))
}

func (r *resolver) pick(p *Package, why edge) {
	r.selected[p.Name] = p
	if why.parent != "" {
		r.why[p.Name] = why
	}
	r.queue = append(r.queue, p)
}

// chain is how name came in: "a -> b (>= 2) -> name".
func (r *resolver) chain(name string) string {
	parts := []string{name}
	seen := map[string]bool{name: true}
	for {
		e, ok := r.why[name]
		if !ok || seen[e.parent] {
			break
		}
		parts = append(parts, e.parent)
		seen[e.parent] = true
		name = e.parent
	}
	slices.Reverse(parts)
	return strings.Join(parts, " -> ")
}

func (r *resolver) depends(p *Package) error {
	for _, field := range []struct{ name, value string }{{"Pre-Depends", p.PreDepends}, {"Depends", p.Depends}} {
		if field.value == "" {
			continue
		}
		dep, err := dependency.Parse(field.value)
		if err != nil {
			return fmt.Errorf("%s %s: %s: %w", p.Name, p.Version, field.name, err)
		}
		for _, rel := range dep.Relations {
			if err := r.relation(p, rel); err != nil {
				return err
			}
		}
	}
	return nil
}

var amd64 = func() dependency.Arch {
	a, err := dependency.ParseArch(Arch)
	if err != nil {
		panic(err)
	}
	return *a
}()

// relation satisfies one relation (a | b | c) of p.
func (r *resolver) relation(p *Package, rel dependency.Relation) error {
	var alts []dependency.Possibility
	for _, poss := range rel.Possibilities {
		if poss.Substvar || (poss.Architectures != nil && len(poss.Architectures.Architectures) > 0 && !poss.Architectures.Matches(&amd64)) {
			continue
		}
		alts = append(alts, poss)
	}
	if len(alts) == 0 {
		return nil
	}
	text := relationString(alts)
	// already satisfied by a chosen package
	for _, a := range alts {
		if r.satisfiedBySelected(a) {
			return nil
		}
	}
	for _, a := range alts {
		if why, ex := r.exclude[a.Name]; ex {
			r.notes = append(r.notes, fmt.Sprintf("%s: dependency %s dropped: %s is excluded (%s)", r.chain(p.Name), text, a.Name, why))
			return nil
		}
		c, note := r.candidate(a)
		if c == nil {
			continue
		}
		if _, ex := r.exclude[c.Name]; ex {
			r.notes = append(r.notes, fmt.Sprintf("%s: dependency %s dropped: its provider %s is excluded (%s)", r.chain(p.Name), text, c.Name, r.exclude[c.Name]))
			return nil
		}
		if note != "" {
			r.notes = append(r.notes, fmt.Sprintf("%s: %s", r.chain(p.Name), note))
		}
		if old, ok := r.selected[c.Name]; ok && old != c {
			return fmt.Errorf("%s -> %s: %s %s is already chosen (by %s)", r.chain(p.Name), text, old.Name, old.Version, r.chain(old.Name))
		}
		r.pick(c, edge{parent: p.Name, rel: text})
		return nil
	}
	return fmt.Errorf("%s -> %s: %s", r.chain(p.Name), text, r.whyNot(alts))
}

func (r *resolver) whyNot(alts []dependency.Possibility) string {
	for _, a := range alts {
		if len(r.ix.byName[a.Name]) > 0 || len(r.ix.provides[a.Name]) > 0 {
			if sel, ok := r.selected[a.Name]; ok {
				return fmt.Sprintf("%s %s is chosen and does not satisfy it", sel.Name, sel.Version)
			}
			vs := []string{}
			for _, c := range r.ix.byName[a.Name] {
				vs = append(vs, c.Version)
			}
			if len(vs) == 0 {
				return "no provider satisfies it"
			}
			return fmt.Sprintf("no version satisfies it (the index has %s %s)", a.Name, strings.Join(vs, ", "))
		}
	}
	return "not in the index"
}

func relationString(alts []dependency.Possibility) string {
	s := make([]string, len(alts))
	for i, a := range alts {
		s[i] = a.Name
		if a.Version != nil {
			s[i] += " (" + a.Version.Operator + " " + a.Version.Number + ")"
		}
	}
	return strings.Join(s, " | ")
}

func satisfies(vr *dependency.VersionRelation, v string) bool {
	if vr == nil {
		return true
	}
	if v == "" {
		return false
	}
	pv, err := version.Parse(v)
	if err != nil {
		return false
	}
	return vr.SatisfiedBy(pv)
}

func (r *resolver) satisfiedBySelected(a dependency.Possibility) bool {
	if sel, ok := r.selected[a.Name]; ok && satisfies(a.Version, sel.Version) {
		return true
	}
	for _, pr := range r.ix.provides[a.Name] {
		if sel, ok := r.selected[pr.pkg.Name]; ok && sel == pr.pkg && satisfies(a.Version, pr.version) {
			return true
		}
	}
	return false
}

// candidate is the package that satisfies a: the highest version of the
// real package that fits, else a provider (the only one, or the first by
// name, with a note).
func (r *resolver) candidate(a dependency.Possibility) (*Package, string) {
	for _, c := range r.ix.byName[a.Name] {
		if satisfies(a.Version, c.Version) {
			return c, ""
		}
	}
	var fits []*Package
	for _, pr := range r.ix.provides[a.Name] {
		if satisfies(a.Version, pr.version) && !slices.Contains(fits, pr.pkg) {
			fits = append(fits, pr.pkg)
		}
	}
	switch len(fits) {
	case 0:
		return nil, ""
	case 1:
		return fits[0], ""
	}
	sort.Slice(fits, func(i, j int) bool {
		if fits[i].Name != fits[j].Name {
			return fits[i].Name < fits[j].Name
		}
		vi, _ := fits[i].version()
		vj, _ := fits[j].version()
		return version.Compare(vi, vj) > 0
	})
	names := make([]string, len(fits))
	for i, f := range fits {
		names[i] = f.Name
	}
	return fits[0], fmt.Sprintf("virtual package %s has several providers (%s): chose %s; name another in packages to change it", a.Name, strings.Join(slices.Compact(names), ", "), fits[0].Name)
}

func providerNames(provs []provider) string {
	var n []string
	for _, p := range provs {
		n = append(n, p.pkg.Name)
	}
	slices.Sort(n)
	return strings.Join(slices.Compact(n), ", ")
}

// Hint is the index's closest name to n (Levenshtein distance at most a
// third of its length, and at least 2), or "".
func (ix *Index) Hint(n string) string {
	best, bestD := "", max(2, len(n)/3)+1
	for _, c := range ix.names {
		if d := len(c) - len(n); d >= bestD || -d >= bestD {
			continue
		}
		if d := levenshtein(n, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// levenshtein is the edit distance of a and b, or limit when it is at
// least limit.
func levenshtein(a, b string, limit int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
