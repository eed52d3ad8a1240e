//lint:file-ignore ST1011 RestartSec, TimeoutStartSec and TimeoutStopSec are named after systemd's unit keys

// Package configs holds the image spec: its type, parsing from YAML,
// defaults and validation. Every error names the field by JSON path.
package configs

// Spec is one image: what the builder turns into a disk. The booted
// system does not see it: the builder bakes only the parts the machine
// reads (name, version, services, network, update) into the root's
// /usr/lib/slate/image.json.
type Spec struct {
	Name     string    `yaml:"name" json:"name"`
	Version  string    `yaml:"version" json:"version"`
	Hostname string    `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Kernel   Kernel    `yaml:"kernel,omitempty" json:"kernel"`
	Disk     Disk      `yaml:"disk,omitempty" json:"disk"`
	Root     Root      `yaml:"root,omitempty" json:"root"`
	Services []Service `yaml:"services,omitempty" json:"services,omitempty"`
	// Containers are OCI images baked into the slot and run by PID 1.
	Containers []Container `yaml:"containers,omitempty" json:"containers,omitempty"`
	// Users and Groups are accounts added to the image's /etc/passwd,
	// /etc/group and /etc/shadow besides root and nobody (for services
	// that run as their own user).
	Users  []User  `yaml:"users,omitempty" json:"users,omitempty"`
	Groups []Group `yaml:"groups,omitempty" json:"groups,omitempty"`
	// Packages are Debian binary packages ("name" or "name=version")
	// unpacked into the root with their dependency closure; Debian says
	// where from.
	Packages []string `yaml:"packages,omitempty" json:"packages,omitempty"`
	Debian   *Debian  `yaml:"debian,omitempty" json:"debian,omitempty"`
	Network  Network  `yaml:"network,omitempty" json:"network"`
	// SSH runs OpenSSH's server (key-only) when SSH.Enable is set.
	SSH     *SSH     `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	Console []string `yaml:"console,omitempty" json:"console,omitempty"`
	Update  *Update  `yaml:"update,omitempty" json:"update,omitempty"`
	// Ignition is the host path of an Ignition config baked into the
	// image, applied on first boot when no config comes from the kernel
	// command line or QEMU's fw_cfg.
	Ignition string `yaml:"ignition,omitempty" json:"ignition,omitempty"`

	// Dir is the folder of the spec file; relative paths in the spec are
	// resolved against it. Not part of the YAML.
	Dir string `yaml:"-" json:"-"`
}

// Kernel selects the kernel of every slot and its modules.
type Kernel struct {
	// Package is a Debian kernel package unpacked by slate kernel fetch
	// into the cache (default linux-image-amd64). Ignored when Vmlinuz is set.
	Package string `yaml:"package,omitempty" json:"package,omitempty"`
	// Vmlinuz and ModulesDir name a kernel outside the cache: a bzImage and
	// its /lib/modules/<version> tree. Both or neither.
	Vmlinuz    string `yaml:"vmlinuz,omitempty" json:"vmlinuz,omitempty"`
	ModulesDir string `yaml:"modules_dir,omitempty" json:"modules_dir,omitempty"`
	// Args are extra kernel command-line arguments.
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
	// InitramfsModules are added to the initramfs' boot module closure.
	InitramfsModules []string `yaml:"initramfs_modules,omitempty" json:"initramfs_modules,omitempty"`
	// Modules are added to the root's module set: module names ("e1000e")
	// or folders of the module tree ("kernel/drivers/net/ethernet/intel").
	Modules []string `yaml:"modules,omitempty" json:"modules,omitempty"`
}

// Disk sizes, in bytes once parsed ("4GiB", "256MiB", "1G", "512M").
type Disk struct {
	Size Size `yaml:"size,omitempty" json:"size"`
	ESP  Size `yaml:"esp,omitempty" json:"esp"`
	Root Size `yaml:"root,omitempty" json:"root"`
}

// Root is what goes into each slot's root filesystem besides slate itself.
type Root struct {
	Files []File `yaml:"files,omitempty" json:"files,omitempty"`
	// CABundle is a host PEM file of CA certificates installed as the
	// root's CA store (CABundlePath); empty takes the build host's
	// Debian bundle (HostCABundle).
	CABundle string `yaml:"ca_bundle,omitempty" json:"ca_bundle,omitempty"`
}

// CABundlePath is where the root's CA certificates live: the first file
// Go's crypto/x509 (and OpenSSL on Debian) reads on Linux, so https to a
// channel or an Ignition URL works without any set-up.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// HostCABundle is the build host's bundle a root gets by default, from
// Debian's ca-certificates package.
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// File copies a host file or folder (Src, relative to the spec) to Dst in
// the root. Mode applies to a file, or to every file under a folder; empty
// keeps the host mode.
type File struct {
	Src  string `yaml:"src" json:"src"`
	Dst  string `yaml:"dst" json:"dst"`
	Mode Mode   `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Owner and Group own the file, or everything copied from the
	// folder: a user (group) of the image, by name or number. Empty is
	// root; the host's owners never reach the image.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
}

// Restart policies of a service.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Service types: how the supervisor decides a service has started.
const (
	// TypeSimple services have started once their program is running
	// (exec succeeded). An empty Type means simple.
	TypeSimple = "simple"
	// TypeOneshot services run to completion: they have started once they
	// exit with status 0, and are never restarted.
	TypeOneshot = "oneshot"
)

// Service is a service of the spec: only what the YAML says. PID 1 runs
// its own model of it (supervisor.FromSpec), which Ignition units fill
// too.
type Service struct {
	Name    string            `yaml:"name" json:"name"`
	Command string            `yaml:"command" json:"command"`
	Args    []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Restart is always, on-failure (default) or never. A oneshot service
	// is never restarted.
	Restart string `yaml:"restart,omitempty" json:"restart,omitempty"`

	// Type is simple (when empty) or oneshot.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// User runs the service as this user, a name or a numeric uid,
	// resolved in /etc/passwd (and its groups in /etc/group) at each
	// start. Empty runs it as root.
	User string `yaml:"user,omitempty" json:"user,omitempty"`
	// WorkingDirectory is the absolute folder the service starts in; / when
	// empty.
	WorkingDirectory string `yaml:"working_directory,omitempty" json:"working_directory,omitempty"`
	// EnvironmentFile lists files of KEY=VALUE lines read at each start,
	// in order, before Env (Env wins). A path with a leading "-" may be
	// missing.
	EnvironmentFile []string `yaml:"environment_file,omitempty" json:"environment_file,omitempty"`
	// After names services that must have started before this one starts.
	After []string `yaml:"after,omitempty" json:"after,omitempty"`
	// Requires names services that must have started before this one
	// starts (as After does) and without which it is not started at all.
	Requires []string `yaml:"requires,omitempty" json:"requires,omitempty"`
	// Limits bound the service's own cgroup.
	Limits `yaml:",inline"`
}

// Network configuration of the booted system.
type Network struct {
	// DHCP brings up the first wired interface with DHCPv4.
	DHCP bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// ContainerSubnet is the containers' bridge subnet (default
	// DefaultContainerSubnet).
	ContainerSubnet string `yaml:"container_subnet,omitempty" json:"container_subnet,omitempty"`
}
