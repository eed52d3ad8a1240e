package pid1

import (
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/run/sshd"
	"github.com/slateos/slate/internal/run/supervisor"
)

// SSHService is how PID 1 runs OpenSSH's server when the spec enables
// ssh: in the foreground, logging to stderr (the service's log and the
// console), restarted whenever it exits. Before each start `slate
// ssh-prepare` makes /run/sshd (a tmpfs, empty at every boot), the
// spec users' homes and, on first boot, the host keys.
var SSHService = supervisor.Service{
	Name:         configs.SSHService,
	Command:      sshd.Binary,
	Args:         []string{"-D", "-e"},
	Restart:      configs.RestartAlways,
	ExecStartPre: []supervisor.ExecCommand{{Argv: []string{"/usr/bin/slate", "ssh-prepare"}}},
}

// sshServices is SSHService when the image enables ssh.
func sshServices(info *imageinfo.Info) []supervisor.Service {
	if info.SSH == nil || !info.SSH.Enable {
		return nil
	}
	return []supervisor.Service{SSHService}
}
