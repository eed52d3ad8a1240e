package ignition

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
)

// cfg wraps JSON sections in a config of the given spec version.
func cfg(version, body string) []byte {
	if body != "" {
		body = "," + body
	}
	return []byte(`{"ignition":{"version":"` + version + `"}` + body + `}`)
}

func TestParseVersions(t *testing.T) {
	body := `"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hello%20world"}}]}`
	for _, v := range []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"} {
		t.Run(v, func(t *testing.T) {
			p, err := Parse(cfg(v, body))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Files) != 1 || p.Files[0].Path != "/etc/motd" || p.Files[0].Contents.Source != "data:,hello%20world" {
				t.Fatalf("files = %+v", p.Files)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want []string // substrings of the error
	}{
		{"empty", nil, []string{"$:"}},
		{"truncated json", []byte(`{"ignition": {"version": "3.4.0"`), []string{"unexpected end of JSON input"}},
		{"invalid json", []byte("{\"ignition\": {\"version\": \"3.4.0\"},\n \"storage\": [}"), []string{"line 2"}},
		{"old spec", cfg("2.2.0", ""), []string{"version"}},
		{"future spec", cfg("3.6.0", ""), []string{"version"}},
		{"wrong type", cfg("3.4.0", `"storage":{"files":"x"}`), []string{"cannot unmarshal"}},
		{"relative path", cfg("3.4.0", `"storage":{"files":[{"path":"etc/x"}]}`), []string{"$.storage.files[0].path"}},
		{"bad hash format", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,x","verification":{"hash":"md5-00"}}}]}`),
			[]string{"$.storage.files[0].contents.verification.hash"}},
		{"duplicate path", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x"},{"path":"/etc/x"}]}`), []string{"$.storage.files[1]"}},
		{"disks", cfg("3.4.0", `"storage":{"disks":[{"device":"/dev/vda","wipeTable":true}]}`), []string{"$.storage.disks:"}},
		{"raid", cfg("3.4.0", `"storage":{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vda","/dev/vdb"]}]}`), []string{"$.storage.raid:"}},
		{"luks", cfg("3.4.0", `"storage":{"luks":[{"name":"data","device":"/dev/vdb"}]}`), []string{"$.storage.luks:"}},
		{"filesystems", cfg("3.4.0", `"storage":{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/var/data"}]}`), []string{"$.storage.filesystems:"}},
		{"kernel arguments", cfg("3.3.0", `"kernelArguments":{"shouldExist":["quiet"]}`), []string{"$.kernelArguments:"}},
		{"merge", cfg("3.4.0", `"ignition":{"version":"3.4.0","config":{"merge":[{"source":"data:,%7B%7D"}]}}`), []string{"$.ignition.config.merge:"}},
		{"replace", []byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://example.com/c.ign"}}}}`), []string{"$.ignition.config.replace:"}},
		{"proxy", []byte(`{"ignition":{"version":"3.4.0","proxy":{"httpProxy":"http://p:3128"}}}`), []string{"$.ignition.proxy:"}},
		{"s3 source", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"s3://bucket/key"}}]}`),
			[]string{"$.storage.files[0].contents.source:", `"s3"`}},
		{"gs append", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","append":[{"source":"gs://bucket/key"}]}]}`),
			[]string{"$.storage.files[0].append[0].source:"}},
		{"bad data url", cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:;base64,%%%"}}]}`),
			[]string{"$.storage.files[0].contents.source: invalid data"}},
		{"file under usr", cfg("3.4.0", `"storage":{"files":[{"path":"/usr/bin/x","contents":{"source":"data:,x"}}]}`),
			[]string{"$.storage.files[0].path:", "/usr/bin/x is on the read-only root"}},
		{"dotdot", cfg("3.4.0", `"storage":{"directories":[{"path":"/var/../usr/lib/x"}]}`), []string{"$.storage.directories[0].path: path is not fully simplified"}},
		{"link under opt", cfg("3.4.0", `"storage":{"links":[{"path":"/opt/x","target":"/etc/x"}]}`), []string{"$.storage.links[0].path:"}},
		{"hard link target on root", cfg("3.4.0", `"storage":{"links":[{"path":"/etc/x","target":"/usr/bin/x","hard":true}]}`), []string{"$.storage.links[0].target:"}},
		{"overwrite top folder", cfg("3.4.0", `"storage":{"directories":[{"path":"/etc","overwrite":true}]}`), []string{"$.storage.directories[0].path:"}},
		{"file as top folder", cfg("3.4.0", `"storage":{"files":[{"path":"/var","overwrite":true,"contents":{"source":"data:,x"}}]}`), []string{"$.storage.files[0].path:"}},
		{"delete user", cfg("3.4.0", `"passwd":{"users":[{"name":"bob","shouldExist":false}]}`), []string{"$.passwd.users[0].shouldExist:"}},
		{"no user group", cfg("3.4.0", `"passwd":{"users":[{"name":"bob","noUserGroup":true}]}`), []string{"$.passwd.users[0].noUserGroup:"}},
		{"group password", cfg("3.4.0", `"passwd":{"groups":[{"name":"ops","passwordHash":"x"}]}`), []string{"$.passwd.groups[0].passwordHash:"}},
		{"home on root", cfg("3.4.0", `"passwd":{"users":[{"name":"bob","homeDir":"/usr/bob"}]}`), []string{"$.passwd.users[0].homeDir:"}},
		{"unit dropin", cfg("3.4.0", `"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n","dropins":[{"name":"x.conf","contents":"[Service]\nUser=nobody\n"}]}]}`),
			[]string{"$.systemd.units[0].dropins:"}},
		{"unit mask", cfg("3.4.0", `"systemd":{"units":[{"name":"a.service","mask":true}]}`), []string{"$.systemd.units[0].mask:"}},
		{"unit disabled", cfg("3.4.0", `"systemd":{"units":[{"name":"a.service","contents":"[Service]\nExecStart=/bin/true\n"}]}`), []string{"$.systemd.units[0].enabled:"}},
		{"unit without contents", cfg("3.4.0", `"systemd":{"units":[{"name":"sshd.service","enabled":true}]}`), []string{"$.systemd.units[0].contents:"}},
		{"timer unit", cfg("3.4.0", `"systemd":{"units":[{"name":"a.timer","enabled":true,"contents":"[Timer]\nOnCalendar=daily\n"}]}`), []string{"$.systemd.units[0].name:"}},
		{"unsupported directive", cfg("3.4.0", `"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecReload=/bin/true\nExecStart=/bin/true\n"}]}`),
			[]string{"$.systemd.units[0].contents: [Service] ExecReload: is not supported"}},
		{"every problem listed", cfg("3.4.0", `"storage":{"disks":[{"device":"/dev/vda"}],"files":[{"path":"/usr/x"}]},"kernelArguments":{"shouldExist":["x"]}`),
			[]string{"$.storage.disks:", "$.storage.files[0].path:", "$.kernelArguments:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.data)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", p)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseTranslates(t *testing.T) {
	data := cfg("3.4.0", `
	"storage": {
		"files": [{"path": "/etc/app.conf", "mode": 384, "overwrite": true,
			"contents": {"source": "https://example.com/a", "compression": "gzip",
				"httpHeaders": [{"name": "X-Token", "value": "t"}],
				"verification": {"hash": "sha256-`+strings.Repeat("ab", 32)+`"}},
			"append": [{"source": "tftp://boot/frag"}],
			"user": {"name": "app"}, "group": {"id": 7}}],
		"directories": [{"path": "/var/lib/app", "mode": 1023}],
		"links": [{"path": "/etc/l", "target": "../x"}, {"path": "/etc/h", "target": "/etc/app.conf", "hard": true}]
	},
	"passwd": {
		"groups": [{"name": "ops", "gid": 2000, "system": true}],
		"users": [{"name": "app", "uid": 1500, "groups": ["ops"], "sshAuthorizedKeys": ["ssh-ed25519 AAAA k"],
			"homeDir": "/srv/app/", "shell": "/bin/bash", "gecos": "App", "noCreateHome": true, "primaryGroup": "ops"}]
	},
	"systemd": {"units": [{"name": "app.service", "enabled": true, "contents": "[Service]\nExecStart=/srv/app/run\n[Install]\nWantedBy=multi-user.target\n"}]}`)
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	f := p.Files[0]
	if f.Path != "/etc/app.conf" || *f.Mode != 0o600 || !f.Overwrite || f.User.Name != "app" || *f.Group.ID != 7 {
		t.Errorf("file = %+v", f)
	}
	if c := f.Contents; c.Compression != "gzip" || c.Headers.Get("X-Token") != "t" || !strings.HasPrefix(c.Hash, "sha256-abab") {
		t.Errorf("contents = %+v", c)
	}
	if len(f.Append) != 1 || f.Append[0].Source != "tftp://boot/frag" {
		t.Errorf("append = %+v", f.Append)
	}
	if d := p.Dirs[0]; *d.Mode != os.FileMode(0o777)|os.ModeSticky {
		t.Errorf("dir mode = %v", *d.Mode)
	}
	if l := p.Links; l[0].Hard || l[0].Target != "../x" || !l[1].Hard || l[1].Target != "/etc/app.conf" {
		t.Errorf("links = %+v", l)
	}
	if g := p.Groups[0]; g.Name != "ops" || *g.GID != 2000 || !g.System || g.JSONPath != "$.passwd.groups[0]" {
		t.Errorf("group = %+v", g)
	}
	u := p.Users[0]
	if u.Name != "app" || *u.UID != 1500 || u.HomeDir != "/srv/app" || u.Shell != "/bin/bash" || u.Gecos != "App" ||
		!u.NoCreateHome || u.PrimaryGroup != "ops" || !reflect.DeepEqual(u.Groups, []string{"ops"}) || len(u.SSHAuthorizedKeys) != 1 {
		t.Errorf("user = %+v", u)
	}
	if len(p.Units) != 1 || p.Units[0].Name != "app.service" || p.Units[0].ExecStart[0] != "/srv/app/run" {
		t.Errorf("units = %+v", p.Units)
	}
}

func TestParseWarnings(t *testing.T) {
	// An enabled unit without [Install] is an Ignition warning; timeouts
	// are taken for the fetcher.
	data := []byte(`{"ignition":{"version":"3.4.0","timeouts":{"httpTotal":10,"httpResponseHeaders":3}},
		"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n"}]}}`)
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(p.Warnings, "\n")
	for _, w := range []string{"$.systemd.units[0].contents"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q lack %q", joined, w)
		}
	}
	if want := (Timeouts{ResponseHeaders: 3 * time.Second, Total: 10 * time.Second}); p.Timeouts != want {
		t.Errorf("timeouts %+v, want %+v", p.Timeouts, want)
	}
}

