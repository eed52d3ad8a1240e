package builder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/boot/netroot"
	"github.com/slateos/slate/internal/deb"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/version"
	"github.com/slateos/slate/partitions"
)

// OptionError is a bad field of Options. The library speaks of its
// options, not of the flags a command line maps to them: Msg names other
// fields as "Options.Name" too, so a CLI can put its flag names in their
// place (see cmd/slate build).
type OptionError struct {
	Field string // the Options field at fault, as "RootURL"
	Msg   string
	Err   error // the cause, if any
}

func (e *OptionError) Error() string {
	s := "Options." + e.Field + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *OptionError) Unwrap() error { return e.Err }

// job is one build in progress: what its steps hand to each other.
type job struct {
	o        Options
	spec     *configs.Spec
	formats  map[string]bool
	epoch    time.Time
	t0       time.Time
	in       Inputs
	signKeys []ed25519.PrivateKey
	layout   partitions.Layout
	ix       *kmod.Index
	initMods []*kmod.Module
	rootMods []*kmod.Module
	baked    []*baked // the spec's containers, flattened
	// the spec's Debian packages, unpacked (nil without packages)
	pkgs       *packageRoot
	pkgLock    *deb.Lock // the lock the packages came from (resolved or read)
	pkgReport  []PackageReport
	debSources []DebianSourceReport

	tmp      string     // the temporary folder inside OutDir
	madeOut  bool       // OutDir was created by this build
	prev     []Artifact // the previous build.json's artifacts
	rawPath  string
	disk     *os.File
	initrd   bytes.Buffer
	rootSize int64
	names    []string // artifacts written, relative to tmp
	rep      *Report
	ok       bool
}

// step is one named part of a build, as the progress bar shows it.
type step struct {
	name string
	run  func(*job, context.Context) error
}

// Steps names the steps a build of o has, in order: Progress.Plan is told
// the same list. It checks o as Build does first.
func Steps(o Options) ([]string, error) {
	j, err := checkOptions(o)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range j.steps() {
		names = append(names, s.name)
	}
	return names, nil
}

// steps is the build's plan: the fixed steps, then one per extra format
// family asked for, then the publish step when there is a channel.
func (j *job) steps() []step {
	var s []step
	// packages first: a lock that no longer matches the spec, or a
	// package that cannot be had, is the likeliest failure of a build
	// with packages, and needs none of the other inputs to be found
	if len(j.spec.Packages) > 0 {
		s = append(s, step{"packages", (*job).resolvePackages})
	}
	s = append(s, []step{
		{"inputs", (*job).resolveInputs},
		{"kernel modules", (*job).resolveModules},
	}...)
	if len(j.spec.Containers) > 0 {
		s = append(s, step{"container images", (*job).pullContainers})
	}
	s = append(s, []step{
		{"disk image", (*job).createDiskImage},
		{"initramfs", (*job).buildInitramfs},
		{"root filesystem", (*job).buildRoot},
		{"ESP", (*job).buildESP},
	}...)
	if j.formats["pxe"] || j.formats["iso"] {
		s = append(s, step{"RAM boot files", (*job).buildRAM})
	}
	if j.formats["qcow2"] {
		s = append(s, step{"qcow2", (*job).convertQcow2})
	}
	s = append(s, step{"checksums", (*job).writeReport})
	// Publishing is the last step that can fail: machines follow the
	// channel at once, so only a build that has otherwise succeeded may
	// reach it (a failed one would leave its version there, and refuse
	// the fixed rebuild of the same version).
	if j.o.Channel != "" {
		s = append(s, step{"channel", (*job).publish})
	}
	return append(s, step{"output folder", (*job).install})
}

