package builder

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/slateos/slate/configs"
)

// Inputs are the host files a build reads besides the spec.
type Inputs struct {
	Vmlinuz       string
	ModulesDir    string // /lib/modules/<kver> tree
	KernelVersion string
	Loader        string // systemd-bootx64.efi
	Slate         string // the static slate binary to embed
	CABundle      string // PEM file installed as the root's CA store
	// Runc is the container runtime (CACHE/runc/RuncVersion/runc), only
	// for a spec with containers.
	Runc string
}

// hostCABundle is the build host's CA bundle (a variable for tests).
var hostCABundle = configs.HostCABundle

// hostLoader is where Debian's systemd-boot-efi package puts the loader.
const hostLoader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// ResolveInputs finds the kernel, systemd-boot and slate binary for spec,
// and says exactly what is missing and how to get it.
func ResolveInputs(spec *configs.Spec, cacheDir, slateBin string) (Inputs, error) {
	var in Inputs
	if spec.Kernel.Vmlinuz != "" {
		in.Vmlinuz = spec.Path(spec.Kernel.Vmlinuz)
		in.ModulesDir = spec.Path(spec.Kernel.ModulesDir)
		for _, p := range []struct{ path, field string }{{in.Vmlinuz, "$.kernel.vmlinuz"}, {in.ModulesDir, "$.kernel.modules_dir"}} {
			if _, err := os.Stat(p.path); err != nil {
				return in, fmt.Errorf("%s: %w", p.field, err)
			}
		}
	} else {
		pkg := spec.Kernel.Package
		root := filepath.Join(cacheDir, "kernel", pkg)
		vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
		mods, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
		if len(vms) == 0 || len(mods) == 0 {
			return in, fmt.Errorf("$.kernel.package: kernel package %s is not in the cache (%s has no boot/vmlinuz-* and lib/modules/*): run slate kernel fetch --cache %s", pkg, root, cacheDir)
		}
		sort.Strings(vms)
		sort.Strings(mods)
		in.Vmlinuz = vms[len(vms)-1]
		in.ModulesDir = mods[len(mods)-1]
	}
	in.KernelVersion = filepath.Base(in.ModulesDir)

	in.Loader = filepath.Join(cacheDir, "systemd-boot", strings.TrimPrefix(hostLoader, "/"))
	if _, err := os.Stat(in.Loader); err != nil {
		if _, herr := os.Stat(hostLoader); herr != nil {
			return in, fmt.Errorf("systemd-boot not found at %s nor %s: run slate kernel fetch --cache %s", in.Loader, hostLoader, cacheDir)
		}
		in.Loader = hostLoader
	}

	if b := spec.Root.CABundle; b != "" {
		in.CABundle = spec.Path(b)
		if err := configs.CheckCABundle(in.CABundle); err != nil {
			return in, fmt.Errorf("$.root.ca_bundle: %w", err)
		}
	} else {
		in.CABundle = hostCABundle
		if _, err := os.Stat(hostCABundle); err != nil {
			return in, fmt.Errorf("the root's CA bundle (for https to update channels and Ignition URLs) comes from this build host's %s, which is missing (%w): install Debian's ca-certificates package (apt-get install ca-certificates), or name a PEM file of CA certificates in root.ca_bundle", hostCABundle, err)
		}
		if err := configs.CheckCABundle(hostCABundle); err != nil {
			return in, fmt.Errorf("the build host's CA bundle, the root's default: %w; reinstall ca-certificates or name a PEM file in root.ca_bundle", err)
		}
	}

	if slateBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return in, fmt.Errorf("find the slate binary to embed: %w", err)
		}
		slateBin = exe
	}
	in.Slate = slateBin
	if err := CheckStatic(slateBin); err != nil {
		return in, err
	}
	if len(spec.Containers) > 0 {
		var err error
		if in.Runc, err = resolveRunc(cacheDir); err != nil {
			return in, err
		}
	}
	return in, nil
}

// checkStaticELF makes sure a program of the root is a static x86_64 ELF.
func checkStaticELF(path, what string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s %s: not an ELF executable: %w", what, path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s %s is for %s, images are x86_64", what, path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s %s is dynamically linked (has an ELF interpreter); the root has no C library", what, path)
		}
	}
	return nil
}

// CheckStatic makes sure the binary that becomes /init and PID 1 is a
// static linux/amd64 ELF: the initramfs and root have no libc.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("slate binary %s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("slate binary %s is for %s, images are x86_64: build with GOOS=linux GOARCH=amd64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("slate binary %s is dynamically linked (has an ELF interpreter): build it with CGO_ENABLED=0", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("slate binary %s: read dynamic section: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("slate binary %s needs shared libraries %v: build it with CGO_ENABLED=0", path, libs)
	}
	return nil
}
