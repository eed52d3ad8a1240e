// Package ignition reads Ignition configs (spec 3.0 to 3.5, as CoreOS and
// Flatcar take them) and applies the part that fits slate: files,
// directories and links in the writable layer, users and groups, and
// service units that slate's supervisor runs.
//
// Parsing and validation are Ignition's own (config/v3_5); applying is
// slate's. Everything slate cannot honour is refused at Parse time with the
// JSON path of the entry, so that a config never half-works: slate's root is
// read-only, there is no systemd and no disk setup at first boot.
package ignition

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/coreos/vcontext/report"
)

// emptySource is the resource of `"contents": {"source": ""}`: an empty
// file, as in Ignition.
const emptySource = "data:,"

// WritablePrefixes are the only places a config may write: the rest of
// slate's root is a read-only filesystem image.
var WritablePrefixes = []string{"/etc", "/var", "/home", "/root", "/srv"}

// Plan is what a config asks of slate, checked and ready to Apply.
type Plan struct {
	Files  []File
	Dirs   []Dir
	Links  []Link
	Users  []User
	Groups []Group
	// Units are the enabled service units. Apply stores them under UnitDir;
	// the caller hands them to the supervisor.
	Units []Unit
	// Warnings are Ignition's validation warnings, "$.path: message".
	Warnings []string
	// Timeouts are ignition.timeouts, for the fetcher (see
	// DefaultFetcher).
	Timeouts Timeouts
}

// Timeouts are ignition.timeouts; zero is Ignition's default.
type Timeouts struct {
	// ResponseHeaders bounds the wait for an HTTP response's headers
	// (httpResponseHeaders, default 10 s).
	ResponseHeaders time.Duration
	// Total bounds a whole HTTP request, body and retries included
	// (httpTotal, default no limit).
	Total time.Duration
}

// MaxConfig bounds a config's size wherever one is read: validate, the
// build, and the first boot.
const MaxConfig = 8 << 20

// ReadConfig reads a whole config from r, refusing one larger than
// MaxConfig without reading more than one byte past it.
func ReadConfig(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxConfig+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxConfig {
		return nil, fmt.Errorf("config is larger than %d bytes (the limit)", MaxConfig)
	}
	return b, nil
}

// ReadConfigFile is ReadConfig of a file.
func ReadConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := ReadConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// Image is what is known of the image a config will run on. A nil or
// empty field is unknown and not checked.
type Image struct {
	// Services are the names of the image's services (the spec's; the
	// ReservedServices are always checked).
	Services []string
	// Groups and Users are the names in the image's /etc/group and
	// /etc/passwd.
	Groups, Users []string
	// Files are the paths the image has in its writable layer (its /etc).
	Files []string
}

// Resource is where the bytes of a file or fragment come from.
type Resource struct {
	// Source is a data:, http:, https: or tftp: URL.
	Source string
	// Compression is "" or "gzip".
	Compression string
	// Hash is "" or "sha512-<hex>" / "sha256-<hex>" of the uncompressed
	// bytes.
	Hash string
	// Headers are sent with http(s) requests.
	Headers http.Header
}

// Owner names a user or a group by number or by name; neither means root.
type Owner struct {
	ID   *int
	Name string
}

// File is one storage.files entry.
type File struct {
	// JSONPath is where the entry is in the config, for errors.
	JSONPath  string
	Path      string
	Overwrite bool
	// Contents nil means no source: an existing file is kept (and appended
	// to), a missing one is created empty.
	Contents *Resource
	Append   []Resource
	// Mode nil is 0644, or the existing file's mode when it is kept.
	Mode        *os.FileMode
	User, Group Owner
}

// Dir is one storage.directories entry.
type Dir struct {
	JSONPath  string
	Path      string
	Overwrite bool
	// Mode nil is 0755, or the existing directory's mode.
	Mode        *os.FileMode
	User, Group Owner
}

