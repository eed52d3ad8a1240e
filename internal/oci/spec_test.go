package oci

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/imageinfo"
)

func bridgeContainer() imageinfo.Container {
	return imageinfo.Container{
		Container: configs.Container{
			Name: "web", Image: "registry.example/web:v1",
			Env:     map[string]string{"Z": "26", "A": "override", "B": "2"},
			Volumes: []string{"data:/var/lib/web", "conf:/etc/web:ro", "cache:/var/lib/web/cache"},
			Limits:  configs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 100},
		},
		Digest: "sha256:" + strings.Repeat("0", 64), Bundle: configs.ContainersDir + "/web",
		Address: "10.88.0.2/16", Gateway: "10.88.0.1", UID: 1000, GID: 1000,
	}
}

var testImageConfig = ImageConfig{
	Entrypoint: []string{"/bin/web"}, Cmd: []string{"--port", "80"},
	Env: []string{"A=1", "PATH=/bin:/usr/bin"}, User: "app", WorkingDir: "/srv",
}

func mountOf(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func nsTypes(s *specs.Spec) []string {
	var out []string
	for _, ns := range s.Linux.Namespaces {
		out = append(out, string(ns.Type))
	}
	return out
}

func TestRuntimeSpecDefaults(t *testing.T) {
	u := User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}}
	s, err := RuntimeSpec(bridgeContainer(), testImageConfig, u)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !p.NoNewPrivileges {
		t.Error("noNewPrivileges off")
	}
	caps := p.Capabilities
	if len(caps.Bounding) != 14 || !reflect.DeepEqual(caps.Bounding, caps.Effective) || !reflect.DeepEqual(caps.Bounding, caps.Permitted) ||
		len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("capabilities %+v", caps)
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"} {
		if slices.Contains(caps.Bounding, c) {
			t.Errorf("%s granted", c)
		}
	}
	if !reflect.DeepEqual(p.User, specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}}) {
		t.Errorf("user %+v", p.User)
	}
	if !reflect.DeepEqual(p.Args, []string{"/bin/web", "--port", "80"}) || p.Cwd != "/srv" {
		t.Errorf("args %q cwd %q", p.Args, p.Cwd)
	}
	wantEnv := []string{"A=override", "PATH=/bin:/usr/bin", "B=2", "Z=26", "HOSTNAME=web"}
	if !reflect.DeepEqual(p.Env, wantEnv) {
		t.Errorf("env %q, want %q", p.Env, wantEnv)
	}
	if s.Hostname != "web" || s.Root.Path != "rootfs" || !s.Root.Readonly {
		t.Errorf("hostname %q root %+v", s.Hostname, s.Root)
	}
	l := s.Linux
	if l.CgroupsPath != "/slate/web" {
		t.Errorf("cgroupsPath %q", l.CgroupsPath)
	}
	if got := nsTypes(s); !reflect.DeepEqual(got, []string{"pid", "mount", "uts", "ipc", "network", "cgroup"}) {
		t.Errorf("namespaces %v", got)
	}
	for _, m := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/timer_list"} {
		if !slices.Contains(l.MaskedPaths, m) {
			t.Errorf("%s not masked", m)
		}
	}
	for _, m := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"} {
		if !slices.Contains(l.ReadonlyPaths, m) {
			t.Errorf("%s not read-only", m)
		}
	}
	r := l.Resources
	if *r.Memory.Limit != 256<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Pids.Limit != 100 {
		t.Errorf("resources %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
		t.Errorf("device cgroup %+v", r.Devices)
	}

	sc := l.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 5 || sc.Architectures[0] != specs.ArchX86_64 {
		t.Fatalf("seccomp %+v", sc)
	}
	allowed := map[string]bool{}
	for _, c := range sc.Syscalls {
		for _, n := range c.Names {
			if c.Action == specs.ActAllow && len(c.Args) == 0 {
				allowed[n] = true
			}
		}
	}
	// ptrace too: the profile allows it from kernel 4.8 (TargetKernel 6.1).
	for _, n := range []string{"read", "write", "openat", "arch_prctl", "ptrace"} {
		if !allowed[n] {
			t.Errorf("%s not allowed by seccomp", n)
		}
	}
	// CAP_SYS_ADMIN, CAP_SYS_MODULE, ... are not granted: their calls stay out.
	for _, n := range []string{"mount", "umount2", "init_module", "kexec_load", "bpf", "reboot", "setns", "unshare"} {
		if allowed[n] {
			t.Errorf("%s allowed by seccomp", n)
		}
	}

	// Mounts: Docker's, /tmp, resolv.conf, volumes sorted.
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	wantDests := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm", "/tmp", "/etc/resolv.conf", "/etc/web", "/var/lib/web", "/var/lib/web/cache"}
	if !reflect.DeepEqual(dests, wantDests) {
		t.Errorf("mounts %v, want %v", dests, wantDests)
	}
	if m := mountOf(s, "/dev/pts"); !reflect.DeepEqual(m.Options, []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}) {
		t.Errorf("/dev/pts %v", m.Options)
	}
	if m := mountOf(s, "/dev/shm"); !slices.Contains(m.Options, "size=67108864") {
		t.Errorf("/dev/shm %v", m.Options)
	}
	if m := mountOf(s, "/sys"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys %v", m.Options)
	}
	if m := mountOf(s, "/etc/web"); m.Source != configs.VolumesDir+"/conf" || !slices.Contains(m.Options, "ro") {
		t.Errorf("ro volume %+v", m)
	}
	if m := mountOf(s, "/var/lib/web"); m.Source != configs.VolumesDir+"/data" || slices.Contains(m.Options, "ro") || m.Type != "bind" {
		t.Errorf("volume %+v", m)
	}
	if m := mountOf(s, "/etc/resolv.conf"); m.Source != "/etc/resolv.conf" || !slices.Contains(m.Options, "ro") {
		t.Errorf("resolv.conf %+v", m)
	}
	thirty := 30 // seconds: a hung hook fails the start instead of holding it
	wantHook := []specs.Hook{{Path: "/usr/bin/slate", Args: []string{"slate", "container-hook", "network", "web", "10.88.0.2/16", "10.88.0.1"}, Timeout: &thirty}}
	if s.Hooks == nil || !reflect.DeepEqual(s.Hooks.CreateRuntime, wantHook) {
		t.Errorf("hooks %+v", s.Hooks)
	}

	// MountPoints: what the read-only root must hold.
	want := []MountPoint{{"/dev", true}, {"/etc/resolv.conf", false}, {"/etc/web", true}, {"/proc", true}, {"/sys", true}, {"/tmp", true}, {"/var/lib/web", true}}
	if got := MountPoints(s); !reflect.DeepEqual(got, want) {
		t.Errorf("mount points %v, want %v", got, want)
	}

	// Deterministic: the same inputs, the same bytes (map order aside).
	a, err := MarshalSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s2, err := RuntimeSpec(bridgeContainer(), testImageConfig, u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := MarshalSpec(s2)
		if !bytes.Equal(a, b) {
			t.Fatal("config.json differs between two runs")
		}
	}
	var back specs.Spec
	if err := json.Unmarshal(a, &back); err != nil || back.Version != specs.Version {
		t.Errorf("config.json does not read back: %v", err)
	}
}