func TestParseUnit(t *testing.T) {
	full := `# a comment
[Unit]
Description=My app
Documentation=https://example.com
After=network-online.target db.service
After=other.service
Requires=db.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/app --name "two words" 'single quoted' a\ttab \
    --price=$$5 --pct=50%%
Restart=on-failure
Environment=A=1 "B=two words" C=
Environment=D='x y' E=a"b c"d
EnvironmentFile=/etc/app.env
EnvironmentFile=-/etc/app.local
User=app
WorkingDirectory=/var/lib/app
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`
	u, err := ParseUnit("app.service", full)
	if err != nil {
		t.Fatal(err)
	}
	want := Unit{
		Name: "app.service", Enabled: true, Description: "My app", Type: "oneshot",
		ExecStart:        []string{"/usr/bin/app", "--name", "two words", "single quoted", "a\ttab", "--price=$5", "--pct=50%"},
		Restart:          configs.RestartOnFailure,
		Environment:      map[string]string{"A": "1", "B": "two words", "C": "", "D": "x y", "E": "ab cd"},
		EnvironmentFiles: []EnvironmentFile{{Path: "/etc/app.env"}, {Path: "/etc/app.local", Optional: true}},
		User:             "app", WorkingDirectory: "/var/lib/app",
		After: []string{"network-online.target", "db.service", "other.service"}, Requires: []string{"db.service"},
		Wants: []string{"network-online.target"}, RemainAfterExit: true, WantedBy: []string{"multi-user.target"},
		Contents: full,
	}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("got  %+v\nwant %+v", u, want)
	}

	restart := map[string]string{"no": configs.RestartNever, "always": configs.RestartAlways, "on-failure": configs.RestartOnFailure}
	for in, out := range restart {
		u, err := ParseUnit("r.service", "[Service]\nExecStart=/bin/true\nRestart="+in+"\n")
		if err != nil || u.Restart != out || u.Type != "simple" {
			t.Errorf("Restart=%s: %+v, %v", in, u, err)
		}
	}
	if u, _ := ParseUnit("d.service", "[Service]\nExecStart=/bin/true\n"); u.Restart != configs.RestartNever {
		t.Errorf("default restart = %q, want never (systemd's no)", u.Restart)
	}
}

