package configs

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestContainerDefaults(t *testing.T) {
	s, err := Parse([]byte(base+`containers:
  - name: web
    image: registry.example.com/web:1.2
    ports: ["8080:80", "5353:53/udp"]
    volumes: ["data:/var/lib/web", "conf:/etc/web:ro"]
    memory: 256MiB
    cpus: 0.5
    pids: 100
    after: [db]
  - name: db
    image: registry.example.com/db@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    read_only: false
    network: none
    restart: on-failure
    health: {command: [/bin/check], interval: 5s, retries: 2}
services:
  - {name: after-web, command: /a, after: [web], memory: 32MiB}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	web, db := s.Containers[0], s.Containers[1]
	if !web.IsReadOnly() || db.IsReadOnly() {
		t.Errorf("read_only: web %v, db %v; want true, false", web.IsReadOnly(), db.IsReadOnly())
	}
	if web.Restart != RestartAlways || db.Restart != RestartOnFailure {
		t.Errorf("restart: %q %q", web.Restart, db.Restart)
	}
	if web.Network != NetworkBridge || db.Network != NetworkNone {
		t.Errorf("network: %q %q", web.Network, db.Network)
	}
	if web.Limits != (Limits{Memory: 256 * MiB, CPUs: 0.5, PIDs: 100}) {
		t.Errorf("limits %+v", web.Limits)
	}
	if s.Services[0].Memory != 32*MiB {
		t.Errorf("service memory %v", s.Services[0].Memory)
	}
	if s.Network.ContainerSubnet != DefaultContainerSubnet {
		t.Errorf("subnet %q", s.Network.ContainerSubnet)
	}
	gw, addrs, err := s.BridgeAddresses()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.88.0.2/16"), {}}
	if gw != netip.MustParsePrefix("10.88.0.1/16") || !reflect.DeepEqual(addrs, want) {
		t.Errorf("addresses %v %v", gw, addrs)
	}
	roundTrip(t, s)
}

// TestNoContainersNoSubnet keeps the image description of a spec without
// containers as it was.
func TestNoContainersNoSubnet(t *testing.T) {
	s, err := Parse([]byte(base), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Network.ContainerSubnet != "" {
		t.Errorf("subnet %q set without containers", s.Network.ContainerSubnet)
	}
}

func TestBridgeAddressesInSpecOrder(t *testing.T) {
	s := &Spec{Network: Network{ContainerSubnet: "192.168.7.0/28"}}
	for _, n := range []string{"a", "b", "c"} {
		net := ""
		if n == "b" {
			net = NetworkHost
		}
		s.Containers = append(s.Containers, Container{Name: n, Network: net})
	}
	gw, addrs, err := s.BridgeAddresses()
	if err != nil {
		t.Fatal(err)
	}
	if gw.String() != "192.168.7.1/28" || addrs[0].String() != "192.168.7.2/28" || addrs[1].IsValid() || addrs[2].String() != "192.168.7.3/28" {
		t.Errorf("gateway %v, addresses %v", gw, addrs)
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Port
		err  string
	}{
		{"8080:80", Port{8080, 80, "tcp"}, ""},
		{"53:5353/udp", Port{53, 5353, "udp"}, ""},
		{"1:65535/tcp", Port{1, 65535, "tcp"}, ""},
		{"80", Port{}, "no ':'"},
		{"0:80", Port{}, "out of range"},
		{"80:65536", Port{}, "out of range"},
		{"80:80/sctp", Port{}, "neither tcp nor udp"},
		{"127.0.0.1:80:80", Port{}, "address before the host port"},
		{"a:80", Port{}, "not a number"},
		{"+80:80", Port{}, "not a number"},
		{":80", Port{}, "not a number"},
		{"80:80/", Port{}, "neither tcp nor udp"},
	} {
		got, err := ParsePort(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParsePort(%q) error %v; want %q", tc.in, err, tc.err)
		}
	}
}

func TestParseVolume(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Volume
		err  string
	}{
		{"data:/data", Volume{"data", "/data", false}, ""},
		{"my.vol_1:/srv/x:ro", Volume{"my.vol_1", "/srv/x", true}, ""},
		{"data:/data:rw", Volume{"data", "/data", false}, ""},
		{"../etc:/data", Volume{}, "a volume outside STATE is refused"},
		{"/etc:/data", Volume{}, "a volume outside STATE is refused"},
		{"a/b:/data", Volume{}, "a volume outside STATE is refused"},
		{"..:/data", Volume{}, "a volume outside STATE is refused"},
		{".hidden:/data", Volume{}, "not starting with '.'"},
		{":/data", Volume{}, "no volume name"},
		{"data", Volume{}, "write NAME:/path"},
		{"data:/a:ro:x", Volume{}, "write NAME:/path"},
		{"data:/a:rx", Volume{}, "the only options are ro and rw"},
		{"data:rel", Volume{}, "not an absolute path"},
		{"data:/a/../b", Volume{}, "not clean"},
		{"data:/", Volume{}, "whole root"},
		{"data:/proc/x", Volume{}, "runtime mounts itself"},
		{"data:/dev", Volume{}, "runtime mounts itself"},
		{"data:/sys", Volume{}, "runtime mounts itself"},
		{"data:", Volume{}, "no path"},
	} {
		got, err := ParseVolume(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseVolume(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseVolume(%q) error %v; want %q", tc.in, err, tc.err)
		}
	}
	if v, _ := ParseVolume("data:/data"); v.HostPath() != "/var/lib/slate/volumes/data" {
		t.Errorf("host path %s", v.HostPath())
	}
}

// TestContainerErrors has one case per error of a container, a limit and
// the containers' subnet: each names its JSON path.
func TestContainerErrors(t *testing.T) {
	img := "image: reg.example.com/a:1"
	one := func(fields string) string {
		return base + "containers:\n- {name: a, " + img + ", " + fields + "}\n"
	}
	for _, tc := range []struct {
		name string
		yaml string
		path string
		msg  string
	}{
		{"no name", base + "containers:\n- {" + img + "}\n", "$.containers[0].name", "required"},
		{"bad name", base + "containers:\n- {name: Web, " + img + "}\n", "$.containers[0].name", "not a valid container name"},
		{"long name", base + "containers:\n- {name: " + strings.Repeat("a", 64) + ", " + img + "}\n", "$.containers[0].name", "at most 63"},
		{"cgroup file name", base + "containers:\n- {name: io.x, " + img + "}\n", "$.containers[0].name", `"io.x" cannot name the container's cgroup`},
		{"cgroup file name memory", base + "containers:\n- {name: a, " + img + "}\n- {name: memory.db, " + img + "}\n", "$.containers[1].name", "cannot name the container's cgroup"},
		{"service with a cgroup file name", base + "services:\n- {name: cpu.web, command: /a}\n", "$.services[0].name", "cannot name the service's cgroup"},
		{"duplicate name", base + "containers:\n- {name: a, " + img + "}\n- {name: a, " + img + "}\n", "$.containers[1].name", "duplicate container"},
		{"name clashes with a service", base + "services:\n- {name: a, command: /a}\ncontainers:\n- {name: a, " + img + "}\n",
			"$.containers[0].name", `"a" is also the name of $.services[0]`},
		{"no image", base + "containers:\n- {name: a}\n", "$.containers[0].image", "required"},
		{"bad image", base + "containers:\n- {name: a, image: 'UPPER/case'}\n", "$.containers[0].image", "not an image reference"},
		{"bad digest", base + "containers:\n- {name: a, image: 'reg.example.com/a@sha256:abc'}\n", "$.containers[0].image", "not an image reference"},
		{"image with space", base + "containers:\n- {name: a, image: 'a b'}\n", "$.containers[0].image", "whitespace"},
		{"long image", base + "containers:\n- {name: a, image: reg.example.com/" + strings.Repeat("a", 600) + "}\n", "$.containers[0].image", "at most 512"},
		{"empty program", one("command: ['']"), "$.containers[0].command[0]", "empty program"},
		{"NUL in args", one(`args: ["a\0"]`), "$.containers[0].args[0]", "NUL"},
		{"bad env key", one("env: {1A: b}"), `$.containers[0].env["1A"]`, "not a valid variable name"},
		{"bad user", one("user: 'a b'"), "$.containers[0].user", "not a user"},
		{"user with two colons", one("user: 'a:b:c'"), "$.containers[0].user", "write user"},
		{"user with empty group", one("user: 'a:'"), "$.containers[0].user", "not a user"},
		{"relative working dir", one("working_dir: srv"), "$.containers[0].working_dir", "not an absolute path"},
		{"bad network", one("network: overlay"), "$.containers[0].network", "use bridge, host or none"},
		{"bad port", one("ports: ['80']"), "$.containers[0].ports[0]", "HOSTPORT:CONTAINERPORT"},
		{"port out of range", one("ports: ['70000:80']"), "$.containers[0].ports[0]", "out of range"},
		{"port on network none", one("network: none, ports: ['80:80']"), "$.containers[0].ports[0]", "network none"},
		{"port on network host", one("network: host, ports: ['80:80']"), "$.containers[0].ports[0]", "network host"},
		{"port twice in one container", one("ports: ['80:80', '80:81']"), "$.containers[0].ports[1]", "already published by $.containers[0].ports[0]"},
		{"port twice across containers", base + "containers:\n- {name: a, " + img + ", ports: ['8080:80']}\n- {name: b, " + img + ", ports: ['53:53/udp', '8080:8080/tcp']}\n",
			"$.containers[1].ports[1]", "host port 8080/tcp is already published by $.containers[0].ports[0]"},
		{"volume outside STATE", one("volumes: ['/etc:/etc']"), "$.containers[0].volumes[0]", "a volume outside STATE is refused"},
		{"volume with dot-dot", one("volumes: ['../x:/x']"), "$.containers[0].volumes[0]", "a volume outside STATE is refused"},
		{"volume on /proc", one("volumes: ['x:/proc']"), "$.containers[0].volumes[0]", "runtime mounts itself"},
		{"volume path twice", one("volumes: ['x:/data', 'y:/data']"), "$.containers[0].volumes[1]", "already the path of $.containers[0].volumes[0]"},
		{"memory too small", one("memory: 1MiB"), "$.containers[0].memory", "at least 4MiB"},
		{"cpus negative", one("cpus: -1"), "$.containers[0].cpus", "must be positive"},
		{"cpus too many", one("cpus: 2000"), "$.containers[0].cpus", "at most 1024"},
		{"cpus too small", one("cpus: 0.0001"), "$.containers[0].cpus", "at least 0.001"},
		{"pids negative", one("pids: -1"), "$.containers[0].pids", "at least 1"},
		{"bad restart", one("restart: sometimes"), "$.containers[0].restart", "unknown restart policy"},
		{"after unknown", one("after: [ghost]"), "$.containers[0].after[0]", `no service or container is named "ghost"`},
		{"requires unknown", one("requires: [ghost]"), "$.containers[0].requires[0]", `no service or container is named "ghost"`},
		{"cycle through a service", base + "services:\n- {name: s, command: /s, after: [a]}\ncontainers:\n- {name: a, " + img + ", requires: [s]}\n",
			"$.containers[0]", "dependency cycle: a -> s -> a"},
		{"cycle reported at the service too", base + "services:\n- {name: s, command: /s, after: [a]}\ncontainers:\n- {name: a, " + img + ", requires: [s]}\n",
			"$.services[0]", "dependency cycle: s -> a -> s"},
		{"health with no kind", one("health: {port: 80}"), "$.containers[0].health", "exactly one of http, tcp or command (0 given)"},
		{"health with two kinds", one("health: {tcp: true, http: /h, port: 80}"), "$.containers[0].health", "(2 given)"},
		{"health http relative", one("health: {http: healthz, port: 80}"), "$.containers[0].health.http", "URL path"},
		{"health http without port", one("health: {http: /h}"), "$.containers[0].health.port", "required"},
		{"health tcp port out of range", one("health: {tcp: true, port: 70000}"), "$.containers[0].health.port", "out of range"},
		{"health command with port", one("health: {command: [/c], port: 80}"), "$.containers[0].health.port", "has no port"},
		{"health tcp on network none", one("network: none, health: {tcp: true, port: 80}"), "$.containers[0].health.port", "network none"},
		{"health negative retries", one("health: {tcp: true, port: 80, retries: -1}"), "$.containers[0].health.retries", "at least 1"},
		{"health zero interval", one("health: {tcp: true, port: 80, interval: 0s}"), "$.containers[0].health.interval", "positive"},
		{"service memory too small", base + "services:\n- {name: s, command: /s, memory: 1K}\n", "$.services[0].memory", "at least 4MiB"},
		{"service cpus too many", base + "services:\n- {name: s, command: /s, cpus: 1025}\n", "$.services[0].cpus", "at most 1024"},
		{"service pids negative", base + "services:\n- {name: s, command: /s, pids: -5}\n", "$.services[0].pids", "at least 1"},
		{"service after a container", base + "services:\n- {name: s, command: /s, after: [ghost]}\ncontainers:\n- {name: a, " + img + "}\n",
			"$.services[0].after[0]", "no service or container"},
		{"subnet not a prefix", one("") + "network: {container_subnet: 10.88.0.0}\n", "$.network.container_subnet", "not an IPv4 prefix"},
		{"subnet IPv6", one("") + "network: {container_subnet: 'fd00::/64'}\n", "$.network.container_subnet", "not an IPv4 prefix"},
		{"subnet too large", one("") + "network: {container_subnet: 10.0.0.0/7}\n", "$.network.container_subnet", "out of range"},
		{"subnet too small", one("") + "network: {container_subnet: 10.0.0.0/29}\n", "$.network.container_subnet", "out of range"},
		{"subnet host bits", one("") + "network: {container_subnet: 10.88.0.5/16}\n", "$.network.container_subnet", "write the network, 10.88.0.0/16"},
		{"subnet public", one("") + "network: {container_subnet: 8.8.0.0/16}\n", "$.network.container_subnet", "not a private network"},
		{"subnet beyond private", one("") + "network: {container_subnet: 192.168.0.0/15}\n", "$.network.container_subnet", "beyond the private networks"},
		{"subnet without room", base + "network: {container_subnet: 10.1.0.0/28}\ncontainers:\n" + manyContainers(14), "$.network.container_subnet", "no room for container 13"},
		{"health gate names a container that is not there", base + "update:\n  channel: https://u.example.com/c\n  public_key: k.pub\n  health: {services: [ghost]}\n",
			"$.update.health.services[0]", "not a service or container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%T %v", err, err)
				}
				list = ErrorList{e}
			}
			for _, e := range list {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no %q at %s in:\n%v", tc.msg, tc.path, err)
		})
	}
}