// checkOptions checks o and the spec without touching the disk (beyond
// reading the spec's files); the errors name the field at fault.
func checkOptions(o Options) (*job, error) {
	spec := o.Spec
	if spec == nil {
		return nil, &OptionError{Field: "Spec", Msg: "no spec"}
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := spec.CheckFiles(); err != nil {
		return nil, err
	}
	formats, err := parseFormats(o.Formats)
	if err != nil {
		return nil, err
	}
	if o.RootURL != "" {
		if err := netroot.CheckURL(o.RootURL); err != nil {
			return nil, &OptionError{Field: "RootURL", Msg: fmt.Sprintf("%q", o.RootURL), Err: err}
		}
		if !formats["pxe"] || o.EmbedRoot {
			return nil, &OptionError{Field: "RootURL", Msg: "is for Options.Formats pxe without Options.EmbedRoot"}
		}
	}
	if o.EmbedRoot && !formats["pxe"] {
		return nil, &OptionError{Field: "EmbedRoot", Msg: "is for Options.Formats pxe"}
	}
	if formats["pxe"] {
		for i, a := range spec.Kernel.Args {
			if strings.Contains(a, "${") {
				return nil, fmt.Errorf("$.kernel.args[%d]: %q: ${ would be expanded by iPXE in boot.ipxe", i, a)
			}
		}
	}
	if o.Channel == "" && len(o.SignKeys) > 0 {
		return nil, &OptionError{Field: "SignKeys", Msg: "is for Options.Channel"}
	}
	if o.Channel != "" && len(o.SignKeys) == 0 {
		return nil, &OptionError{Field: "Channel", Msg: "needs Options.SignKeys, a private key to sign with (slate keygen writes one)"}
	}
	if _, err := rolloutWaves(o); err != nil {
		return nil, err
	}
	if o.Lock != "" && len(spec.Packages) == 0 {
		return nil, &OptionError{Field: "Lock", Msg: fmt.Sprintf("the lock does not match the spec: the spec names no packages, %s pins some (delete it, or list the packages again)", o.Lock)}
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	return &job{o: o, spec: spec, formats: formats}, nil
}

// newJob checks o, the epoch and the output folder.
func newJob(o Options) (*job, error) {
	j, err := checkOptions(o)
	if err != nil {
		return nil, err
	}
	if j.epoch, err = resolveEpoch(o.Epoch); err != nil {
		return nil, err
	}
	if err := checkOutDir(j.spec, o.OutDir); err != nil {
		return nil, err
	}
	return j, nil
}

// cleanup removes what a build leaves behind: always the temporary folder,
// and on failure an output folder this build created.
func (j *job) cleanup() {
	j.closeBaked()
	if j.disk != nil {
		j.disk.Close()
	}
	if j.tmp != "" {
		os.RemoveAll(j.tmp)
	}
	if !j.ok && j.madeOut {
		_ = os.Remove(j.o.OutDir)
	}
}

// resolveInputs finds the kernel, systemd-boot, CA bundle and files, loads
// the signing keys (checking the channel now, so a build that could not be
// published fails in seconds) and plans the disk.
func (j *job) resolveInputs(context.Context) error {
	var err error
	if j.in, err = ResolveInputs(j.spec, j.o.CacheDir, j.o.Slate); err != nil {
		return err
	}
	if j.signKeys, err = loadSignKeys(j.o, j.spec.Name); err != nil {
		return err
	}
	spec := j.spec
	if j.layout, err = partitions.Plan(int64(spec.Disk.Size), int64(spec.Disk.ESP), int64(spec.Disk.Root), spec.Name); err != nil {
		return fmt.Errorf("$.disk: %w", err)
	}
	return nil
}

// resolveModules opens the kernel's module index and resolves the
// initramfs's and the root's module closures.
func (j *job) resolveModules(context.Context) error {
	var err error
	if j.ix, err = kmod.Open(j.in.ModulesDir, filepath.Join(j.o.CacheDir, "modindex")); err != nil {
		return fmt.Errorf("kernel modules %s: %w", j.in.ModulesDir, err)
	}
	if j.initMods, err = j.ix.Resolve(append(append([]string(nil), kmod.DefaultInitramfs...), j.spec.Kernel.InitramfsModules...)); err != nil {
		return fmt.Errorf("$.kernel.initramfs_modules: %w", err)
	}
	if j.rootMods, err = j.ix.Resolve(append(append([]string(nil), kmod.DefaultRoot...), j.spec.Kernel.Modules...)); err != nil {
		return fmt.Errorf("$.kernel.modules: %w", err)
	}
	if mods := ContainerModules(j.spec); mods != nil {
		// the root set again with what containers need, so one closure
		// holds both
		all := append(append(append([]string(nil), kmod.DefaultRoot...), j.spec.Kernel.Modules...), mods...)
		if j.rootMods, err = j.ix.Resolve(all); err != nil {
			return fmt.Errorf("$.containers: the kernel modules of containers: %w", err)
		}
	}
	return nil
}

// createDiskImage makes the output and temporary folders and the sparse
// disk image with its GPT: a size the output filesystem cannot hold fails
// now, not after minutes of work.
func (j *job) createDiskImage(context.Context) error {
	out := j.o.OutDir
	if _, err := os.Stat(out); os.IsNotExist(err) {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("create output folder: %w", err)
		}
		// A failed build leaves no empty folder behind either.
		j.madeOut = true
	}
	tmp, err := os.MkdirTemp(out, ".slate-build-")
	if err != nil {
		return fmt.Errorf("create temporary folder in %s: %w", out, err)
	}
	j.tmp = tmp
	// The previous build's report says which files in the folder are
	// slate's: only those may be removed when this build has no such
	// artifact.
	j.prev = previousArtifacts(out)
	j.rawPath = filepath.Join(tmp, "disk.raw")
	if j.disk, err = createDisk(j.rawPath, j.layout.Size, out); err != nil {
		return err
	}
	spec, in := j.spec, j.in
	j.rep = &Report{
		Name: spec.Name, Version: spec.Version, Slate: version.Version,
		Kernel: in.KernelVersion, Loader: in.Loader, Epoch: j.epoch.Unix(), DiskSize: j.layout.Size,
		InitramfsMods: len(j.initMods), RootModules: len(j.rootMods),
	}
	caSum, err := hashFile(in.CABundle)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	j.rep.CABundle, j.rep.CABundleSHA256 = in.CABundle, caSum.SHA256
	for _, b := range j.baked {
		j.rep.Containers = append(j.rep.Containers, b.report)
	}
	j.rep.Packages, j.rep.DebianSources = j.pkgReport, j.debSources
	if in.Runc != "" {
		sum, err := hashFile(in.Runc)
		if err != nil {
			return fmt.Errorf("runc: %w", err)
		}
		j.rep.Runc = &RuncReport{Version: RuncVersion, Path: in.Runc, SHA256: sum.SHA256}
	}
	return partitions.WriteGPT(j.disk, j.layout)
}

func (j *job) buildInitramfs(context.Context) error {
	if err := buildInitramfs(&j.initrd, j.ix, j.initMods, j.in.Slate, nil, j.epoch); err != nil {
		return err
	}
	j.rep.InitramfsSize = int64(j.initrd.Len())
	return nil
}

func (j *job) buildRoot(context.Context) error {
	used, size, err := buildRoot(j.disk, j.layout.Part(partitions.NumRootA), j.spec, j.in, j.ix, j.rootMods, j.baked, j.pkgs, j.epoch)
	if err != nil {
		return err
	}
	j.rootSize = size
	j.rep.RootUsed, j.rep.RootSize = used, size
	return nil
}

// buildESP writes the ESP and closes the disk image: it is complete.
func (j *job) buildESP(context.Context) error {
	if err := buildESP(j.disk, j.layout, j.spec, j.in, j.initrd.Bytes(), j.epoch); err != nil {
		return err
	}
	err := j.disk.Close()
	j.disk = nil
	if err != nil {
		return fmt.Errorf("close disk image: %w", err)
	}
	for _, p := range j.layout.Parts {
		j.rep.Partitions = append(j.rep.Partitions, PartInfo{Num: p.Num, Label: p.Label, Type: p.Type, GUID: p.GUID, Start: p.Start, Size: p.Size})
	}
	if j.formats["raw"] {
		j.names = append(j.names, "disk.raw")
	}
	return nil
}

// buildRAM writes the PXE files and the live ISO, as asked.
func (j *job) buildRAM(context.Context) error {
	names, sum, err := buildRAM(j.tmp, j.rawPath, j.layout.Part(partitions.NumRootA).Start, j.rootSize, j.o, j.spec, j.in, j.ix, j.epoch)
	if err != nil {
		return err
	}
	j.rep.RootSHA256 = sum
	j.names = append(j.names, names...)
	return nil
}

func (j *job) convertQcow2(ctx context.Context) error {
	if err := convertQcow2(ctx, j.rawPath, filepath.Join(j.tmp, "disk.qcow2")); err != nil {
		return err
	}
	j.names = append(j.names, "disk.qcow2")
	return nil
}

// writeReport hashes every artifact and writes build.json.
func (j *job) writeReport(context.Context) error {
	for _, n := range j.names {
		a, err := hashFile(filepath.Join(j.tmp, n))
		if err != nil {
			return err
		}
		a.Path = n
		j.rep.Artifacts = append(j.rep.Artifacts, a)
	}
	j.rep.Seconds = time.Since(j.t0).Seconds()
	js, err := json.MarshalIndent(j.rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(j.tmp, "build.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write build.json: %w", err)
	}
	return nil
}

func (j *job) publish(context.Context) error {
	return publish(j.o.Channel, j.signKeys, j.o, j.rawPath, j.layout.Part(partitions.NumRootA).Start, j.rootSize, j.spec, j.in, j.initrd.Bytes(), j.epoch, j.tmp)
}

// install moves the artifacts into OutDir: images first, the report last,
// so a build.json always describes the images beside it.
func (j *job) install(context.Context) error {
	out := j.o.OutDir
	if !j.formats["raw"] {
		if err := os.Remove(j.rawPath); err != nil {
			return err
		}
	}
	// Folders first: once the first file is renamed, nothing else may fail
	// for want of a place to put the rest.
	for _, n := range j.names {
		if d := filepath.Dir(filepath.Join(out, n)); d != filepath.Clean(out) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", d, err)
			}
		}
	}
	for _, n := range append(j.names, "build.json") {
		if err := os.Rename(filepath.Join(j.tmp, n), filepath.Join(out, n)); err != nil {
			return fmt.Errorf("move %s into %s: %w", n, out, err)
		}
	}
	// A format not asked for this time must not leave a stale image behind
	// that build.json does not describe; but only what the previous
	// build.json lists, unchanged since, is slate's to remove.
	removeStale(out, j.prev, j.names)
	_ = os.Remove(filepath.Join(out, PXEDir)) // only if it is empty now
	j.ok = true
	return nil
}