// Link is one storage.links entry.
type Link struct {
	JSONPath  string
	Path      string
	Overwrite bool
	Target    string
	Hard      bool
	// User and Group apply to symbolic links only, as in Ignition.
	User, Group Owner
}

// Group is one passwd.groups entry.
type Group struct {
	JSONPath string
	Name     string
	GID      *int
	// System picks a free id below 1000 when GID is nil.
	System bool
}

// User is one passwd.users entry. For a user that exists already only
// PasswordHash, SSHAuthorizedKeys and Groups change it; other fields must
// match what exists.
type User struct {
	JSONPath string
	Name     string
	UID      *int
	// PasswordHash nil or "" is "*" in /etc/shadow, as Ignition does: no
	// password logs in, SSH keys do (a locked "!" account refuses keys).
	PasswordHash      *string
	SSHAuthorizedKeys []string
	Gecos             string
	// HomeDir "" is /home/NAME.
	HomeDir      string
	NoCreateHome bool
	// PrimaryGroup "" creates a group named like the user.
	PrimaryGroup string
	// Groups are supplementary groups the user is added to.
	Groups []string
	// Shell "" is /bin/sh.
	Shell  string
	System bool
}

// Parse parses and validates an Ignition config of spec 3.0 to 3.5 and
// translates it into a Plan. Errors list every problem with its JSON path.
// The image it runs on is not known: see ParseFor.
func Parse(data []byte) (*Plan, error) {
	return ParseFor(data, nil)
}

// ParseFor is Parse for a config that will run on img (nil: unknown):
// unit names must not clash with the image's services, users' groups must
// exist, and files the image has need overwrite.
func ParseFor(data []byte, img *Image) (*Plan, error) {
	if len(data) > MaxConfig {
		return nil, &ConfigError{Problems: []string{fmt.Sprintf("$: config is %d bytes, larger than %d bytes (the limit)", len(data), MaxConfig)}}
	}
	if msg := checkVersion(data); msg != "" {
		return nil, &ConfigError{Problems: []string{"$.ignition.version: " + msg}}
	}
	cfg, rpt, err := v3_5.ParseCompatibleVersion(data)
	var problems, warnings []string
	for _, e := range rpt.Entries {
		msg := entryString(e, data)
		if e.Kind.IsFatal() {
			problems = append(problems, msg)
		} else if e.Kind == report.Warn {
			warnings = append(warnings, msg)
		}
	}
	if err != nil || len(problems) > 0 {
		if err != nil && len(problems) == 0 {
			problems = append(problems, "$: "+err.Error())
		}
		return nil, &ConfigError{Problems: problems}
	}
	t := translator{plan: &Plan{Warnings: warnings}, img: img}
	t.config(cfg)
	t.checkUnits()
	t.checkImage()
	if len(t.problems) > 0 {
		return nil, &ConfigError{Problems: t.problems}
	}
	return t.plan, nil
}

// ConfigError lists every problem of a config, each "$.json.path: what".
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "ignition config: " + strings.Join(e.Problems, "; ")
}

