package sshd

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"github.com/slateos/slate/internal/bootlog"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want []string
		not  []string
	}{
		{"defaults", Options{Port: 22}, []string{"Port 22", "PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
			"AuthenticationMethods publickey", "UsePAM no", "AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys",
			"HostKey /var/lib/slate/ssh/ssh_host_ed25519_key", "HostKey /var/lib/slate/ssh/ssh_host_ecdsa_key"}, []string{"PasswordAuthentication yes", "PermitRootLogin prohibit"}},
		{"root and port", Options{Port: 2222, PermitRootLogin: true}, []string{"Port 2222", "PermitRootLogin prohibit-password"}, []string{"Port 22\n", "PermitRootLogin no", "PermitRootLogin yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := string(Config(tc.o))
			lines := map[string]bool{}
			keywords := map[string]int{}
			for _, l := range strings.Split(c, "\n") {
				lines[l] = true
				if l != "" && !strings.HasPrefix(l, "#") {
					kw, _, _ := strings.Cut(l, " ")
					keywords[kw]++
				}
			}
			for _, w := range tc.want {
				if !lines[w] {
					t.Errorf("no line %q in\n%s", w, c)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(c, n) {
					t.Errorf("%q in\n%s", n, c)
				}
			}
			// sshd takes a keyword's first value: each is said once
			// (HostKey is the one keyword that adds up)
			for kw, n := range keywords {
				if n > 1 && kw != "HostKey" {
					t.Errorf("%s appears %d times", kw, n)
				}
			}
		})
	}
}

