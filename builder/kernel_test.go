package builder

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb/debtest"
)

// kernelRepo is a Debian archive with a kernel meta package, two kernel
// images (the meta package pins the older), and systemd-boot-efi.
func kernelRepo(t *testing.T) *debtest.Repo {
	image := func(abi, ver string) debtest.Pkg {
		k := "6.1.0-" + abi + "-amd64"
		return debtest.Pkg{Name: "linux-image-" + k, Version: ver, Depends: "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool", Files: []debtest.File{
			{Name: "./"}, {Name: "./boot/"}, {Name: "./boot/vmlinuz-" + k, Mode: 0o644, Body: "kernel " + k},
			{Name: "./boot/System.map-" + k, Body: "map"},
			{Name: "./lib/"}, {Name: "./lib/modules/"}, {Name: "./lib/modules/" + k + "/"},
			{Name: "./lib/modules/" + k + "/modules.order", Body: "kernel/a.ko\n"},
			{Name: "./lib/modules/" + k + "/kernel/"}, {Name: "./lib/modules/" + k + "/kernel/a.ko", Body: "module"},
			{Name: "./lib/modules/" + k + "/kernel/b.ko", Type: tar.TypeLink, Target: "./lib/modules/" + k + "/kernel/a.ko"},
			{Name: "./usr/"}, {Name: "./usr/share/"}, {Name: "./usr/share/doc/"}, {Name: "./usr/share/doc/linux-image-" + k, Type: tar.TypeSymlink, Target: "linux-base"},
		}}
	}
	return debtest.NewRepo(t, []debtest.Pkg{
		{Name: "linux-image-amd64", Version: "6.1.192-3", Depends: "linux-image-6.1.0-57-amd64 (= 6.1.192-3)"},
		image("57", "6.1.192-3"), image("58", "6.1.200-1"),
		{Name: "systemd-boot-efi", Version: "252.39-1~deb12u2", Files: []debtest.File{
			{Name: "./usr/"}, {Name: "./usr/lib/"}, {Name: "./usr/lib/systemd/"}, {Name: "./usr/lib/systemd/boot/"}, {Name: "./usr/lib/systemd/boot/efi/"},
			{Name: "./usr/lib/systemd/boot/efi/systemd-bootx64.efi", Body: "MZ loader"}}},
		{Name: "linux-image-cloud-amd64", Version: "1", Depends: "linux-image-6.1.0-99-cloud-amd64"},
	})
}

func kernelSpec(t *testing.T, r *debtest.Repo, kernel string) *configs.Spec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "archive.gpg"), r.Keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	y := "name: k\nversion: 1.0.0\ndebian: {suite: test, mirror: '" + r.Mirror() + "', keyring: archive.gpg}\n"
	if kernel != "" {
		y += "kernel: {package: " + kernel + "}\n"
	}
	p := filepath.Join(dir, "k.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := configs.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFetchKernel: the meta package's pinned image and systemd-boot-efi
// are unpacked where ResolveInputs finds them, as dpkg -x lays them out;
// a second fetch downloads no .deb.
func TestFetchKernel(t *testing.T) {
	r := kernelRepo(t)
	spec := kernelSpec(t, r, "")
	cache := t.TempDir()
	got, err := FetchKernel(context.Background(), spec, cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "linux-image-6.1.0-57-amd64" || got[0].Version != "6.1.192-3" || got[1].Name != "systemd-boot-efi" || got[0].Kept {
		t.Fatalf("fetched %+v", got)
	}
	k := filepath.Join(cache, "kernel", "linux-image-amd64")
	for p, want := range map[string]string{
		"boot/vmlinuz-6.1.0-57-amd64":                                   "kernel 6.1.0-57-amd64",
		"lib/modules/6.1.0-57-amd64/kernel/b.ko":                        "module",
		".slate-unpacked":                                               "linux-image-6.1.0-57-amd64\n",
		"../../systemd-boot/" + hostLoader[1:]:                          "MZ loader",
		"../../systemd-boot/.slate-unpacked":                            "systemd-boot-efi\n",
		"lib/modules/6.1.0-57-amd64/modules.order":                      "kernel/a.ko\n",
		"../../kernel/linux-image-amd64/boot/System.map-6.1.0-57-amd64": "map",
	} {
		b, err := os.ReadFile(filepath.Join(k, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(k, "usr/share/doc/linux-image-6.1.0-57-amd64")); err != nil || l != "linux-base" {
		t.Errorf("doc link: %q %v", l, err)
	}
	if !CachedKernel(cache, spec) {
		t.Error("CachedKernel is false after a fetch")
	}
	in, err := ResolveInputs(spec, cache, sharedSlate(t))
	if err != nil {
		t.Fatal(err)
	}
	if in.KernelVersion != "6.1.0-57-amd64" || !strings.HasPrefix(in.Loader, cache) {
		t.Errorf("ResolveInputs after a fetch: %+v", in)
	}
	// again: the index is read, no .deb is fetched, nothing changes
	before := r.Requests()
	got, err = FetchKernel(context.Background(), spec, cache)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Requests() - before; n != 2 || !got[0].Kept || !got[1].Kept {
		t.Errorf("a second fetch made %d requests (want 2: InRelease and Packages.xz) and kept %v %v", n, got[0].Kept, got[1].Kept)
	}
}

func TestFetchKernelErrors(t *testing.T) {
	r := kernelRepo(t)
	for _, tc := range []struct{ kernel, want string }{
		{"linux-image-amd46", `$.kernel.package: package "linux-image-amd46" is not in the index; did you mean "linux-image-amd64"?`},
		{"linux-image-cloud-amd64", "$.kernel.package: linux-image-cloud-amd64 1 depends on linux-image-6.1.0-99-cloud-amd64, which is not in the index"},
	} {
		cache := t.TempDir()
		_, err := FetchKernel(context.Background(), kernelSpec(t, r, tc.kernel), cache)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.kernel, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(cache, "kernel")); err == nil {
			t.Errorf("%s: a failed fetch made the kernel folder", tc.kernel)
		}
	}
}
