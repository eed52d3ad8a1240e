package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

// Fixed parts of every container's runtime config.
const (
	// HookPath is the slate binary in the root; the bridge network's
	// createRuntime hook runs it as "slate container-hook network NAME
	// ADDRESS GATEWAY" (the OCI state JSON on stdin).
	HookPath = "/usr/bin/slate"
	// DefaultPath is the PATH a container gets when its image sets none
	// (Docker's).
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// cpuPeriod is cpu.max's period in microseconds.
	cpuPeriod = 100000
	// hookTimeout bounds the network hook, in seconds: runc kills a hook
	// that runs longer and fails the start, instead of the start hanging.
	hookTimeout = 30
)

// DefaultCapabilities is Docker's default set, in Docker's order: the
// bounding, effective and permitted sets (never inheritable or ambient,
// so a non-root process keeps none across execve).
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// MaskedPaths and ReadonlyPaths are Docker's (moby's oci defaults, with
// the later additions /proc/interrupts and the powercap interface).
var (
	MaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// TargetKernel is the kernel version the seccomp profile's version rules
// are decided for: the kernel slate ships (Debian's 6.1), not the build
// host's, so that the same spec gives the same config.json anywhere.
var TargetKernel = seccomp.KernelVersion{Kernel: 6, Major: 1}

// RuntimeSpec is the OCI runtime config (config.json) of container c,
// whose image has config img and whose user resolved to u (the builder
// also records u.UID and u.GID in c). Its defaults are Docker's:
// no-new-privileges, Docker's capabilities and seccomp profile, masked
// and read-only /proc paths, the pid, mount, uts, ipc, cgroup and (except
// for network: host) network namespaces, Docker's /dev, /dev/pts,
// /dev/shm (64 MiB), /dev/mqueue, /proc and read-only /sys and cgroup
// mounts, a deny-all device cgroup (runc adds the standard devices), and
// in a network namespace of its own unprivileged ports and ping for every
// user (net.ipv4.ip_unprivileged_port_start=0, ping_group_range).
//
// The process follows Docker's rules for entrypoint and cmd: the spec's
// command replaces the image's entrypoint and then drops the image's cmd
// (only the spec's args follow it); without a command, the image's
// entrypoint is followed by the spec's args if there are any, else by the
// image's cmd. Env is the image's, then the spec's in key order (a key
// the image has is replaced where it stands), then PATH (when neither
// set one) and HOSTNAME. The working directory is the spec's, else the
// image's, else "/".
//
// Mounts beyond the defaults: /tmp (a tmpfs, for a read-only root), the
// host's /etc/resolv.conf read-only (not for network: none), and each
// volume as a bind of configs.VolumesDir/NAME (nosuid, nodev; ro with
// ":ro"), sorted by target. The same inputs give the same config.
func RuntimeSpec(c imageinfo.Container, img ImageConfig, u User) (*specs.Spec, error) {
	if c.Name == "" || strings.ContainsAny(c.Name, "/\x00") || c.Name == "." || c.Name == ".." {
		return nil, fmt.Errorf("container name %q: not a plain name", c.Name)
	}
	args, err := processArgs(c.Container, img)
	if err != nil {
		return nil, err
	}
	env, err := processEnv(c.Container, img)
	if err != nil {
		return nil, err
	}
	cwd := "/"
	switch {
	case c.WorkingDir != "":
		if !path.IsAbs(c.WorkingDir) {
			return nil, fmt.Errorf("working_dir %q: not an absolute path", c.WorkingDir)
		}
		cwd = path.Clean(c.WorkingDir)
	case img.WorkingDir != "":
		cwd = path.Join("/", img.WorkingDir)
	}
	network := c.Network
	if network == "" {
		network = configs.NetworkBridge
	}
	readOnly := c.ReadOnly == nil || *c.ReadOnly

	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: c.Name,
		Process: &specs.Process{
			User: specs.User{UID: u.UID, GID: u.GID, AdditionalGids: slices.Clone(u.AdditionalGids)},
			Args: args,
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  slices.Clone(DefaultCapabilities),
				Effective: slices.Clone(DefaultCapabilities),
				Permitted: slices.Clone(DefaultCapabilities),
			},
			// systemd's default for services: select()-safe soft limit,
			// a hard limit programs may raise to (Go does by itself).
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 524288}},
			NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Linux: &specs.Linux{
			CgroupsPath:   "/slate/" + c.Name,
			MaskedPaths:   slices.Clone(MaskedPaths),
			ReadonlyPaths: slices.Clone(ReadonlyPaths),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
	if !readOnly {
		s.Root = &specs.Root{Path: configs.ContainerRunDir + "/" + c.Name + "/rootfs"}
	}
	if network != configs.NetworkHost {
		// Docker's, in the container's own network namespace only: any
		// user may bind ports below 1024 and ping (the image's user is
		// often not root, and its server listens on :80).
		s.Linux.Sysctl = map[string]string{
			"net.ipv4.ip_unprivileged_port_start": "0",
			"net.ipv4.ping_group_range":           "0 2147483647",
		}
	}
	for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.NetworkNamespace, specs.CgroupNamespace} {
		if ns == specs.NetworkNamespace && network == configs.NetworkHost {
			continue
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: ns})
	}
	res := s.Linux.Resources
	if c.Memory < 0 || c.CPUs < 0 || c.PIDs < 0 || math.IsNaN(c.CPUs) || c.CPUs > 1<<20 {
		return nil, fmt.Errorf("limits: memory %d, cpus %v, pids %d: negative or out of range", c.Memory, c.CPUs, c.PIDs)
	}
	if c.Memory > 0 {
		limit := int64(c.Memory)
		// Swap equal to the limit: no swap beyond memory.max.
		res.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	}
	if c.CPUs > 0 {
		quota := int64(math.Round(c.CPUs * cpuPeriod))
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if c.PIDs > 0 {
		pids := int64(c.PIDs)
		res.Pids = &specs.LinuxPids{Limit: &pids}
	}

	s.Mounts = defaultMounts()
	if readOnly {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}})
	}
	if network != configs.NetworkNone {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
	}
	vols, err := volumeMounts(c.Volumes)
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, vols...)

	switch network {
	case configs.NetworkBridge:
		if c.Address == "" || c.Gateway == "" {
			return nil, fmt.Errorf("network bridge: no address or gateway for %s", c.Name)
		}
		timeout := hookTimeout
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{
			Path:    HookPath,
			Args:    []string{"slate", "container-hook", "network", c.Name, c.Address, c.Gateway},
			Timeout: &timeout,
		}}}
	case configs.NetworkHost, configs.NetworkNone:
	default:
		return nil, fmt.Errorf("network %q: not bridge, host or none", network)
	}

	sc, err := seccompProfile(s.Process.Capabilities.Bounding)
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = sc
	return s, nil
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		// runc mounts cgroup2 here (the host is unified), the
		// container's own cgroup as its root (cgroup namespace).
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
	}
}

