package configs

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Defaults of a container, applied by SetDefaults.
const (
	DefaultContainerRestart = RestartAlways
	DefaultContainerNetwork = NetworkBridge
)

// Bounds of limits and of the containers' subnet.
const (
	// MinMemory is the smallest memory limit: less does not start a Go
	// program or a shell, and a typo ("64K" for "64M") should fail at
	// build time, not as an OOM loop on every machine.
	MinMemory = 4 * MiB
	// MaxCPUs bounds cpus (cpu.max takes any quota; more than 1024 CPUs
	// is a typo on any machine slate runs on).
	MaxCPUs = 1024
	// MinSubnetBits and MaxSubnetBits bound container_subnet: a /28 has
	// room for the bridge and 13 containers.
	MinSubnetBits = 8
	MaxSubnetBits = 28
	// maxImageRef bounds an image reference (Docker's own limit on a
	// repository name is 255; a digest adds 72).
	maxImageRef = 512
)

var volumeNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// IsReadOnly is the container's read_only, true when unset.
func (c Container) IsReadOnly() bool { return c.ReadOnly == nil || *c.ReadOnly }

// NetworkMode is the container's network, bridge when unset.
func (c Container) NetworkMode() string {
	if c.Network == "" {
		return DefaultContainerNetwork
	}
	return c.Network
}

// Port is a published port: "HOSTPORT:CONTAINERPORT[/tcp|udp]".
type Port struct {
	Host, Container uint16
	// Proto is "tcp" or "udp".
	Proto string
}

// String is the spec's form, with the protocol always written.
func (p Port) String() string {
	return fmt.Sprintf("%d:%d/%s", p.Host, p.Container, p.Proto)
}

// ParsePort reads a ports entry; the protocol defaults to tcp.
func ParsePort(s string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("%q is not a port: %s; write HOSTPORT:CONTAINERPORT[/tcp|udp], like 8080:80", s, why)
	}
	if len(s) > 32 {
		return bad("too long")
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	switch {
	case !hasProto:
		proto = "tcp"
	case proto != "tcp" && proto != "udp":
		return bad(fmt.Sprintf("protocol %q is neither tcp nor udp", proto))
	}
	hs, cs, ok := strings.Cut(spec, ":")
	if !ok {
		return bad("no ':' between the host port and the container port")
	}
	if strings.Contains(cs, ":") {
		return bad("an address before the host port is not supported (ports are published on every address)")
	}
	h, err := portNumber(hs)
	if err != nil {
		return bad("host port " + err.Error())
	}
	c, err := portNumber(cs)
	if err != nil {
		return bad("container port " + err.Error())
	}
	return Port{Host: h, Container: c, Proto: proto}, nil
}

func portNumber(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is out of range 1-65535", n)
	}
	return uint16(n), nil
}

// Volume is a volumes entry: "NAME:/container/path[:ro]".
type Volume struct {
	// Name is the folder VolumesDir/Name on STATE.
	Name string
	// Path is where it is mounted in the container.
	Path     string
	ReadOnly bool
}

// HostPath is the volume's folder on the machine.
func (v Volume) HostPath() string { return VolumesDir + "/" + v.Name }

// containerOwned are paths of a container where a volume cannot go: the
// runtime mounts its own file systems there.
var containerOwned = []string{"/proc", "/dev", "/sys"}