func TestRuntimeSpecNetworks(t *testing.T) {
	no := false
	cases := []struct {
		name     string
		change   func(*imageinfo.Container)
		netns    bool
		resolv   bool
		hook     bool
		tmp      bool
		rootPath string
	}{
		{"bridge", func(*imageinfo.Container) {}, true, true, true, true, "rootfs"},
		{"host", func(c *imageinfo.Container) { c.Network, c.Address, c.Gateway = "host", "", "" }, false, true, false, true, "rootfs"},
		{"none", func(c *imageinfo.Container) { c.Network, c.Address, c.Gateway = "none", "", "" }, true, false, false, true, "rootfs"},
		{"writable root", func(c *imageinfo.Container) { c.ReadOnly = &no }, true, true, true, false, configs.ContainerRunDir + "/web/rootfs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := bridgeContainer()
			tc.change(&c)
			s, err := RuntimeSpec(c, testImageConfig, User{})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(nsTypes(s), "network"); got != tc.netns {
				t.Errorf("network namespace %v", got)
			}
			if got := mountOf(s, "/etc/resolv.conf") != nil; got != tc.resolv {
				t.Errorf("resolv.conf mount %v", got)
			}
			if got := s.Hooks != nil; got != tc.hook {
				t.Errorf("hook %v", got)
			}
			if got := mountOf(s, "/tmp") != nil; got != tc.tmp {
				t.Errorf("/tmp %v", got)
			}
			if s.Root.Path != tc.rootPath || s.Root.Readonly != (tc.rootPath == "rootfs") {
				t.Errorf("root %+v", s.Root)
			}
			if got := s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] == "0"; got != tc.netns {
				t.Errorf("unprivileged ports sysctl %v (it must never touch the host's)", got)
			}
			if !slices.Contains(nsTypes(s), "uts") || s.Hostname != "web" {
				t.Error("no own hostname")
			}
		})
	}
}

