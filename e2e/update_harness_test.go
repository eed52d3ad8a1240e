package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// channel is a signing key and a channel folder served by `slate serve`
// on the host's loopback; guests reach it at 10.0.2.2 through QEMU's user
// networking.
type channel struct {
	dir, keys, root string
	port            int
}

func (c *channel) guestURL() string { return fmt.Sprintf("http://10.0.2.2:%d/", c.port) }
func (c *channel) hostURL() string  { return fmt.Sprintf("http://127.0.0.1:%d/", c.port) }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newChannel(t testing.TB) *channel {
	t.Helper()
	dir := t.TempDir()
	c := &channel{dir: dir, keys: filepath.Join(dir, "keys"), root: filepath.Join(dir, "channel"), port: freePort(t)}
	if out, err := slate(t, "keygen", "-o", c.keys); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(slateBin, "serve", c.root, "--addr", fmt.Sprintf("127.0.0.1:%d", c.port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(c.hostURL())
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slate serve did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// updSpec is an image with the updater and the probe: "web" is the
// service the health check watches (mode sleep stays up, crashloop
// never does), "status" prints the updater's status as STATUS lines,
// "mark" counts boots in /var.
type updSpec struct {
	version    string
	webMode    string   // sleep (default) or crashloop
	kernelArgs []string // extra kernel arguments
	statusEnv  map[string]string
	extra      string // more services (YAML list items)
	update     string // more fields of the update section (YAML, indented two spaces)
}

func (c *channel) spec(t testing.TB, s updSpec) string {
	t.Helper()
	if s.webMode == "" {
		s.webMode = "sleep"
	}
	var env strings.Builder
	if len(s.statusEnv) > 0 {
		env.WriteString("    env:\n")
		for k, v := range s.statusEnv {
			fmt.Fprintf(&env, "      %s: %q\n", k, v)
		}
	}
	args := ""
	if len(s.kernelArgs) > 0 {
		args = "kernel:\n  args: [" + strings.Join(s.kernelArgs, ", ") + "]\n"
	}
	body := fmt.Sprintf(`name: slate-upd
version: %s
%sroot:
  files:
    - src: %s
      dst: /usr/local/bin/probe
      mode: "0755"
services:
  - name: web
    command: /usr/local/bin/probe
    args: [%s]
    restart: always
  - name: status
    command: /usr/local/bin/probe
    args: [status]
    restart: always
%s  - name: mark
    command: /usr/local/bin/probe
    args: [mark]
    restart: never
%supdate:
  channel: %s
  public_key: %s
  check_interval: 20s
  health:
    services: [web]
    hold: 3s
%s`, s.version, args, probeBin, s.webMode, env.String(), s.extra, c.guestURL(), filepath.Join(c.keys, "update.pub"), s.update)
	p := filepath.Join(c.dir, "spec-"+s.version+"-"+s.webMode+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// publish builds a version and adds it to the channel; it returns the
// build folder.
func (c *channel) publish(t testing.TB, s updSpec) string {
	t.Helper()
	return c.publishTo(t, s, c.root)
}

// publishTo builds a version into another channel folder.
func (c *channel) publishTo(t testing.TB, s updSpec, dir string) string {
	t.Helper()
	return build(t, c.spec(t, s), "--version", s.version, "--channel", dir, "--sign", filepath.Join(c.keys, "update.key"))
}

// machine copies a built disk image to a fresh file, as a machine's disk.
func machine(t testing.TB, out string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "machine.raw")
	if b, err := exec.Command("cp", "--sparse=always", filepath.Join(out, "disk.raw"), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy disk: %v\n%s", err, b)
	}
	return dst
}