// ParseVolume reads a volumes entry. NAME is one plain path element, so
// the volume is always a folder of VolumesDir on STATE: a host path or a
// name with ".." (a volume outside STATE) is refused.
func ParseVolume(s string) (Volume, error) {
	bad := func(why string) (Volume, error) {
		return Volume{}, fmt.Errorf("%q: %s", s, why)
	}
	if len(s) > 4096 || strings.ContainsRune(s, 0) {
		return bad("not a volume (too long or a NUL byte)")
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad("write NAME:/path/in/container or NAME:/path/in/container:ro")
	}
	v := Volume{Name: parts[0], Path: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return bad(fmt.Sprintf("option %q: the only options are ro and rw", parts[2]))
		}
	}
	switch n := v.Name; {
	case n == "":
		return bad("no volume name before ':'")
	case strings.Contains(n, "/") || n == "." || n == "..":
		return bad(fmt.Sprintf("%q is a path, and a volume outside STATE is refused: NAME is a plain name, the volume is the folder %s/NAME on STATE", n, VolumesDir))
	case len(n) > maxName:
		return bad(fmt.Sprintf("volume name of %d characters; at most %d", len(n), maxName))
	case !volumeNameRe.MatchString(n):
		return bad(fmt.Sprintf("volume name %q: letters, digits, '_', '.' and '-', not starting with '.', '_' or '-'", n))
	}
	switch p := v.Path; {
	case p == "":
		return bad("no path in the container after ':'")
	case !strings.HasPrefix(p, "/"):
		return bad(fmt.Sprintf("%q is not an absolute path in the container", p))
	case path.Clean(p) != p:
		return bad(fmt.Sprintf("%q is not clean (no '..', '.', '//' or trailing '/'); write %s", p, path.Clean(p)))
	case p == "/":
		return bad("a volume cannot be mounted over the container's whole root")
	}
	for _, o := range containerOwned {
		if v.Path == o || strings.HasPrefix(v.Path, o+"/") {
			return bad(fmt.Sprintf("%s is under %s, which the container runtime mounts itself", v.Path, o))
		}
	}
	return v, nil
}

// ContainerSubnet is the containers' bridge subnet: the spec's, or
// DefaultContainerSubnet.
func (n Network) Subnet() (netip.Prefix, error) {
	s := n.ContainerSubnet
	if s == "" {
		s = DefaultContainerSubnet
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix like %s", s, DefaultContainerSubnet)
	}
	return p, nil
}

// BridgeAddresses allocates the bridge network: the gateway (the bridge,
// the subnet's first address) and one address per container, in spec
// order; the entry of a container on the host or none network is the zero
// Prefix. Each address carries the subnet's prefix length.
func (s *Spec) BridgeAddresses() (gateway netip.Prefix, addrs []netip.Prefix, err error) {
	sub, err := s.Network.Subnet()
	if err != nil {
		return netip.Prefix{}, nil, err
	}
	if msg := checkSubnet(sub, s.Network.ContainerSubnet); msg != "" {
		return netip.Prefix{}, nil, fmt.Errorf("%s", msg)
	}
	bits := sub.Bits()
	a := sub.Addr().Next()
	gateway = netip.PrefixFrom(a, bits)
	addrs = make([]netip.Prefix, len(s.Containers))
	for i, c := range s.Containers {
		if c.NetworkMode() != NetworkBridge {
			continue
		}
		a = a.Next()
		// the last address is the broadcast address
		if !sub.Contains(a) || !sub.Contains(a.Next()) {
			return netip.Prefix{}, nil, fmt.Errorf("subnet %s has no room for container %d (%s): grow network.container_subnet", sub, i, c.Name)
		}
		addrs[i] = netip.PrefixFrom(a, bits)
	}
	return gateway, addrs, nil
}

