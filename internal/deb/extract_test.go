package deb

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/internal/deb/debtest"
)

func writeDeb(t *testing.T, p debtest.Pkg) string {
	t.Helper()
	if p.Arch == "" {
		p.Arch = "amd64"
	}
	f := filepath.Join(t.TempDir(), p.Name+".deb")
	if err := os.WriteFile(f, debtest.BuildDeb(t, p), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestExtract: a package unpacks as dpkg -x lays it out: its own paths,
// modes (setuid too), links; read-only folders are made read-only last.
func TestExtract(t *testing.T) {
	deb := writeDeb(t, debtest.Pkg{Name: "k", Version: "1", Files: []debtest.File{
		{Name: "./"}, {Name: "./lib/"}, {Name: "./lib/modules/"}, {Name: "./lib/modules/a.ko", Body: "mod"},
		{Name: "./lib/modules/b.ko", Type: tar.TypeLink, Target: "./lib/modules/a.ko"},
		{Name: "./bin/"}, {Name: "./bin/su", Mode: 0o4755, Body: "su"}, {Name: "./bin/sh", Type: tar.TypeSymlink, Target: "dash"},
		{Name: "./ro/", Mode: 0o555}, {Name: "./ro/f", Body: "inside a read-only folder"},
	}})
	dir := t.TempDir()
	n, err := Extract(deb, "k", dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len("mod")+len("su")+len("inside a read-only folder")) {
		t.Errorf("%d bytes", n)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib/modules/b.ko")); err != nil || string(b) != "mod" {
		t.Errorf("hard link: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "bin/su")); err != nil || st.Mode()&os.ModeSetuid == 0 || st.Mode().Perm() != 0o755 {
		t.Errorf("bin/su: %v %v", st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "dash" {
		t.Errorf("bin/sh -> %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr")); err == nil {
		t.Error("Extract merged /usr; dpkg -x does not")
	}
	if st, err := os.Stat(filepath.Join(dir, "ro")); err != nil || st.Mode().Perm() != 0o555 {
		t.Errorf("ro: %v %v", st.Mode(), err)
	}
	os.Chmod(filepath.Join(dir, "ro"), 0o755) // for t.TempDir's clean-up
}

func TestExtractRefuses(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name  string
		files []debtest.File
		want  string
	}{
		{"a path through a link of the package", []debtest.File{{Name: "./etc", Type: tar.TypeSymlink, Target: outside}, {Name: "./etc/passwd", Body: "root::0:0"}}, "through a symbolic link"},
		{"a hard link to a link", []debtest.File{{Name: "./a", Type: tar.TypeSymlink, Target: "/etc/shadow"}, {Name: "./b", Type: tar.TypeLink, Target: "./a"}}, "bad hard link target"},
		{"a path out of the folder", []debtest.File{{Name: "../../x", Body: "x"}}, "bad path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Extract(writeDeb(t, debtest.Pkg{Name: "bad", Version: "1", Files: tc.files}), "bad", t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "package bad: ") {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Errorf("wrote outside: %v", ents)
			}
		})
	}
	if _, err := Extract(writeDeb(t, debtest.Pkg{Name: "other", Version: "1"}), "k", t.TempDir()); err == nil || !strings.Contains(err.Error(), `the .deb is package "other"`) {
		t.Errorf("another package: %v", err)
	}
}