// entryString formats a report entry with a "$.a[0].b" path.
func entryString(e report.Entry, data []byte) string {
	var b strings.Builder
	b.WriteString("$")
	for _, p := range e.Context.Path {
		if i, ok := p.(int); ok {
			fmt.Fprintf(&b, "[%d]", i)
		} else {
			fmt.Fprintf(&b, ".%v", p)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	if sp := e.Marker.StartP; sp != nil {
		line, col := sp.Line, sp.Column
		if line == 0 && sp.Index > 0 && sp.Index <= int64(len(data)) {
			// JSON syntax errors carry only a byte offset
			before := data[:sp.Index]
			line = int64(bytes.Count(before, []byte("\n")) + 1)
			col = int64(len(before) - bytes.LastIndexByte(before, '\n') - 1)
		}
		if line > 0 {
			fmt.Fprintf(&b, " (line %d col %d)", line, col)
		}
	}
	return b.String()
}

type translator struct {
	plan     *Plan
	img      *Image
	problems []string
	// unitPaths are the JSON paths of the units in plan.Units.
	unitPaths []string
}

// checkVersion reports a spec version outside 3.0.0 to 3.5.0 at
// $.ignition.version, which Ignition's parser reports at "$"; "" when the
// version is supported or cannot be read (the parser says why).
func checkVersion(data []byte) string {
	var v struct {
		Ignition struct {
			Version *string `json:"version"`
		} `json:"ignition"`
	}
	if json.Unmarshal(data, &v) != nil || v.Ignition.Version == nil {
		return ""
	}
	ver := *v.Ignition.Version
	for _, ok := range []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"} {
		if ver == ok {
			return ""
		}
	}
	return fmt.Sprintf("version %q is not supported: slate reads spec 3.0.0 to 3.5.0", ver)
}

func (t *translator) fail(at, format string, args ...any) {
	t.problems = append(t.problems, at+": "+fmt.Sprintf(format, args...))
}

func (t *translator) config(c types.Config) {
	ic := c.Ignition
	if len(ic.Config.Merge) > 0 {
		t.fail("$.ignition.config.merge", "merging configs is not supported by slate: give one complete config")
	}
	if ic.Config.Replace.Source != nil {
		t.fail("$.ignition.config.replace", "replacing the config is not supported by slate: give one complete config")
	}
	if ic.Proxy.HTTPProxy != nil || ic.Proxy.HTTPSProxy != nil || len(ic.Proxy.NoProxy) > 0 {
		t.fail("$.ignition.proxy", "proxies are not supported by slate")
	}
	if len(ic.Security.TLS.CertificateAuthorities) > 0 {
		t.fail("$.ignition.security.tls.certificateAuthorities", "extra certificate authorities are not supported by slate")
	}
	if v := ic.Timeouts.HTTPResponseHeaders; v != nil {
		if *v < 0 {
			t.fail("$.ignition.timeouts.httpResponseHeaders", "%d is negative", *v)
		}
		t.plan.Timeouts.ResponseHeaders = time.Duration(*v) * time.Second
	}
	if v := ic.Timeouts.HTTPTotal; v != nil {
		if *v < 0 {
			t.fail("$.ignition.timeouts.httpTotal", "%d is negative", *v)
		}
		t.plan.Timeouts.Total = time.Duration(*v) * time.Second
	}
	if len(c.KernelArguments.ShouldExist) > 0 || len(c.KernelArguments.ShouldNotExist) > 0 {
		t.fail("$.kernelArguments", "kernel arguments come from the image spec, not from Ignition")
	}
	s := c.Storage
	for _, x := range []struct {
		n    int
		name string
	}{{len(s.Disks), "disks"}, {len(s.Raid), "raid"}, {len(s.Luks), "luks"}, {len(s.Filesystems), "filesystems"}} {
		if x.n > 0 {
			t.fail("$.storage."+x.name, "slate's disk layout is fixed by the image: storage.%s is not supported", x.name)
		}
	}
	for i, f := range s.Files {
		t.file(fmt.Sprintf("$.storage.files[%d]", i), f)
	}
	for i, d := range s.Directories {
		t.dir(fmt.Sprintf("$.storage.directories[%d]", i), d)
	}
	for i, l := range s.Links {
		t.link(fmt.Sprintf("$.storage.links[%d]", i), l)
	}
	for i, g := range c.Passwd.Groups {
		t.group(fmt.Sprintf("$.passwd.groups[%d]", i), g)
	}
	for i, u := range c.Passwd.Users {
		t.user(fmt.Sprintf("$.passwd.users[%d]", i), u)
	}
	for i, u := range c.Systemd.Units {
		t.unit(fmt.Sprintf("$.systemd.units[%d]", i), u)
	}
}

// writablePath cleans p and checks that it is in the writable layer.
func writablePath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	if i := strings.IndexAny(p, "\x00\n"); i >= 0 {
		return "", fmt.Errorf("path %q has a NUL or newline byte at offset %d", p, i)
	}
	c := path.Clean(p)
	for _, w := range WritablePrefixes {
		if c == w || strings.HasPrefix(c, w+"/") {
			return c, nil
		}
	}
	return "", fmt.Errorf("path %s is on the read-only root; write under /etc or /var (or %s)", p, strings.Join(WritablePrefixes[2:], ", "))
}

