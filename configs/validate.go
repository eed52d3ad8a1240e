package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/version"
)

// MinState is the smallest STATE partition: room for /var, the writable
// layer of /etc and provisioning results on a first boot, before STATE is
// grown to the rest of the disk.
const MinState = 64 << 20

// Partition-size bounds.
const (
	// MinESP and MaxESP keep the ESP a valid FAT32 volume (FAT32 needs
	// at least 65525 clusters; its tools cap it at 4 GiB in practice)
	// with room for two kernels and initramfs images.
	MinESP = 32 * MiB
	MaxESP = 4 * GiB
	// MinRoot is the smallest root slot: slate, a module tree and the
	// spec's files.
	MinRoot = 64 * MiB
	// gptOverhead is the 1 MiB at the start (protective MBR, primary GPT,
	// alignment) plus the 1 MiB kept at the end for the backup GPT.
	gptOverhead = 2 * MiB
)

var (
	nameRe        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	packageRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	moduleNameRe  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	moduleSegRe   = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	envKeyRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelRe       = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

const (
	maxName     = 63
	maxHostname = 64 // HOST_NAME_MAX on Linux: sethostname refuses more
)

// ownedPaths are places in the root that the spec's files must not touch,
// with the reason given to the user.
var ownedPaths = []struct{ path, why string }{
	{"/usr/lib/slate", "slate's own files live there"},
	{"/sbin/init", "it is the slate binary"},
	{"/usr/bin/slate", "it is the slate binary"},
	{"/proc", "the kernel mounts proc there at boot"},
	{"/sys", "the kernel mounts sysfs there at boot"},
	{"/dev", "devtmpfs is mounted there at boot"},
	{"/run", "a tmpfs is mounted there at boot"},
	{"/var", "the writable STATE partition is mounted on /var at boot and hides what the image puts there; create state at run time instead"},
	{"/tmp", "a tmpfs is mounted there at boot"},
	{"/etc/passwd", "slate writes it from the spec's users; declare accounts there"},
	{"/etc/group", "slate writes it from the spec's users and groups; declare groups there"},
	{"/etc/shadow", "slate writes it from the spec's users (locked passwords); set passwords with Ignition"},
	{CABundlePath, "slate installs the CA bundle there; name your PEM file in root.ca_bundle"},
	{"/etc/machine-id", "each machine makes its own id on first boot; an id in the image would be every machine's, and the fleet's reboot lock, rollout waves and reports tell machines apart by it; set one per machine with Ignition"},
}

// Validate checks the spec without looking at the file system: every
// field's syntax and the rules between fields. It expects the defaults to
// be applied (Parse does that; see SetDefaults). It returns nil, an *Error,
// or an ErrorList with every problem sorted by path.
func (s *Spec) Validate() error {
	c := &collector{}
	s.validateIdentity(c)
	s.Kernel.validate(c, "$.kernel")
	s.Disk.validate(c, "$.disk")
	s.Root.validate(c, "$.root")
	validateServices(c, s.Services, "$.services", s.unitNames())
	s.validateContainers(c)
	s.validateCycles(c)
	s.validateAccounts(c)
	s.validateServiceUsers(c)
	s.validateFileOwners(c)
	s.validatePackages(c)
	s.validateSSH(c)
	if s.Update != nil {
		s.Update.validate(c, "$.update", s.Services, s.Containers)
	}
	for i, con := range s.Console {
		p := index("$.console", i)
		switch {
		case con == "":
			c.add(p, "empty console; write a device like ttyS0,115200 or tty0")
		case hasSpaceOrControl(con):
			c.add(p, "%q contains whitespace or control characters; write one console per entry", con)
		case strings.Contains(con, "="):
			c.add(p, "%q: write only the device and options (ttyS0,115200), slate adds console=", con)
		case !unicode.IsLetter(rune(con[0])):
			// [ttyS0,115200] is two entries in YAML; the second one lands here.
			c.add(p, "%q is not a console device (tty0, ttyS0,115200); quote entries with options: [\"ttyS0,115200\"]", con)
		}
	}
	return c.err()
}

func (s *Spec) validateIdentity(c *collector) {
	switch {
	case s.Name == "":
		c.add("$.name", "required: the image name, like slate-demo")
	case len(s.Name) > maxName:
		c.add("$.name", "%d characters; at most %d are allowed", len(s.Name), maxName)
	case !nameRe.MatchString(s.Name):
		c.add("$.name", "%q is not a valid name: use lowercase letters, digits and '-', starting with a letter or digit", s.Name)
	}

	switch {
	case s.Version == "":
		c.add("$.version", "required: a semantic version MAJOR.MINOR.PATCH[-prerelease], like 1.0.0")
	default:
		if err := version.Check(s.Version); err != nil {
			c.add("$.version", "%v", err)
		}
	}

	if msg := checkHostname(s.Hostname); msg != "" {
		if s.Hostname == s.Name {
			msg += " (hostname defaults to name; set hostname explicitly)"
		}
		c.add("$.hostname", "%s", msg)
	}
}

func checkHostname(h string) string {
	if h == "" {
		return "required"
	}
	if len(h) > maxHostname {
		return fmt.Sprintf("%d characters; Linux allows at most %d", len(h), maxHostname)
	}
	for _, label := range strings.Split(h, ".") {
		if !labelRe.MatchString(label) {
			return fmt.Sprintf("%q is not a valid hostname: dot-separated labels of letters, digits and '-', not starting or ending with '-', 1 to 63 characters each", h)
		}
	}
	return ""
}

func (k *Kernel) validate(c *collector, p string) {
	if k.Package != "" {
		switch {
		case k.Vmlinuz != "":
			c.add(key(p, "package"), "package and vmlinuz are both set; give one: a Debian kernel package, or vmlinuz with modules_dir")
		case !packageRe.MatchString(k.Package):
			c.add(key(p, "package"), "%q is not a Debian package name: lowercase letters, digits and . + -, starting with a letter or digit", k.Package)
		}
	}
	switch {
	case k.Vmlinuz != "" && k.ModulesDir == "":
		c.add(key(p, "modules_dir"), "required when vmlinuz is set: the kernel's /lib/modules/<version> tree")
	case k.Vmlinuz == "" && k.ModulesDir != "":
		c.add(key(p, "vmlinuz"), "required when modules_dir is set: the kernel image (bzImage) that goes with the modules")
	}
	for i, arg := range k.Args {
		ap := index(key(p, "args"), i)
		switch {
		case arg == "":
			c.add(ap, "empty argument")
		case hasSpaceOrControl(arg):
			c.add(ap, "%q contains whitespace or control characters; give each argument as its own entry", arg)
		default:
			if r, ok := cmdline.ReservedKey(arg); ok {
				c.add(ap, "%q: slate sets %s= itself in boot entries (reserved: %s)", arg, r, cmdline.ReservedList())
			}
		}
	}
	checkModules(c, key(p, "initramfs_modules"), k.InitramfsModules)
	checkModules(c, key(p, "modules"), k.Modules)
}

func checkModules(c *collector, p string, mods []string) {
	for i, m := range mods {
		mp := index(p, i)
		if !strings.Contains(m, "/") {
			if !moduleNameRe.MatchString(m) {
				c.add(mp, "%q is not a module name (letters, digits, '_' and '-') or a folder of the module tree (kernel/drivers/...)", m)
			}
			continue
		}
		if strings.HasPrefix(m, "/") {
			c.add(mp, "%q: module folders are relative to the module tree, like kernel/drivers/net", m)
			continue
		}
		ok := path.Clean(m) == m
		for _, seg := range strings.Split(m, "/") {
			if seg == ".." || !moduleSegRe.MatchString(seg) {
				ok = false
			}
		}
		if !ok {
			c.add(mp, "%q is not a clean folder of the module tree: no '..', '.', empty parts or trailing '/', like kernel/drivers/net", m)
		}
	}
}

func (d *Disk) validate(c *collector, p string) {
	sizes := []struct {
		name string
		v    Size
	}{{"size", d.Size}, {"esp", d.ESP}, {"root", d.Root}}
	ok := true
	for _, sz := range sizes {
		switch {
		case sz.v <= 0:
			c.add(key(p, sz.name), "%s: must be a positive size", sz.v)
			ok = false
		case sz.v%MiB != 0:
			c.add(key(p, sz.name), "%s (%d bytes) is not a multiple of 1MiB; partitions are 1 MiB aligned", sz.v, int64(sz.v))
			ok = false
		}
	}
	if d.ESP > 0 && (d.ESP < MinESP || d.ESP > MaxESP) {
		c.add(key(p, "esp"), "%s is out of range: the ESP (FAT32) must be between %s and %s", d.ESP, MinESP, MaxESP)
		ok = false
	}
	if d.Root > 0 && d.Root < MinRoot {
		c.add(key(p, "root"), "%s is too small: a root slot needs at least %s", d.Root, MinRoot)
		ok = false
	}
	if !ok {
		return
	}
	need, fits := d.needed()
	if !fits {
		c.add(key(p, "root"), "%s is too large: two root slots do not fit in any disk", d.Root)
		return
	}
	if d.Size < need {
		what := "disk is too small"
		if 2*d.Root >= d.Size {
			what = "root slots are larger than the disk"
		}
		c.add(key(p, "size"), "%s: %s is less than ESP %s + 2 × root %s + STATE %s + %s for the partition tables = %s; grow disk.size or shrink disk.root",
			what, d.Size, d.ESP, d.Root, Size(MinState), gptOverhead, need)
	}
}

// needed is the smallest disk for the partitions, and false on overflow.
func (d Disk) needed() (Size, bool) {
	const limit = math.MaxInt64
	if d.ESP < 0 || d.Root < 0 || int64(d.Root) > (limit-int64(gptOverhead)-MinState-int64(MaxESP))/2 || d.ESP > MaxESP {
		return 0, false
	}
	return gptOverhead + d.ESP + 2*d.Root + MinState, true
}

// StateSize is what is left for the STATE partition: Size minus 1 MiB at
// the start (protective MBR, GPT, alignment), the ESP, both root slots and
// 1 MiB for the backup GPT, rounded down to 1 MiB. It is negative when the
// other partitions do not fit, and math.MinInt64 when they overflow.
func (d Disk) StateSize() int64 {
	if d.ESP < 0 || d.Root < 0 || int64(d.Root) > math.MaxInt64/4 || int64(d.ESP) > math.MaxInt64/4 {
		return math.MinInt64
	}
	left := int64(d.Size) - int64(gptOverhead) - int64(d.ESP) - 2*int64(d.Root)
	// Floor to a multiple of 1 MiB (two's complement: also right for
	// negative values).
	return left &^ (int64(MiB) - 1)
}

func (r *Root) validate(c *collector, p string) {
	seen := map[string]bool{}
	for i, f := range r.Files {
		fp := index(key(p, "files"), i)
		if f.Src == "" {
			c.add(key(fp, "src"), "required: a host file or folder, relative to the spec")
		} else if strings.ContainsRune(f.Src, 0) {
			c.add(key(fp, "src"), "contains a NUL byte")
		}
		if f.Mode > MaxMode {
			c.add(key(fp, "mode"), "%#o is larger than %#o", uint32(f.Mode), uint32(MaxMode))
		}
		dp := key(fp, "dst")
		if msg := checkDst(f.Dst); msg != "" {
			c.add(dp, "%s", msg)
			continue
		}
		if seen[f.Dst] {
			c.add(dp, "%s is already the dst of an earlier file", f.Dst)
		}
		seen[f.Dst] = true
	}
	if strings.ContainsRune(r.CABundle, 0) {
		c.add(key(p, "ca_bundle"), "contains a NUL byte")
	}
}

func checkDst(dst string) string {
	switch {
	case dst == "":
		return "required: an absolute path in the root, like /etc/motd"
	case strings.ContainsRune(dst, 0):
		return "contains a NUL byte"
	case !strings.HasPrefix(dst, "/"):
		return fmt.Sprintf("%q is not absolute; write the path in the root, like /etc/motd", dst)
	case dst == "/":
		return "/ would replace the whole root; name a file or folder inside it"
	case path.Clean(dst) != dst:
		return fmt.Sprintf("%q is not clean (no '..', '.', '//' or trailing '/'); write %s", dst, path.Clean(dst))
	}
	for _, o := range ownedPaths {
		if dst == o.path || strings.HasPrefix(dst, o.path+"/") {
			return fmt.Sprintf("%s is under %s: %s", dst, o.path, o.why)
		}
	}
	return ""
}

// validateServices checks each service; after and requires may name any
// of names (services and containers).
func validateServices(c *collector, svcs []Service, p string, names map[string]bool) {
	seen := map[string]bool{}
	for i, s := range svcs {
		sp := index(p, i)
		nameOK := true
		for _, pr := range CheckService(s) {
			c.add(pr.at(sp), "%s", pr.Msg)
			nameOK = nameOK && pr.Field != "name"
		}
		if msg := CheckSpecCommand(s.Command); msg != "" {
			c.add(key(sp, "command"), "%s", msg)
		}
		if nameOK && seen[s.Name] {
			c.add(key(sp, "name"), "duplicate service %q; service names must be unique", s.Name)
		}
		seen[s.Name] = true
		for _, field := range []struct {
			key   string
			names []string
		}{{"after", s.After}, {"requires", s.Requires}} {
			for j, n := range field.names {
				if !names[n] {
					c.add(index(key(sp, field.key), j), "no service or container is named %q", n)
				}
			}
		}
	}
}

func badUser(u string) bool {
	return u != "" && (len(u) > 32 || strings.ContainsAny(u, ":,/") || strings.ContainsFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }))
}

