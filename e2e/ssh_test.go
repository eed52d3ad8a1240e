package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slateos/slate/internal/run/sshd"
)

// vmRun is `slate vm run` as a person runs it: its stdout (the serial
// console) and stderr (slate's own lines) are collected line by line.
type vmRun struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	console []string
	own     []string
	changed chan struct{}
	done    chan struct{}
}

func startVMRun(t *testing.T, args ...string) *vmRun {
	t.Helper()
	cmd := exec.Command(slateBin, append([]string{"vm", "run"}, args...)...)
	cmd.Env = append(os.Environ(), "SLATE_CACHE="+cacheDir(), "SLATE_ACCEL=tcg")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	v := &vmRun{cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []struct {
		r    *bufio.Scanner
		into *[]string
	}{{bufio.NewScanner(stdout), &v.console}, {bufio.NewScanner(stderr), &v.own}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.r.Buffer(make([]byte, 64<<10), 1<<20)
			for s.r.Scan() {
				v.mu.Lock()
				*s.into = append(*s.into, strings.TrimRight(s.r.Text(), "\r"))
				close(v.changed)
				v.changed = make(chan struct{})
				v.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); _ = cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		v.stop(t)
		if t.Failed() {
			v.mu.Lock()
			t.Logf("slate vm run:\n%s\nserial console:\n%s", strings.Join(v.own, "\n"), strings.Join(v.console, "\n"))
			v.mu.Unlock()
		}
	})
	return v
}