// nodePath checks the path of a file, directory or link. Only a
// directory (without overwrite) may be one of the writable top folders.
func (t *translator) nodePath(at, p string, dirNoOverwrite bool) (string, bool) {
	c, err := writablePath(p)
	if err == nil && isPrefixRoot(c) && !dirNoOverwrite {
		err = fmt.Errorf("path %s is a top folder of the writable layer and cannot be replaced", c)
	}
	if err != nil {
		t.fail(at+".path", "%v", err)
		return "", false
	}
	return c, true
}

func owner(id *int, name *string) Owner {
	o := Owner{ID: id}
	if name != nil {
		o.Name = *name
	}
	return o
}

// fileMode converts an Ignition mode (permission bits plus setuid, setgid
// and sticky in their octal places) to an os.FileMode.
func fileMode(m *int) *os.FileMode {
	if m == nil {
		return nil
	}
	fm := os.FileMode(*m & 0o777)
	if *m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if *m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if *m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return &fm
}

func (t *translator) file(at string, f types.File) {
	p, ok := t.nodePath(at, f.Path, false)
	if !ok {
		return
	}
	out := File{JSONPath: at, Path: p, Overwrite: f.Overwrite != nil && *f.Overwrite,
		Mode: fileMode(f.Mode), User: owner(f.User.ID, f.User.Name), Group: owner(f.Group.ID, f.Group.Name)}
	if f.Contents.Source != nil && *f.Contents.Source == "" {
		// Ignition: an empty source is an empty file
		if f.Contents.Compression != nil && *f.Contents.Compression != "" || f.Contents.Verification.Hash != nil {
			t.fail(at+".contents", "compression or verification of an empty source")
			return
		}
		out.Contents = &Resource{Source: emptySource}
	} else if f.Contents.Source != nil {
		r, ok := t.resource(at+".contents", f.Contents)
		if !ok {
			return
		}
		out.Contents = &r
	} else if f.Contents.Compression != nil || f.Contents.Verification.Hash != nil || len(f.Contents.HTTPHeaders) > 0 {
		t.fail(at+".contents", "compression, verification or httpHeaders without a source")
		return
	}
	for i, a := range f.Append {
		r, ok := t.resource(fmt.Sprintf("%s.append[%d]", at, i), a)
		if !ok {
			return
		}
		out.Append = append(out.Append, r)
	}
	t.plan.Files = append(t.plan.Files, out)
}

func (t *translator) resource(at string, r types.Resource) (Resource, bool) {
	if r.Source == nil {
		t.fail(at+".source", "a source is required")
		return Resource{}, false
	}
	out := Resource{Source: *r.Source}
	u, err := url.Parse(*r.Source)
	if err != nil {
		t.fail(at+".source", "%v", err)
		return out, false
	}
	switch u.Scheme {
	case "data":
		if _, err := decodeDataURL(*r.Source); err != nil {
			t.fail(at+".source", "%v", err)
			return out, false
		}
	case "http", "https", "tftp":
		if u.Host == "" {
			t.fail(at+".source", "URL %q has no host", *r.Source)
			return out, false
		}
	default:
		t.fail(at+".source", "URL scheme %q is not supported by slate (data, http, https, tftp)", u.Scheme)
		return out, false
	}
	if r.Compression != nil && *r.Compression != "" {
		if *r.Compression != "gzip" {
			t.fail(at+".compression", "compression %q is not supported (gzip)", *r.Compression)
			return out, false
		}
		out.Compression = "gzip"
	}
	if r.Verification.Hash != nil {
		if _, _, err := parseHash(*r.Verification.Hash); err != nil {
			t.fail(at+".verification.hash", "%v", err)
			return out, false
		}
		out.Hash = *r.Verification.Hash
	}
	if len(r.HTTPHeaders) > 0 {
		if u.Scheme != "http" && u.Scheme != "https" {
			t.fail(at+".httpHeaders", "headers are for http(s) sources only")
			return out, false
		}
		out.Headers = http.Header{}
		for _, h := range r.HTTPHeaders {
			if h.Value != nil {
				out.Headers.Add(h.Name, *h.Value)
			}
		}
	}
	return out, true
}

