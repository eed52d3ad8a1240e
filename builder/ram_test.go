package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/slateos/slate/configs"
)

// ramSpec is a valid spec with its own console and kernel arguments, so the
// tests can tell them from the ones slate adds.
func ramSpec(t *testing.T) *configs.Spec {
	t.Helper()
	s, err := configs.Parse([]byte("name: net-demo\nversion: 2.1.0\nconsole: [\"ttyS1,9600\"]\nkernel:\n  args: [quiet, foo=bar]\n"), "ram.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kernelLine returns the arguments of the script's kernel command.
func kernelLine(t *testing.T, script string) []string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(l, "kernel ") {
			if found != nil {
				t.Fatalf("more than one kernel line:\n%s", script)
			}
			found = strings.Fields(l)
		}
	}
	if found == nil {
		t.Fatalf("no kernel line:\n%s", script)
	}
	return found
}

func TestIPXEScript(t *testing.T) {
	spec := ramSpec(t)
	sum := strings.Repeat("ab", 32)
	root := ramRoot{size: 123456789, sha256: sum}
	const isset = "isset ${slate-root-url} || set slate-root-url "
	tests := []struct {
		name    string
		embed   bool
		rootURL string
		wantURL string // the default root URL; "" when the root is embedded
	}{
		{"fetched, default URL", false, "", "tftp://${next-server}/root.img.zst"},
		{"fetched, given URL", false, "http://10.0.0.1:8080/img/root.img.zst", "http://10.0.0.1:8080/img/root.img.zst"},
		{"embedded", true, "", ""},
		{"embedded ignores a URL", true, "http://10.0.0.1/root.img.zst", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := IPXEScript(spec, "6.1.0-test", root, tt.embed, tt.rootURL)
			if !strings.HasPrefix(s, "#!ipxe\n") {
				t.Errorf("script does not start with #!ipxe:\n%s", s)
			}
			if !strings.HasSuffix(s, "\ninitrd initrd.img\nboot\n") {
				t.Errorf("script does not end with initrd and boot:\n%s", s)
			}
			args := kernelLine(t, s)
			if !slices.Equal(args[:3], []string{"kernel", "vmlinuz", "initrd=initrd.img"}) {
				t.Errorf("kernel line starts %q, want kernel vmlinuz initrd=initrd.img", args[:3])
			}
			want := []string{
				"slate.root_sha256=" + sum, "slate.root_size=123456789",
				"BOOTIF=01-${netX/mac:hexhyp}", "${slate-args}",
				"console=ttyS1,9600", "quiet", "foo=bar", "panic=10",
			}
			for _, w := range want {
				if !slices.Contains(args, w) {
					t.Errorf("kernel line lacks %q: %q", w, args)
				}
			}
			// The default console is replaced by the spec's.
			if slices.Contains(args, "console=tty0") {
				t.Errorf("kernel line has the default console: %q", args)
			}
			for _, bad := range []string{"root=PARTUUID", "slate.slot="} {
				if strings.Contains(s, bad) {
					t.Errorf("a RAM boot has no slot, but the script holds %q:\n%s", bad, s)
				}
			}
			urlArg := "slate.root_url=${slate-root-url}"
			if tt.wantURL == "" {
				if strings.Contains(s, "slate.root_url") || strings.Contains(s, "isset") {
					t.Errorf("embedded root, but the script sets a root URL:\n%s", s)
				}
				if tt.rootURL != "" && strings.Contains(s, tt.rootURL) {
					t.Errorf("embedded root, but the script names %s:\n%s", tt.rootURL, s)
				}
				return
			}
			if !slices.Contains(args, urlArg) {
				t.Errorf("kernel line lacks %q: %q", urlArg, args)
			}
			if !strings.Contains(s, "\n"+isset+tt.wantURL+"\n") {
				t.Errorf("script lacks the line %q:\n%s", isset+tt.wantURL, s)
			}
			// The root URL must be set before the kernel line expands it.
			if strings.Index(s, isset) > strings.Index(s, "\nkernel ") {
				t.Errorf("the root URL is set after the kernel line:\n%s", s)
			}
		})
	}
}

