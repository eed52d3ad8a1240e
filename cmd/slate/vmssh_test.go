package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewVMSSH(t *testing.T) {
	s, err := newVMSSH("", 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if s.guestPort != 22 || !strings.HasSuffix(s.knownHosts, ".known_hosts") {
		t.Errorf("%+v", s)
	}
	if got, want := s.command(2222), "ssh -p 2222 -o UserKnownHostsFile="+s.knownHosts+" -o StrictHostKeyChecking=yes alice@127.0.0.1"; got != want {
		t.Errorf("command %q, want %q", got, want)
	}
	for _, tc := range []struct {
		port       int
		user, want string
	}{
		{70000, "alice", "--ssh-port 70000"},
		{-1, "alice", "--ssh-port -1"},
		{0, "a b", "not a user name"},
		{0, "-oProxyCommand=x", "not a user name"},
		{0, "a@b", "not a user name"},
	} {
		if _, err := newVMSSH("", tc.port, tc.user); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %q: %v, want %q", tc.port, tc.user, err, tc.want)
		}
	}
	// a file that is no disk: the default port, known_hosts beside it
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(p, []byte("QFI\xfb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := newVMSSH(p, 0, "alice"); err != nil || s.guestPort != 22 || s.knownHosts != p+".known_hosts" {
		t.Errorf("%+v %v", s, err)
	}
}

func TestVMSSHFlagsNeedSSH(t *testing.T) {
	root := newRoot()
	root.SetArgs([]string{"vm", "run", "--ssh-user", "alice", "x.raw"})
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "are for --ssh") {
		t.Errorf("got %v", err)
	}
}

// TestWaitBanner: the command is printed only once the server greets; a
// port that accepts and drops connections (QEMU's forward before the
// guest listens) does not count.
func TestWaitBanner(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if n.Add(1) > 2 {
				c.Write([]byte("a line first\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
			}
			c.Close()
		}
	}()
	if err := waitBanner(context.Background(), l.Addr().String(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Errorf("%d connections, want 3", n.Load())
	}
	// never an answer: an error after d
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := waitBanner(context.Background(), mute.Addr().String(), 2*time.Second); err == nil {
		t.Error("a server that never greets was taken")
	}
}