// processArgs applies Docker's entrypoint/cmd rules.
func processArgs(c configs.Container, img ImageConfig) ([]string, error) {
	var args []string
	if len(c.Command) > 0 {
		args = append(slices.Clone(c.Command), c.Args...)
	} else {
		args = slices.Clone(img.Entrypoint)
		if len(c.Args) > 0 {
			args = append(args, c.Args...)
		} else {
			args = append(args, img.Cmd...)
		}
	}
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("command: neither the spec (command, args) nor the image (entrypoint, cmd) names a program")
	}
	return args, nil
}

func processEnv(c configs.Container, img ImageConfig) ([]string, error) {
	var env []string
	at := map[string]int{}
	set := func(k, v string) {
		if i, ok := at[k]; ok {
			env[i] = k + "=" + v
			return
		}
		at[k] = len(env)
		env = append(env, k+"="+v)
	}
	for _, e := range img.Env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return nil, fmt.Errorf("the image's env %q: not KEY=value", e)
		}
		set(k, v)
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(c.Env[k], 0) >= 0 {
			return nil, fmt.Errorf("env %q: not a variable name (or a NUL in the value)", k)
		}
		set(k, c.Env[k])
	}
	if _, ok := at["PATH"]; !ok {
		set("PATH", DefaultPath)
	}
	if _, ok := at["HOSTNAME"]; !ok {
		set("HOSTNAME", c.Name)
	}
	return env, nil
}

