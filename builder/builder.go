// Package builder turns an image spec into artifacts: the GPT raw disk
// (ESP with systemd-boot and slot A's entry, kernel and initramfs; ROOT-A;
// an empty ROOT-B and STATE), optionally qcow2, and a build report.
// It needs no root, no loop devices and no mkfs tools.
package builder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/kmod"
	"github.com/slateos/slate/netroot"
	"github.com/slateos/slate/partitions"
	"github.com/slateos/slate/updater/payload"
	"github.com/slateos/slate/version"
)

// Options of one build.
type Options struct {
	Spec     *configs.Spec
	OutDir   string
	Formats  []string // "raw" (default), "qcow2", "pxe", "iso"
	CacheDir string   // kernel and systemd-boot cache; default .cache
	// Slate is the static slate binary to embed; default: this executable.
	Slate string
	// Epoch is every timestamp in the image; default SOURCE_DATE_EPOCH, or
	// DefaultEpoch when that is unset, so builds are reproducible either way.
	Epoch *time.Time
	// Progress receives step updates (a progress bar on a terminal).
	Progress Progress
	// Channel, when set, is a channel folder the version is added to,
	// signed with every key in SignKeys (see updater/payload), as the
	// last step of a build that otherwise succeeded.
	Channel  string
	SignKeys []string
	// Expires is how long the channel's top manifest is trusted (0:
	// payload.DefaultExpiry).
	Expires time.Duration
	// Force publishes into a channel of another image name or key.
	Force bool
	// EmbedRoot puts the root image inside the PXE initramfs instead of
	// beside it (the ISO always carries it).
	EmbedRoot bool
	// RootURL is the default root URL in boot.ipxe; empty is TFTP from
	// the server that gave the machine its boot file.
	RootURL string
}

// DefaultEpoch is used when SOURCE_DATE_EPOCH is unset: a fixed time keeps
// two builds of the same inputs byte-identical. (FAT cannot store times
// before 1980.)
var DefaultEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Progress is told about build steps.
type Progress interface {
	Step(name string)
	Done()
}

type nopProgress struct{}

func (nopProgress) Step(string) {}
func (nopProgress) Done()       {}

// Artifact is one output file.
type Artifact struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Report is DIR/build.json.
type Report struct {
	Name          string     `json:"name"`
	Version       string     `json:"version"`
	Slate         string     `json:"slate_version"`
	Kernel        string     `json:"kernel_version"`
	Loader        string     `json:"loader"`
	Epoch         int64      `json:"source_date_epoch"`
	DiskSize      int64      `json:"disk_size"`
	InitramfsSize int64      `json:"initramfs_size"`
	InitramfsMods int        `json:"initramfs_modules"`
	RootUsed      int64      `json:"root_used"`
	RootSize      int64      `json:"root_fs_size"`
	RootModules   int        `json:"root_modules"`
	RootSHA256    string     `json:"root_sha256"`
	Partitions    []PartInfo `json:"partitions"`
	Artifacts     []Artifact `json:"artifacts"`
	Seconds       float64    `json:"build_seconds"`
}

