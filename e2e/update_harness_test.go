package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// newChannel makes a key pair and an empty channel folder and serves it
// with `slate serve` on a port the server itself chose (127.0.0.1:0): a
// port picked free beforehand could be taken by another process before
// the server binds it. The port is read from the server's first line.
func newChannel(t testing.TB) *channel {
	t.Helper()
	dir := t.TempDir()
	c := &channel{dir: dir, keys: filepath.Join(dir, "keys"), root: filepath.Join(dir, "channel")}
	if out, err := slate(t, "keygen", "-o", c.keys); err != nil {
		t.Fatalf("slate keygen: %v\n%s", err, out)
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(slateBin, "serve", c.root, "--addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	port, err := servedPort(stderr, 30*time.Second)
	if err != nil {
		t.Fatalf("slate serve: %v", err)
	}
	c.port = port
	return c
}

var servingRe = regexp.MustCompile(`^serving .* on http://127\.0\.0\.1:(\d+)/$`)

// servedPort reads `slate serve`'s stderr until it names its port, then
// copies the rest to the test's stderr.
func servedPort(r io.Reader, d time.Duration) (int, error) {
	type result struct {
		port int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(r)
		var seen []string
		for sc.Scan() {
			if m := servingRe.FindStringSubmatch(sc.Text()); m != nil {
				p, err := strconv.Atoi(m[1])
				got <- result{p, err}
				_, _ = io.Copy(os.Stderr, r)
				return
			}
			seen = append(seen, sc.Text())
		}
		got <- result{0, fmt.Errorf("exited without naming its port: %q", seen)}
	}()
	select {
	case res := <-got:
		return res.port, res.err
	case <-time.After(d):
		return 0, fmt.Errorf("named no port within %s", d)
	}
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
	interval   string // update.check_interval (default 20s)
	top        string // more top-level sections (YAML)
}

func (c *channel) spec(t testing.TB, s updSpec) string {
	t.Helper()
	if s.webMode == "" {
		s.webMode = "sleep"
	}
	if s.interval == "" {
		s.interval = "20s"
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
  check_interval: %s
  health:
    services: [web]
    hold: 3s
%s%s`, s.version, args, probeBin, s.webMode, env.String(), s.extra, c.guestURL(), filepath.Join(c.keys, "update.pub"), s.interval, s.update, s.top)
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