func TestRAMArgsEndWithRoot(t *testing.T) {
	spec := ramSpec(t)
	got := ramArgs(spec, ramRoot{size: 42, sha256: "00ff"})
	want := append(SlotArgs(spec), "slate.root_sha256=00ff", "slate.root_size=42")
	if !slices.Equal(got, want) {
		t.Errorf("ramArgs = %q, want %q", got, want)
	}
	// ramArgs must not write into the slice SlotArgs gave it.
	if again := SlotArgs(spec); slices.Contains(again, "slate.root_size=42") {
		t.Errorf("SlotArgs changed by ramArgs: %q", again)
	}
}

func TestVolumeID(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)
	tests := []struct {
		name, version, want string
	}{
		{"slate-demo", "1.0.0", "SLATE_DEMO_1_0_0"},
		{"web", "2.0.0-rc.1", "WEB_2_0_0_RC_1"},
		{"a1", "10.20.30", "A1_10_20_30"},
		{strings.Repeat("n", 60), "1.0.0", strings.Repeat("N", 32)},
		{strings.Repeat("x", 30), "1.0.0", strings.Repeat("X", 30) + "_1"},
		{strings.Repeat("x", 26), "1.0.0", strings.Repeat("X", 26) + "_1_0_0"},
		{"café", "1.0", "CAF__1_0"},
		{"straße", "1.0", "STRA_E_1_0"},
		{"日本", "1.0", "___1_0"},
		{strings.Repeat("é", 40), "1.0.0", strings.Repeat("_", 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.version, func(t *testing.T) {
			got := volumeID(&configs.Spec{Name: tt.name, Version: tt.version})
			if got != tt.want {
				t.Errorf("volumeID = %q, want %q", got, tt.want)
			}
			if !valid.MatchString(got) {
				t.Errorf("volumeID %q is not 1 to 32 ISO 9660 d-characters", got)
			}
		})
	}
}

func TestParseFormats(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr []string // each must be in the error
	}{
		{name: "default", in: nil, want: []string{"raw"}},
		{name: "pxe", in: []string{"pxe"}, want: []string{"pxe"}},
		{name: "iso", in: []string{"iso"}, want: []string{"iso"}},
		{name: "comma list", in: []string{"raw,pxe,iso"}, want: []string{"iso", "pxe", "raw"}},
		{name: "spaces", in: []string{" pxe , iso "}, want: []string{"iso", "pxe"}},
		{name: "repeated flags", in: []string{"raw", "qcow2", "pxe"}, want: []string{"pxe", "qcow2", "raw"}},
		{name: "duplicates", in: []string{"pxe,pxe", "pxe"}, want: []string{"pxe"}},
		{name: "empty entries", in: []string{"iso,,", ""}, want: []string{"iso"}},
		{name: "unknown", in: []string{"zip"}, wantErr: []string{`"zip"`, "raw, qcow2, pxe, iso"}},
		{name: "unknown among known", in: []string{"pxe,zip,iso"}, wantErr: []string{`"zip"`, "raw, qcow2, pxe, iso"}},
		{name: "case matters", in: []string{"PXE"}, wantErr: []string{`"PXE"`}},
		{name: "nothing", in: []string{""}, wantErr: []string{"no format"}},
		{name: "only commas", in: []string{" , "}, wantErr: []string{"no format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFormats(tt.in)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("parseFormats(%q) = %v, want an error", tt.in, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tt.want) {
				t.Errorf("parseFormats(%q) = %q, want %q", tt.in, keys, tt.want)
			}
		})
	}
}

