package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/partitions"
)

func defaultSpec() string { return filepath.Join(repoRoot, "configs", "default.yaml") }

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract copies one partition of an image into its own file, for tools
// that check a filesystem image.
func extract(t *testing.T, image string, p partitions.Part) string {
	t.Helper()
	src, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(t.TempDir(), p.Label+".img")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(src, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestLayoutCheckedByIndependentTools(t *testing.T) {
	needBuild(t)
	sgdisk := needTool(t, "sgdisk")
	fsck := needTool(t, "fsck.vfat")
	e2fsck := needTool(t, "e2fsck")
	out := build(t, defaultSpec())
	img := filepath.Join(out, "disk.raw")

	b, err := exec.Command(sgdisk, "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, b)
	}
	want := []struct {
		num         int
		label, guid string
	}{
		{1, "ESP", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
		{2, "ROOT-A", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"},
		{3, "ROOT-B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"},
		{4, "STATE", "4D21B016-B534-45C2-A9FB-5C16E091FD2D"},
	}
	for _, w := range want {
		b, err := exec.Command(sgdisk, "-i", fmt.Sprint(w.num), img).CombinedOutput()
		if err != nil {
			t.Fatalf("sgdisk -i %d: %v\n%s", w.num, err, b)
		}
		s := string(b)
		if !strings.Contains(s, "Partition GUID code: "+w.guid) {
			t.Errorf("partition %d: type GUID not %s:\n%s", w.num, w.guid, s)
		}
		if !strings.Contains(s, "Partition name: '"+w.label+"'") {
			t.Errorf("partition %d: name not %s:\n%s", w.num, w.label, s)
		}
		if m := regexp.MustCompile(`First sector: (\d+)`).FindStringSubmatch(s); m == nil || mustAtoi(m[1])%2048 != 0 {
			t.Errorf("partition %d is not 1 MiB-aligned:\n%s", w.num, s)
		}
	}

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	l, err := partitions.ReadGPT(f, st.Size())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	esp := extract(t, img, l.Part(partitions.NumESP))
	if b, err := exec.Command(fsck, "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n ESP: %v\n%s", err, b)
	}
	root := extract(t, img, l.Part(partitions.NumRootA))
	if b, err := exec.Command(e2fsck, "-fn", root).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn ROOT-A: %v\n%s", err, b)
	}
	// The root holds slate, the image description and the os-release.
	if debugfs, err := exec.LookPath("debugfs"); err == nil {
		for _, p := range []string{"/usr/bin/slate", "/sbin/init", imageinfo.Path, "/etc/os-release"} {
			b, err := exec.Command(debugfs, "-R", "stat "+p, root).CombinedOutput()
			if err != nil || strings.Contains(string(b), "File not found") {
				t.Errorf("ROOT-A has no %s: %v\n%s", p, err, b)
			}
		}
		b, _ := exec.Command(debugfs, "-R", "cat /etc/os-release", root).CombinedOutput()
		if !strings.Contains(string(b), "VERSION_ID=1.0.0") {
			t.Errorf("os-release has no VERSION_ID=1.0.0:\n%s", b)
		}
	}

	// slate inspect tells the same from the image.
	o, err := slate(t, "inspect", "--json", img)
	if err != nil {
		t.Fatalf("slate inspect: %v\n%s", err, o)
	}
	var rep bootentry.Report
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, o)
	}
	if rep.Next != "a" || rep.Slots[0].Version != "1.0.0" || rep.Slots[0].State != "good" || rep.Slots[1].State != "empty" {
		t.Errorf("inspect: next=%q slots=%+v", rep.Next, rep.Slots)
	}

	var br builder.Report
	js, err := os.ReadFile(filepath.Join(out, "build.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &br); err != nil {
		t.Fatal(err)
	}
	if len(br.Artifacts) != 1 || br.Artifacts[0].SHA256 != sha256File(t, img) {
		t.Errorf("build.json artifacts %+v do not match disk.raw", br.Artifacts)
	}
	t.Logf("initramfs %d bytes (%d modules), root used %d bytes (%d modules)", br.InitramfsSize, br.InitramfsMods, br.RootUsed, br.RootModules)
}

func mustAtoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func TestBuildsAreByteIdentical(t *testing.T) {
	needBuild(t)
	a := build(t, defaultSpec())
	b := build(t, defaultSpec())
	for _, n := range []string{"disk.raw"} {
		if ha, hb := sha256File(t, filepath.Join(a, n)), sha256File(t, filepath.Join(b, n)); ha != hb {
			t.Errorf("%s differs between two builds: %s vs %s", n, ha, hb)
		}
	}
}

func TestQcow2(t *testing.T) {
	needBuild(t)
	qimg := needTool(t, "qemu-img")
	out := build(t, defaultSpec(), "--format", "raw,qcow2")
	b, err := exec.Command(qimg, "compare", "-f", "raw", "-F", "qcow2", filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2")).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare raw and qcow2: %v\n%s", err, b)
	}
}

