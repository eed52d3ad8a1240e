package qemu

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// pxeFiles are what `slate build --format pxe` writes, with contents that
// tell them apart.
var pxeFiles = map[string]string{
	"boot.ipxe":    "#!ipxe\nkernel vmlinuz initrd=initrd.img ${slate-args}\ninitrd initrd.img\nboot\n",
	"vmlinuz":      "kernel image",
	"initrd.img":   "initramfs archive",
	"root.img.zst": strings.Repeat("root image ", 1000),
}

func pxeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tempEntries lists what is in the temporary folder, where Start makes the
// TFTP folder.
func tempEntries(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestPXEStartRefuses(t *testing.T) {
	noScript := map[string]string{"vmlinuz": "k", "initrd.img": "i", "root.img.zst": "r"}
	tests := []struct {
		name    string
		p       PXE
		files   map[string]string
		wantErr string
	}{
		{name: "no boot.ipxe", files: noScript, wantErr: "boot.ipxe"},
		{name: "no folder", p: PXE{Dir: "/nonexistent/slate-pxe"}, wantErr: "boot.ipxe"},
		{name: "via ftp", p: PXE{Via: "ftp"}, files: pxeFiles, wantErr: `"ftp"`},
		{name: "via HTTP in capitals", p: PXE{Via: "HTTP"}, files: pxeFiles, wantErr: "want tftp or http"},
		{name: "newline in args", p: PXE{Args: "quiet\nshell"}, files: pxeFiles, wantErr: "one line"},
		{name: "carriage return in root URL", p: PXE{RootURL: "http://srv/root.img.zst\r"}, files: pxeFiles, wantErr: "one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			p := tt.p
			if p.Dir == "" {
				p.Dir = pxeDir(t, tt.files)
			}
			err := p.Start()
			defer p.Close()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start error = %v, want one containing %q", err, tt.wantErr)
			}
			if p.URL() != "" {
				t.Errorf("a refused Start serves at %s", p.URL())
			}
			if left := tempEntries(t); len(left) != 0 {
				t.Errorf("a refused Start left %q in the temporary folder", left)
			}
		})
	}
}

// loopback is the URL of path on p's server as the host reaches it: the
// guest's 10.0.2.2 is the host's 127.0.0.1.
func loopback(t *testing.T, p *PXE, path string) string {
	t.Helper()
	u, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "127.0.0.1:" + u.Port()
	u.Path = path
	return u.String()
}

