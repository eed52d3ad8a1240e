package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
)

func newTestFS(t *testing.T) *ext4fs.FS {
	t.Helper()
	fsys, err := ext4fs.New(ext4fs.Options{Size: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

func lookup(t *testing.T, fsys *ext4fs.FS, p string) ext4fs.Entry {
	t.Helper()
	e, err := fsys.Lookup(p)
	if err != nil {
		t.Fatalf("%s is not in the image: %v", p, err)
	}
	return e
}

func writeFile(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Chmod: WriteFile's mode is filtered by the umask and drops setuid.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestAddContentModes: a host file's setuid and setgid bits do not reach
// the image (where every file belongs to root) unless the spec's mode
// sets them.
func TestAddContentModes(t *testing.T) {
	tests := []struct {
		name  string
		host  fs.FileMode
		mode  configs.Mode
		want  fs.FileMode
		inDir bool
	}{
		{"setuid host file", 0o755 | fs.ModeSetuid, 0, 0o755, false},
		{"setgid host file", 0o755 | fs.ModeSetgid, 0, 0o755, false},
		{"setuid and setgid in a folder", 0o750 | fs.ModeSetuid | fs.ModeSetgid, 0, 0o750, true},
		{"sticky is kept", 0o644 | fs.ModeSticky, 0, 0o644 | fs.ModeSticky, false},
		{"plain file", 0o640, 0, 0o640, false},
		{"setuid asked for by the spec", 0o755, 0o4755, 0o755 | fs.ModeSetuid, false},
		{"setgid asked for by the spec in a folder", 0o755 | fs.ModeSetuid, 0o2711, 0o711 | fs.ModeSetgid, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var src string
			dst := "/usr/local/bin/prog"
			writeFile(t, filepath.Join(dir, "tree", "prog"), tt.host)
			if tt.inDir {
				src, dst = "tree", "/opt/tree"
			} else {
				src = "tree/prog"
			}
			spec := &configs.Spec{Dir: dir}
			fsys := newTestFS(t)
			if err := addContent(fsys, spec, configs.File{Src: src, Dst: dst, Mode: tt.mode}, logrus.StandardLogger()); err != nil {
				t.Fatal(err)
			}
			p := dst
			if tt.inDir {
				p = dst + "/prog"
			}
			e := lookup(t, fsys, p)
			if e.Mode != tt.want || e.UID != 0 || e.GID != 0 {
				t.Errorf("%s in the image: mode %v owner %d:%d, want %v root", p, e.Mode, e.UID, e.GID, tt.want)
			}
		})
	}
}

// TestAddContentLinks: a symbolic link named as src is followed (as the
// validation follows it); links inside a copied folder stay links with
// their target as written, even when it points outside the folder.
func TestAddContentLinks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real", "tool"), 0o755)
	writeFile(t, filepath.Join(dir, "real", "lib", "data"), 0o644)
	writeFile(t, filepath.Join(dir, "secret"), 0o600)
	links := map[string]string{
		"file-link":      "real/tool",
		"dir-link":       "real",
		"real/rel":       "tool",
		"real/abs":       "/usr/bin/slate",
		"real/escape":    "../../secret",
		"real/dangling":  "nothing-here",
		"real/lib/up":    "../tool",
		"link-to-link":   "file-link",
		"real/host-file": filepath.Join(dir, "secret"),
		"real/state":     "/var/lib/app/state",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	spec := &configs.Spec{Dir: dir}
	fsys := newTestFS(t)
	spec.Root.Files = []configs.File{
		{Src: "file-link", Dst: "/usr/bin/tool"},
		{Src: "link-to-link", Dst: "/usr/bin/tool2"},
		{Src: "dir-link", Dst: "/opt/real"},
	}
	for _, f := range spec.Root.Files {
		if err := addContent(fsys, spec, f, logrus.StandardLogger()); err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
	}
	for _, p := range []string{"/usr/bin/tool", "/usr/bin/tool2", "/opt/real/tool", "/opt/real/lib/data"} {
		if e := lookup(t, fsys, p); !e.Mode.IsRegular() || e.Size != int64(len("#!/bin/sh\n")) {
			t.Errorf("%s: mode %v size %d, want the regular file the link names", p, e.Mode, e.Size)
		}
	}
	if e := lookup(t, fsys, "/opt/real"); !e.Mode.IsDir() {
		t.Errorf("/opt/real is %v, want the folder the link names", e.Mode)
	}
	// The links that lead nowhere in the image are named in warnings.
	var warned strings.Builder
	log := logrus.New()
	log.SetOutput(&warned)
	warnDanglingLinks(fsys, spec, log)
	for l, want := range map[string]bool{"rel": false, "abs": true, "escape": true, "dangling": true, "lib/up": false, "host-file": true, "state": false} {
		if got := strings.Contains(warned.String(), "link=/opt/real/"+l+" "); got != want {
			t.Errorf("warning about /opt/real/%s: %v, want %v\n%q", l, got, want, warned.String())
		}
	}
	for _, l := range []string{"rel", "abs", "escape", "dangling", "lib/up", "host-file", "state"} {
		e := lookup(t, fsys, "/opt/real/"+l)
		if e.Mode&fs.ModeSymlink == 0 || e.Target != links["real/"+l] {
			t.Errorf("/opt/real/%s: mode %v target %q, want a link to %q", l, e.Mode, e.Target, links["real/"+l])
		}
	}
}

func TestAccountFiles(t *testing.T) {
	spec, err := configs.Parse([]byte(`name: acc
version: 1.0.0
users:
  - {name: web, uid: 1000}
  - {name: db, uid: 1001, gid: 2000, home: /srv/db, shell: /bin/sh}
  - {name: log, uid: 1002, gid: 65534}
groups:
  - {name: data, gid: 2000}
services:
  - {name: web, command: /usr/bin/slate, user: web}
  - {name: db, command: /usr/bin/slate, user: "1001"}
`), "acc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	passwd, group, shadow := accountFiles(spec)
	if want := "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"web:x:1000:1000:web:/nonexistent:/sbin/nologin\ndb:x:1001:2000:db:/srv/db:/bin/sh\nlog:x:1002:65534:log:/nonexistent:/sbin/nologin\n"; passwd != want {
		t.Errorf("passwd:\n%s\nwant:\n%s", passwd, want)
	}
	var builtin strings.Builder
	for _, g := range configs.BuiltinGroups {
		fmt.Fprintf(&builtin, "%s:x:%d:\n", g.Name, g.GID)
	}
	if want := builtin.String() + "data:x:2000:\nweb:x:1000:\n"; group != want {
		t.Errorf("group:\n%s\nwant:\n%s", group, want)
	}
	for _, u := range []string{"root", "nobody", "web", "db", "log"} {
		if !strings.Contains(shadow, "\n"+u+":!:") && !strings.HasPrefix(shadow, u+":!:") {
			t.Errorf("shadow has no locked entry for %s:\n%s", u, shadow)
		}
	}
	if n := strings.Count(shadow, "\n"); n != 5 {
		t.Errorf("shadow has %d lines:\n%s", n, shadow)
	}
}

// TestCheckPrograms: a service whose command is not an executable file
// of the image fails the build, at the field.
func TestCheckPrograms(t *testing.T) {
	fsys := newTestFS(t)
	for _, d := range []string{"/usr/bin", "/usr/local/bin", "/bin"} {
		if err := fsys.Mkdir(d, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	add := func(p string, mode fs.FileMode) {
		if err := fsys.AddFile(p, mode, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	add("/usr/bin/app", 0o755)
	add("/usr/bin/data", 0o644)
	for l, target := range map[string]string{"/usr/local/bin/app": "../../bin/app", "/bin/abs": "/usr/bin/app", "/bin/loop": "/bin/loop", "/bin/gone": "nothing", "/usr/local/lib": "/usr/bin"} {
		if err := fsys.Symlink(l, target, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		cmd  string
		want string // "" when fine
	}{
		{"/usr/bin/app", ""},
		{"/usr/local/bin/app", ""},
		{"/bin/abs", ""},
		{"/usr/local/lib/app", ""},
		{"/usr/bin/missing", "not in the image"},
		{"/usr/bin/data", "not executable"},
		{"/usr/bin", "not a regular file"},
		{"/bin/loop", "symbolic links"},
		{"/bin/gone", "not in the image"},
		{"/usr/bin/app/x", "not in the image"},
		{"/var/lib/app/run", ""}, // writable at run time: a warning only
		{"/etc/app/run", ""},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			spec := &configs.Spec{Services: []configs.Service{{Name: "ok", Command: "/usr/bin/app"}, {Name: "x", Command: tt.cmd}}}
			err := checkPrograms(fsys, spec, logrus.StandardLogger())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *configs.Error
			if !errors.As(err, &e) || e.Path != "$.services[1].command" || !strings.Contains(e.Msg, tt.want) {
				t.Fatalf("error %v, want one at $.services[1].command saying %q", err, tt.want)
			}
		})
	}
	// every bad command is reported, health checks too
	spec := &configs.Spec{
		Services: []configs.Service{{Name: "a", Command: "/no/a"}, {Name: "b", Command: "/no/b"}},
		Update:   &configs.Update{Health: configs.Health{Commands: []configs.HealthCommand{{Command: "/no/c"}}}},
	}
	var list configs.ErrorList
	if err := checkPrograms(fsys, spec, logrus.StandardLogger()); !errors.As(err, &list) || len(list) != 3 || list[2].Path != "$.update.health.commands[0].command" {
		t.Errorf("error %v, want three, the last at $.update.health.commands[0].command", err)
	}
}

func TestResolveEpoch(t *testing.T) {
	tests := []struct {
		env  string
		want int64
		bad  bool
	}{
		{"", DefaultEpoch.Unix(), false},
		{"0", 0, false},
		{"1700000000", 1700000000, false},
		{"4294967295", 4294967295, false},
		{"4294967296", 0, true},
		{"-1", 0, true},
		{"+5", 0, true},
		{"1.5", 0, true},
		{"1700000000 ", 0, true},
		{"2023-01-01", 0, true},
		{"yesterday", 0, true},
		{"99999999999999999999999", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.env)
			got, err := resolveEpoch(nil)
			if tt.bad {
				if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
					t.Fatalf("SOURCE_DATE_EPOCH=%q gave %v, %v; want an error naming it", tt.env, got, err)
				}
				return
			}
			if err != nil || got.Unix() != tt.want {
				t.Fatalf("SOURCE_DATE_EPOCH=%q gave %v, %v; want %d", tt.env, got, err, tt.want)
			}
		})
	}
	e := time.Unix(42, 0)
	if got, err := resolveEpoch(&e); err != nil || got.Unix() != 42 {
		t.Errorf("an explicit epoch gave %v, %v", got, err)
	}
}

func TestCheckOutDir(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"files/sub", "other"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "motd"), 0o644)
	if err := os.Symlink("files", filepath.Join(dir, "files-link")); err != nil {
		t.Fatal(err)
	}
	spec := &configs.Spec{Dir: dir, Root: configs.Root{Files: []configs.File{
		{Src: "motd", Dst: "/etc/motd"},
		{Src: "files", Dst: "/opt/files"},
	}}}
	tests := []struct {
		out string
		bad bool
	}{
		{"out", false},
		{"other/out", false},
		{"files-out", false},
		{"files", true},
		{"files/out", true},
		{"files/sub/deeper/out", true},
		{"files-link/out", true},
		{"motd-out", false},
	}
	for _, tt := range tests {
		t.Run(tt.out, func(t *testing.T) {
			err := checkOutDir(spec, filepath.Join(dir, tt.out))
			if !tt.bad {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *configs.Error
			if !errors.As(err, &e) || e.Path != "$.root.files[1].src" || !strings.Contains(e.Msg, tt.out) || !strings.Contains(e.Msg, filepath.Join(dir, "files")) {
				t.Fatalf("error %v, want one at $.root.files[1].src naming both folders", err)
			}
		})
	}
}

func TestCreateDiskTooLarge(t *testing.T) {
	dir := t.TempDir()
	f, err := createDisk(filepath.Join(dir, "ok.raw"), 3<<30, dir)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// ext4 files end at 16 TiB (the test's folder is on ext4 here; most
	// other filesystems hold 8 EiB)
	if err := os.MkdirAll(filepath.Join(dir, ".slate-build-x"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err = createDisk(filepath.Join(dir, ".slate-build-x", "disk.raw"), 100<<40, dir)
	if err == nil {
		f.Close()
		t.Skip("this filesystem holds a 100 TiB sparse file")
	}
	var e *configs.Error
	if !errors.As(err, &e) || e.Path != "$.disk.size" || strings.Contains(e.Msg, ".slate-build-") || !strings.Contains(e.Msg, dir) {
		t.Errorf("error %v, want one at $.disk.size naming the output folder, not the temporary one", err)
	}
}

func TestRemoveStale(t *testing.T) {
	tests := []struct {
		name     string
		file     string // artifact path
		recorded bool   // listed in the previous build.json
		changed  bool   // changed since
		written  bool   // this build wrote it again
		gone     bool   // want it removed
	}{
		{"previous artifact unchanged", "disk.qcow2", true, false, false, true},
		{"previous artifact changed since", "disk.qcow2", true, true, false, false},
		{"user file with an artifact's name", "live.iso", false, false, false, false},
		{"pxe file unchanged", "pxe/root.img.zst", true, false, false, true},
		{"written again", "disk.raw", true, false, true, false},
		{"not an artifact name", "notes.txt", true, false, false, false},
		{"outside the folder", "../victim", true, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "out")
			p := filepath.Join(dir, filepath.FromSlash(tt.file))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("artifact bytes"), 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := hashFile(p)
			if err != nil {
				t.Fatal(err)
			}
			a.Path = tt.file
			var prev []Artifact
			if tt.recorded {
				b, _ := json.Marshal(Report{Artifacts: []Artifact{a}})
				if err := os.WriteFile(filepath.Join(dir, "build.json"), b, 0o644); err != nil {
					t.Fatal(err)
				}
				prev = previousArtifacts(dir)
				if len(prev) != 1 {
					t.Fatalf("previousArtifacts read %+v", prev)
				}
			}
			if tt.changed {
				if err := os.WriteFile(p, []byte("artifact BYTES"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var written []string
			if tt.written {
				written = []string{tt.file}
			}
			removeStale(dir, prev, written)
			_, err = os.Stat(p)
			if gone := errors.Is(err, fs.ErrNotExist); gone != tt.gone {
				t.Errorf("removed: %v, want %v", gone, tt.gone)
			}
		})
	}
}

func TestAddContentOwners(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tree", "a"), 0o644)
	writeFile(t, filepath.Join(dir, "tree", "sub", "b"), 0o600)
	if err := os.Symlink("a", filepath.Join(dir, "tree", "l")); err != nil {
		t.Fatal(err)
	}
	spec, err := configs.Parse([]byte(`name: own
version: 1.0.0
users:
  - {name: web, uid: 1000}
groups:
  - {name: data, gid: 2000}
root:
  files:
    - {src: tree/a, dst: /etc/web.conf, owner: web}
    - {src: tree, dst: /srv/web, owner: "1000", group: data}
    - {src: tree/a, dst: /etc/plain}
`), "own.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec.Dir = dir
	fsys := newTestFS(t)
	for _, f := range spec.Root.Files {
		if err := addContent(fsys, spec, f, logrus.StandardLogger()); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string][2]uint32{
		"/etc/web.conf": {1000, 0}, "/etc/plain": {0, 0}, "/etc": {0, 0},
		"/srv/web": {1000, 2000}, "/srv/web/a": {1000, 2000}, "/srv/web/sub": {1000, 2000}, "/srv/web/sub/b": {1000, 2000}, "/srv/web/l": {1000, 2000},
	} {
		if e := lookup(t, fsys, p); e.UID != want[0] || e.GID != want[1] {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, e.UID, e.GID, want[0], want[1])
		}
	}
}

// TestResolveInputsCABundle: the root's CA bundle is the host's by
// default, and the build says what to install when the host has none.
func TestResolveInputsCABundle(t *testing.T) {
	cache := ramCache(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, spec string
		want             []string // parts of the error; nil when fine
	}{
		{"host bundle", configs.HostCABundle, "", nil},
		{"host without ca-certificates", filepath.Join(dir, "none.crt"), "", []string{"ca-certificates", filepath.Join(dir, "none.crt"), "root.ca_bundle"}},
		{"host bundle damaged", bad, "", []string{"build host's CA bundle", "PEM block 1 is damaged"}},
		{"spec's bundle damaged", configs.HostCABundle, bad, []string{"$.root.ca_bundle", "PEM block 1 is damaged"}},
		{"spec's bundle wins over a missing host one", filepath.Join(dir, "none.crt"), configs.HostCABundle, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.host == configs.HostCABundle || tt.spec == configs.HostCABundle {
				if _, err := os.Stat(configs.HostCABundle); err != nil {
					t.Skip("no ca-certificates on this host")
				}
			}
			old := hostCABundle
			hostCABundle = tt.host
			defer func() { hostCABundle = old }()
			spec := &configs.Spec{Name: "t", Version: "1.0.0", Kernel: configs.Kernel{Package: configs.DefaultKernelPackage}, Root: configs.Root{CABundle: tt.spec}}
			// a missing slate binary is found after the bundle
			in, err := ResolveInputs(spec, cache, filepath.Join(dir, "no-slate"))
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "no-slate") {
					t.Fatalf("error %v, want only the missing slate binary", err)
				}
				if want := map[bool]string{true: tt.spec, false: tt.host}[tt.spec != ""]; in.CABundle != want {
					t.Errorf("CA bundle %s, want %s", in.CABundle, want)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}
