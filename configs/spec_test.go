package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// base is the smallest valid spec; cases append to it.
const base = "name: t\nversion: 1.0.0\n"

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		check func(t *testing.T, s *Spec)
	}{
		{"defaults", base, func(t *testing.T, s *Spec) {
			want := Spec{
				Name: "t", Version: "1.0.0", Hostname: "t",
				Kernel:  Kernel{Package: "linux-image-amd64"},
				Disk:    Disk{Size: 3 * GiB, ESP: 256 * MiB, Root: 1 * GiB},
				Console: []string{"tty0", "ttyS0,115200"},
			}
			if !reflect.DeepEqual(*s, want) {
				t.Errorf("got  %+v\nwant %+v", *s, want)
			}
		}},
		{"sizes", base + "disk:\n  size: 8G\n  esp: 512MiB\n  root: 1.5GiB\n", func(t *testing.T, s *Spec) {
			want := Disk{Size: 8 * GiB, ESP: 512 * MiB, Root: 1536 * MiB}
			if s.Disk != want {
				t.Errorf("disk = %+v; want %+v", s.Disk, want)
			}
		}},
		{"size in bytes", base + "disk:\n  size: 4294967296\n  root: \"1073741824\"\n", func(t *testing.T, s *Spec) {
			if s.Disk.Size != 4*GiB || s.Disk.Root != GiB {
				t.Errorf("disk = %+v", s.Disk)
			}
		}},
		{"disk exactly large enough", base + "disk:\n  size: 2370MiB\n", func(t *testing.T, s *Spec) {
			if got := s.Disk.StateSize(); got != MinState {
				t.Errorf("StateSize = %d; want %d", got, MinState)
			}
		}},
		{"vmlinuz kernel has no default package", base + "kernel:\n  vmlinuz: k/bzImage\n  modules_dir: k/modules\n", func(t *testing.T, s *Spec) {
			if s.Kernel.Package != "" {
				t.Errorf("package = %q; want none", s.Kernel.Package)
			}
		}},
		{"kernel fields", base + "kernel:\n  package: linux-image-6.1.0-18-amd64\n  args: [quiet, panic=10, console=ttyS1]\n" +
			"  initramfs_modules: [e1000e, kernel/drivers/net/ethernet/intel]\n  modules: [virtio_net]\n", func(t *testing.T, s *Spec) {
			k := s.Kernel
			if k.Package != "linux-image-6.1.0-18-amd64" || len(k.Args) != 3 || k.InitramfsModules[1] != "kernel/drivers/net/ethernet/intel" || k.Modules[0] != "virtio_net" {
				t.Errorf("kernel = %+v", k)
			}
		}},
		{"services and restart default", base + "services:\n- name: web\n  command: /usr/bin/web\n  args: [--port, \"80\"]\n  env: {PORT: \"80\", _X: y}\n" +
			"- name: node.exporter_2\n  command: /bin/x\n  restart: always\n", func(t *testing.T, s *Spec) {
			want := []Service{
				{Name: "web", Command: "/usr/bin/web", Args: []string{"--port", "80"}, Env: map[string]string{"PORT": "80", "_X": "y"}, Restart: "on-failure"},
				{Name: "node.exporter_2", Command: "/bin/x", Restart: "always"},
			}
			if !reflect.DeepEqual(s.Services, want) {
				t.Errorf("services = %+v", s.Services)
			}
		}},
		{"files and modes", base + "root:\n  files:\n  - {src: motd, dst: /etc/motd, mode: \"0644\"}\n  - {src: bin, dst: /usr/local/bin, mode: 755}\n" +
			"  - {src: x, dst: /opt/x, mode: 0o4750}\n  - {src: y, dst: /etc/y}\n  - {src: z, dst: /variable/z}\n", func(t *testing.T, s *Spec) {
			modes := []Mode{0o644, 0o755, 0o4750, 0, 0}
			for i, f := range s.Root.Files {
				if f.Mode != modes[i] {
					t.Errorf("files[%d].mode = %o; want %o", i, f.Mode, modes[i])
				}
			}
		}},
		{"hostname, console, network", base + "hostname: node1.example.com\nconsole: [ttyS1]\nnetwork: {dhcp: true}\n", func(t *testing.T, s *Spec) {
			if s.Hostname != "node1.example.com" || !slices.Equal(s.Console, []string{"ttyS1"}) || !s.Network.DHCP {
				t.Errorf("got %+v", s)
			}
		}},
		{"prerelease version", "name: t\nversion: 2.0.0-rc.1\n", func(t *testing.T, s *Spec) {
			if s.Version != "2.0.0-rc.1" {
				t.Errorf("version = %q", s.Version)
			}
		}},
		{"anchors and merge keys", base + "services:\n- &svc {name: a, command: /bin/a, restart: never}\n- <<: *svc\n  name: b\n", func(t *testing.T, s *Spec) {
			if len(s.Services) != 2 || s.Services[1].Name != "b" || s.Services[1].Restart != "never" {
				t.Errorf("services = %+v", s.Services)
			}
		}},
		{"trailing document marker", base + "---\n", func(t *testing.T, s *Spec) {}},
		{"null fields keep defaults", base + "disk:\n  size:\nconsole:\n", func(t *testing.T, s *Spec) {
			if s.Disk.Size != DefaultDiskSize || len(s.Console) != 2 {
				t.Errorf("got %+v", s)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.yaml), "t.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tc.check(t, s)
		})
	}
}