func TestParseUnitRefuses(t *testing.T) {
	tests := []struct {
		name, contents, want string
	}{
		{"no service", "[Unit]\nDescription=x\n", "no [Service]"},
		{"no execstart", "[Service]\nType=simple\n", "ExecStart is missing"},
		// Refused by the one validation of a service (configs.CheckService),
		// which PID 1 would run on it at boot.
		{"user list", "[Service]\nUser=a,b\nExecStart=/bin/true\n", `[Service] User: "a,b" is not a user name or numeric uid`},
		{"long user", "[Service]\nUser=" + strings.Repeat("u", 33) + "\nExecStart=/bin/true\n", "[Service] User: "},
		{"oneshot always", "[Service]\nType=oneshot\nRestart=always\nExecStart=/bin/true\n", "[Service] Restart: a oneshot service runs once"},
		{"exec reload", "[Service]\nExecReload=/bin/true\nExecStart=/bin/true\n", "[Service] ExecReload: is not supported"},
		{"exec pre relative", "[Service]\nExecStartPre=-true\nExecStart=/bin/true\n", "not an absolute path"},
		{"exec stop prefix", "[Service]\nExecStop=+/bin/true\nExecStart=/bin/true\n", `prefix "+"`},
		{"restart sec bad", "[Service]\nExecStart=/bin/true\nRestartSec=5 fortnights\n", "unknown time unit"},
		{"restart sec infinity", "[Service]\nExecStart=/bin/true\nRestartSec=infinity\n", "infinity"},
		{"timeout bad", "[Service]\nExecStart=/bin/true\nTimeoutStartSec=soon\n", "not a time span"},
		{"binds to", "[Unit]\nBindsTo=x.service\n[Service]\nExecStart=/bin/true\n", "[Unit] BindsTo: is not supported"},
		{"socket section", "[Socket]\nListenStream=80\n", "[Socket] ListenStream: section is not supported"},
		{"forking", "[Service]\nType=forking\nExecStart=/bin/true\n", "Type=forking"},
		{"notify", "[Service]\nType=notify\nExecStart=/bin/true\n", "Type=notify"},
		{"restart on-abort", "[Service]\nExecStart=/bin/true\nRestart=on-abort\n", "Restart=on-abort"},
		{"two execstart", "[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n", "only one ExecStart"},
		{"prefix minus", "[Service]\nExecStart=-/bin/true\n", `prefix "-"`},
		{"prefix at", "[Service]\nExecStart=@/bin/true true\n", `prefix "@"`},
		{"relative", "[Service]\nExecStart=true\n", "not an absolute path"},
		{"variable", "[Service]\nExecStart=/bin/echo $HOME\n", "variable expansion"},
		{"specifier", "[Service]\nExecStart=/bin/echo %n\n", "specifier"},
		{"semicolon", "[Service]\nExecStart=/bin/true ; /bin/false\n", "multiple commands"},
		{"bad env", "[Service]\nExecStart=/bin/true\nEnvironment=1X=2\n", "not NAME=value"},
		{"relative env file", "[Service]\nExecStart=/bin/true\nEnvironmentFile=app.env\n", "not an absolute path"},
		{"workdir tilde", "[Service]\nExecStart=/bin/true\nWorkingDirectory=~\n", "not an absolute path"},
		{"remain simple", "[Service]\nExecStart=/bin/true\nRemainAfterExit=yes\n", "only with Type=oneshot"},
		{"install alias", "[Service]\nExecStart=/bin/true\n[Install]\nAlias=x.service\n", "[Install] Alias: is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUnit("x.service", tt.contents)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := ParseUnit("x@.service", "[Service]\nExecStart=/bin/true\n"); err == nil {
		t.Error("template unit accepted")
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{`/bin/a b  c`, []string{"/bin/a", "b", "c"}, ""},
		{`/bin/a "b c" 'd e'`, []string{"/bin/a", "b c", "d e"}, ""},
		{`/bin/a "it's" 'say "hi"'`, []string{"/bin/a", "it's", `say "hi"`}, ""},
		{`/bin/a "" ''`, []string{"/bin/a", "", ""}, ""},
		{`/bin/a "q\"q" \x41\101\u00e9\s`, []string{"/bin/a", `q"q`, "AAé "}, ""},
		{`/bin/a \;`, []string{"/bin/a", ";"}, ""},
		{`/bin/a b\ c`, []string{"/bin/a", "b c"}, ""},
		{"/bin/a\tb", []string{"/bin/a", "b"}, ""},
		{`/bin/a "unterminated`, nil, "unterminated quote"},
		{`/bin/a "x"y x"y z"'w'`, []string{"/bin/a", "xy", "xy zw"}, ""},
		{`/bin/a ';'`, []string{"/bin/a", ";"}, ""},
		{`/bin/a $$x 100%%`, []string{"/bin/a", "$x", "100%"}, ""},
		{`/bin/a \q`, nil, "unknown escape"},
		{`/bin/a \x4`, nil, "escape"},
		{`/bin/a \`, nil, "trailing backslash"},
		{`/bin/a \x00`, nil, "bad escape"},
		{``, nil, "empty command"},
		{`   `, nil, "empty command"},
		{`+/bin/a`, nil, "prefix"},
		{`!/bin/a`, nil, "prefix"},
		{`:/bin/a`, nil, "prefix"},
		{`"/bin/a b" c`, []string{"/bin/a b", "c"}, ""},
	}
	for _, tt := range tests {
		got, err := splitCommand(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("splitCommand(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{`/bin/a "b c" 'd'`, `/bin/a \x41 \u00e9 $$ %%`, `/x "a\"b"`, `/x 'a`, `-/x`, `/x \`, `/x ;`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv, err := splitCommand(s)
		if err != nil {
			return
		}
		if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
			t.Fatalf("accepted %q as %q", s, argv)
		}
		// Re-quoting every word must give back the same argv.
		var b strings.Builder
		for i, a := range argv {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(quoteWord(a))
		}
		again, err := splitCommand(b.String())
		if err != nil || !reflect.DeepEqual(again, argv) {
			t.Fatalf("%q -> %q -> %q -> %q, %v", s, argv, b.String(), again, err)
		}
	})
}