// checkSubnet says what is wrong with a container subnet, or "".
func checkSubnet(p netip.Prefix, written string) string {
	switch {
	case !p.Addr().Is4():
		return fmt.Sprintf("%q is not an IPv4 prefix (IPv6 container networks are not supported)", written)
	case p.Bits() < MinSubnetBits || p.Bits() > MaxSubnetBits:
		return fmt.Sprintf("/%d is out of range: between /%d and /%d", p.Bits(), MinSubnetBits, MaxSubnetBits)
	case p.Masked() != p:
		return fmt.Sprintf("%s has host bits set; write the network, %s", p, p.Masked())
	case !p.Addr().IsPrivate():
		return fmt.Sprintf("%s is not a private network (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16): the containers' addresses are masqueraded, and a public range would hide real hosts", p)
	}
	// A subnet larger than its private block (172.16.0.0/11) is not
	// private as a whole.
	if b := lastAddr(p); !b.IsPrivate() {
		return fmt.Sprintf("%s reaches beyond the private networks (its last address is %s)", p, b)
	}
	return ""
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(math.MaxUint32) >> p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// CheckLimits is the one validation of Limits, for services and
// containers alike; zero is no limit.
func CheckLimits(l Limits) []ServiceProblem {
	var out []ServiceProblem
	add := func(field, format string, args ...any) {
		out = append(out, ServiceProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if l.Memory != 0 && l.Memory < MinMemory {
		add("memory", "%s is too small: at least %s (0 or no memory field is no limit)", l.Memory, Size(MinMemory))
	}
	switch {
	case math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0):
		add("cpus", "not a number of CPUs")
	case l.CPUs < 0:
		add("cpus", "%g: must be positive, like 0.5 or 2", l.CPUs)
	case l.CPUs > MaxCPUs:
		add("cpus", "%g is out of range: at most %d", l.CPUs, MaxCPUs)
	case l.CPUs > 0 && l.CPUs < 0.001:
		// cpu.max's quota is at least 1 ms of a 100 ms period.
		add("cpus", "%g is too small: at least 0.001", l.CPUs)
	}
	if l.PIDs < 0 {
		add("pids", "%d: must be at least 1 (or left out for no limit)", l.PIDs)
	}
	return out
}

// checkUserSpec checks a container's user: "name", "uid", "name:group" or
// "uid:gid" (resolved in the image at build time).
func checkUserSpec(u string) string {
	if u == "" {
		return ""
	}
	parts := strings.Split(u, ":")
	if len(parts) > 2 {
		return fmt.Sprintf("%q: write user, uid, user:group or uid:gid", u)
	}
	for _, part := range parts {
		if part == "" || badUser(part) {
			return fmt.Sprintf("%q is not a user (or group) name or number: write user, uid, user:group or uid:gid", u)
		}
	}
	return ""
}

// validateContainers checks every container, and what containers share:
// their names with services, host ports, bridge addresses.
func (s *Spec) validateContainers(c *collector) {
	services := map[string]int{}
	for i, svc := range s.Services {
		if _, dup := services[svc.Name]; !dup {
			services[svc.Name] = i
		}
	}
	deps := s.unitNames()
	seen := map[string]int{}
	hostPorts := map[string]string{} // "8080/tcp" -> path
	for i, con := range s.Containers {
		cp := index("$.containers", i)
		switch {
		case con.Name == "":
			c.add(key(cp, "name"), "required: a container name like web or db")
		case len(con.Name) > maxName:
			c.add(key(cp, "name"), "%d characters; at most %d are allowed", len(con.Name), maxName)
		case !serviceNameRe.MatchString(con.Name):
			c.add(key(cp, "name"), "%q is not a valid container name: lowercase letters, digits, '_', '.' and '-', starting with a letter or digit", con.Name)
		case !CgroupSafeName(con.Name):
			c.add(key(cp, "name"), "%q cannot name the container's cgroup: %s", con.Name, cgroupNameHint)
		default:
			if j, ok := services[con.Name]; ok {
				c.add(key(cp, "name"), "%q is also the name of $.services[%d]; services and containers share one namespace", con.Name, j)
			} else if j, ok := seen[con.Name]; ok {
				c.add(key(cp, "name"), "duplicate container %q (also $.containers[%d]); container names must be unique", con.Name, j)
			} else {
				seen[con.Name] = i
			}
		}
		checkImage(c, key(cp, "image"), con.Image)
		for j, a := range con.Command {
			if strings.ContainsRune(a, 0) {
				c.add(index(key(cp, "command"), j), "contains a NUL byte")
			}
		}
		if len(con.Command) > 0 && con.Command[0] == "" {
			c.add(index(key(cp, "command"), 0), "empty program name")
		}
		for j, a := range con.Args {
			if strings.ContainsRune(a, 0) {
				c.add(index(key(cp, "args"), j), "contains a NUL byte")
			}
		}
		for k, v := range con.Env {
			ep := key(key(cp, "env"), k)
			if !envKeyRe.MatchString(k) {
				c.add(ep, "%q is not a valid variable name: letters, digits and '_', not starting with a digit", k)
			}
			if strings.ContainsRune(v, 0) {
				c.add(ep, "value contains a NUL byte")
			}
		}
		if msg := checkUserSpec(con.User); msg != "" {
			c.add(key(cp, "user"), "%s", msg)
		}
		if con.WorkingDir != "" {
			if msg := absPath(con.WorkingDir); msg != "" {
				c.add(key(cp, "working_dir"), "%s", msg)
			}
		}
		network := con.NetworkMode()
		switch network {
		case NetworkBridge, NetworkHost, NetworkNone:
		default:
			c.add(key(cp, "network"), "unknown network %q: use bridge, host or none", con.Network)
		}
		for j, ps := range con.Ports {
			pp := index(key(cp, "ports"), j)
			p, err := ParsePort(ps)
			if err != nil {
				c.add(pp, "%v", err)
				continue
			}
			switch network {
			case NetworkNone:
				c.add(pp, "network none has no network: a port cannot be published (use network bridge)")
				continue
			case NetworkHost:
				c.add(pp, "network host: the container listens on the host's ports itself, nothing is published (remove ports, or use network bridge)")
				continue
			}
			k := fmt.Sprintf("%d/%s", p.Host, p.Proto)
			if first, dup := hostPorts[k]; dup {
				c.add(pp, "host port %s is already published by %s; a host port can be published once", k, first)
				continue
			}
			hostPorts[k] = pp
		}
		mounts := map[string]string{}
		for j, vs := range con.Volumes {
			vp := index(key(cp, "volumes"), j)
			v, err := ParseVolume(vs)
			if err != nil {
				c.add(vp, "%v", err)
				continue
			}
			if first, dup := mounts[v.Path]; dup {
				c.add(vp, "%s is already the path of %s", v.Path, first)
				continue
			}
			mounts[v.Path] = vp
		}
		for _, pr := range CheckLimits(con.Limits) {
			c.add(pr.at(cp), "%s", pr.Msg)
		}
		switch con.Restart {
		case "", RestartAlways, RestartOnFailure, RestartNever:
		default:
			c.add(key(cp, "restart"), "unknown restart policy %q: use always, on-failure or never", con.Restart)
		}
		for _, field := range []struct {
			key   string
			names []string
		}{{"after", con.After}, {"requires", con.Requires}} {
			for j, n := range field.names {
				if !deps[n] {
					c.add(index(key(cp, field.key), j), "no service or container is named %q", n)
				}
			}
		}
		if con.Health != nil {
			checkHealth(c, key(cp, "health"), *con.Health, network)
		}
	}
	if s.Network.ContainerSubnet != "" || len(s.Containers) > 0 {
		s.validateSubnet(c)
	}
}

func checkImage(c *collector, p, img string) {
	switch {
	case img == "":
		c.add(p, "required: an image reference like docker.io/library/alpine:3.20 or registry.example.com/app@sha256:...")
		return
	case len(img) > maxImageRef:
		c.add(p, "%d characters; at most %d", len(img), maxImageRef)
		return
	case hasSpaceOrControl(img):
		c.add(p, "%q contains whitespace or control characters", img)
		return
	}
	if _, err := name.ParseReference(img); err != nil {
		c.add(p, "%q is not an image reference (registry/repository[:tag][@sha256:digest]): %v", img, err)
	}
}

func checkHealth(c *collector, p string, h HealthCheck, network string) {
	kinds := 0
	if h.HTTP != "" {
		kinds++
		switch {
		case !strings.HasPrefix(h.HTTP, "/"):
			c.add(key(p, "http"), "%q: write the URL path on the container's port, like /healthz", h.HTTP)
		case hasSpaceOrControl(h.HTTP) || len(h.HTTP) > 1024:
			c.add(key(p, "http"), "%q is not a URL path (whitespace, control characters or too long)", h.HTTP)
		}
	}
	if h.TCP {
		kinds++
	}
	if len(h.Command) > 0 {
		kinds++
		for j, a := range h.Command {
			if strings.ContainsRune(a, 0) {
				c.add(index(key(p, "command"), j), "contains a NUL byte")
			}
		}
		if h.Command[0] == "" {
			c.add(index(key(p, "command"), 0), "empty program name")
		}
	}
	if kinds != 1 {
		c.add(p, "give exactly one of http, tcp or command (%d given)", kinds)
	}
	needsPort := h.HTTP != "" || h.TCP
	switch {
	case needsPort && h.Port == 0:
		c.add(key(p, "port"), "required for an http or tcp check: the container's port, 1-65535")
	case needsPort && (h.Port < 1 || h.Port > 65535):
		c.add(key(p, "port"), "%d is out of range 1-65535", h.Port)
	case !needsPort && h.Port != 0:
		c.add(key(p, "port"), "a command check has no port (it runs inside the container)")
	case needsPort && network == NetworkNone:
		c.add(key(p, "port"), "network none: nothing can reach the container's port (use a command check)")
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start_period", h.StartPeriod}} {
		if d.v < 0 {
			c.add(key(p, d.name), "%s: a duration must be positive", d.v)
		}
	}
	if h.Retries < 0 {
		c.add(key(p, "retries"), "%d: must be at least 1 (or left out for 3)", h.Retries)
	}
}

func (s *Spec) validateSubnet(c *collector) {
	const p = "$.network.container_subnet"
	sub, err := s.Network.Subnet()
	if err != nil {
		c.add(p, "%v", err)
		return
	}
	written := s.Network.ContainerSubnet
	if written == "" {
		written = DefaultContainerSubnet
	}
	if msg := checkSubnet(sub, written); msg != "" {
		c.add(p, "%s", msg)
		return
	}
	if _, _, err := s.BridgeAddresses(); err != nil {
		c.add(p, "%v", err)
	}
}

// unitNames are the names after and requires may use: services' and
// containers'.
func (s *Spec) unitNames() map[string]bool {
	names := map[string]bool{}
	for _, svc := range s.Services {
		names[svc.Name] = true
	}
	for _, con := range s.Containers {
		names[con.Name] = true
	}
	return names
}

// unit is a service or a container as the dependency check sees it.
type unit struct {
	path, name      string
	after, requires []string
}

func (s *Spec) units() []unit {
	var out []unit
	for i, svc := range s.Services {
		out = append(out, unit{index("$.services", i), svc.Name, svc.After, svc.Requires})
	}
	for i, con := range s.Containers {
		out = append(out, unit{index("$.containers", i), con.Name, con.After, con.Requires})
	}
	return out
}

// validateCycles reports every service and container on a dependency
// cycle, at its own path.
func (s *Spec) validateCycles(c *collector) {
	us := s.units()
	for i := range us {
		if cycle := unitCycle(us, i); cycle != nil {
			c.add(us[i].path, "%s (each waits for the next through after or requires)", CycleText(cycle))
		}
	}
}

// unitCycle returns the shortest cycle of after/requires edges through
// us[i], as names starting and ending with its own, or nil when it is on
// none. Unknown names are left out (reported on their own).
func unitCycle(us []unit, i int) []string {
	byName := map[string]int{}
	for j, u := range us {
		if _, dup := byName[u.name]; !dup {
			byName[u.name] = j
		}
	}
	cycle := DependencyCycle(i, func(j int) []int {
		var out []int
		for _, n := range append(append([]string(nil), us[j].after...), us[j].requires...) {
			if k, ok := byName[n]; ok {
				out = append(out, k)
			}
		}
		return out
	})
	var names []string
	for _, k := range cycle {
		names = append(names, us[k].name)
	}
	return names
}