func TestProcessArgs(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd"}}
	cases := []struct {
		name          string
		command, args []string
		img           ImageConfig
		want          []string
	}{
		{"image only", nil, nil, img, []string{"/entry", "cmd"}},
		{"args replace cmd", nil, []string{"a"}, img, []string{"/entry", "a"}},
		{"command drops cmd", []string{"/bin/x"}, nil, img, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a"}, img, []string{"/bin/x", "a"}},
		{"cmd only image", nil, nil, ImageConfig{Cmd: []string{"/bin/sh", "-c", "x"}}, []string{"/bin/sh", "-c", "x"}},
		{"args without entrypoint", nil, []string{"/bin/y"}, ImageConfig{Cmd: []string{"/bin/sh"}}, []string{"/bin/y"}},
		{"nothing", nil, nil, ImageConfig{}, nil},
	}
	for _, tc := range cases {
		got, err := processArgs(configs.Container{Command: tc.command, Args: tc.args}, tc.img)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestRuntimeSpecRefuses(t *testing.T) {
	cases := []struct {
		name   string
		change func(*imageinfo.Container, *ImageConfig)
		want   string
	}{
		{"relative working dir", func(c *imageinfo.Container, _ *ImageConfig) { c.WorkingDir = "srv" }, "working_dir"},
		{"bad env name", func(c *imageinfo.Container, _ *ImageConfig) { c.Env = map[string]string{"A=B": "x"} }, `env "A=B"`},
		{"bad image env", func(_ *imageinfo.Container, i *ImageConfig) { i.Env = []string{"NOEQUALS"} }, "the image's env"},
		{"volume in /proc", func(c *imageinfo.Container, _ *ImageConfig) { c.Volumes = []string{"x:/proc/sys"} }, "runtime mounts itself"},
		{"volume with ..", func(c *imageinfo.Container, _ *ImageConfig) { c.Volumes = []string{"x:/a/../etc"} }, "not clean"},
		{"volume name a path", func(c *imageinfo.Container, _ *ImageConfig) { c.Volumes = []string{"../x:/data"} }, "volume outside STATE is refused"},
		{"volume mode", func(c *imageinfo.Container, _ *ImageConfig) { c.Volumes = []string{"x:/data:z"} }, "the only options are ro and rw"},
		{"volume twice", func(c *imageinfo.Container, _ *ImageConfig) { c.Volumes = []string{"x:/data", "y:/data"} }, "twice"},
		{"bridge without address", func(c *imageinfo.Container, _ *ImageConfig) { c.Address = "" }, "no address"},
		{"unknown network", func(c *imageinfo.Container, _ *ImageConfig) { c.Network = "overlay" }, "network"},
		{"negative limit", func(c *imageinfo.Container, _ *ImageConfig) { c.PIDs = -1 }, "limits"},
		{"bad name", func(c *imageinfo.Container, _ *ImageConfig) { c.Name = "../x" }, "container name"},
	}
	for _, tc := range cases {
		c, img := bridgeContainer(), testImageConfig
		img.Env = slices.Clone(img.Env)
		tc.change(&c, &img)
		if _, err := RuntimeSpec(c, img, User{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The conversion is moby/profiles' own on a host like the target (amd64,
// a kernel newer than every rule): compare with GetDefaultProfile here.
func TestSeccompMatchesMoby(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the reference conversion uses the host's architecture")
	}
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: DefaultCapabilities}}}
	want, err := seccomp.GetDefaultProfile(rs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := seccompProfile(DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		t.Errorf("profiles differ:\n%s\n%s", a, b)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/config.golden.json")

// TestRuntimeSpecGolden pins the whole config.json (seccomp's syscall list
// aside: it is moby/profiles', checked above) so that a change to what
// runc gets shows in review.
func TestRuntimeSpecGolden(t *testing.T) {
	s, err := RuntimeSpec(bridgeContainer(), testImageConfig, User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}})
	if err != nil {
		t.Fatal(err)
	}
	s.Linux.Seccomp.Syscalls = nil
	got, err := MarshalSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/config.golden.json"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("config.json differs from %s (go test -run Golden -update to accept):\n%s", golden, got)
	}
}