// TestBuildRefusesRAMOptions: options that make no sense together are
// refused before anything is read or written. The cache is empty, so an
// option check that came after the inputs would fail on the kernel instead.
func TestBuildRefusesRAMOptions(t *testing.T) {
	spec := ramSpec(t)
	const notPXE = "Options.RootURL: is for Options.Formats pxe without Options.EmbedRoot"
	tests := []struct {
		name    string
		o       Options
		wantErr []string
	}{
		{name: "root URL with raw", o: Options{Formats: []string{"raw"}, RootURL: "http://srv/root.img.zst"}, wantErr: []string{notPXE}},
		{name: "root URL with default format", o: Options{RootURL: "http://srv/root.img.zst"}, wantErr: []string{notPXE}},
		{name: "root URL with iso", o: Options{Formats: []string{"iso"}, RootURL: "http://srv/root.img.zst"}, wantErr: []string{notPXE}},
		{name: "root URL with embedded root", o: Options{Formats: []string{"pxe"}, RootURL: "http://srv/root.img.zst", EmbedRoot: true}, wantErr: []string{notPXE}},
		{name: "ftp root URL", o: Options{Formats: []string{"pxe"}, RootURL: "ftp://x/r"}, wantErr: []string{`Options.RootURL: "ftp://x/r"`, `scheme "ftp"`}},
		{name: "root URL without scheme", o: Options{Formats: []string{"pxe"}, RootURL: "srv/root.img.zst"}, wantErr: []string{"Options.RootURL", "scheme"}},
		{name: "root URL without host", o: Options{Formats: []string{"pxe"}, RootURL: "http:///root.img.zst"}, wantErr: []string{"Options.RootURL", "no host"}},
		{name: "root URL with a newline", o: Options{Formats: []string{"pxe"}, RootURL: "http://srv/r\nboot"}, wantErr: []string{"Options.RootURL"}},
		{name: "root URL with a space", o: Options{Formats: []string{"pxe"}, RootURL: "http://srv/a b/root.img.zst"}, wantErr: []string{"Options.RootURL", "space"}},
		{name: "root URL with an iPXE setting", o: Options{Formats: []string{"pxe"}, RootURL: "http://${next-server}/root.img.zst"}, wantErr: []string{"Options.RootURL", "iPXE"}},
		{name: "embedded root with raw", o: Options{Formats: []string{"raw"}, EmbedRoot: true}, wantErr: []string{"Options.EmbedRoot: is for Options.Formats pxe"}},
		{name: "embedded root with iso", o: Options{Formats: []string{"iso"}, EmbedRoot: true}, wantErr: []string{"Options.EmbedRoot: is for Options.Formats pxe"}},
		{name: "unknown format", o: Options{Formats: []string{"pxe,zip"}}, wantErr: []string{"Options.Formats", `"zip"`}},
		// Accepted options reach the inputs, which the empty cache lacks.
		{name: "valid pxe options reach the inputs", o: Options{Formats: []string{"raw,pxe"}, RootURL: "https://srv/root.img.zst"}, wantErr: []string{"not in the cache"}},
		{name: "valid embedded root reaches the inputs", o: Options{Formats: []string{"pxe", "iso"}, EmbedRoot: true}, wantErr: []string{"not in the cache"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := tt.o
			o.Spec = spec
			o.OutDir = filepath.Join(dir, "out")
			o.CacheDir = filepath.Join(dir, "empty-cache")
			o.Slate = filepath.Join(dir, "no-slate")
			rep, err := Build(context.Background(), o)
			if err == nil {
				t.Fatalf("Build accepted the options: %+v", rep)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(o.OutDir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Build created the output folder (stat: %v)", err)
			}
		})
	}
}

// ramCache is the kernel cache the integration test builds from. It skips
// the test when there is none, or fails it under CI.
func ramCache(t *testing.T) string {
	t.Helper()
	return realCache(t)
}

// staticSlate builds the slate binary that becomes the images' init: a test
// binary is neither slate nor, with cgo, static.
func staticSlate(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "slate")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/slate")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/slate: %v\n%s", err, b)
	}
	return out
}