// stop ends `slate vm run` as Ctrl-C would (it kills QEMU: a power cut
// for the guest) and waits for it.
func (v *vmRun) stop(t *testing.T) {
	select {
	case <-v.done:
		return
	default:
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(30 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
		t.Error("slate vm run outlived SIGTERM by 30s")
	}
}

// wait waits until the n-th line of console (own false) or of slate's
// stderr (own true) matches re, and returns its submatches.
func (v *vmRun) wait(t *testing.T, own bool, re string, n int, d time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(d)
	for {
		v.mu.Lock()
		lines := v.console
		if own {
			lines = v.own
		}
		seen := 0
		for _, l := range lines {
			if m := rx.FindStringSubmatch(l); m != nil {
				if seen++; seen == n {
					v.mu.Unlock()
					return m
				}
			}
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.done:
			t.Fatalf("slate vm run ended before match %d of %q", n, re)
		case <-deadline:
			t.Fatalf("waited %s for match %d of %q", d, n, re)
		}
	}
}

// sshRun runs OpenSSH's client with args and returns its combined output.
func sshRun(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("ssh", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	ctxDone := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer ctxDone.Stop()
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// TestSSH: an image with ssh boots; a user whose key comes from an
// Ignition config and one whose key is in the spec log in through
// `slate vm run --ssh` with OpenSSH's client and the command it prints
// (its known_hosts file filled from the console); a password login and a
// root login (root has a key from Ignition) are refused; the host key is
// the same after a power cut and after an A/B update.
func TestSSH(t *testing.T) {
	needQEMU(t)
	needTool(t, "ssh")
	needTool(t, "ssh-keygen")
	start := time.Now()
	dir := t.TempDir()
	keygen := func(name string) (priv, pub string) {
		priv = filepath.Join(dir, name)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@e2e", "-f", priv).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		b, err := os.ReadFile(priv + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		return priv, strings.TrimSpace(string(b))
	}
	alice, alicePub := keygen("alice")
	bob, bobPub := keygen("bob")

	// No lock file beside the spec: packages resolve at build time (a
	// committed lock would go stale as Debian's security updates
	// replace .debs on the mirror).
	c := newChannel(t)
	top := fmt.Sprintf("ssh:\n  enable: true\nusers:\n  - name: bob\n    uid: 1001\n    ssh_keys: [%q]\n", bobPub)
	v1 := c.publish(t, updSpec{version: "1.0.0", top: top})
	// v2 is built now, published later
	staging := filepath.Join(c.dir, "staging")
	c.publishTo(t, updSpec{version: "1.1.0", top: top}, staging)
	t.Logf("two builds: %s", time.Since(start).Round(time.Millisecond))

	ign := filepath.Join(dir, "config.ign")
	cfg, _ := json.Marshal(map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"passwd": map[string]any{"users": []any{
			map[string]any{"name": "alice", "sshAuthorizedKeys": []string{alicePub}},
			map[string]any{"name": "root", "sshAuthorizedKeys": []string{alicePub}},
		}},
	})
	if err := os.WriteFile(ign, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	disk := machine(t, v1)
	knownHosts := disk + ".known_hosts"
	key := []string{"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30"}

	// First boot: a new host key, printed on the console.
	boot := time.Now()
	vm := startVMRun(t, "--ssh", "--ssh-user", "alice", "--ignition", ign, disk)
	ready := vm.wait(t, false, `^SLATE-SSH host_key=ed25519 fingerprint=(SHA256:\S+) state=(\w+) key=\S+$`, 1, 4*time.Minute)
	fp := ready[1]
	if ready[2] != "new" {
		t.Errorf("first boot: state=%s, want new", ready[2])
	}
	cmdLine := vm.wait(t, true, `^slate: ssh: (ssh -p (\d+) -o UserKnownHostsFile=(\S+) -o StrictHostKeyChecking=yes alice@127\.0\.0\.1)$`, 1, 2*time.Minute)
	if cmdLine[3] != knownHosts {
		t.Errorf("known_hosts %s, want %s", cmdLine[3], knownHosts)
	}
	port := cmdLine[2]
	vm.wait(t, false, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 3*time.Minute)
	t.Logf("first boot to SLATE-READY: %s", time.Since(boot).Round(time.Millisecond))
	kh, err := os.ReadFile(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	id, err := sshd.ParseEvent(ready[0])
	if err != nil {
		t.Fatal(err)
	}
	portN, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(id.KnownHosts("127.0.0.1", portN)); string(kh) != want {
		t.Errorf("%s holds %q, want %q", knownHosts, kh, want)
	}
	firstHosts := filepath.Join(dir, "known_hosts.first")
	if err := os.WriteFile(firstHosts, kh, 0o644); err != nil {
		t.Fatal(err)
	}
	strict := func(user string) []string {
		return append([]string{"-p", port, "-o", "UserKnownHostsFile=" + firstHosts, "-o", "StrictHostKeyChecking=yes"}, append(key, user+"@127.0.0.1")...)
	}

	// alice logs in with the printed command as it is (and her key)
	t0 := time.Now()
	args := append(strings.Fields(cmdLine[1])[1:], append(key, "-i", alice, "echo out=$(id -un):$(id -u):$HOME; pwd")...)
	out, err := sshRun(t, nil, args...)
	if err != nil || !strings.Contains(out, "out=alice:1000:/home/alice\n/home/alice") {
		t.Fatalf("alice's login: %v\n%s", err, out)
	}
	t.Logf("ssh login and command: %s", time.Since(t0).Round(time.Millisecond))
	// bob's key is the spec's
	out, err = sshRun(t, nil, append([]string{"-i", bob}, append(strict("bob"), "id -un; ls -ld $HOME; cat /etc/ssh/authorized_keys/bob")...)...)
	if err != nil || !strings.Contains(out, "bob\n") || !strings.Contains(out, "drwx------") || !strings.Contains(out, bobPub) {
		t.Fatalf("bob's login: %v\n%s", err, out)
	}
	// root has a key (from Ignition) and is refused
	out, err = sshRun(t, nil, append([]string{"-i", alice}, append(strict("root"), "id")...)...)
	if err == nil || !strings.Contains(out, "Permission denied (publickey)") || strings.Contains(out, "uid=0") {
		t.Errorf("root login not refused: %v\n%s", err, out)
	}
	// A password login: the client would answer a password prompt (the
	// askpass program records that it was asked), but the server offers
	// publickey only.
	asked := filepath.Join(dir, "asked")
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho asked >>"+asked+"\necho secret\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = sshRun(t, []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none"},
		"-p", port, "-o", "UserKnownHostsFile="+firstHosts, "-o", "StrictHostKeyChecking=yes", "-o", "PubkeyAuthentication=no",
		"-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=30", "alice@127.0.0.1", "id")
	if err == nil || !strings.Contains(out, "Permission denied (publickey)") {
		t.Errorf("password login not refused as it should be: %v\n%s", err, out)
	}
	if _, err := os.Stat(asked); err == nil {
		t.Error("the server asked for a password")
	}
	vm.wait(t, false, `^\[sshd\] User root not allowed`, 1, 30*time.Second)

	// A power cut and a boot of the same disk, forwarded from the same
	// port (known_hosts names it): the key is kept.
	vm.stop(t)
	boot = time.Now()
	vm = startVMRun(t, "--ssh", "--ssh-user", "alice", "--ssh-port", port, disk)
	again := vm.wait(t, false, `^SLATE-SSH host_key=ed25519 fingerprint=(SHA256:\S+) state=(\w+) key=\S+$`, 1, 4*time.Minute)
	if again[1] != fp || again[2] != "kept" {
		t.Errorf("after a reboot: %s state=%s, want %s state=kept", again[1], again[2], fp)
	}
	if p := vm.wait(t, true, `^slate: ssh: ssh -p (\d+) `, 1, 2*time.Minute)[1]; p != port {
		t.Fatalf("--ssh-port %s: forwarded from %s", port, p)
	}
	vm.wait(t, false, `^SLATE-READY version=1\.0\.0 slot=a$`, 1, 3*time.Minute)
	t.Logf("second boot to SLATE-READY: %s", time.Since(boot).Round(time.Millisecond))
	// the first boot's known_hosts still matches
	out, err = sshRun(t, nil, append([]string{"-i", alice}, append(strict("alice"), "echo kept")...)...)
	if err != nil || !strings.Contains(out, "kept") {
		t.Fatalf("login after the reboot: %v\n%s", err, out)
	}

	// v2 on the channel: the machine updates into slot B, keeps its key.
	publishStaged(t, staging, c.root, "1.1.0")
	vm.wait(t, false, `^SLATE-UPDATE state=staged version=1\.1\.0 slot=b`, 1, 4*time.Minute)
	boot = time.Now()
	vm.wait(t, false, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 4*time.Minute)
	t.Logf("update reboot to SLATE-READY on 1.1.0: %s", time.Since(boot).Round(time.Millisecond))
	upd := vm.wait(t, false, `^SLATE-SSH host_key=ed25519 fingerprint=(SHA256:\S+) state=(\w+) key=\S+$`, 2, time.Minute)
	if upd[1] != fp || upd[2] != "kept" {
		t.Errorf("after the update: %s state=%s, want %s state=kept", upd[1], upd[2], fp)
	}
	vm.wait(t, true, `^slate: ssh: ssh -p `, 2, 2*time.Minute) // sshd answers
	out, err = sshRun(t, nil, append([]string{"-i", alice}, append(strict("alice"), ". /etc/os-release; echo on=$VERSION_ID")...)...)
	if err != nil || !strings.Contains(out, "on=1.1.0") {
		t.Fatalf("login after the update: %v\n%s", err, out)
	}
	t.Logf("TestSSH: %s in all", time.Since(start).Round(time.Millisecond))
}

// publishStaged moves a version built into another channel folder into
// dir: its files first, the channel's manifest last (a rename), as a
// publisher would.
func publishStaged(t *testing.T, staging, dir, version string) {
	t.Helper()
	if out, err := exec.Command("cp", "-r", filepath.Join(staging, version), filepath.Join(dir, version)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(staging, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".manifest.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "manifest.json")); err != nil {
		t.Fatal(err)
	}
}