func manyContainers(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("- {name: c" + string(rune('a'+i)) + ", image: reg.example.com/a:1}\n")
	}
	return b.String()
}

// TestContainersAccepted are the edges that pass.
func TestContainersAccepted(t *testing.T) {
	img := "image: reg.example.com/a:1"
	for _, tc := range []struct{ name, yaml string }{
		{"short image name", base + "containers:\n- {name: a, image: alpine}\n"},
		{"loopback registry", base + "containers:\n- {name: a, image: '127.0.0.1:5000/app:v1', insecure: true}\n"},
		{"same port number, other protocol", base + "containers:\n- {name: a, " + img + ", ports: ['53:53/udp']}\n- {name: b, " + img + ", ports: ['53:53/tcp']}\n"},
		{"shared volume", base + "containers:\n- {name: a, " + img + ", volumes: ['d:/d']}\n- {name: b, " + img + ", volumes: ['d:/e:ro']}\n"},
		{"user:group", base + "containers:\n- {name: a, " + img + ", user: '1000:1000'}\n"},
		{"a /28 full to the last container", base + "network: {container_subnet: 10.1.0.0/28}\ncontainers:\n" + manyContainers(13)},
		{"host containers take no address", base + "network: {container_subnet: 10.1.0.0/28}\ncontainers:\n" + manyContainers(13) + "- {name: h, " + img + ", network: host}\n"},
		{"limits at their bounds", base + "containers:\n- {name: a, " + img + ", memory: 4MiB, cpus: 1024, pids: 1}\n"},
		{"health checks", base + "containers:\n- {name: a, " + img + ", health: {http: /h, port: 8080, timeout: 2s, start_period: 10s}}\n- {name: b, " + img + ", network: none, health: {command: [/bin/true]}}\n"},
		{"service requires a container", base + "services:\n- {name: s, command: /s, requires: [a]}\ncontainers:\n- {name: a, " + img + "}\n"},
		{"subnet in 172.16/12", base + "network: {container_subnet: 172.31.0.0/16}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.yaml), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, s)
		})
	}
}

func FuzzParsePortVolume(f *testing.F) {
	for _, s := range []string{"8080:80", "53:53/udp", "data:/data:ro", "../x:/y", "a:/proc", "1:65535/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePort(s); err == nil {
			if p.Host == 0 || p.Container == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
				t.Fatalf("ParsePort(%q) = %+v", s, p)
			}
			if q, err := ParsePort(p.String()); err != nil || q != p {
				t.Fatalf("ParsePort(%q) again: %+v %v", p.String(), q, err)
			}
		}
		if v, err := ParseVolume(s); err == nil {
			if strings.ContainsAny(v.Name, "/\x00") || v.Name == "." || v.Name == ".." || v.Name[0] == '.' {
				t.Fatalf("ParseVolume(%q) name %q", s, v.Name)
			}
			if !strings.HasPrefix(v.HostPath(), VolumesDir+"/") || strings.Contains(v.HostPath()[len(VolumesDir):], "..") {
				t.Fatalf("ParseVolume(%q) leaves STATE: %s", s, v.HostPath())
			}
			if v.Path == "/" || v.Path[0] != '/' {
				t.Fatalf("ParseVolume(%q) path %q", s, v.Path)
			}
		}
	})
}
