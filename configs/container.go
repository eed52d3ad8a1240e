package configs

// Container is an OCI image run as a service: pulled at build time,
// flattened into the slot's root under ContainersDir/<name>/rootfs and
// run by PID 1 through runc. It is updated and rolled back with the slot.
// Names share one namespace with services.
type Container struct {
	Name string `yaml:"name" json:"name"`
	// Image is a reference ("registry/repo:tag" or "...@sha256:..."). The
	// build resolves a tag to a digest and records it in build.json; a
	// digest pins the image.
	Image string `yaml:"image" json:"image"`
	// Insecure allows plain http to the image's registry (always allowed
	// for a loopback registry).
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
	// Command replaces the image's entrypoint, Args its cmd.
	Command []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Args    []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// User is "name", "uid", "name:group" or "uid:gid", resolved in the
	// image's own /etc/passwd and /etc/group at build time; empty takes
	// the image's user (root when the image names none).
	User       string `yaml:"user,omitempty" json:"user,omitempty"`
	WorkingDir string `yaml:"working_dir,omitempty" json:"working_dir,omitempty"`
	// Ports publish container ports on the host:
	// "HOSTPORT:CONTAINERPORT[/tcp|udp]".
	Ports []string `yaml:"ports,omitempty" json:"ports,omitempty"`
	// Volumes are "NAME:/container/path[:ro]": a folder NAME under
	// VolumesDir on STATE, owned by the container's user, kept across
	// updates and rollbacks.
	Volumes []string `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	// ReadOnly keeps the container's root read-only, with a tmpfs /tmp
	// (default true).
	ReadOnly *bool `yaml:"read_only,omitempty" json:"read_only,omitempty"`
	// Network is bridge (default: an address on the containers' bridge),
	// host or none.
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	Limits  `yaml:",inline"`
	// Restart is always (default for containers), on-failure or never.
	Restart  string   `yaml:"restart,omitempty" json:"restart,omitempty"`
	After    []string `yaml:"after,omitempty" json:"after,omitempty"`
	Requires []string `yaml:"requires,omitempty" json:"requires,omitempty"`
	// Health is checked by PID 1 while the container runs; the
	// updater's health gate waits for it to pass.
	Health *HealthCheck `yaml:"health,omitempty" json:"health,omitempty"`
}

// Limits bound a service's or a container's cgroup. Zero is no limit.
type Limits struct {
	// Memory is memory.max in bytes ("256MiB").
	Memory Size `yaml:"memory,omitempty" json:"memory,omitempty"`
	// CPUs is a share of CPUs ("0.5", "2"), written as cpu.max.
	CPUs float64 `yaml:"cpus,omitempty" json:"cpus,omitempty"`
	// PIDs is pids.max.
	PIDs int `yaml:"pids,omitempty" json:"pids,omitempty"`
}

// HealthCheck is one of HTTP, TCP or Command.
type HealthCheck struct {
	// HTTP is a URL path ("/healthz") on Port of the container: a 2xx or
	// 3xx answer passes.
	HTTP string `yaml:"http,omitempty" json:"http,omitempty"`
	// TCP passes when Port accepts a connection.
	TCP bool `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	// Port is the container's port for HTTP and TCP.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Command runs inside the container (runc exec); exit 0 passes.
	Command []string `yaml:"command,omitempty" json:"command,omitempty"`
	// Interval between checks (default 10s), Timeout of one (default 5s),
	// Retries failures in a row before it is unhealthy (default 3),
	// StartPeriod during which failures do not count (default 0).
	Interval    Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout     Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retries     int      `yaml:"retries,omitempty" json:"retries,omitempty"`
	StartPeriod Duration `yaml:"start_period,omitempty" json:"start_period,omitempty"`
}

// Where containers live in the slot's root and on STATE.
const (
	// ContainersDir holds one OCI bundle per container: config.json and
	// rootfs/.
	ContainersDir = "/usr/lib/slate/containers"
	// VolumesDir is on STATE (mounted at /var).
	VolumesDir = "/var/lib/slate/volumes"
	// RuncPath is the runtime the builder puts in the root.
	RuncPath = "/usr/lib/slate/runc"
	// RuncState is runc's --root, on a tmpfs.
	RuncState = "/run/slate/runc"
	// ContainerRunDir holds what PID 1 mounts for a writable container
	// root, one folder per container: a tmpfs on ContainerRunDir/NAME,
	// and ContainerRunDir/NAME/rootfs the overlay runc uses as its root
	// (config.json's root.path).
	ContainerRunDir = "/run/slate/containers"
)

// Container networks.
const (
	NetworkBridge = "bridge"
	NetworkHost   = "host"
	NetworkNone   = "none"
)

// DefaultContainerSubnet is the bridge's subnet; the bridge takes its
// first address and containers the next ones, in spec order.
const DefaultContainerSubnet = "10.88.0.0/16"
