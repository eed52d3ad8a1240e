package pid1

import (
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

func TestSSHServices(t *testing.T) {
	if got := sshServices(&imageinfo.Info{}); len(got) != 0 {
		t.Errorf("no ssh section: %+v", got)
	}
	if got := sshServices(&imageinfo.Info{SSH: &configs.SSH{Port: 22}}); len(got) != 0 {
		t.Errorf("ssh off: %+v", got)
	}
	got := sshServices(&imageinfo.Info{SSH: &configs.SSH{Enable: true, Port: 22}})
	if len(got) != 1 || got[0].Name != "sshd" || got[0].Command != "/usr/sbin/sshd" || got[0].ExecStartPre[0].Argv[1] != "ssh-prepare" {
		t.Fatalf("ssh on: %+v", got)
	}
	// the one validation of a service takes it (a spec service could be
	// written the same way)
	s := got[0]
	if probs := configs.CheckService(configs.Service{Name: s.Name, Command: s.Command, Args: s.Args, Restart: s.Restart}); len(probs) > 0 {
		t.Errorf("invalid service: %+v", probs)
	}
}