// parseHash splits "sha512-<hex>" into the function name and digest.
func parseHash(s string) (string, []byte, error) {
	fn, hx, ok := strings.Cut(s, "-")
	want := map[string]int{"sha512": 64, "sha256": 32}[fn]
	if !ok || want == 0 {
		return "", nil, fmt.Errorf("hash %q is not sha512-<hex> or sha256-<hex>", s)
	}
	sum, err := hex.DecodeString(hx)
	if err != nil || len(sum) != want {
		return "", nil, fmt.Errorf("hash %q: want %d hex digits", s, 2*want)
	}
	return fn, sum, nil
}

func (t *translator) dir(at string, d types.Directory) {
	p, ok := t.nodePath(at, d.Path, d.Overwrite == nil || !*d.Overwrite)
	if !ok {
		return
	}
	t.plan.Dirs = append(t.plan.Dirs, Dir{JSONPath: at, Path: p, Overwrite: d.Overwrite != nil && *d.Overwrite,
		Mode: fileMode(d.Mode), User: owner(d.User.ID, d.User.Name), Group: owner(d.Group.ID, d.Group.Name)})
}

func (t *translator) link(at string, l types.Link) {
	p, ok := t.nodePath(at, l.Path, false)
	if !ok {
		return
	}
	if l.Target == nil || *l.Target == "" {
		t.fail(at+".target", "a target is required")
		return
	}
	if strings.ContainsRune(*l.Target, 0) {
		t.fail(at+".target", "contains a NUL byte")
		return
	}
	out := Link{JSONPath: at, Path: p, Overwrite: l.Overwrite != nil && *l.Overwrite, Target: *l.Target,
		Hard: l.Hard != nil && *l.Hard, User: owner(l.User.ID, l.User.Name), Group: owner(l.Group.ID, l.Group.Name)}
	if out.Hard {
		c, err := writablePath(out.Target)
		if err != nil {
			t.fail(at+".target", "hard link target: %v", err)
			return
		}
		out.Target = c
	}
	t.plan.Links = append(t.plan.Links, out)
}

func validName(n string) bool {
	return n != "" && len(n) <= 32 && !strings.ContainsAny(n, ":,\n\r\t /\x00") && n[0] != '-' && n != "." && n != ".."
}

func (t *translator) group(at string, g types.PasswdGroup) {
	switch {
	case !validName(g.Name):
		t.fail(at+".name", "%q is not a valid group name", g.Name)
	case g.ShouldExist != nil && !*g.ShouldExist:
		t.fail(at+".shouldExist", "deleting groups is not supported by slate")
	case g.PasswordHash != nil:
		t.fail(at+".passwordHash", "group passwords are not supported by slate")
	case g.Gid != nil && (*g.Gid < 0 || *g.Gid >= 1<<31):
		t.fail(at+".gid", "%d is out of range", *g.Gid)
	default:
		t.plan.Groups = append(t.plan.Groups, Group{JSONPath: at, Name: g.Name, GID: g.Gid, System: g.System != nil && *g.System})
	}
}