func volumeMounts(vs []string) ([]specs.Mount, error) {
	var out []specs.Mount
	seen := map[string]bool{}
	for _, v := range vs {
		vol, err := configs.ParseVolume(v)
		if err != nil {
			return nil, fmt.Errorf("volume %w", err)
		}
		if seen[vol.Path] {
			return nil, fmt.Errorf("volume %q: %s is mounted twice", v, vol.Path)
		}
		seen[vol.Path] = true
		opts := []string{"rbind", "nosuid", "nodev"}
		if vol.ReadOnly {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: vol.Path, Type: "bind", Source: vol.HostPath(), Options: opts})
	}
	// A parent before its children, whatever the spec's order.
	slices.SortFunc(out, func(a, b specs.Mount) int { return strings.Compare(a.Destination, b.Destination) })
	return out, nil
}

// seccompProfile converts Docker's default profile (moby/profiles) to the
// runtime-spec type for x86_64 and the capabilities caps, the way
// moby/profiles' GetDefaultProfile does, except that kernel rules are
// decided for TargetKernel (GetDefaultProfile asks the running kernel and
// the build host's architecture).
func seccompProfile(caps []string) (*specs.LinuxSeccomp, error) {
	p := seccomp.DefaultProfile()
	out := &specs.LinuxSeccomp{
		DefaultAction:   p.DefaultAction,
		DefaultErrnoRet: p.DefaultErrnoRet,
		Flags:           slices.Clone(p.Flags),
	}
	for _, a := range p.ArchMap {
		if a.Arch == specs.ArchX86_64 {
			out.Architectures = append([]specs.Arch{a.Arch}, a.SubArches...)
		}
	}
	if len(out.Architectures) == 0 {
		return nil, errors.New("seccomp: the default profile has no x86_64")
	}
	const arch = "amd64" // libseccomp's name, as the profile's filters use it
	kernelOK := func(k *seccomp.KernelVersion) bool {
		return TargetKernel.Kernel > k.Kernel || (TargetKernel.Kernel == k.Kernel && TargetKernel.Major >= k.Major)
	}
	hasCap := func(c string) bool { return slices.Contains(caps, c) }
	for _, call := range p.Syscalls {
		if x := call.Excludes; x != nil {
			if slices.Contains(x.Arches, arch) || slices.ContainsFunc(x.Caps, hasCap) || (x.MinKernel != nil && kernelOK(x.MinKernel)) {
				continue
			}
		}
		if in := call.Includes; in != nil {
			if len(in.Arches) > 0 && !slices.Contains(in.Arches, arch) {
				continue
			}
			if !allOf(in.Caps, hasCap) || (in.MinKernel != nil && !kernelOK(in.MinKernel)) {
				continue
			}
		}
		// DefaultProfile lists Names only (Name is for old JSON profiles).
		sc := call.LinuxSyscall
		sc.Names = slices.Clone(sc.Names)
		sc.Args = slices.Clone(sc.Args)
		out.Syscalls = append(out.Syscalls, sc)
	}
	return out, nil
}

func allOf(xs []string, f func(string) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

// MarshalSpec renders config.json: indented, keys in the runtime-spec's
// order (maps, e.g. annotations, sorted by encoding/json), so equal specs
// give identical bytes.
func MarshalSpec(s *specs.Spec) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	return append(b, '\n'), nil
}

// MountPoints lists, sorted, the paths s mounts over that are not inside
// another of its mounts (runc creates /dev/pts in the /dev tmpfs, but
// cannot create /dev itself in a read-only root): /proc, /dev, /sys, /tmp,
// each volume's target as directories, /etc/resolv.conf as a file.
func MountPoints(s *specs.Spec) []MountPoint {
	var out []MountPoint
	for _, m := range s.Mounts {
		d := path.Clean(m.Destination)
		inside := false
		for _, o := range s.Mounts {
			od := path.Clean(o.Destination)
			if od != d && strings.HasPrefix(d, strings.TrimSuffix(od, "/")+"/") {
				inside = true
				break
			}
		}
		if inside {
			continue
		}
		out = append(out, MountPoint{Path: d, Dir: d != "/etc/resolv.conf"})
	}
	slices.SortFunc(out, func(a, b MountPoint) int { return strings.Compare(a.Path, b.Path) })
	return slices.CompactFunc(out, func(a, b MountPoint) bool { return a.Path == b.Path })
}
