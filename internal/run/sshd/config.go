// Package sshd is what slate adds to OpenSSH's server: the sshd_config
// the builder writes into the read-only root, and the preparation PID 1
// runs before each start of sshd (`slate ssh-prepare`): the privilege-
// separation folder, the spec users' homes, and the host keys, made on
// first boot into STATE so that a machine keeps its identity across
// reboots, updates and rollbacks.
package sshd

import (
	"fmt"
	"strings"

	"github.com/slateos/slate/configs"
)

// Paths shared by the build (which names them in sshd_config) and the
// machine (which fills them).
const (
	// Binary is the server, from Debian's openssh-server.
	Binary = "/usr/sbin/sshd"
	// ConfigPath is the server's configuration, in the slot's root.
	ConfigPath = configs.SSHConfigPath
	// AuthorizedKeysDir holds one file per spec user with keys, named
	// after the user, root-owned and read-only: a user cannot change
	// which keys the image lets in.
	AuthorizedKeysDir = configs.SSHAuthorizedKeysDir
	// HostKeyDir is on STATE (/var): the keys outlive the slot.
	HostKeyDir = "/var/lib/slate/ssh"
)

// Options are the spec's choices that reach sshd_config.
type Options struct {
	Port            int
	PermitRootLogin bool
}

// Config renders sshd_config. OpenSSH takes the first value of a keyword,
// so everything is said once; keys are the only way in.
func Config(o Options) []byte {
	root := "no"
	if o.PermitRootLogin {
		// keys only, whatever a password field says
		root = "prohibit-password"
	}
	var b strings.Builder
	b.WriteString("# Written by slate from the image spec's ssh section.\n")
	fmt.Fprintf(&b, "Port %d\n", o.Port)
	for _, k := range HostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k.Path())
	}
	fmt.Fprintf(&b, "PermitRootLogin %s\n", root)
	// spec keys (root-owned, in the image) and Ignition's (in the home,
	// on STATE)
	fmt.Fprintf(&b, "AuthorizedKeysFile %s/%%u .ssh/authorized_keys\n", AuthorizedKeysDir)
	b.WriteString(`AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
HostbasedAuthentication no
GSSAPIAuthentication no
KerberosAuthentication no
# No PAM: the image has no PAM configuration (pam-auth-update is a
# maintainer script), and sshd then checks /etc/shadow itself: "!"
# (locked) refuses every key, "*" only passwords.
UsePAM no
PrintMotd no
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
`)
	return []byte(b.String())
}