func (t *translator) user(at string, u types.PasswdUser) {
	isTrue := func(b *bool) bool { return b != nil && *b }
	out := User{JSONPath: at, Name: u.Name, UID: u.UID, PasswordHash: u.PasswordHash,
		NoCreateHome: isTrue(u.NoCreateHome), System: isTrue(u.System)}
	n := len(t.problems)
	if !validName(u.Name) {
		t.fail(at+".name", "%q is not a valid user name", u.Name)
	}
	if u.ShouldExist != nil && !*u.ShouldExist {
		t.fail(at+".shouldExist", "deleting users is not supported by slate")
	}
	if u.UID != nil && (*u.UID < 0 || *u.UID >= 1<<31) {
		t.fail(at+".uid", "%d is out of range", *u.UID)
	}
	if u.PasswordHash != nil && strings.ContainsAny(*u.PasswordHash, ":\n") {
		t.fail(at+".passwordHash", "must not contain ':' or a newline")
	}
	if u.Gecos != nil {
		if strings.ContainsAny(*u.Gecos, ":\n") {
			t.fail(at+".gecos", "must not contain ':' or a newline")
		}
		out.Gecos = *u.Gecos
	}
	if u.Shell != nil {
		if !path.IsAbs(*u.Shell) || strings.ContainsAny(*u.Shell, ":\n") {
			t.fail(at+".shell", "%q is not an absolute path", *u.Shell)
		}
		out.Shell = *u.Shell
	}
	if u.PrimaryGroup != nil {
		if !validName(*u.PrimaryGroup) {
			t.fail(at+".primaryGroup", "%q is not a valid group name", *u.PrimaryGroup)
		}
		out.PrimaryGroup = *u.PrimaryGroup
	}
	if isTrue(u.NoUserGroup) && out.PrimaryGroup == "" {
		t.fail(at+".noUserGroup", "slate needs primaryGroup when noUserGroup is true")
	}
	for i, g := range u.Groups {
		if !validName(string(g)) {
			t.fail(fmt.Sprintf("%s.groups[%d]", at, i), "%q is not a valid group name", g)
		}
		out.Groups = append(out.Groups, string(g))
	}
	for i, k := range u.SSHAuthorizedKeys {
		if strings.ContainsAny(string(k), "\n\r") {
			t.fail(fmt.Sprintf("%s.sshAuthorizedKeys[%d]", at, i), "a key must be one line")
		}
		out.SSHAuthorizedKeys = append(out.SSHAuthorizedKeys, string(k))
	}
	if u.HomeDir != nil && *u.HomeDir != "" {
		if strings.ContainsAny(*u.HomeDir, ":\n") || !path.IsAbs(*u.HomeDir) {
			t.fail(at+".homeDir", "%q is not an absolute path", *u.HomeDir)
		} else {
			out.HomeDir = path.Clean(*u.HomeDir)
		}
	}
	// A home slate creates, or writes keys into, must be writable. A
	// service account's "/nonexistent" is fine with noCreateHome.
	if out.HomeDir != "" && (!out.NoCreateHome || len(out.SSHAuthorizedKeys) > 0) {
		if _, err := writablePath(out.HomeDir); err != nil {
			t.fail(at+".homeDir", "%v", err)
		}
	}
	if len(t.problems) == n {
		t.plan.Users = append(t.plan.Users, out)
	}
}

func (t *translator) unit(at string, u types.Unit) {
	switch {
	case CheckUnitName(u.Name) != nil:
		t.fail(at+".name", "%v", CheckUnitName(u.Name))
	case u.Mask != nil && *u.Mask:
		t.fail(at+".mask", "masking units is not supported by slate")
	case len(u.Dropins) > 0:
		t.fail(at+".dropins", "drop-ins are not supported by slate: put everything in contents")
	case u.Enabled == nil || !*u.Enabled:
		t.fail(at+".enabled", "slate runs only enabled units: set enabled to true")
	case u.Contents == nil || *u.Contents == "":
		t.fail(at+".contents", "slate has no stock unit %q: contents are required", u.Name)
	default:
		unit, err := ParseUnit(u.Name, *u.Contents)
		if err != nil {
			t.fail(at+".contents", "%v", err)
			return
		}
		t.plan.Units = append(t.plan.Units, unit)
		t.unitPaths = append(t.unitPaths, at)
	}
}

