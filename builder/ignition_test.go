package builder

import (
	"slices"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/ignition"
)

// A Flatcar or Fedora CoreOS style config (a user in wheel and docker,
// /etc/hostname without overwrite) is valid for an image; one that
// replaces an image file without overwrite, or names a spec service, is
// not.
func TestIgnitionImage(t *testing.T) {
	spec := &configs.Spec{Name: "x", Hostname: "x", Services: []configs.Service{{Name: "web", Command: "/bin/web"}},
		Root: configs.Root{Files: []configs.File{{Src: "a", Dst: "/etc/app.conf"}}}}
	img := IgnitionImage(spec)
	for _, g := range []string{"root", "wheel", "sudo", "adm", "docker", "users", "nogroup"} {
		if !slices.Contains(img.Groups, g) {
			t.Errorf("image groups %q lack %s", img.Groups, g)
		}
	}
	if slices.Contains(img.Files, "/etc/hostname") || !slices.Contains(img.Files, "/etc/passwd") || !slices.Contains(img.Files, "/etc/app.conf") {
		t.Errorf("image files %q", img.Files)
	}
	seen := map[string]bool{}
	_, groups, _ := accountFiles(&configs.Spec{})
	for _, l := range strings.Split(strings.TrimSpace(groups), "\n") {
		f := strings.Split(l, ":")
		if len(f) != 4 || seen[f[2]] {
			t.Errorf("group line %q malformed or gid taken twice", l)
		}
		seen[f[2]] = true
	}
	ok := `{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","groups":["wheel","docker","sudo"]}]},
		"storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,node1"}}]}}`
	if _, err := ignition.ParseFor([]byte(ok), img); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/app.conf","contents":{"source":"data:,x"}}]}}`,
		`{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"web.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n"}]}}`,
		`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","groups":["podman"]}]}}`,
	} {
		if _, err := ignition.ParseFor([]byte(bad), img); err == nil {
			t.Errorf("accepted for the image: %s", bad)
		}
	}
}