func TestBadSpecsWriteNothing(t *testing.T) {
	needBuild(t)
	dir := t.TempDir()
	content := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(content, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "name: bad\nversion: 1.0.0\n"
	svc := "services:\n  - name: a\n    command: /usr/bin/slate\n"
	cases := []struct {
		name, spec, want string
	}{
		{"bad yaml", "name: [oops\n", "yaml"},
		{"unknown top field", base + "colour: blue\n", "$.colour"},
		{"unknown nested field", base + "disk:\n  sise: 1GiB\n", "$.disk.sise"},
		{"bad size", base + "disk:\n  root: 12XB\n", "$.disk.root"},
		{"root larger than disk", base + "disk:\n  size: 2GiB\n  root: 1GiB\n", "$.disk.size"},
		{"missing name", "version: 1.0.0\n", "$.name"},
		{"bad version", "name: bad\nversion: one\n", "$.version"},
		{"missing kernel file", base + "kernel:\n  vmlinuz: /nonexistent/vmlinuz\n  modules_dir: /nonexistent/modules\n", "$.kernel.vmlinuz"},
		{"kernel package not cached", base + "kernel:\n  package: linux-image-nothere\n", "$.kernel.package"},
		{"missing content file", base + "root:\n  files:\n    - src: nothere.txt\n      dst: /etc/nothere\n", "$.root.files[0].src"},
		{"duplicate service", base + svc + "  - name: a\n    command: /usr/bin/slate\n", "$.services[1].name"},
		{"relative service command", base + "services:\n  - name: a\n    command: slate\n", "$.services[0].command"},
		{"bad restart", base + svc + "    restart: sometimes\n", "$.services[0].restart"},
		{"content under var", base + "root:\n  files:\n    - src: " + content + "\n      dst: /var/x\n", "$.root.files[0].dst"},
		{"bad mode", base + "root:\n  files:\n    - src: " + content + "\n      dst: /etc/x\n      mode: \"0999\"\n", "$.root.files[0].mode"},
		{"unknown initramfs module", base + "kernel:\n  initramfs_modules: [no_such_module_xyz]\n", "no_such_module_xyz"},
		{"empty spec", "", "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			if err := os.WriteFile(spec, []byte(c.spec), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			o, err := slate(t, "build", "-c", spec, "-o", out)
			if err == nil {
				t.Fatalf("slate build accepted a bad spec:\n%s", o)
			}
			if !strings.Contains(o, c.want) {
				t.Errorf("error does not name %q:\n%s", c.want, o)
			}
			if strings.Count(strings.TrimSpace(o), "\n") > 3 {
				t.Errorf("error is not short and clear:\n%s", o)
			}
			ents, _ := os.ReadDir(out)
			if len(ents) > 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("bad spec left files behind in %s: %v", out, names)
			}
		})
	}
}
