package configs

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// SSH is the spec's ssh section: OpenSSH's server, key-only, run by PID 1.
// Off unless Enable is set.
type SSH struct {
	Enable bool `yaml:"enable,omitempty" json:"enable,omitempty"`
	// Port is the TCP port sshd listens on (default DefaultSSHPort).
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// PermitRootLogin lets root log in with a key (never a password).
	PermitRootLogin bool `yaml:"permit_root_login,omitempty" json:"permit_root_login,omitempty"`
	// Shell is the shell of logged-in users: busybox (default) or bash,
	// each from its Debian package (SSHShells).
	Shell string `yaml:"shell,omitempty" json:"shell,omitempty"`
}

// Defaults and fixed parts of the ssh section.
const (
	DefaultSSHPort  = 22
	DefaultSSHShell = "busybox"
	// SSHServerPackage is the Debian package of the server.
	SSHServerPackage = "openssh-server"
	// SSHDUser is OpenSSH's privilege-separation user, with a uid
	// outside the range the spec's users may take (see maxUserID) and
	// nogroup as its group, so no image can have another account there.
	SSHDUser = "sshd"
	SSHDUID  = 65000
	// SSHDHome is the privilege-separation folder sshd chroots into; it
	// must exist, be owned by root and not be writable by anyone else.
	SSHDHome = "/run/sshd"
	// SSHService is the name PID 1 runs sshd under.
	SSHService = "sshd"
	// SSHConfigPath and SSHAuthorizedKeysDir are written by slate
	// (internal/run/sshd names them too).
	SSHConfigPath        = "/etc/ssh/sshd_config"
	SSHAuthorizedKeysDir = "/etc/ssh/authorized_keys"
)

// SSHShell is one choice of ssh.shell: the Debian package that brings it
// and the path that /etc/passwd names as users' login shell.
type SSHShell struct {
	Package string
	Path    string
	// Binary is the file the package installs (merged /usr); Path is
	// made a link to it when the package does not provide Path.
	Binary string
}

// SSHShells are the shells ssh.shell may name. busybox-static's shell
// runs its applets without links (ls, cat, ... work with no /usr/bin/ls):
// /bin/sh is the only link slate adds.
var SSHShells = map[string]SSHShell{
	"busybox": {Package: "busybox-static", Path: "/bin/sh", Binary: "/usr/bin/busybox"},
	"bash":    {Package: "bash", Path: "/bin/bash", Binary: "/usr/bin/bash"},
}

// SSHEnabled says whether the image runs sshd.
func (s *Spec) SSHEnabled() bool { return s.SSH != nil && s.SSH.Enable }

// LoginShell is the ssh section's shell, or "" without ssh.
func (s *Spec) LoginShell() (SSHShell, bool) {
	if !s.SSHEnabled() {
		return SSHShell{}, false
	}
	sh, ok := SSHShells[s.SSH.Shell]
	return sh, ok
}

// setSSHDefaults fills the ssh section and what enabling it implies: the
// server's and the shell's packages, and DHCP (a server nobody can reach
// is no use). It runs before the package defaults.
func (s *Spec) setSSHDefaults() {
	if s.SSH == nil {
		return
	}
	if s.SSH.Port == 0 {
		s.SSH.Port = DefaultSSHPort
	}
	if s.SSH.Shell == "" {
		s.SSH.Shell = DefaultSSHShell
	}
	if !s.SSH.Enable {
		return
	}
	s.Network.DHCP = true
	want := []string{SSHServerPackage}
	if sh, ok := SSHShells[s.SSH.Shell]; ok {
		want = append(want, sh.Package)
	}
	for _, w := range want {
		if !slices.ContainsFunc(s.Packages, func(p string) bool { return ParsePackage(p).Name == w }) {
			s.Packages = append(s.Packages, w)
		}
	}
}

// impliedPackages are the packages ssh adds: a spec must not exclude them.
func (s *Spec) impliedPackages() map[string]string {
	m := map[string]string{}
	if !s.SSHEnabled() {
		return m
	}
	m[SSHServerPackage] = "ssh.enable"
	if sh, ok := SSHShells[s.SSH.Shell]; ok {
		m[sh.Package] = "ssh.shell"
	}
	return m
}

func (s *Spec) validateSSH(c *collector) {
	if x := s.SSH; x != nil {
		if x.Port < 1 || x.Port > 65535 {
			c.add("$.ssh.port", "%d is not a TCP port (1 to 65535)", x.Port)
		}
		if _, ok := SSHShells[x.Shell]; !ok {
			c.add("$.ssh.shell", "%q: the shell is busybox (package busybox-static) or bash", x.Shell)
		}
	}
	if s.SSHEnabled() {
		for i, f := range s.Root.Files {
			for _, o := range []string{SSHConfigPath, SSHAuthorizedKeysDir} {
				if f.Dst == o || strings.HasPrefix(f.Dst, o+"/") {
					c.add(key(index("$.root.files", i), "dst"), "%s is under %s: slate writes it from the ssh section and users' ssh_keys", f.Dst, o)
				}
			}
		}
		for i, svc := range s.Services {
			if svc.Name == SSHService {
				c.add(key(index("$.services", i), "name"), "%q is the ssh server's service (ssh.enable); name yours otherwise", svc.Name)
			}
		}
		for i, con := range s.Containers {
			if con.Name == SSHService {
				c.add(key(index("$.containers", i), "name"), "%q is the ssh server's service (ssh.enable); name yours otherwise", con.Name)
			}
		}
	}
	for i, u := range s.Users {
		up := key(index("$.users", i), "ssh_keys")
		if len(u.SSHKeys) > 0 && !s.SSHEnabled() {
			c.add(up, "keys without ssh: set ssh.enable: true, or remove them")
		}
		for j, k := range u.SSHKeys {
			if msg := CheckAuthorizedKey(k); msg != "" {
				c.add(index(up, j), "%s", msg)
			}
		}
	}
}

// maxKeyLine bounds one authorized_keys entry: an RSA key of 16384 bits
// with options is far below it.
const maxKeyLine = 16 << 10

// CheckAuthorizedKey says what is wrong with one authorized_keys line
// ("ssh-ed25519 AAAA... comment", with options if any), or "" when
// OpenSSH's parser (x/crypto/ssh.ParseAuthorizedKey) takes it whole.
func CheckAuthorizedKey(line string) string {
	switch {
	case strings.TrimSpace(line) == "":
		return "empty key; give an authorized_keys line like ssh-ed25519 AAAA... user@host"
	case len(line) > maxKeyLine:
		return fmt.Sprintf("%d bytes; an authorized_keys line has at most %d here", len(line), maxKeyLine)
	case strings.ContainsAny(line, "\r\n"):
		return "more than one line: give each key as its own entry"
	case strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		return "contains control characters"
	}
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return fmt.Sprintf("not an authorized_keys line (want TYPE BASE64 [COMMENT], like ssh-ed25519 AAAA... user@host): %v", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return "more than one key: give each key as its own entry"
	}
	return ""
}