// quoteWord writes w as a double-quoted word that splitCommand reads back.
func quoteWord(w string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(w) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '$':
			b.WriteString("$$")
		case c == '%':
			b.WriteString("%%")
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strings.ToLower(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])))
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func FuzzParse(f *testing.F) {
	f.Add(cfg("3.4.0", `"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,x"}}]}`))
	f.Add(cfg("3.0.0", `"storage":{"links":[{"path":"/var/l","target":"/usr/x"}],"directories":[{"path":"/etc"}]}`))
	f.Add(cfg("3.5.0", `"passwd":{"users":[{"name":"a","homeDir":"/home/../usr"}]}`))
	f.Add(cfg("3.3.0", `"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/a \"b\"\n"}]}`))
	f.Add([]byte(`{"ignition":{"version":"3.4.0"`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		in := func(p string) bool { _, err := writablePath(p); return err == nil }
		for _, x := range p.Files {
			if !in(x.Path) || isPrefixRoot(x.Path) {
				t.Fatalf("file %q accepted", x.Path)
			}
		}
		for _, x := range p.Dirs {
			if !in(x.Path) {
				t.Fatalf("dir %q accepted", x.Path)
			}
		}
		for _, x := range p.Links {
			if !in(x.Path) || isPrefixRoot(x.Path) || (x.Hard && !in(x.Target)) {
				t.Fatalf("link %q -> %q accepted", x.Path, x.Target)
			}
		}
		for _, u := range p.Users {
			if u.HomeDir != "" && !u.NoCreateHome && !in(u.HomeDir) {
				t.Fatalf("home %q accepted", u.HomeDir)
			}
		}
		for _, u := range p.Units {
			if len(u.ExecStart) == 0 || !strings.HasPrefix(u.ExecStart[0], "/") {
				t.Fatalf("unit %+v accepted", u)
			}
			if err := CheckUnitName(u.Name); err != nil || slices.Contains(ReservedServices, strings.TrimSuffix(u.Name, ".service")) {
				t.Fatalf("unit name %q accepted", u.Name)
			}
		}
		uids := map[int]bool{}
		for _, u := range p.Users {
			if u.UID != nil && uids[*u.UID] {
				t.Fatalf("uid %d accepted twice", *u.UID)
			} else if u.UID != nil {
				uids[*u.UID] = true
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data := cfg("3.4.0", `
	"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hello"}},{"path":"/etc/app.env","mode":384,"contents":{"source":"data:;base64,QT0xCg=="}}],
		"directories":[{"path":"/var/lib/app","mode":448}],"links":[{"path":"/etc/localtime","target":"/usr/share/zoneinfo/UTC"}]},
	"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA k"],"groups":["wheel"]}]},
	"systemd":{"units":[{"name":"app.service","enabled":true,"contents":"[Service]\nExecStart=/var/lib/app/run --x \"y z\"\nRestart=always\n[Install]\nWantedBy=multi-user.target\n"}]}`)
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