func get(url string, header http.Header) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header = header
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestPXEServes(t *testing.T) {
	urlRe := regexp.MustCompile(`^http://10\.0\.2\.2:[1-9][0-9]*$`)
	tests := []struct {
		name      string
		via       string
		rootURL   string
		args      string
		wantRoot  string // "" is root.img.zst on the server
		wantChain string // "" is boot.ipxe on the server
	}{
		{name: "default is tftp", wantChain: "boot.ipxe"},
		{name: "tftp", via: "tftp", wantChain: "boot.ipxe"},
		{name: "http", via: "http"},
		{name: "overrides", via: "tftp", rootURL: "https://images.example/r/root.img.zst", args: "slate.debug ignition.config.url=http://10.0.2.2:9/c.ign",
			wantRoot: "https://images.example/r/root.img.zst", wantChain: "boot.ipxe"},
		{name: "http with overrides", via: "http", rootURL: "tftp://10.0.2.2/root.img.zst", args: "quiet", wantRoot: "tftp://10.0.2.2/root.img.zst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			dir := pxeDir(t, pxeFiles)
			p := &PXE{Dir: dir, Via: tt.via, RootURL: tt.rootURL, Args: tt.args}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if !urlRe.MatchString(p.URL()) {
				t.Fatalf("URL() = %q, want http://10.0.2.2:PORT", p.URL())
			}
			opts := Options{Image: "keep.raw"}
			p.Apply(&opts)
			if opts.BootFile != "slate-vm.ipxe" || opts.Image != "keep.raw" {
				t.Errorf("Apply set BootFile %q, Image %q", opts.BootFile, opts.Image)
			}
			tftp := opts.TFTPDir
			if fi, err := os.Stat(tftp); err != nil || !fi.IsDir() {
				t.Fatalf("TFTP folder %q: %v", tftp, err)
			}

			for name, data := range pxeFiles {
				link := filepath.Join(tftp, name)
				fi, err := os.Lstat(link)
				if err != nil {
					t.Errorf("TFTP folder lacks %s: %v", name, err)
					continue
				}
				if fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("%s in the TFTP folder is %v, want a symlink", name, fi.Mode())
				}
				if target, _ := os.Readlink(link); !filepath.IsAbs(target) {
					t.Errorf("%s links to %q, want an absolute path", name, target)
				}
				if b, err := os.ReadFile(link); err != nil || string(b) != data {
					t.Errorf("%s through the link: %q, %v", name, b, err)
				}
			}

			script, err := os.ReadFile(filepath.Join(tftp, "slate-vm.ipxe"))
			if err != nil {
				t.Fatal(err)
			}
			root, chain := tt.wantRoot, tt.wantChain
			if root == "" {
				root = p.URL() + "/root.img.zst"
			}
			if chain == "" {
				chain = p.URL() + "/boot.ipxe"
			}
			lines := strings.Split(strings.TrimSuffix(string(script), "\n"), "\n")
			want := []string{"#!ipxe", "set slate-root-url " + root, "set slate-args " + tt.args, "chain " + chain}
			if !slices.Equal(lines, want) {
				t.Errorf("slate-vm.ipxe:\n%s\nwant lines %q", script, want)
			}

			code, body, err := get(loopback(t, p, "/boot.ipxe"), nil)
			if err != nil || code != http.StatusOK || string(body) != pxeFiles["boot.ipxe"] {
				t.Errorf("GET boot.ipxe: %d %q %v", code, body, err)
			}
			// An interrupted root download resumes with a Range request.
			code, body, err = get(loopback(t, p, "/root.img.zst"), http.Header{"Range": {"bytes=100-199"}})
			if err != nil || code != http.StatusPartialContent || string(body) != pxeFiles["root.img.zst"][100:200] {
				t.Errorf("GET root.img.zst bytes 100-199: %d %q %v", code, body, err)
			}
			code, body, err = get(loopback(t, p, "/boot.ipxe"), http.Header{"Range": {"bytes=2-5"}})
			if err != nil || code != http.StatusPartialContent || string(body) != pxeFiles["boot.ipxe"][2:6] {
				t.Errorf("GET boot.ipxe bytes 2-5: %d %q %v", code, body, err)
			}
			if code, _, err := get(loopback(t, p, "/missing"), nil); err != nil || code != http.StatusNotFound {
				t.Errorf("GET a missing file: %d %v", code, err)
			}

			stopped := loopback(t, p, "/boot.ipxe")
			p.Close()
			if _, err := os.Stat(tftp); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Close left the TFTP folder (stat: %v)", err)
			}
			if left := tempEntries(t); len(left) != 0 {
				t.Errorf("Close left %q in the temporary folder", left)
			}
			if _, _, err := get(stopped, nil); err == nil {
				t.Error("the HTTP server still answers after Close")
			}
			for name, data := range pxeFiles {
				if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
					t.Errorf("Close changed %s in the build folder: %q, %v", name, b, err)
				}
			}
			p.Close() // twice is harmless
		})
	}
}

// TestPXELeavesBuildFolder: the script Start writes goes in the TFTP
// folder only, whatever the build folder holds.
func TestPXELeavesBuildFolder(t *testing.T) {
	files := map[string]string{"slate-vm.ipxe": "#!ipxe\necho mine\n"}
	for k, v := range pxeFiles {
		files[k] = v
	}
	t.Setenv("TMPDIR", t.TempDir())
	dir := pxeDir(t, files)
	p := &PXE{Dir: dir}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "slate-vm.ipxe")); string(b) != files["slate-vm.ipxe"] {
		t.Errorf("Start overwrote slate-vm.ipxe in the build folder with:\n%s", b)
	}
	var opts Options
	p.Apply(&opts)
	if b, _ := os.ReadFile(filepath.Join(opts.TFTPDir, "slate-vm.ipxe")); !bytes.Contains(b, []byte("chain boot.ipxe")) {
		t.Errorf("TFTP slate-vm.ipxe:\n%s", b)
	}
}