func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		paths []string // every error, in order
		msg   string   // part of the first error
		line  int      // of the first error; 0: not checked
	}{
		{"bad YAML", "name: [t\n", []string{"$"}, "invalid YAML at column 7: sequence end token ']' not found", 1},
		{"bad indentation", "name: t\n  version: 1.0.0\n", []string{"$"}, "invalid YAML at column 7", 1},
		{"tab indentation", "name: t\nkernel:\n\targs: [a]\n", []string{"$"}, "invalid YAML at column", 3},
		{"empty file", "", []string{"$"}, "empty spec", 0},
		{"only comments", "# nothing\n", []string{"$"}, "empty spec", 0},
		{"two documents", base + "---\n" + base, []string{"$"}, "more than one YAML document", 4},
		{"not a mapping", "- a\n", []string{"$"}, "expected a mapping", 1},
		{"unknown top-level field", base + "colour: red\n", []string{"$.colour"}, "unknown field (allowed here: name, version", 3},
		{"unknown nested field", base + "disk:\n  sizes: 4GiB\n", []string{"$.disk.sizes"}, "allowed here: size, esp, root", 4},
		{"unknown field in a list item", base + "services:\n- name: a\n  command: /a\n  restrat: always\n", []string{"$.services[0].restrat"}, "unknown field", 6},
		{"duplicate key", base + "name: u\n", []string{"$.name"}, "duplicate key (first at line 1)", 3},
		{"custom tag", base + "kernel:\n  args: !x [a]\n", []string{"$.kernel.args"}, `tag "!x" is not allowed`, 4},
		{"tag without a value", base + "kernel:\n  args: !!seq\n", []string{"$.kernel.args"}, "without a value", 4},
		{"wrong type", base + "network:\n  dhcp: maybe\n", []string{"$.network.dhcp"}, "expected true or false", 4},
		{"list for a string", base + "hostname: [a]\n", []string{"$.hostname"}, "expected a string, found a list", 3},
		{"bad size", base + "disk:\n  root: 12XB\n", []string{"$.disk.root"}, `"12XB" is not a size`, 4},
		{"negative size", base + "disk:\n  size: -4GiB\n", []string{"$.disk.size"}, "negative", 4},
		{"negative integer size", base + "disk:\n  esp: -1\n", []string{"$.disk.esp"}, "negative", 4},
		{"zero size", base + "disk:\n  root: 0\n", []string{"$.disk.root"}, "leave the field out", 4},
		{"ambiguous unit", base + "disk:\n  size: 4GB\n", []string{"$.disk.size"}, "ambiguous", 4},
		{"size overflow", base + "disk:\n  size: 9999999TiB\n", []string{"$.disk.size"}, "larger than", 4},
		{"size not MiB aligned", base + "disk:\n  esp: 300000000\n", []string{"$.disk.esp"}, "not a multiple of 1MiB", 4},
		{"ESP too small", base + "disk:\n  esp: 16MiB\n", []string{"$.disk.esp"}, "between 32MiB and 4GiB", 4},
		{"ESP too large", base + "disk:\n  size: 64GiB\n  esp: 5GiB\n", []string{"$.disk.esp"}, "between 32MiB and 4GiB", 5},
		{"root too small", base + "disk:\n  root: 32MiB\n", []string{"$.disk.root"}, "at least 64MiB", 4},
		{"root larger than the disk", base + "disk:\n  size: 4GiB\n  root: 3GiB\n", []string{"$.disk.size"}, "root slots are larger than the disk: 4GiB is less than ESP 256MiB + 2 × root 3GiB", 4},
		{"disk one MiB too small", base + "disk:\n  size: 2369MiB\n", []string{"$.disk.size"}, "disk is too small", 4},
		{"root overflows", base + "disk:\n  size: 4GiB\n  root: 4194304TiB\n", []string{"$.disk.root"}, "too large", 5},
		{"missing name", "version: 1.0.0\nhostname: h\n", []string{"$.name"}, "required", 0},
		{"bad name", "name: Slate\nversion: 1.0.0\nhostname: h\n", []string{"$.name"}, "lowercase", 1},
		{"long name", "name: " + strings.Repeat("a", 64) + "\nversion: 1.0.0\nhostname: h\n", []string{"$.name"}, "at most 63", 1},
		{"name ending in a dash makes a bad hostname", "name: t-\nversion: 1.0.0\n", []string{"$.hostname"}, "hostname defaults to name", 0},
		{"missing version", "name: t\n", []string{"$.version"}, "required", 0},
		{"bad version", "name: t\nversion: 1.0\n", []string{"$.version"}, `"1.0" is not a semantic version`, 2},
		{"version with leading zero", "name: t\nversion: 1.02.0\n", []string{"$.version"}, "not a semantic version", 2},
		{"version with build", "name: t\nversion: 1.0.0+git.abc\n", []string{"$.version"}, "'+' is not allowed", 2},
		{"bad hostname", base + "hostname: -node\n", []string{"$.hostname"}, "not a valid hostname", 3},
		{"hostname too long", base + "hostname: " + strings.Repeat("a.", 33) + "a\n", []string{"$.hostname"}, "at most 64", 3},
		{"vmlinuz without modules_dir", base + "kernel:\n  vmlinuz: k/bzImage\n", []string{"$.kernel.modules_dir"}, "required when vmlinuz is set", 3},
		{"modules_dir without vmlinuz", base + "kernel:\n  modules_dir: k/modules\n", []string{"$.kernel.vmlinuz"}, "required when modules_dir is set", 3},
		{"package and vmlinuz", base + "kernel:\n  package: linux-image-amd64\n  vmlinuz: k\n  modules_dir: m\n", []string{"$.kernel.package"}, "both set", 4},
		{"bad package", base + "kernel:\n  package: -oDebug::pkgProblemResolver=1\n", []string{"$.kernel.package"}, "not a Debian package name", 4},
		{"reserved kernel args", base + "kernel:\n  args: [quiet, root=/dev/sda2, init=/bin/sh, slate.slot=b, rootwait]\n",
			[]string{"$.kernel.args[1]", "$.kernel.args[2]", "$.kernel.args[3]"}, "slate sets root=", 4},
		{"reserved RAM-root and quoted args", base + "kernel:\n  args: [slate.root_url=http://x/r, '\"root=/dev/sda2\"', slate.rootwait=5]\n",
			[]string{"$.kernel.args[0]", "$.kernel.args[1]"}, "slate sets slate.root_url=", 4},
		{"kernel arg with a space", base + "kernel:\n  args: [\"console=ttyS0 quiet\"]\n", []string{"$.kernel.args[0]"}, "whitespace", 4},
		{"module path with ..", base + "kernel:\n  modules: [kernel/../../etc]\n", []string{"$.kernel.modules[0]"}, "not a clean folder", 4},
		{"absolute module path", base + "kernel:\n  initramfs_modules: [/lib/modules/x]\n", []string{"$.kernel.initramfs_modules[0]"}, "relative to the module tree", 4},
		{"bad module name", base + "kernel:\n  modules: [e1000e, \"bad name\"]\n", []string{"$.kernel.modules[1]"}, "not a module name", 4},
		{"file without src", base + "root:\n  files:\n  - dst: /etc/x\n", []string{"$.root.files[0].src"}, "required", 5},
		{"relative dst", base + "root:\n  files:\n  - {src: a, dst: etc/x}\n", []string{"$.root.files[0].dst"}, "not absolute", 5},
		{"unclean dst", base + "root:\n  files:\n  - {src: a, dst: /etc/../x}\n  - {src: a, dst: /etc/}\n",
			[]string{"$.root.files[0].dst", "$.root.files[1].dst"}, "write /x", 5},
		{"dst under /var", base + "root:\n  files:\n  - {src: a, dst: /var/lib/app}\n", []string{"$.root.files[0].dst"}, "the writable STATE partition is mounted on /var", 5},
		{"dst is slate", base + "root:\n  files:\n  - {src: a, dst: /sbin/init}\n  - {src: a, dst: /usr/lib/slate/image.json}\n",
			[]string{"$.root.files[0].dst", "$.root.files[1].dst"}, "slate binary", 5},
		{"dst is the root", base + "root:\n  files:\n  - {src: a, dst: /}\n", []string{"$.root.files[0].dst"}, "whole root", 5},
		{"duplicate dst", base + "root:\n  files:\n  - {src: a, dst: /etc/x}\n  - {src: b, dst: /etc/y}\n  - {src: c, dst: /etc/x}\n", []string{"$.root.files[2].dst"}, "already the dst", 7},
		{"bad mode", base + "root:\n  files:\n  - {src: a, dst: /etc/x, mode: \"0999\"}\n", []string{"$.root.files[0].mode"}, `"0999" is not a mode`, 5},
		{"mode too large", base + "root:\n  files:\n  - {src: a, dst: /etc/x, mode: 10000}\n", []string{"$.root.files[0].mode"}, "larger than 07777", 5},
		{"service without name and command", base + "services:\n- args: [x]\n", []string{"$.services[0].command", "$.services[0].name"}, "required", 4},
		{"bad service name", base + "services:\n- {name: Web, command: /a}\n", []string{"$.services[0].name"}, "not a valid service name", 4},
		{"duplicate service", base + "services:\n- {name: a, command: /a}\n- {name: b, command: /b}\n- {name: a, command: /c}\n", []string{"$.services[2].name"}, `duplicate service "a"`, 6},
		{"bad restart", base + "services:\n- {name: a, command: /a, restart: sometimes}\n", []string{"$.services[0].restart"}, "use always, on-failure or never", 4},
		{"relative command", base + "services:\n- {name: a, command: app}\n", []string{"$.services[0].command"}, "not an absolute path", 4},
		{"command with arguments", base + "services:\n- {name: a, command: /bin/app -v}\n", []string{"$.services[0].command"}, "put its arguments in args", 4},
		{"bad env key", base + "services:\n- name: a\n  command: /a\n  env:\n    1X: a\n    GOOD: b\n    A-B: c\n",
			[]string{"$.services[0].env.A-B", `$.services[0].env["1X"]`}, "not a valid variable name", 9},
		{"bad console", base + "console: [\"\", ttyS0 115200, console=ttyS0]\n", []string{"$.console[0]", "$.console[1]", "$.console[2]"}, "empty console", 3},
		{"unquoted console options", base + "console: [ttyS0,115200]\n", []string{"$.console[1]"}, "quote entries with options", 3},
		{"many problems, sorted", "name: T\nversion: x\ndisk:\n  esp: 1MiB\nservices:\n- {name: a, command: a}\n",
			[]string{"$.disk.esp", "$.name", "$.services[0].command", "$.version"}, "between 32MiB", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.yaml), "bad.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", s)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with an error")
			}
			var first *Error
			if !errors.As(err, &first) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			var paths []string
			var list ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					paths = append(paths, e.Path)
				}
			} else {
				paths = []string{first.Path}
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("paths %q; want %q\n%v", paths, tc.paths, err)
			}
			if !strings.Contains(first.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", first.Msg, tc.msg)
			}
			if first.File != "bad.yaml" {
				t.Errorf("file %q", first.File)
			}
			if tc.line != 0 && first.Line != tc.line {
				t.Errorf("line %d; want %d (%v)", first.Line, tc.line, err)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse([]byte("name: t\nversion: 1.0.0\ndisk:\n  root: 12XB\n"), "configs/default.yaml")
	const want = `configs/default.yaml:4: $.disk.root: "12XB" is not a size: `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v; want it to start with %q", err, want)
	}
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Path: "$.disk.root", Msg: `"12XB" is not a size`}, `a.yaml: $.disk.root: "12XB" is not a size`},
		{Error{File: "a.yaml", Path: "$.disk.root", Line: 12, Msg: "m"}, `a.yaml:12: $.disk.root: m`},
		{Error{Path: "$.name", Msg: "required"}, `$.name: required`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q; want %q", got, tc.want)
		}
	}
}