// absPath describes what is wrong with a path in the booted system, or
// returns "".
func absPath(p string) string {
	switch {
	case p == "":
		return "empty path"
	case strings.ContainsRune(p, 0):
		return "contains a NUL byte"
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is not an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not clean (no '..', '.', '//' or trailing '/'); write %s", p, path.Clean(p))
	}
	return ""
}

func hasSpaceOrControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// Path resolves a path of the spec against Dir; absolute paths stay as
// they are.
func (s *Spec) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}

// CheckFiles checks that the host paths the spec names exist: every
// root.files[].src, and kernel.vmlinuz (a file) and kernel.modules_dir (a
// folder) when set, each resolved with Path. It also refuses a folder copied
// over a slate-owned path (a src folder with sbin/init in it copied to /).
// It returns nil, an *Error or an ErrorList.
func (s *Spec) CheckFiles() error {
	c := &collector{}
	for i, f := range s.Root.Files {
		if f.Src == "" {
			continue // Validate reports it
		}
		p := key(index("$.root.files", i), "src")
		st, ok := stat(c, p, s.Path(f.Src))
		if !ok || !st.IsDir() {
			continue
		}
		// A folder copied to a parent of an owned path must not carry
		// that path along (dst /usr with src containing lib/slate).
		for _, o := range ownedPaths {
			rel, ok := strings.CutPrefix(o.path, strings.TrimSuffix(f.Dst, "/")+"/")
			if !ok || f.Dst == "" {
				continue
			}
			inside := filepath.Join(s.Path(f.Src), filepath.FromSlash(rel))
			if _, err := os.Lstat(inside); err == nil {
				c.add(p, "%s would be copied to %s: %s", inside, o.path, o.why)
			}
		}
	}
	if b := s.Root.CABundle; b != "" {
		if st, ok := stat(c, "$.root.ca_bundle", s.Path(b)); ok {
			if !st.Mode().IsRegular() {
				c.add("$.root.ca_bundle", "%s is not a regular file", s.Path(b))
			} else if err := CheckCABundle(s.Path(b)); err != nil {
				c.add("$.root.ca_bundle", "%v", err)
			}
		}
	}
	if v := s.Kernel.Vmlinuz; v != "" {
		if st, ok := stat(c, "$.kernel.vmlinuz", s.Path(v)); ok && !st.Mode().IsRegular() {
			c.add("$.kernel.vmlinuz", "%s is not a regular file", s.Path(v))
		}
	}
	if m := s.Kernel.ModulesDir; m != "" {
		if st, ok := stat(c, "$.kernel.modules_dir", s.Path(m)); ok && !st.IsDir() {
			c.add("$.kernel.modules_dir", "%s is not a folder", s.Path(m))
		}
	}
	if s.Ignition != "" {
		if st, ok := stat(c, "$.ignition", s.Path(s.Ignition)); ok && !st.Mode().IsRegular() {
			c.add("$.ignition", "%s is not a regular file", s.Path(s.Ignition))
		}
	}
	s.parseKeys(c) // update.public_key(s): ed25519 public keys only
	return c.err()
}

// stat follows symlinks (a spec may point at a link to a kernel) and
// reports a missing or unreadable path at p.
func stat(c *collector, p, host string) (fs.FileInfo, bool) {
	st, err := os.Stat(host)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			c.add(p, "%s does not exist", host)
		} else {
			c.add(p, "%v", err)
		}
		return nil, false
	}
	return st, true
}