func TestArgsRAMBoot(t *testing.T) {
	dir := t.TempDir()
	tftp := filepath.Join(dir, "tftp")
	comma := filepath.Join(dir, "a,b")
	for _, d := range []string{tftp, comma} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	raw := touch(t, filepath.Join(dir, "disk.raw"), 1<<20)
	iso := touch(t, filepath.Join(dir, "live.iso"), 1<<20)
	notDir := touch(t, filepath.Join(dir, "file"), 1)
	netdev := func(tftpOpt string) []string {
		return []string{"-netdev", "user,id=n0,tftp=" + tftpOpt + ",bootfile=slate-vm.ipxe", "-device", "virtio-net-pci,netdev=n0"}
	}
	cd := []string{"-drive", "file=" + iso + ",format=raw,if=none,id=cd0,media=cdrom,readonly=on", "-device", "ide-cd,drive=cd0,bootindex=0"}

	tests := []struct {
		name     string
		opts     Options
		needOVMF bool
		want     [][]string
		notWant  []string
		pflash   string // the vars file of the expected pflash drives
		wantErr  string
	}{
		{name: "network boot", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: tftp},
			want:    [][]string{{"-boot", "n"}, netdev(tftp)},
			notWant: []string{"pflash", "-nic", "ide-cd", "-kernel"}},
		{name: "network boot with disk and forward", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: tftp, Image: raw, Forwards: []Forward{{2222, 22}}},
			want: [][]string{{"-boot", "n"}, {"-drive", "file=" + raw + ",format=raw,if=virtio,cache=writeback"},
				{"-netdev", "user,id=n0,tftp=" + tftp + ",bootfile=slate-vm.ipxe,hostfwd=tcp:127.0.0.1:2222-:22"}},
			notWant: []string{"pflash"}},
		{name: "comma in TFTP folder is escaped", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: comma},
			want: [][]string{netdev(strings.ReplaceAll(comma, ",", ",,"))}},
		{name: "CD-ROM", opts: Options{CDROM: iso}, needOVMF: true,
			want: [][]string{cd, {"-netdev", "user,id=n0"}}, pflash: iso + ".vars.fd",
			notWant: []string{"-boot", "if=virtio", "-nic"}},
		{name: "CD-ROM without network", opts: Options{CDROM: iso, NoNetwork: true}, needOVMF: true,
			want: [][]string{cd, {"-nic", "none"}}, pflash: iso + ".vars.fd",
			notWant: []string{"-boot", "if=virtio"}},
		{name: "CD-ROM with disk", opts: Options{CDROM: iso, Image: raw}, needOVMF: true,
			want:   [][]string{cd, {"-drive", "file=" + raw + ",format=raw,if=virtio,cache=writeback"}},
			pflash: raw + ".vars.fd"},

		{name: "TFTP folder missing", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: filepath.Join(dir, "nope")}, wantErr: "TFTP folder"},
		{name: "TFTP folder unset", opts: Options{BootFile: "slate-vm.ipxe"}, wantErr: "TFTP folder"},
		{name: "network boot without network", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: tftp, NoNetwork: true}, wantErr: "cannot be combined"},
		{name: "TFTP folder is a file", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: notDir}, wantErr: "TFTP folder"},
		{name: "network boot and CD-ROM", opts: Options{BootFile: "slate-vm.ipxe", TFTPDir: tftp, CDROM: iso}, wantErr: "cannot be combined"},
		{name: "CD-ROM missing", opts: Options{CDROM: filepath.Join(dir, "nope.iso")}, needOVMF: true, wantErr: "CD-ROM image"},
		{name: "CD-ROM is a folder", opts: Options{CDROM: tftp}, needOVMF: true, wantErr: "CD-ROM image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := ""
			if tt.needOVMF {
				var err error
				code, _, err = FindOVMF()
				need(t, "OVMF", err)
			}
			got, err := Args(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Args error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if tt.pflash != "" {
				want = append(want, []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
					"-drive", "if=pflash,format=raw,unit=1,file=" + tt.pflash})
			}
			for _, w := range want {
				if !containsRun(got, w) {
					t.Errorf("args lack %q:\n%q", w, got)
				}
			}
			for _, nw := range tt.notWant {
				if slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, nw) }) {
					t.Errorf("args contain %q:\n%q", nw, got)
				}
			}
		})
	}
}