func TestHostKeysNewThenKept(t *testing.T) {
	root := t.TempDir()
	first, err := EnsureHostKeys(root, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].Type != "ed25519" || first[1].Type != "ecdsa" {
		t.Fatalf("keys %+v", first)
	}
	for _, k := range first {
		if !k.New {
			t.Errorf("%s: not new on a first boot", k.Type)
		}
		st, err := os.Stat(filepath.Join(root, k.Path))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", k.Path, st.Mode(), err)
		}
		pub, err := os.ReadFile(filepath.Join(root, k.Path+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil || !bytes.Equal(pk.Marshal(), k.Public.Marshal()) {
			t.Errorf("%s.pub does not hold the key: %v", k.Path, err)
		}
		// OpenSSH reads the private key and agrees on its fingerprint
		if kg, err := exec.LookPath("ssh-keygen"); err == nil {
			out, err := exec.Command(kg, "-l", "-f", filepath.Join(root, k.Path)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), k.Fingerprint()) {
				t.Errorf("ssh-keygen -l %s: %v %s (want %s)", k.Path, err, out, k.Fingerprint())
			}
		}
	}
	if st, err := os.Stat(filepath.Join(root, HostKeyDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("key folder: %v %v", st.Mode(), err)
	}
	// a later boot (or another slot) keeps them; a loosened mode is fixed
	if err := os.Chmod(filepath.Join(root, first[0].Path), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := EnsureHostKeys(root, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range again {
		if k.New || k.Fingerprint() != first[i].Fingerprint() {
			t.Errorf("%s: new=%v %s, want kept %s", k.Type, k.New, k.Fingerprint(), first[i].Fingerprint())
		}
	}
	if st, _ := os.Stat(filepath.Join(root, first[0].Path)); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v not fixed", st.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Join(root, HostKeyDir)); len(ents) != 4 {
		t.Errorf("%d files in the key folder, want 4 (no temporary files left)", len(ents))
	}
}

func TestHostKeysReplacesBadOnes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, p string)
	}{
		{"garbage", func(t *testing.T, p string) { os.WriteFile(p, []byte("not a key\n"), 0o600) }},
		{"empty", func(t *testing.T, p string) { os.WriteFile(p, nil, 0o600) }},
		{"truncated", func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o600)
		}},
		{"a folder", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o700) }},
		{"another type", func(t *testing.T, p string) {
			b, _ := os.ReadFile(strings.Replace(p, "ed25519", "ecdsa", 1))
			os.WriteFile(p, b, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			first, err := EnsureHostKeys(root, quiet())
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, first[0].Path)
			tc.write(t, p)
			again, err := EnsureHostKeys(root, quiet())
			if err != nil {
				t.Fatal(err)
			}
			if !again[0].New || again[0].Fingerprint() == first[0].Fingerprint() {
				t.Errorf("a bad key was kept: %+v", again[0])
			}
			if again[1].New {
				t.Error("the good ecdsa key was replaced")
			}
			if _, err := os.Lstat(p + ".bad"); err != nil {
				t.Errorf("the bad key was not kept aside: %v", err)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("makes homes owned by other users: needs root")
	}
	root := t.TempDir()
	for p, data := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\nbob:x:1001:1001:bob:/home/bob:/bin/sh\n" +
			"carol:x:1002:1002:carol:/nonexistent/../home/carol:/bin/sh\n",
		"etc/ssh/authorized_keys/alice": "ssh-ed25519 AAAA\n",
		"etc/ssh/authorized_keys/bob":   "ssh-ed25519 AAAA\n",
		"etc/ssh/authorized_keys/1000":  "ssh-ed25519 AAAA\n", // not a user name
		"etc/ssh/authorized_keys/dave":  "ssh-ed25519 AAAA\n", // not in passwd
		"home/bob/keep":                 "bob's",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "run/sshd"), 0o777); err != nil {
		t.Fatal(err)
	}
	keys, err := Prepare(root, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys %+v", keys)
	}
	st, err := os.Stat(filepath.Join(root, "run/sshd"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("/run/sshd: %v %v", st.Mode(), err)
	}
	st, err = os.Stat(filepath.Join(root, "home/alice"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o700 || sys.Uid != 1000 || sys.Gid != 1000 {
		t.Errorf("alice's home: %v %d:%d", st.Mode(), sys.Uid, sys.Gid)
	}
	// an existing home is left as it is
	if b, _ := os.ReadFile(filepath.Join(root, "home/bob/keep")); string(b) != "bob's" {
		t.Error("bob's home was replaced")
	}
	if st, _ := os.Stat(filepath.Join(root, "home/bob")); st.Mode().Perm() != 0o755 {
		t.Errorf("bob's home changed mode: %v", st.Mode())
	}
	for _, p := range []string{"home/dave", "home/1000", "nonexistent"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s made", p)
		}
	}
}

func TestEvent(t *testing.T) {
	root := t.TempDir()
	keys, err := EnsureHostKeys(root, quiet())
	if err != nil {
		t.Fatal(err)
	}
	// ecdsa first: the line still names ed25519
	line := bootlog.Format("SSH", Event([]HostKey{keys[1], keys[0]})...)
	kind, kv, err := bootlog.Parse(line)
	if err != nil || kind != "SSH" {
		t.Fatalf("%q: %v", line, err)
	}
	got := map[string]string{}
	for _, p := range kv {
		got[p.Key] = p.Value
	}
	if got["host_key"] != "ed25519" || got["fingerprint"] != keys[0].Fingerprint() || got["state"] != "new" || !strings.HasPrefix(got["fingerprint"], "SHA256:") {
		t.Errorf("line %q", line)
	}
	blob, err := base64.StdEncoding.DecodeString(got["key"])
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.ParsePublicKey(blob)
	if err != nil || ssh.FingerprintSHA256(pk) != got["fingerprint"] {
		t.Errorf("key= does not match the fingerprint: %v", err)
	}
	keys[0].New = false
	if line := bootlog.Format("SSH", Event(keys)...); !strings.Contains(line, " state=kept ") {
		t.Errorf("kept key: %q", line)
	}
}

func TestParseEvent(t *testing.T) {
	root := t.TempDir()
	keys, err := EnsureHostKeys(root, quiet())
	if err != nil {
		t.Fatal(err)
	}
	line := bootlog.Format("SSH", Event(keys)...)
	id, err := ParseEvent(line)
	if err != nil {
		t.Fatal(err)
	}
	if id.Type != "ed25519" || id.State != "new" || id.Fingerprint != keys[0].Fingerprint() {
		t.Errorf("%+v", id)
	}
	kh := string(id.KnownHosts("127.0.0.1", 2222))
	if want := "[127.0.0.1]:2222 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(keys[0].Public))) + "\n"; kh != want {
		t.Errorf("known_hosts %q, want %q", kh, want)
	}
	if kh := string(id.KnownHosts("127.0.0.1", 22)); !strings.HasPrefix(kh, "127.0.0.1 ssh-ed25519 ") {
		t.Errorf("known_hosts for port 22: %q", kh)
	}
	other := bootlog.Format("SSH", Event(keys[1:])...)
	_, okv, _ := bootlog.Parse(other)
	var otherKey string
	for _, kv := range okv {
		if kv.Key == "key" {
			otherKey = kv.Value
		}
	}
	for _, bad := range []string{
		"SLATE-READY version=1.0.0 slot=a",
		"SLATE-SSH host_key=ed25519 fingerprint=" + keys[0].Fingerprint() + " state=new key=" + otherKey, // a key that is not the fingerprint's
		"SLATE-SSH host_key=ed25519 fingerprint=" + keys[0].Fingerprint() + " state=new key=!!!",
		"SLATE-SSH host_key=ed25519 fingerprint=" + keys[0].Fingerprint() + " state=new",
		"SLATE-SSH state=failed err=x",
		"SSH host_key=ed25519",
	} {
		if _, err := ParseEvent(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	root := f.TempDir()
	keys, err := EnsureHostKeys(root, quiet())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bootlog.Format("SSH", Event(keys)...))
	f.Add("SLATE-SSH state=failed err=\"x\"")
	f.Add("SLATE-SSH key=AAAA fingerprint=SHA256:x")
	f.Fuzz(func(t *testing.T, line string) {
		id, err := ParseEvent(line)
		if err != nil {
			return
		}
		// what parses names its key truly and renders one known_hosts line
		if ssh.FingerprintSHA256(id.Key) != id.Fingerprint {
			t.Fatalf("%q: fingerprint mismatch", line)
		}
		if kh := id.KnownHosts("127.0.0.1", 2222); bytes.Count(kh, []byte("\n")) != 1 {
			t.Fatalf("%q: known_hosts %q", line, kh)
		}
	})
}
