package configs

import (
	"slices"
	"strings"
	"testing"
)

// test keys (public halves only)
const (
	testKeyEd  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDj54cTuWnxXCvwCVRScu0X0y1/qxh+YZUFxt4359T35 alice@test"
	testKeyRSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDuaJnIGUs3C2WAg93zSB5SjqK+1XMvt5kJc5kQZKAQRbReqjjj1Ovsn3SSbWqeJghgwGeKnRdMjCGvNnZii1zFDdm4oRlI5wVhRpWr7UQqIXqW87aZLlxRDufpxJiS4aMzFxh1FjU91+HK+r6/mWKXIMNrhsgUFvC7UqN9RDX6OhnOJhXWM1o2Y0Bs95bHP0ezuSns+jQ5B8HeFDr8V1l4YpgXIYRgB/ynHgeSKnmRHN1VJr7DFcccXrNe1pWS8zGK7B7Gp+0fkhHwOx0D/rSrqOwmbpP+NEEcyr2e/Vy0SWy03AEMBy2gXbN9qChEGCDl8YaprpD+8MCFECkEU9oZ bob"
)

func TestSSHDefaults(t *testing.T) {
	s, err := Parse([]byte(base+"ssh: {enable: true}\nusers:\n- {name: alice, uid: 1000, ssh_keys: ['"+testKeyEd+"']}\n- {name: web, uid: 1001}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.SSH.Port != 22 || s.SSH.Shell != "busybox" || s.SSH.PermitRootLogin {
		t.Errorf("ssh defaults: %+v", *s.SSH)
	}
	if !s.Network.DHCP {
		t.Error("ssh does not imply DHCP")
	}
	if !slices.Equal(s.Packages, []string{"openssh-server", "busybox-static"}) {
		t.Errorf("packages %q", s.Packages)
	}
	if s.Debian == nil || s.Debian.Suite != DefaultDebianSuite {
		t.Errorf("debian defaults missing: %+v", s.Debian)
	}
	users, _ := s.Accounts()
	byName := map[string]User{}
	for _, u := range users {
		byName[u.Name] = u
	}
	if a := byName["alice"]; a.Home != "/home/alice" || a.Shell != "/bin/sh" || s.ShadowHash(a) != "*" {
		t.Errorf("alice: %+v %q", a, s.ShadowHash(a))
	}
	if w := byName["web"]; w.Home != DefaultUserHome || w.Shell != DefaultUserShell || s.ShadowHash(w) != "!" {
		t.Errorf("web: %+v %q", w, s.ShadowHash(w))
	}
	if r := byName["root"]; r.Shell != DefaultUserShell || s.ShadowHash(r) != "!" {
		t.Errorf("root without permit_root_login: %+v %q", r, s.ShadowHash(r))
	}
	if d, ok := byName[SSHDUser]; !ok || d.UID != SSHDUID || *d.GID != 65534 || d.Home != SSHDHome {
		t.Errorf("sshd: %+v", d)
	}

	// bash, root allowed, a package named by the spec kept as written
	s, err = Parse([]byte(base+"ssh: {enable: true, shell: bash, permit_root_login: true, port: 2222}\npackages: [bash=5.2.15-2+b7, curl]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Packages, []string{"bash=5.2.15-2+b7", "curl", "openssh-server"}) {
		t.Errorf("packages %q", s.Packages)
	}
	users, _ = s.Accounts()
	if users[0].Name != "root" || users[0].Shell != "/bin/bash" || s.ShadowHash(users[0]) != "*" {
		t.Errorf("root with permit_root_login: %+v %q", users[0], s.ShadowHash(users[0]))
	}

	// off: nothing implied, no sshd account
	s, err = Parse([]byte(base+"ssh: {enable: false, port: 2200}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	users, _ = s.Accounts()
	if len(s.Packages) != 0 || s.Debian != nil || s.Network.DHCP || len(users) != len(BuiltinUsers) {
		t.Errorf("disabled ssh changed the spec: %q %+v %v %d users", s.Packages, s.Debian, s.Network.DHCP, len(users))
	}
}

func TestSSHErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		paths []string // nil: valid
		msg   string
	}{
		{"valid", "ssh: {enable: true}\nusers:\n- {name: a, uid: 1000, ssh_keys: ['" + testKeyEd + "', '" + testKeyRSA + "', 'no-pty,command=\"/bin/date\" " + testKeyEd + "']}\n", nil, ""},
		{"port", "ssh: {enable: true, port: 70000}\n", []string{"$.ssh.port"}, "not a TCP port"},
		{"negative port", "ssh: {enable: true, port: -1}\n", []string{"$.ssh.port"}, "not a TCP port"},
		{"shell", "ssh: {enable: true, shell: zsh}\n", []string{"$.ssh.shell"}, "busybox (package busybox-static) or bash"},
		{"keys without ssh", "users:\n- {name: a, uid: 1000, ssh_keys: ['" + testKeyEd + "']}\n", []string{"$.users[0].ssh_keys"}, "set ssh.enable: true"},
		{"keys with ssh off", "ssh: {enable: false}\nusers:\n- {name: a, uid: 1000, ssh_keys: ['" + testKeyEd + "']}\n", []string{"$.users[0].ssh_keys"}, "set ssh.enable: true"},
		{"bad keys", "ssh: {enable: true}\nusers:\n- {name: a, uid: 1000}\n- {name: b, uid: 1001, ssh_keys: ['" + testKeyEd + "', 'ssh-ed25519 AAAAnotbase64', '', \"" + testKeyEd + "\\n" + testKeyRSA + "\", 'ssh-ed25519', '# a comment']}\n",
			[]string{"$.users[1].ssh_keys[1]", "$.users[1].ssh_keys[2]", "$.users[1].ssh_keys[3]", "$.users[1].ssh_keys[4]", "$.users[1].ssh_keys[5]"}, "not an authorized_keys line"},
		{"two keys in one entry", "ssh: {enable: true}\nusers:\n- {name: b, uid: 1001, ssh_keys: ['" + testKeyEd + " " + testKeyRSA + "']}\n", nil, ""},
		{"sshd's name", "ssh: {enable: true}\nusers:\n- {name: sshd, uid: 1000}\n", []string{"$.users[0].name"}, "privilege separation"},
		{"sshd's name without ssh", "users:\n- {name: sshd, uid: 1000}\n", nil, ""},
		{"sshd's uid", "users:\n- {name: a, uid: 65000}\n- {name: b, uid: 64999}\n", []string{"$.users[0].uid"}, "65000 and up are slate's"},
		{"exclude the server", "ssh: {enable: true}\ndebian: {exclude: [openssh-server, busybox-static]}\n", []string{"$.debian.exclude[0]", "$.debian.exclude[1]"}, "cannot be excluded"},
		{"files over slate's", "ssh: {enable: true}\nroot:\n  files:\n  - {src: a, dst: /etc/ssh/sshd_config}\n  - {src: a, dst: /etc/ssh/authorized_keys/a}\n  - {src: a, dst: /etc/ssh/ssh_config}\n",
			[]string{"$.root.files[0].dst", "$.root.files[1].dst"}, "slate writes it from the ssh section"},
		{"service named sshd", "ssh: {enable: true}\nservices:\n- {name: sshd, command: /x}\n", []string{"$.services[0].name"}, "the ssh server's service"},
		{"service as sshd", "ssh: {enable: true}\nservices:\n- {name: x, command: /x, user: sshd}\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths, msg := parseErrs(t, base+tt.yaml)
			if !slices.Equal(paths, tt.paths) {
				t.Fatalf("paths %q, want %q\n%s", paths, tt.paths, msg)
			}
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("errors lack %q:\n%s", tt.msg, msg)
			}
		})
	}
}

func TestCheckAuthorizedKey(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{testKeyEd, ""},
		{"  " + testKeyEd + "  ", ""},
		{"from=\"10.0.0.0/8\" " + testKeyRSA, ""},
		{testKeyEd + "\n", "more than one line"},
		{testKeyEd + "\x00", "control characters"},
		{testKeyEd + " " + testKeyEd, ""}, // the second is the comment, as for OpenSSH
		{"ssh-ed25519 " + strings.Repeat("A", maxKeyLine), "bytes"},
		{"ssh-dss", "not an authorized_keys line"},
		{" ", "empty key"},
	} {
		if got := CheckAuthorizedKey(tc.line); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%.40q: %q, want %q", tc.line, got, tc.want)
		}
	}
}

func FuzzCheckAuthorizedKey(f *testing.F) {
	for _, s := range []string{testKeyEd, testKeyRSA, "ssh-ed25519 AAAA", "command=\"x\" " + testKeyEd, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if CheckAuthorizedKey(line) != "" {
			return
		}
		// what passes is one line that yields one key
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("%q passed with a line break", line)
		}
	})
}
