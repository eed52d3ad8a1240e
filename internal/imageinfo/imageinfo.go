// Package imageinfo owns the image description, /usr/lib/slate/image.json:
// the builder writes it into every root, and the running system (PID 1,
// the updater, slate inspect) reads it without linking any build code.
package imageinfo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/slateos/slate/configs"
)

// Path is where the description lives in every root. It is under /usr so
// the writable /etc cannot shadow it.
const Path = "/usr/lib/slate/image.json"

// Info is Path's content: what the booted system reads to
// know itself (PID 1, the updater, slate inspect), and nothing else. The
// root is public (it is in every channel), so the spec's host paths, disk
// sizes, kernel set-up and files have no place in it.
type Info struct {
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	Hostname      string            `json:"hostname"`
	KernelVersion string            `json:"kernel_version"`
	Services      []configs.Service `json:"services,omitempty"`
	// Containers are the spec's containers with what the build resolved
	// for them.
	Containers []Container `json:"containers,omitempty"`
	// Packages are the Debian packages unpacked into the root.
	Packages []Package       `json:"packages,omitempty"`
	Network  configs.Network `json:"network"`
	// SSH is the spec's ssh section when it enables ssh: PID 1 then runs
	// sshd.
	SSH *configs.SSH `json:"ssh,omitempty"`
	// Update is the spec's update section without public_key (a host
	// path; the key itself is at updater.PublicKeyPath).
	Update *configs.Update `json:"update,omitempty"`
}

// Container is a baked container: the spec's entry, the image digest it
// was resolved to, and what the build decided for it.
type Container struct {
	configs.Container
	// Digest is the manifest digest ("sha256:...") of the image.
	Digest string `json:"digest"`
	// Bundle is the OCI bundle folder (configs.ContainersDir/<name>).
	Bundle string `json:"bundle"`
	// Address is the container's address on the bridge with the
	// subnet's prefix ("10.88.0.2/16"), Gateway the bridge's; both empty
	// for the host and none networks.
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// UID and GID are the container's user, resolved in its image.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// StopSignal is the image's STOPSIGNAL as the image names it
	// (configs.ParseSignal reads it), empty for SIGTERM.
	StopSignal string `json:"stop_signal,omitempty"`
}

// Package is a Debian package of the root: its name and version.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Marshal renders the image description of spec.
func Marshal(spec *configs.Spec, kernelVersion string, containers ...Container) ([]byte, error) {
	return MarshalWith(spec, kernelVersion, containers, nil)
}

// MarshalWith renders the image description of spec with its baked
// containers and the Debian packages of its root.
func MarshalWith(spec *configs.Spec, kernelVersion string, containers []Container, packages []Package) ([]byte, error) {
	info := Info{
		Name: spec.Name, Version: spec.Version, Hostname: spec.Hostname,
		KernelVersion: kernelVersion, Services: spec.Services, Network: spec.Network,
		Containers: containers, Packages: packages,
	}
	if spec.SSHEnabled() {
		info.SSH = spec.SSH
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("image description: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image description: %w", err)
	}
	if spec.Update != nil {
		// Through a map, so that fields the update section gains later
		// reach the machine without a change here; only the host path
		// is taken out.
		ub, err := json.Marshal(spec.Update)
		if err != nil {
			return nil, fmt.Errorf("image description: update: %w", err)
		}
		var um map[string]json.RawMessage
		if err := json.Unmarshal(ub, &um); err != nil {
			return nil, fmt.Errorf("image description: update: %w", err)
		}
		delete(um, "public_key")
		if m["update"], err = json.Marshal(um); err != nil {
			return nil, fmt.Errorf("image description: update: %w", err)
		}
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("image description: %w", err)
	}
	return append(out, '\n'), nil
}

// Load reads the image description of the root at root ("/" on the
// machine).
func Load(root string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(root, Path))
	if err != nil {
		return nil, fmt.Errorf("read image description: %w", err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("parse %s: %w", Path, err)
	}
	if info.Name == "" || info.Version == "" {
		return nil, fmt.Errorf("%s names no image (name and version are empty)", Path)
	}
	return &info, nil
}
