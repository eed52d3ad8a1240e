package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
)

// LoaderPackage is Debian's package of systemd-boot's EFI binary.
const LoaderPackage = "systemd-boot-efi"

// unpackedMark is the file in an unpacked package's cache folder naming
// the package it holds.
const unpackedMark = ".slate-unpacked"

// KernelDir is where the kernel package of spec is unpacked in the cache
// (boot/vmlinuz-*, lib/modules/*); LoaderDir is systemd-boot-efi's.
func KernelDir(cacheDir string, spec *configs.Spec) string {
	return filepath.Join(cacheDir, "kernel", spec.Kernel.Package)
}

// LoaderDir is where systemd-boot-efi is unpacked in the cache.
func LoaderDir(cacheDir string) string { return filepath.Join(cacheDir, "systemd-boot") }

// FetchedPackage is one package FetchKernel put into the cache.
type FetchedPackage struct {
	Name, Version, Suite string
	Dir                  string
	// Kept is true when the folder already held the package.
	Kept  bool
	Bytes int64
}

// FetchKernel resolves the spec's kernel.package (a meta package such as
// linux-image-amd64 stands for the versioned image it depends on) and
// systemd-boot-efi against the spec's Debian sources (by default the
// build host's bookworm, -updates and -security), downloads each .deb
// into the cache and unpacks it as dpkg -x would into KernelDir and
// LoaderDir, where ResolveInputs looks. A folder whose .slate-unpacked
// names the package already is left alone. No apt or dpkg is needed.
func FetchKernel(ctx context.Context, spec *configs.Spec, cacheDir string) ([]FetchedPackage, error) {
	if spec.Kernel.Vmlinuz != "" {
		return nil, errors.New("$.kernel.vmlinuz: the spec names its own kernel; there is no kernel package to fetch")
	}
	c := &deb.Client{}
	ix, srcs, err := c.LoadSources(ctx, deb.SourcesOf(spec.Debian), spec.Dir)
	if err != nil {
		return nil, err
	}
	mirrors := map[string]string{}
	for _, s := range srcs {
		mirrors[s.Suite] = s.Mirror
	}
	for k, v := range deb.MirrorOverrides(spec.Debian) {
		mirrors[k] = v
	}
	kpkg, err := kernelImage(ix, spec.Kernel.Package)
	if err != nil {
		return nil, fmt.Errorf("$.kernel.package: %w", err)
	}
	loader := ix.Newest(LoaderPackage)
	if loader == nil {
		return nil, fmt.Errorf("%s is not in the index of %s", LoaderPackage, suitesOf(srcs))
	}
	var out []FetchedPackage
	for _, f := range []struct {
		p   *deb.Package
		dir string
	}{{kpkg, KernelDir(cacheDir, spec)}, {loader, LoaderDir(cacheDir)}} {
		got, err := fetchUnpacked(ctx, c, mirrors[f.p.Source], cacheDir, f.p, f.dir)
		if err != nil {
			return nil, err
		}
		out = append(out, got)
	}
	return out, nil
}

func suitesOf(srcs []deb.LockSource) string {
	var s []string
	for _, x := range srcs {
		s = append(s, x.Suite)
	}
	return strings.Join(s, ", ")
}

// kernelImage is the package that holds the kernel: name itself when it
// ships one, else the linux-image-* package it depends on.
func kernelImage(ix *deb.Index, name string) (*deb.Package, error) {
	p := ix.Newest(name)
	if p == nil {
		msg := fmt.Sprintf("package %q is not in the index", name)
		if h := ix.Hint(name); h != "" {
			msg += fmt.Sprintf("; did you mean %q?", h)
		}
		return nil, errors.New(msg)
	}
	for hops := 0; hops < 4; hops++ {
		dep, exact, err := p.DependsOn("linux-image-")
		if err != nil {
			return nil, err
		}
		if dep == "" {
			return p, nil // the image itself (it depends on no other image)
		}
		next := ix.Newest(dep)
		if exact != "" {
			next = ix.Version(dep, exact)
		}
		if next == nil {
			if exact != "" {
				dep += " (= " + exact + ")"
			}
			return nil, fmt.Errorf("%s %s depends on %s, which is not in the index", p.Name, p.Version, dep)
		}
		p = next
	}
	return nil, fmt.Errorf("%s: more than 4 meta packages deep", name)
}

// fetchUnpacked makes dir hold p unpacked, fetching its .deb into the
// cache if needed. The package is unpacked beside dir and renamed into
// place, so dir is never half-written.
func fetchUnpacked(ctx context.Context, c *deb.Client, mirror, cacheDir string, p *deb.Package, dir string) (FetchedPackage, error) {
	got := FetchedPackage{Name: p.Name, Version: p.Version, Suite: p.Source, Dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, unpackedMark)); err == nil && strings.TrimSpace(string(b)) == p.Name {
		got.Kept = true
		return got, nil
	}
	paths, err := c.Fetch(ctx, mirror, cacheDir, []deb.Pinned{p.Pin()})
	if err != nil {
		return got, fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return got, err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".fetch-")
	if err != nil {
		return got, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return got, err
	}
	if got.Bytes, err = deb.Extract(paths[0], p.Name, root); err != nil {
		return got, err
	}
	if err := os.WriteFile(filepath.Join(root, unpackedMark), []byte(p.Name+"\n"), 0o644); err != nil {
		return got, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return got, err
	}
	if err := os.Rename(root, dir); err != nil {
		return got, err
	}
	logrus.WithFields(logrus.Fields{"package": p.Name, "version": p.Version, "suite": p.Source, "dir": dir}).Info("unpacked")
	return got, nil
}

// CachedKernel says whether the cache holds a kernel and systemd-boot
// for spec already (what a build needs), for a fetch that cannot reach
// the mirror.
func CachedKernel(cacheDir string, spec *configs.Spec) bool {
	vms, _ := filepath.Glob(filepath.Join(KernelDir(cacheDir, spec), "boot", "vmlinuz-*"))
	_, err := os.Stat(filepath.Join(LoaderDir(cacheDir), strings.TrimPrefix(hostLoader, "/")))
	return len(vms) > 0 && err == nil
}