// PartInfo is one partition in the report.
type PartInfo struct {
	Num   int    `json:"number"`
	Label string `json:"label"`
	Type  string `json:"type_guid"`
	GUID  string `json:"guid"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
}

// Build runs the whole build. Nothing is left in OutDir on failure: every
// artifact is written in a temporary folder and renamed into place at the
// end.
func Build(ctx context.Context, o Options) (_ *Report, err error) {
	t0 := time.Now()
	ok := false
	spec := o.Spec
	if spec == nil {
		return nil, fmt.Errorf("no spec")
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
			return nil, fmt.Errorf("--root-url %q: %w", o.RootURL, err)
		}
		if !formats["pxe"] || o.EmbedRoot {
			return nil, fmt.Errorf("--root-url is for --format pxe without --embed-root")
		}
	}
	if o.EmbedRoot && !formats["pxe"] {
		return nil, fmt.Errorf("--embed-root is for --format pxe")
	}
	if formats["pxe"] {
		for i, a := range spec.Kernel.Args {
			if strings.Contains(a, "${") {
				return nil, fmt.Errorf("$.kernel.args[%d]: %q: ${ would be expanded by iPXE in boot.ipxe", i, a)
			}
		}
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	prog := o.Progress
	if prog == nil {
		prog = nopProgress{}
	}
	defer prog.Done()
	epoch := resolveEpoch(o.Epoch)
	tp := &timedProgress{Progress: prog, last: t0}
	defer tp.finish()
	prog = tp

	prog.Step("inputs")
	in, err := ResolveInputs(spec, o.CacheDir, o.Slate)
	if err != nil {
		return nil, err
	}
	signKeys, err := loadSignKeys(o, spec.Name)
	if err != nil {
		return nil, err
	}
	layout, err := partitions.Plan(int64(spec.Disk.Size), int64(spec.Disk.ESP), int64(spec.Disk.Root), spec.Name)
	if err != nil {
		return nil, fmt.Errorf("$.disk: %w", err)
	}

	prog.Step("kernel modules")
	ix, err := kmod.Open(in.ModulesDir, filepath.Join(o.CacheDir, "modindex"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules %s: %w", in.ModulesDir, err)
	}
	initMods, err := ix.Resolve(append(append([]string(nil), kmod.DefaultInitramfs...), spec.Kernel.InitramfsModules...))
	if err != nil {
		return nil, fmt.Errorf("$.kernel.initramfs_modules: %w", err)
	}
	rootMods, err := ix.Resolve(append(append([]string(nil), kmod.DefaultRoot...), spec.Kernel.Modules...))
	if err != nil {
		return nil, fmt.Errorf("$.kernel.modules: %w", err)
	}

	if _, err := os.Stat(o.OutDir); os.IsNotExist(err) {
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("create output folder: %w", err)
		}
		// A failed build leaves no empty folder behind either.
		defer func() {
			if !ok {
				_ = os.Remove(o.OutDir)
			}
		}()
	}
	tmp, err := os.MkdirTemp(o.OutDir, ".slate-build-")
	if err != nil {
		return nil, fmt.Errorf("create temporary folder in %s: %w", o.OutDir, err)
	}
	defer os.RemoveAll(tmp)

	rep := &Report{
		Name: spec.Name, Version: spec.Version, Slate: version.Version,
		Kernel: in.KernelVersion, Loader: in.Loader, Epoch: epoch.Unix(), DiskSize: layout.Size,
		InitramfsMods: len(initMods), RootModules: len(rootMods),
	}

	prog.Step("initramfs")
	var initrd bytes.Buffer
	if err := buildInitramfs(&initrd, ix, initMods, in.Slate, nil, epoch); err != nil {
		return nil, err
	}
	rep.InitramfsSize = int64(initrd.Len())
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rawPath := filepath.Join(tmp, "disk.raw")
	disk, err := os.OpenFile(rawPath, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create disk image: %w", err)
	}
	defer disk.Close()
	if err := disk.Truncate(layout.Size); err != nil {
		return nil, fmt.Errorf("size disk image to %d bytes: %w", layout.Size, err)
	}
	if err := partitions.WriteGPT(disk, layout); err != nil {
		return nil, err
	}

	prog.Step("root filesystem")
	used, rootSize, err := buildRoot(disk, layout.Part(partitions.NumRootA), spec, in, ix, rootMods, epoch)
	if err != nil {
		return nil, err
	}
	rep.RootUsed, rep.RootSize = used, rootSize
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	prog.Step("ESP")
	if err := buildESP(disk, layout, spec, in, initrd.Bytes(), epoch); err != nil {
		return nil, err
	}
	if err := disk.Close(); err != nil {
		return nil, fmt.Errorf("close disk image: %w", err)
	}
	for _, p := range layout.Parts {
		rep.Partitions = append(rep.Partitions, PartInfo{Num: p.Num, Label: p.Label, Type: p.Type, GUID: p.GUID, Start: p.Start, Size: p.Size})
	}

	names := []string{}
	if formats["pxe"] || formats["iso"] {
		prog.Step("RAM boot files")
		ramNames, sum, err := buildRAM(tmp, rawPath, layout.Part(partitions.NumRootA).Start, rootSize, o, spec, in, ix, epoch)
		if err != nil {
			return nil, err
		}
		rep.RootSHA256 = sum
		names = append(names, ramNames...)
	}
	if formats["qcow2"] {
		prog.Step("qcow2")
		if err := convertQcow2(ctx, rawPath, filepath.Join(tmp, "disk.qcow2")); err != nil {
			return nil, err
		}
		names = append(names, "disk.qcow2")
	}
	if formats["raw"] {
		names = append([]string{"disk.raw"}, names...)
	}

	prog.Step("checksums")
	for _, n := range names {
		a, err := hashFile(filepath.Join(tmp, n))
		if err != nil {
			return nil, err
		}
		a.Path = n
		rep.Artifacts = append(rep.Artifacts, a)
	}
	rep.Seconds = time.Since(t0).Seconds()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "build.json"), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write build.json: %w", err)
	}
	// Publishing is the last step that can fail: machines follow the
	// channel at once, so only a build that has otherwise succeeded may
	// reach it (a failed one would leave its version there, and refuse
	// the fixed rebuild of the same version).
	if o.Channel != "" {
		prog.Step("channel")
		if err := publish(o.Channel, signKeys, o, rawPath, layout.Part(partitions.NumRootA).Start, rootSize, spec, in, initrd.Bytes(), epoch, tmp); err != nil {
			return nil, err
		}
	}
	if !formats["raw"] {
		if err := os.Remove(rawPath); err != nil {
			return nil, err
		}
	}
	// Move into place: images first, the report last, so a build.json
	// always describes the images beside it.
	// Folders first: once the first file is renamed, nothing else may fail
	// for want of a place to put the rest.
	for _, n := range names {
		if d := filepath.Dir(filepath.Join(o.OutDir, n)); d != filepath.Clean(o.OutDir) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, fmt.Errorf("create %s: %w", d, err)
			}
		}
	}
	for _, n := range append(names, "build.json") {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(o.OutDir, n)); err != nil {
			return nil, fmt.Errorf("move %s into %s: %w", n, o.OutDir, err)
		}
	}
	// A format not asked for this time must not leave a stale image behind
	// that build.json does not describe.
	for _, n := range allArtifacts {
		if !contains(names, n) {
			_ = os.Remove(filepath.Join(o.OutDir, n))
		}
	}
	_ = os.Remove(filepath.Join(o.OutDir, PXEDir)) // only if it is empty now
	ok = true
	logrus.WithFields(logrus.Fields{"dir": o.OutDir, "took": time.Since(t0).Round(time.Millisecond)}).Info("image built")
	return rep, nil
}

// allArtifacts is every file a build may write, besides build.json.
var allArtifacts = []string{"disk.raw", "disk.qcow2", ISOName,
	PXEDir + "/" + PXEKernel, PXEDir + "/" + PXEInitrd, PXEDir + "/" + PXERoot, PXEDir + "/" + PXEScript}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func parseFormats(fs []string) (map[string]bool, error) {
	m := map[string]bool{}
	if len(fs) == 0 {
		m["raw"] = true
	}
	for _, f := range fs {
		for _, x := range strings.Split(f, ",") {
			x = strings.TrimSpace(x)
			switch x {
			case "raw", "qcow2", "pxe", "iso":
				m[x] = true
			case "":
			default:
				return nil, fmt.Errorf("--format: unknown format %q (want raw, qcow2, pxe, iso)", x)
			}
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("--format: no format given (want raw, qcow2, pxe, iso)")
	}
	return m, nil
}

// DefaultCacheDir is $SLATE_CACHE, or .cache in the current folder.
func DefaultCacheDir() string {
	if d := os.Getenv("SLATE_CACHE"); d != "" {
		return d
	}
	return ".cache"
}

func resolveEpoch(e *time.Time) time.Time {
	if e != nil {
		return e.UTC()
	}
	t := DefaultEpoch
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.Unix(n, 0).UTC()
		}
	}
	return t
}

func convertQcow2(ctx context.Context, raw, out string) error {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("--format qcow2 needs qemu-img: apt-get install qemu-utils")
	}
	cmd := exec.CommandContext(ctx, bin, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert to qcow2: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

// timedProgress logs how long each step took, for `--log-level debug`.
type timedProgress struct {
	Progress
	step string
	last time.Time
}

func (p *timedProgress) Step(name string) {
	p.finish()
	p.step, p.last = name, time.Now()
	p.Progress.Step(name)
}

func (p *timedProgress) finish() {
	if p.step != "" {
		logrus.WithField("took", time.Since(p.last).Round(time.Millisecond)).Debugf("build step %s done", p.step)
	}
}

func (p *timedProgress) Done() {
	p.finish()
	p.step = ""
	p.Progress.Done()
}

// publish adds the built version to a channel folder: the root partition
// image as built (streamed from the disk image), the kernel and the
// initramfs.
func publish(channel string, keys []ed25519.PrivateKey, o Options, rawPath string, rootStart, rootSize int64, spec *configs.Spec, in Inputs, initrd []byte, epoch time.Time, tmp string) error {
	initrdPath := filepath.Join(tmp, "initrd.img")
	if err := os.WriteFile(initrdPath, initrd, 0o644); err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	disk, err := os.Open(rawPath)
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	defer disk.Close()
	m, err := payload.Publish(channel, payload.Release{
		Name:          spec.Name,
		Version:       spec.Version,
		KernelVersion: in.KernelVersion,
		KernelArgs:    SlotArgs(spec),
		Created:       epoch,
		Root:          io.NewSectionReader(disk, rootStart, rootSize),
		RootSize:      rootSize,
		Kernel:        in.Vmlinuz,
		Initrd:        initrdPath,
	}, payload.PublishOptions{Keys: keys, Expires: o.Expires, Force: o.Force})
	if err != nil {
		return err
	}
	logrus.WithFields(logrus.Fields{"channel": channel, "version": m.Version}).Info("added to channel")
	return nil
}
