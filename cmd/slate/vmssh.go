package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/internal/run/sshd"
)

// vmSSH is `slate vm run --ssh`: a loopback port forwarded to the
// guest's sshd, and a known_hosts file beside the disk that trusts the
// host key the guest prints on its console (SLATE-SSH), so the first
// connection needs no "are you sure" and a changed key is refused.
type vmSSH struct {
	guestPort  int
	user       string
	knownHosts string
}

func newVMSSH(image string, hostPort int, userName string) (*vmSSH, error) {
	if hostPort < 0 || hostPort > 65535 {
		return nil, fmt.Errorf("--ssh-port %d: want 1-65535, or 0 for a free port", hostPort)
	}
	if userName == "" {
		if u, err := user.Current(); err == nil {
			userName = u.Username
		}
	}
	if msg := checkSSHUser(userName); msg != "" {
		return nil, fmt.Errorf("--ssh-user %q: %s", userName, msg)
	}
	s := &vmSSH{guestPort: configs.DefaultSSHPort, user: userName}
	if image != "" {
		switch c, err := builder.InspectSSH(image); {
		case err == nil:
			s.guestPort = c.Port
		case errors.Is(err, builder.ErrNoSSH):
			return nil, fmt.Errorf("--ssh: %s: %w (set ssh.enable in its spec)", image, err)
		default:
			// a qcow2 disk, say: the default port
			fmt.Fprintf(os.Stderr, "slate: --ssh: cannot read the image's ssh port (%v); forwarding to port %d\n", err, s.guestPort)
		}
		s.knownHosts = image + ".known_hosts"
	} else {
		s.knownHosts = filepath.Join(os.TempDir(), fmt.Sprintf("slate-vm-%d.known_hosts", os.Getpid()))
	}
	return s, nil
}

func checkSSHUser(u string) string {
	if u == "" {
		return "empty"
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`).MatchString(u) || len(u) > 32 {
		return "not a user name"
	}
	return ""
}

// command is the ssh command line for port on the host.
func (s *vmSSH) command(port int) string {
	return fmt.Sprintf("ssh -p %d -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes %s@127.0.0.1", port, s.knownHosts, s.user)
}

var sshLineRe = regexp.MustCompile(`^SLATE-SSH .*`)

// watch prints where the forward goes, then, for every SLATE-SSH line of
// the console (one per start of sshd, across reboots), writes the
// known_hosts file and prints the command.
func (s *vmSSH) watch(ctx context.Context, vm *qemu.VM, out io.Writer) {
	port := 0
	for _, f := range vm.Forwards() {
		if f.GuestPort == s.guestPort {
			port = f.HostPort
		}
	}
	fmt.Fprintf(out, "slate: ssh: 127.0.0.1:%d forwards to the guest's port %d; waiting for its host key (SLATE-SSH) on the console\n", port, s.guestPort)
	for n := 1; ; n++ {
		m, err := vm.WaitForNth(ctx, sshLineRe, n)
		if err != nil {
			return
		}
		id, err := sshd.ParseEvent(m[0])
		if err != nil {
			fmt.Fprintf(out, "slate: ssh: %v\n", err)
			continue
		}
		if err := renameio.WriteFile(s.knownHosts, id.KnownHosts("127.0.0.1", port), 0o644); err != nil {
			fmt.Fprintf(out, "slate: ssh: %v\n", err)
			continue
		}
		fmt.Fprintf(out, "slate: ssh: host key %s %s (%s), in %s\n", id.Type, id.Fingerprint, id.State, s.knownHosts)
		// The line comes before sshd starts, and QEMU accepts a forwarded
		// connection before the guest does: the command is printed once
		// the server greets.
		if err := waitBanner(ctx, fmt.Sprintf("127.0.0.1:%d", port), 3*time.Minute); err != nil {
			fmt.Fprintf(out, "slate: ssh: no ssh server answers on 127.0.0.1:%d: %v\n", port, err)
			continue
		}
		fmt.Fprintf(out, "slate: ssh: %s\n", s.command(port))
	}
}

// waitBanner waits until a connection to addr gets an SSH greeting
// ("SSH-2.0-...", RFC 4253 4.2), trying again every half second.
func waitBanner(ctx context.Context, addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		last = banner(ctx, addr)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func banner(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// a server may send other lines before its version line
	r := bufio.NewReader(io.LimitReader(c, 8<<10))
	for {
		l, err := r.ReadString('\n')
		if strings.HasPrefix(l, "SSH-") {
			return nil
		}
		if err != nil {
			return fmt.Errorf("no SSH greeting: %w", err)
		}
	}
}
