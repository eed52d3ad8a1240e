package builder

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/format/ext4fs"
	"github.com/slateos/slate/internal/run/sshd"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDj54cTuWnxXCvwCVRScu0X0y1/qxh+YZUFxt4359T35 alice@test"

func sshSpec(t *testing.T, extra string) *configs.Spec {
	t.Helper()
	s, err := configs.Parse([]byte("name: s\nversion: 1.0.0\nusers:\n  - {name: alice, uid: 1000, ssh_keys: ['"+testKey+"', ' "+testKey+" second ']}\n  - {name: web, uid: 1001}\n"+extra), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sshRoot is a root with what the packages would bring: sshd, busybox
// and bash, with /bin a folder (usrLink false) or a link to usr/bin.
func sshRoot(t *testing.T, usrLink bool, skip ...string) *ext4fs.FS {
	t.Helper()
	fsys := newTestFS(t)
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/etc"} {
		if err := fsys.Mkdir(d, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if usrLink {
		if err := fsys.Symlink("/bin", "usr/bin", 0, 0); err != nil {
			t.Fatal(err)
		}
	} else if err := fsys.Mkdir("/bin", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sshd.Binary, "/usr/bin/busybox", "/usr/bin/bash"} {
		if strings.Contains(strings.Join(skip, " "), p) {
			continue
		}
		if err := fsys.AddFile(p, 0o755, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	return fsys
}

func readBack(t *testing.T, fsys *ext4fs.FS, p string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := fsys.WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	x, err := openExt4(f, 0, max(st.Size(), 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	b, err := x.readFile(p, 1<<20)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return string(b)
}

func TestAddSSH(t *testing.T) {
	for _, tc := range []struct {
		name      string
		extra     string
		usrLink   bool
		link      string // the link made, "" for none
		target    string
		rootLogin string
	}{
		{"busybox, /bin a folder", "ssh: {enable: true}\n", false, "/bin/sh", "/usr/bin/busybox", "PermitRootLogin no"},
		{"busybox, merged /usr", "ssh: {enable: true, port: 2200}\n", true, "/usr/bin/sh", "busybox", "PermitRootLogin no"},
		{"bash, merged /usr", "ssh: {enable: true, shell: bash, permit_root_login: true}\n", true, "", "", "PermitRootLogin prohibit-password"},
		{"bash, /bin a folder", "ssh: {enable: true, shell: bash}\n", false, "/bin/bash", "/usr/bin/bash", "PermitRootLogin no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := sshSpec(t, tc.extra)
			fsys := sshRoot(t, tc.usrLink)
			if err := addSSH(fsys, spec); err != nil {
				t.Fatal(err)
			}
			if tc.link != "" {
				if e := lookup(t, fsys, tc.link); e.Mode&fs.ModeSymlink == 0 || e.Target != tc.target {
					t.Errorf("%s: %v -> %q, want -> %q", tc.link, e.Mode, e.Target, tc.target)
				}
			}
			sh, _ := spec.LoginShell()
			if _, e, err := resolveInImage(fsys, sh.Path); err != nil || !e.Mode.IsRegular() {
				t.Errorf("the login shell %s does not resolve to a file: %v", sh.Path, err)
			}
			e := lookup(t, fsys, "/etc/ssh/authorized_keys/alice")
			if e.Mode.Perm() != 0o644 || e.UID != 0 {
				t.Errorf("alice's keys: %v uid %d", e.Mode, e.UID)
			}
			if _, err := fsys.Lookup("/etc/ssh/authorized_keys/web"); err == nil {
				t.Error("web has no keys but a key file")
			}
			conf := readBack(t, fsys, sshd.ConfigPath)
			if !strings.Contains(conf, tc.rootLogin+"\n") || !strings.Contains(conf, "\nPort "+map[bool]string{true: "2200", false: "22"}[strings.Contains(tc.extra, "2200")]+"\n") {
				t.Errorf("sshd_config:\n%s", conf)
			}
			if keys := readBack(t, fsys, "/etc/ssh/authorized_keys/alice"); keys != testKey+"\n"+testKey+" second\n" {
				t.Errorf("alice's keys:\n%q", keys)
			}
		})
	}
}

func TestAddSSHErrors(t *testing.T) {
	for _, tc := range []struct {
		name, extra, missing, want string
	}{
		{"no server", "ssh: {enable: true}\n", sshd.Binary, "$.ssh.enable: /usr/sbin/sshd is not in the image (package openssh-server)"},
		{"no busybox", "ssh: {enable: true}\n", "/usr/bin/busybox", "$.ssh.shell: /usr/bin/busybox is not an executable file"},
		{"no bash", "ssh: {enable: true, shell: bash}\n", "/usr/bin/bash", "$.ssh.shell: /usr/bin/bash is not an executable file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := addSSH(sshRoot(t, true, tc.missing), sshSpec(t, tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	// without ssh nothing is written
	s, err := configs.Parse([]byte("name: s\nversion: 1.0.0\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsys := newTestFS(t)
	if err := addSSH(fsys, s); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Lookup("/etc/ssh"); err == nil {
		t.Error("/etc/ssh made without ssh")
	}
}

func TestAccountFilesSSH(t *testing.T) {
	_, _, shadow := accountFiles(sshSpec(t, "ssh: {enable: true}\n"))
	passwd, _, _ := accountFiles(sshSpec(t, "ssh: {enable: true}\n"))
	for _, want := range []string{"root:!::0:99999:7:::\n", "alice:*::0:99999:7:::\n", "web:!::0:99999:7:::\n", "sshd:!::0:99999:7:::\n"} {
		if !strings.Contains(shadow, want) {
			t.Errorf("shadow lacks %q:\n%s", want, shadow)
		}
	}
	for _, want := range []string{"alice:x:1000:1000:alice:/home/alice:/bin/sh\n", "sshd:x:65000:65534:sshd:/run/sshd:/usr/sbin/nologin\n", "root:x:0:0:root:/root:/sbin/nologin\n"} {
		if !strings.Contains(passwd, want) {
			t.Errorf("passwd lacks %q:\n%s", want, passwd)
		}
	}
	passwd, _, shadow = accountFiles(sshSpec(t, "ssh: {enable: true, shell: bash, permit_root_login: true}\n"))
	if !strings.HasPrefix(shadow, "root:*::") || !strings.HasPrefix(passwd, "root:x:0:0:root:/root:/bin/bash\n") {
		t.Errorf("root with permit_root_login:\n%s\n%s", passwd, shadow)
	}
	if bytes.Count([]byte(shadow), []byte("\n")) != bytes.Count([]byte(passwd), []byte("\n")) {
		t.Error("passwd and shadow differ in length")
	}
}
