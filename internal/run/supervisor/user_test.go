package supervisor

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
# a comment
+nis
broken line
bad:x:notanumber:1::/:/bin/sh
web:x:4242:4343:Web server:/srv/web:/usr/sbin/nologin
twin:x:4242:4242::/twin:/bin/sh
short:x:5001:5002
`

const testGroup = `root:x:0:
web:x:4343:
extra:x:4444:someone,web
other:x:4545:someone
bad:x:nan:web
dup:x:4343:web
`

func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	if err := os.WriteFile(passwd, []byte(testPasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(group, []byte(testGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user string
		want *account
		err  string
	}{
		{"web", &account{name: "web", home: "/srv/web", uid: 4242, gid: 4343, groups: []uint32{4343, 4444}}, ""},
		// By uid: the first entry with it, as getpwuid does.
		{"4242", &account{name: "web", home: "/srv/web", uid: 4242, gid: 4343, groups: []uint32{4343, 4444}}, ""},
		{"twin", &account{name: "twin", home: "/twin", uid: 4242, gid: 4242, groups: []uint32{4242}}, ""},
		{"short", &account{name: "short", uid: 5001, gid: 5002, groups: []uint32{5002}}, ""},
		{"root", &account{name: "root", home: "/root", groups: []uint32{0}}, ""},
		{"0", &account{name: "root", home: "/root", groups: []uint32{0}}, ""},
		{"7000", &account{uid: 7000, gid: 7000, groups: []uint32{7000}}, ""},
		{"nobody-here", nil, `user "nobody-here": no such user in ` + passwd},
		{"bad", nil, "no such user"},
		{"+nis", nil, "no such user"},
		{"99999999999", nil, "no such user"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := lookupUser(tt.user, passwd, group)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := lookupUser("web", filepath.Join(dir, "none"), group); err == nil {
		t.Error("no error without a passwd file")
	}
	if _, err := lookupUser("web", passwd, filepath.Join(dir, "none")); err == nil {
		t.Error("no error without a group file")
	}
}

func FuzzLookupUser(f *testing.F) {
	f.Add(testPasswd, testGroup, "web")
	f.Add(testPasswd, testGroup, "4242")
	f.Add("a:b:1:2\n::::\n", "g:x:1:a,,a\n", "a")
	f.Fuzz(func(t *testing.T, passwd, group, user string) {
		a, err := findUser(passwd, user)
		if err != nil {
			return
		}
		if a.name != "" && a.name != user && !regexp.MustCompile(`^[0-9]+$`).MatchString(user) {
			t.Fatalf("asked for %q, got %q", user, a.name)
		}
		_ = memberOf(group, a.name)
	})
}

// needRoot skips a test that must change user unless CI is set, where it
// fails instead.
func needRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("running a service as another user needs root")
	}
	t.Skip("running a service as another user needs root")
}

func TestServiceUser(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	if err := os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\nslatesvc:x:4242:4343::/home/slatesvc:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(group, []byte("slatesvc:x:4343:\nwheel:x:4444:root,slatesvc\nother:x:4545:root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A shell and id from the host: the test binary may sit in a folder
	// only root can enter.
	script := `echo uid=$(id -u) gid=$(id -g) groups="$(id -G)" home=$HOME user=$USER logname=$LOGNAME cwd=$(pwd)`
	tests := []struct {
		name, user, dir string
		env             map[string]string
		want            string // the line, or part of the failed line
		fails           bool
	}{
		{"by name", "slatesvc", "", nil, "uid=4242 gid=4343 groups=4343 4444 home=/home/slatesvc user=slatesvc logname=slatesvc cwd=/", false},
		{"by uid", "4242", "", nil, "uid=4242 gid=4343 groups=4343 4444 home=/home/slatesvc user=slatesvc logname=slatesvc cwd=/", false},
		{"uid not in passwd", "4999", "", nil, "uid=4999 gid=4999 groups=4999 home= user= logname= cwd=/", false},
		{"env wins", "slatesvc", "", map[string]string{"HOME": "/elsewhere"}, "uid=4242 gid=4343 groups=4343 4444 home=/elsewhere user=slatesvc logname=slatesvc cwd=/", false},
		{"root", "root", "", nil, "uid=0 gid=0 groups=0 4444 4545 home=/root user=root logname=root cwd=/", false},
		{"working directory", "slatesvc", "/usr/share", nil, "uid=4242 gid=4343 groups=4343 4444 home=/home/slatesvc user=slatesvc logname=slatesvc cwd=/usr/share", false},
		{"unknown user", "ghost", "", nil, `user \"ghost\": no such user in ` + passwd, true},
		{"missing working directory", "", "/nonexistent/dir", nil, "working directory: stat /nonexistent/dir: no such file or directory", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := Service{Name: "who", Command: "/bin/sh", Args: []string{"-c", script},
				User: tt.user, WorkingDirectory: tt.dir, Env: tt.env, Restart: configs.RestartNever}
			cfg, con := testConfig(t, svc)
			cfg.passwdFile, cfg.groupFile = passwd, group
			r := start(t, cfg)
			con.waitFor(t, `^SLATE-SERVICE name=who state=stopped$`, 1)
			r.stop(t)
			if tt.fails {
				if n := con.count(`^SLATE-SERVICE name=who state=failed err=".*` + regexp.QuoteMeta(tt.want) + `"$`); n != 1 {
					t.Errorf("no failed line ending in %q:\n%s", tt.want, con)
				}
				return
			}
			if n := con.count(`^\[who\] ` + regexp.QuoteMeta(tt.want) + `$`); n != 1 {
				t.Errorf("no line %q:\n%s", tt.want, con)
			}
			if n := con.count(`^SLATE-SERVICE name=who state=exited code=0$`); n != 1 {
				t.Errorf("service did not exit 0:\n%s", con)
			}
		})
	}
}

// The default folder is / whatever the supervisor's own folder is; this
// part needs no root.
func TestWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ dir, want string }{
		{"", "/"},
		{dir, dir},
	}
	for _, tt := range tests {
		svc := Service{Name: "pwd", Command: "/bin/pwd", WorkingDirectory: tt.dir, Restart: configs.RestartNever}
		cfg, con := testConfig(t, svc)
		r := start(t, cfg)
		con.waitFor(t, `^SLATE-SERVICE name=pwd state=stopped$`, 1)
		r.stop(t)
		if n := con.count(`^\[pwd\] ` + regexp.QuoteMeta(tt.want) + `$`); n != 1 {
			t.Errorf("working directory %q: no line %q:\n%s", tt.dir, tt.want, con)
		}
	}
}