// checkUnits refuses what would stop services the image needs, or
// dependencies on units that do not exist: a unit named like a reserved
// service, or one of the image's, and an After=, Before=, Requires= or
// Wants= naming neither a unit of the config, nor a service of the image
// (when known), nor a well-known target.
func (t *translator) checkUnits() {
	known := map[string]bool{}
	for _, u := range t.plan.Units {
		known[u.Name] = true
	}
	image := map[string]bool{}
	for _, n := range ReservedServices {
		image[n] = true
	}
	if t.img != nil {
		for _, n := range t.img.Services {
			image[n] = true
		}
	}
	for i, u := range t.plan.Units {
		at := t.unitPaths[i]
		svc := strings.TrimSuffix(u.Name, ".service")
		if image[svc] {
			t.fail(at+".name", "unit %s would replace the image's service %q: choose another name", u.Name, svc)
		}
		for _, dep := range []struct {
			key   string
			names []string
		}{{"After", u.After}, {"Before", u.Before}, {"Requires", u.Requires}, {"Wants", u.Wants}} {
			for _, n := range dep.names {
				if known[n] || WellKnownTargets[n] || image[strings.TrimSuffix(n, ".service")] && strings.HasSuffix(n, ".service") {
					continue
				}
				hint := ""
				if t.img == nil && strings.HasSuffix(n, ".service") {
					hint = " (if the image has it, validate with --spec)"
				}
				t.fail(at+".contents", "[Unit] %s=%s: no such unit in this config or the image, and not a target slate knows%s", dep.key, n, hint)
			}
		}
	}
}

// checkImage checks the config against the image, when known: users'
// groups exist (in the image or the config), and files the image has are
// replaced only with overwrite.
func (t *translator) checkImage() {
	uids, gids := map[int]string{}, map[int]string{}
	for _, u := range t.plan.Users {
		if u.UID == nil {
			continue
		}
		if prev, ok := uids[*u.UID]; ok {
			t.fail(u.JSONPath+".uid", "uid %d is also the uid of %s", *u.UID, prev)
		}
		uids[*u.UID] = u.JSONPath
	}
	for _, g := range t.plan.Groups {
		if g.GID == nil {
			continue
		}
		if prev, ok := gids[*g.GID]; ok {
			t.fail(g.JSONPath+".gid", "gid %d is also the gid of %s", *g.GID, prev)
		}
		gids[*g.GID] = g.JSONPath
	}
	if t.img == nil {
		return
	}
	if t.img.Groups != nil {
		groups := map[string]bool{}
		for _, g := range t.img.Groups {
			groups[g] = true
		}
		for _, g := range t.plan.Groups {
			groups[g.Name] = true
		}
		for _, u := range t.plan.Users {
			if u.PrimaryGroup == "" && !slices.Contains(t.img.Users, u.Name) {
				groups[u.Name] = true // created with the user
			}
		}
		for _, u := range t.plan.Users {
			if u.PrimaryGroup != "" && !groups[u.PrimaryGroup] {
				t.fail(u.JSONPath+".primaryGroup", "no group %q in the image or the config", u.PrimaryGroup)
			}
			for i, g := range u.Groups {
				if !groups[g] {
					t.fail(fmt.Sprintf("%s.groups[%d]", u.JSONPath, i), "no group %q in the image or the config (add it to passwd.groups)", g)
				}
			}
		}
	}
	files := map[string]bool{}
	for _, f := range t.img.Files {
		files[path.Clean(f)] = true
	}
	for _, f := range t.plan.Files {
		if files[f.Path] && !f.Overwrite && f.Contents != nil {
			t.fail(f.JSONPath+".overwrite", "the image has %s: set overwrite to true to replace it", f.Path)
		}
	}
	for _, l := range t.plan.Links {
		if files[l.Path] && !l.Overwrite {
			t.fail(l.JSONPath+".overwrite", "the image has %s: set overwrite to true to replace it", l.Path)
		}
	}
}

// errPath prefixes err with the JSON path of the entry it concerns.
func errPath(at string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", at, err)
}