// outputFiles lists every file under dir, relative to it.
func outputFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func readReport(t *testing.T, dir string) Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("build.json: %v", err)
	}
	return r
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBuildRAMFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	cache := ramCache(t)
	slate := staticSlate(t)
	spec, err := configs.Load(filepath.Join("..", "configs", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	build := func(dir string, formats []string, embed bool) *Report {
		t.Helper()
		rep, err := Build(context.Background(), Options{Spec: spec, OutDir: dir, Formats: formats, CacheDir: cache, Slate: slate, EmbedRoot: embed})
		if err != nil {
			t.Fatalf("Build %q (embed %v): %v", formats, embed, err)
		}
		return rep
	}
	base := t.TempDir()
	dir1, dir2 := filepath.Join(base, "one"), filepath.Join(base, "two")

	rep := build(dir1, []string{"pxe", "iso"}, false)
	wantArtifacts := []string{"pxe/vmlinuz", "pxe/initrd.img", "pxe/root.img.zst", "pxe/boot.ipxe", "live.iso"}
	var paths []string
	for _, a := range rep.Artifacts {
		paths = append(paths, a.Path)
		if got := fileSHA256(t, filepath.Join(dir1, a.Path)); got != a.SHA256 {
			t.Errorf("%s: sha256 %s, build.json says %s", a.Path, got, a.SHA256)
		}
	}
	if !slices.Equal(paths, wantArtifacts) {
		t.Errorf("artifacts %q, want %q", paths, wantArtifacts)
	}
	if got, want := outputFiles(t, dir1), slices.Sorted(slices.Values(append(wantArtifacts, "build.json"))); !slices.Equal(got, want) {
		t.Errorf("output files %q, want %q (no disk.raw, no temporary files)", got, want)
	}
	if on := readReport(t, dir1); on.RootSHA256 != rep.RootSHA256 || !slices.Equal(on.Artifacts, rep.Artifacts) {
		t.Errorf("build.json differs from the returned report")
	}

	// The compressed root is the image the script names by hash and size.
	zf, err := os.Open(filepath.Join(dir1, "pxe", "root.img.zst"))
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := zstd.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		t.Fatalf("decompress root.img.zst: %v", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if rep.RootSHA256 != sum {
		t.Errorf("build.json root_sha256 %s, decompressed root.img.zst has %s", rep.RootSHA256, sum)
	}
	if n != rep.RootSize {
		t.Errorf("root.img.zst holds %d bytes, build.json root_fs_size is %d", n, rep.RootSize)
	}
	script, err := os.ReadFile(filepath.Join(dir1, "pxe", "boot.ipxe"))
	if err != nil {
		t.Fatal(err)
	}
	args := kernelLine(t, string(script))
	for _, w := range []string{"slate.root_sha256=" + sum, "slate.root_size=" + strconv.FormatInt(n, 10), "slate.root_url=${slate-root-url}"} {
		if !slices.Contains(args, w) {
			t.Errorf("boot.ipxe kernel line lacks %q: %q", w, args)
		}
	}

	// An ISO 9660 primary volume descriptor in sector 16, named after the image.
	iso, err := os.Open(filepath.Join(dir1, "live.iso"))
	if err != nil {
		t.Fatal(err)
	}
	pvd := make([]byte, 72)
	_, err = iso.ReadAt(pvd, 16*2048)
	iso.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(pvd[1:6]) != "CD001" || pvd[0] != 1 {
		t.Errorf("live.iso has no primary volume descriptor: % x", pvd[:8])
	}
	if got := strings.TrimRight(string(pvd[40:72]), " "); got != "SLATE_DEMO_1_0_0" {
		t.Errorf("live.iso volume ID %q, want SLATE_DEMO_1_0_0", got)
	}

	// slate inspect reads both back: the root's hash and size, and
	// whether it is carried or fetched.
	for _, tc := range []struct {
		path, kind string
		embedded   bool
	}{
		{filepath.Join(dir1, "pxe"), "pxe", false},
		{filepath.Join(dir1, "live.iso"), "iso", true},
	} {
		if !IsRAMArtifact(tc.path) {
			t.Errorf("IsRAMArtifact(%s) = false", tc.path)
			continue
		}
		ir, err := InspectRAM(tc.path)
		if err != nil {
			t.Errorf("InspectRAM(%s): %v", tc.path, err)
			continue
		}
		if ir.Kind != tc.kind || ir.Embedded != tc.embedded || ir.RootSHA256 != sum || ir.RootSize != n {
			t.Errorf("InspectRAM(%s) = %+v; want kind %s, embedded %v, root %s of %d bytes", tc.path, ir, tc.kind, tc.embedded, sum, n)
		}
		var text bytes.Buffer
		if err := ir.WriteText(&text); err != nil || !strings.Contains(text.String(), sum) {
			t.Errorf("WriteText: %v\n%s", err, text.String())
		}
	}
	if IsRAMArtifact(dir1) {
		t.Error("a build folder is not a PXE folder")
	}
	if _, err := InspectRAM(filepath.Join(dir1, "build.json")); err == nil {
		t.Error("InspectRAM took build.json for a live ISO")
	}

	// The same inputs give the same bytes in another folder. build.json
	// holds the build time, so only its other fields are compared.
	build(dir2, []string{"pxe", "iso"}, false)
	files1, files2 := outputFiles(t, dir1), outputFiles(t, dir2)
	if !slices.Equal(files1, files2) {
		t.Fatalf("second build wrote %q, first %q", files2, files1)
	}
	for _, f := range files1 {
		if f == "build.json" {
			continue
		}
		a, err := os.ReadFile(filepath.Join(dir1, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir2, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs", f)
		}
	}
	r1, r2 := readReport(t, dir1), readReport(t, dir2)
	r1.Seconds, r2.Seconds = 0, 0
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("build.json differs beyond build_seconds:\n%s\n%s", j1, j2)
	}

	// A rebuild with the root embedded leaves no stale root or ISO that
	// build.json would not describe.
	oldInitrd, err := os.Stat(filepath.Join(dir1, "pxe", "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	zst, err := os.Stat(filepath.Join(dir1, "pxe", "root.img.zst"))
	if err != nil {
		t.Fatal(err)
	}
	rep = build(dir1, []string{"pxe"}, true)
	want := []string{"build.json", "pxe/boot.ipxe", "pxe/initrd.img", "pxe/vmlinuz"}
	if got := outputFiles(t, dir1); !slices.Equal(got, want) {
		t.Errorf("after the embedded rebuild the folder holds %q, want %q", got, want)
	}
	if len(rep.Artifacts) != 3 {
		t.Errorf("artifacts %+v, want kernel, initramfs and script", rep.Artifacts)
	}
	if rep.RootSHA256 != sum {
		t.Errorf("embedded rebuild root_sha256 %s, want %s", rep.RootSHA256, sum)
	}
	script, err = os.ReadFile(filepath.Join(dir1, "pxe", "boot.ipxe"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(script), "slate.root_url") || !strings.Contains(string(script), "slate.root_sha256="+sum) {
		t.Errorf("embedded boot.ipxe:\n%s", script)
	}
	newInitrd, err := os.Stat(filepath.Join(dir1, "pxe", "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	// Both are zstd at about the same level, so the compressed root
	// roughly adds its size.
	if newInitrd.Size() < oldInitrd.Size()+zst.Size()/2 {
		t.Errorf("initramfs with the root is %d bytes, without %d: the root (%d bytes compressed) is not in it", newInitrd.Size(), oldInitrd.Size(), zst.Size())
	}
}
