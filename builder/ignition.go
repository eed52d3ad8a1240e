package builder

import (
	"path"
	"strings"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/ignition"
)

// IgnitionImage is what an Ignition config is checked against for an
// image of spec: its services (the updater's name is always reserved),
// the groups and users of its /etc, and the files it has in the writable
// layer.
func IgnitionImage(spec *configs.Spec) *ignition.Image {
	img := &ignition.Image{}
	for _, s := range spec.Services {
		img.Services = append(img.Services, s.Name)
	}
	etc := etcFiles(spec)
	passwd, group, shadow := accountFiles(spec)
	etc["/etc/passwd"], etc["/etc/group"], etc["/etc/shadow"] = passwd, group, shadow
	for _, f := range []struct {
		name string
		into *[]string
	}{{"/etc/group", &img.Groups}, {"/etc/passwd", &img.Users}} {
		for l := range strings.SplitSeq(strings.TrimSpace(etc[f.name]), "\n") {
			if n, _, ok := strings.Cut(l, ":"); ok {
				*f.into = append(*f.into, n)
			}
		}
	}
	img.Files = append(img.Files, sortedKeys(etc)...)
	for _, f := range spec.Root.Files {
		if d := path.Clean("/" + f.Dst); strings.HasPrefix(d, "/etc/") {
			img.Files = append(img.Files, d)
		}
	}
	return img
}