func TestErrorListOrder(t *testing.T) {
	s := &Spec{Name: "t", Version: "1.0.0"}
	for i := range 12 {
		cmd := "/bin/x"
		if i == 2 || i == 10 {
			cmd = "x"
		}
		s.Services = append(s.Services, Service{Name: string(rune('a' + i)), Command: cmd})
	}
	s.SetDefaults()
	err := s.Validate()
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("got %v", err)
	}
	if list[0].Path != "$.services[2].command" || list[1].Path != "$.services[10].command" {
		t.Errorf("order: %s, %s", list[0].Path, list[1].Path)
	}
	if strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("want one problem per line: %q", err.Error())
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	s := &Spec{Name: "t", Version: "1.0.0", Root: Root{Files: []File{{Src: "a", Dst: "/etc/a", Mode: 0o10000}}}}
	s.SetDefaults()
	err := s.Validate()
	var e *Error
	if !errors.As(err, &e) || e.Path != "$.root.files[0].mode" || e.Line != 0 || e.File != "" {
		t.Errorf("got %#v", err)
	}
}

func TestLoadDefault(t *testing.T) {
	s, err := Load("default.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wd, _ := os.Getwd()
	if s.Dir != wd {
		t.Errorf("Dir = %q; want %q", s.Dir, wd)
	}
	if s.Name != "slate-demo" || s.Version != "1.0.0" || s.Hostname != "slate" {
		t.Errorf("identity: %+v", s)
	}
	want := []Service{{Name: "hello", Command: "/usr/bin/slate", Args: []string{"version"}, Restart: "never"}}
	if !reflect.DeepEqual(s.Services, want) {
		t.Errorf("services: %+v", s.Services)
	}
	if err := s.CheckFiles(); err != nil {
		t.Errorf("CheckFiles: %v", err)
	}
	if got, want := s.Disk.StateSize(), int64(3*GiB-2*MiB-256*MiB-2*GiB); got != want {
		t.Errorf("StateSize = %d; want %d", got, want)
	}
}

// TestDocExamples parses every YAML example of the README (its spec reference), so the
// reference cannot drift from the parser. Fragments get the required fields.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 10 {
		t.Fatalf("found %d YAML examples", len(blocks))
	}
	for i, b := range blocks {
		y := b[1]
		if !regexp.MustCompile(`(?m)^name:`).MatchString(y) {
			y = "name: t\n" + y
		}
		if !regexp.MustCompile(`(?m)^version:`).MatchString(y) {
			y = "version: 1.0.0\n" + y
		}
		if _, err := Parse([]byte(y), fmt.Sprintf("README example %d", i+1)); err != nil {
			t.Errorf("%v\n%s", err, y)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(base+"#"+strings.Repeat("x", MaxSpecSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var e *Error
	if _, err := Load(big); !errors.As(err, &e) || !strings.Contains(e.Msg, "larger than") || e.File != big {
		t.Errorf("big file: %v", err)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("motd")
	write("kernel/bzImage")
	write("kernel/modules/6.1.0/modules.dep")
	write("overlay/etc/issue")
	write("evil/sbin/init")
	spec := func(extra string) *Spec {
		t.Helper()
		p := filepath.Join(dir, "spec.yaml")
		if err := os.WriteFile(p, []byte(base+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		yaml  string
		paths []string
		msg   string
	}{
		{"all present", "kernel:\n  vmlinuz: kernel/bzImage\n  modules_dir: kernel/modules/6.1.0\nroot:\n  files:\n" +
			"  - {src: motd, dst: /etc/motd}\n  - {src: overlay, dst: /opt}\n  - {src: " + filepath.Join(dir, "motd") + ", dst: /etc/abs}\n", nil, ""},
		{"missing content file", "root:\n  files:\n  - {src: motd, dst: /etc/motd}\n  - {src: nope/file, dst: /etc/nope}\n",
			[]string{"$.root.files[1].src"}, filepath.Join(dir, "nope/file") + " does not exist"},
		{"missing vmlinuz", "kernel:\n  vmlinuz: kernel/vmlinuz-6.1\n  modules_dir: kernel/modules/6.1.0\n",
			[]string{"$.kernel.vmlinuz"}, "does not exist"},
		{"missing modules_dir", "kernel:\n  vmlinuz: kernel/bzImage\n  modules_dir: kernel/modules/6.2\n",
			[]string{"$.kernel.modules_dir"}, "does not exist"},
		{"vmlinuz is a folder, modules_dir a file", "kernel:\n  vmlinuz: kernel\n  modules_dir: motd\n",
			[]string{"$.kernel.modules_dir", "$.kernel.vmlinuz"}, "is not a folder"},
		{"folder carries slate's init", "root:\n  files:\n  - {src: evil, dst: /}\n", nil, "whole root"},
		{"folder carries slate's init under /sbin's parent", "root:\n  files:\n  - {src: evil/sbin, dst: /sbin}\n", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "folder carries slate's init" {
				// dst / is refused by Validate already; check CheckFiles
				// on a spec built in code, as the builder may.
				s := spec("")
				s.Root.Files = []File{{Src: "evil", Dst: "/"}}
				checkPaths(t, s.CheckFiles(), []string{"$.root.files[0].src"}, "would be copied to /sbin/init")
				return
			}
			if strings.HasPrefix(tc.name, "folder carries slate's init under") {
				s := spec("")
				s.Root.Files = []File{{Src: "evil/sbin", Dst: "/sbin"}}
				checkPaths(t, s.CheckFiles(), []string{"$.root.files[0].src"}, "would be copied to /sbin/init")
				return
			}
			checkPaths(t, spec(tc.yaml).CheckFiles(), tc.paths, tc.msg)
		})
	}
}

func checkPaths(t *testing.T, err error, paths []string, msg string) {
	t.Helper()
	if paths == nil {
		if err != nil {
			t.Errorf("got %v", err)
		}
		return
	}
	var got []string
	var list ErrorList
	var e *Error
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			got = append(got, e.Path)
		}
	case errors.As(err, &e):
		got = []string{e.Path}
	default:
		t.Fatalf("got %v; want errors at %q", err, paths)
	}
	if !slices.Equal(got, paths) {
		t.Errorf("paths %q; want %q (%v)", got, paths, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%v does not say %q", err, msg)
	}
}

func TestPath(t *testing.T) {
	s := &Spec{Dir: "/srv/specs"}
	for in, want := range map[string]string{
		"motd": "/srv/specs/motd", "a/../b": "/srv/specs/b", "/etc/x": "/etc/x", "": "",
	} {
		if got := s.Path(in); got != want {
			t.Errorf("Path(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestStateSize(t *testing.T) {
	for _, tc := range []struct {
		d    Disk
		want int64
	}{
		{Disk{Size: 3 * GiB, ESP: 256 * MiB, Root: GiB}, int64(3*GiB - 2*MiB - 256*MiB - 2*GiB)},
		{Disk{Size: 3*GiB + 100, ESP: 256 * MiB, Root: GiB}, int64(3*GiB - 2*MiB - 256*MiB - 2*GiB)},
		{Disk{Size: GiB, ESP: 256 * MiB, Root: GiB}, -int64(GiB + 258*MiB)},
		{Disk{Size: GiB, ESP: 256 * MiB, Root: 1 << 62}, -1 << 63},
	} {
		if got := tc.d.StateSize(); got != tc.want {
			t.Errorf("%+v: StateSize = %d; want %d", tc.d, got, tc.want)
		}
	}
}

// TestRoundTrip checks that a parsed spec survives JSON and a YAML
// rewrite unchanged.
func TestRoundTrip(t *testing.T) {
	s, err := Parse([]byte(base+"disk: {size: 5GiB, root: 1.5GiB}\nroot:\n  files:\n  - {src: a, dst: /etc/a, mode: \"4755\"}\n"+
		"services:\n- {name: a, command: /a, env: {K: v}}\nnetwork: {dhcp: true}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func roundTrip(t *testing.T, s *Spec) {
	t.Helper()
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Spec
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatalf("JSON: %v\n%s", err, j)
	}
	if !reflect.DeepEqual(normal(&fromJSON), normal(s)) {
		t.Fatalf("JSON round trip:\n%+v\n%+v", fromJSON, *s)
	}
	if err := fromJSON.Validate(); err != nil {
		t.Fatalf("JSON copy does not validate: %v", err)
	}
	y, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := Parse(y, "marshalled.yaml")
	if err != nil {
		t.Fatalf("YAML: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(normal(fromYAML), normal(s)) {
		t.Fatalf("YAML round trip:\n%+v\n%+v\n%s", *fromYAML, *s, y)
	}
}

// normal makes empty lists and maps nil, which encoders do not keep apart.
func normal(s *Spec) Spec {
	c := *s
	nilIfEmpty := func(l []string) []string {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	c.Dir = ""
	c.Kernel.Args = nilIfEmpty(c.Kernel.Args)
	c.Kernel.Modules = nilIfEmpty(c.Kernel.Modules)
	c.Kernel.InitramfsModules = nilIfEmpty(c.Kernel.InitramfsModules)
	c.Console = nilIfEmpty(c.Console)
	if len(c.Root.Files) == 0 {
		c.Root.Files = nil
	}
	if len(c.Services) == 0 {
		c.Services = nil
	}
	c.Services = slices.Clone(c.Services)
	for i := range c.Services {
		c.Services[i].Args = nilIfEmpty(c.Services[i].Args)
		if len(c.Services[i].Env) == 0 {
			c.Services[i].Env = nil
		}
	}
	return c
}

func FuzzParse(f *testing.F) {
	if d, err := os.ReadFile("default.yaml"); err == nil {
		f.Add(string(d))
	}
	for _, s := range []string{
		base,
		base + "disk: {size: 8G, esp: 512MiB, root: 1.5GiB}\n",
		base + "kernel:\n  vmlinuz: k\n  modules_dir: m\n  args: [quiet]\n  modules: [kernel/drivers/net]\n",
		base + "root:\n  files:\n  - {src: a, dst: /etc/a, mode: \"0644\"}\n",
		base + "services:\n- &s {name: a, command: /a, env: {A: b}}\n- <<: *s\n  name: b\n",
		base + "console: [ttyS0]\nhostname: a.b\nnetwork: {dhcp: true}\n",
		base + "containers:\n- {name: w, image: 'r.example/w:1', ports: ['80:80/udp'], volumes: ['d:/d:ro'], memory: 8MiB, health: {tcp: true, port: 80}}\nnetwork: {container_subnet: 10.9.0.0/24}\n",
		"name: [\n", "---\n---\n", "name: t\nname: t\n", base + "disk:\n  root: 12XB\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse([]byte(in), "fuzz.yaml")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Path, "$") || e.Msg == "" {
				t.Fatalf("error without a path: %T %v", err, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec does not re-validate: %v", err)
		}
		roundTrip(t, s)
	})
}

// TestParseLimits feeds inputs that made the YAML library take minutes
// (alias bombs, deep flow nesting, huge mappings): each must be refused
// quickly, with a message that says why.
func TestParseLimits(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString(base + "services:\n- &s0 {name: a, command: /a}\n")
	for i := 1; i < 25; i++ {
		fmt.Fprintf(&bomb, "- &s%d\n  <<: [*s%d, *s%d]\n", i, i-1, i-1)
	}
	var keys strings.Builder
	keys.WriteString(base + "services:\n- name: a\n  command: /a\n  env:\n")
	for i := 0; keys.Len() < MaxSpecSize-100; i++ {
		fmt.Fprintf(&keys, "    K%d: v\n", i)
	}
	for _, tc := range []struct {
		name, yaml, path, msg string
	}{
		{"alias bomb", bomb.String(), "$.services[", "aliases expand to more than"},
		{"deep flow nesting", base + "console: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n", "$", "nested more than 32 deep"},
		{"unclosed deep flow", strings.Repeat("[", 500000), "$", "YAML tokens"},
		{"huge mapping", keys.String(), "$", "YAML tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			took := time.Since(start)
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Path, tc.path) || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %v; want %q at %s", err, tc.msg, tc.path)
			}
			// Generous: the machine may be busy. Unbounded, these took
			// from 18 s to many minutes.
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}
