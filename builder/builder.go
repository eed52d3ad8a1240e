// Package builder turns an image spec into artifacts: the GPT raw disk
// (ESP with systemd-boot and slot A's entry, kernel and initramfs; ROOT-A;
// an empty ROOT-B and STATE), optionally qcow2, and a build report.
// It needs no root, no loop devices and no mkfs tools.
package builder

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
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
	"github.com/slateos/slate/updater/payload"
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
	// Rollout gives the published version to the fleet in waves, like
	// "10%:0h,50%:24h,100%:72h" (payload.ParseRolloutSpec); empty: all
	// at once.
	Rollout string
	// EmbedRoot puts the root image inside the PXE initramfs instead of
	// beside it (the ISO always carries it).
	EmbedRoot bool
	// RootURL is the default root URL in boot.ipxe; empty is TFTP from
	// the server that gave the machine its boot file.
	RootURL string
	// Lock is the lock file of the spec's packages (deb.LockPath: the CLI
	// passes SPEC.lock when it exists). Set, the build fetches exactly
	// what it pins and needs no index; a lock that does not match the spec
	// is an error. Empty, the packages are resolved against the mirror.
	Lock string
}

// DefaultEpoch is used when SOURCE_DATE_EPOCH is unset: a fixed time keeps
// two builds of the same inputs byte-identical. (FAT cannot store times
// before 1980.)
var DefaultEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Progress is told about build steps: Plan once with the names of every
// step this build has (see Steps), then Step as each begins, then Done.
type Progress interface {
	Plan(steps []string)
	Step(name string)
	Done()
}

type nopProgress struct{}

func (nopProgress) Plan([]string) {}
func (nopProgress) Step(string)   {}
func (nopProgress) Done()         {}

// Artifact is one output file.
type Artifact struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Report is DIR/build.json.
type Report struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Slate         string `json:"slate_version"`
	Kernel        string `json:"kernel_version"`
	Loader        string `json:"loader"`
	Epoch         int64  `json:"source_date_epoch"`
	DiskSize      int64  `json:"disk_size"`
	InitramfsSize int64  `json:"initramfs_size"`
	InitramfsMods int    `json:"initramfs_modules"`
	RootUsed      int64  `json:"root_used"`
	RootSize      int64  `json:"root_fs_size"`
	RootModules   int    `json:"root_modules"`
	RootSHA256    string `json:"root_sha256"`
	// CABundle is the PEM file installed as the root's CA store (the
	// build host's by default, so it tells why two hosts' images differ).
	CABundle       string     `json:"ca_bundle"`
	CABundleSHA256 string     `json:"ca_bundle_sha256"`
	Partitions     []PartInfo `json:"partitions"`
	// Containers are the baked containers with the digests their images
	// resolved to, Runc the runtime put in the root with them.
	Containers []ContainerReport `json:"containers,omitempty"`
	Runc       *RuncReport       `json:"runc,omitempty"`
	// Packages are the Debian packages unpacked into the root, by name;
	// DebianSources the signed releases they came from.
	Packages      []PackageReport      `json:"packages,omitempty"`
	DebianSources []DebianSourceReport `json:"debian_sources,omitempty"`
	Artifacts     []Artifact           `json:"artifacts"`
	Seconds       float64              `json:"build_seconds"`
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

// Build runs the whole build: it checks the options (errors name the
// Options field at fault, as *OptionError), then runs the steps this build
// has (Steps) in order, telling o.Progress of each. Nothing is left in
// OutDir on failure: every artifact is written in a temporary folder and
// renamed into place by the last step.
func Build(ctx context.Context, o Options) (_ *Report, err error) {
	t0 := time.Now()
	j, err := newJob(o)
	if err != nil {
		return nil, err
	}
	j.t0 = t0
	defer j.cleanup()
	prog := o.Progress
	if prog == nil {
		prog = nopProgress{}
	}
	defer prog.Done()
	steps := j.steps()
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.name
	}
	prog.Plan(names)
	tp := &timedProgress{Progress: prog, last: t0}
	defer tp.finish()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tp.Step(s.name)
		if err := s.run(j, ctx); err != nil {
			return nil, err
		}
	}
	logrus.WithFields(logrus.Fields{"dir": o.OutDir, "took": time.Since(t0).Round(time.Millisecond)}).Info("image built")
	return j.rep, nil
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
				return nil, &OptionError{Field: "Formats", Msg: fmt.Sprintf("unknown format %q (want raw, qcow2, pxe, iso)", x)}
			}
		}
	}
	if len(m) == 0 {
		return nil, &OptionError{Field: "Formats", Msg: "no format given (want raw, qcow2, pxe, iso)"}
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

// MaxEpoch is the latest SOURCE_DATE_EPOCH: 2106-02-07, the end of
// unsigned 32-bit seconds (FAT timestamps end in 2107).
const MaxEpoch = 1<<32 - 1

func resolveEpoch(e *time.Time) (time.Time, error) {
	if e != nil {
		return e.UTC(), nil
	}
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" { // unset, or set empty as in SOURCE_DATE_EPOCH= slate build
		return DefaultEpoch, nil
	}
	// A value that is not used would silently give a build with
	// another time than the one asked for.
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxEpoch || s[0] == '+' {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a time: want whole seconds since 1970-01-01 UTC, 0 to %d, as date +%%s prints (or unset it for the default, %d)", s, uint64(MaxEpoch), DefaultEpoch.Unix())
	}
	return time.Unix(int64(n), 0).UTC(), nil
}

func convertQcow2(ctx context.Context, raw, out string) error {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return &OptionError{Field: "Formats", Msg: "qcow2 needs qemu-img: apt-get install qemu-utils"}
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
	waves, err := rolloutWaves(o)
	if err != nil {
		return err
	}
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
	}, payload.PublishOptions{Keys: keys, Expires: o.Expires, Force: o.Force, Rollout: waves})
	if err != nil {
		return err
	}
	logrus.WithFields(logrus.Fields{"channel": channel, "version": m.Version}).Info("added to channel")
	return nil
}

// checkOutDir refuses an output folder inside a folder the image copies:
// the build would copy its own temporary files into the image.
func checkOutDir(spec *configs.Spec, outDir string) error {
	out, err := realPath(outDir)
	if err != nil {
		return fmt.Errorf("output folder %s: %w", outDir, err)
	}
	for i, f := range spec.Root.Files {
		src, err := filepath.EvalSymlinks(spec.Path(f.Src))
		if err != nil {
			continue // CheckFiles reports it
		}
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			continue
		}
		if rel, err := filepath.Rel(src, out); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return &configs.Error{Path: fmt.Sprintf("$.root.files[%d].src", i),
				Msg: fmt.Sprintf("the output folder %s (Options.OutDir) is inside %s, which is copied into the image (to %s): the image would hold its own build; choose an output folder outside it", outDir, src, f.Dst)}
		}
	}
	return nil
}

// realPath makes p absolute with every symbolic link of its existing part
// resolved (the rest may not exist yet).
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest), nil
		}
		if dir == filepath.Dir(dir) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// unwrapPath drops the temporary path from a file system error: the user
// knows the output folder, not slate's temporary folder inside it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// previousArtifacts reads the artifacts of the build.json in dir, if any.
// A build.json that does not parse lists nothing: no file is removed on
// its word.
func previousArtifacts(dir string) []Artifact {
	b, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if err != nil {
		return nil
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		logrus.WithError(err).Warnf("%s/build.json does not parse: files of the previous build are left alone", dir)
		return nil
	}
	return r.Artifacts
}

// removeStale removes the previous build's artifacts that this build did
// not write again, if they are still the files that build wrote (same
// size and sha256); anything else is kept with a warning. Only slate's
// artifact names are considered: a build.json is no licence to remove
// other paths.
func removeStale(dir string, prev []Artifact, written []string) {
	for _, a := range prev {
		if !contains(allArtifacts, a.Path) || contains(written, a.Path) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(a.Path))
		st, err := os.Lstat(p)
		if err != nil {
			continue // gone already
		}
		if !st.Mode().IsRegular() || st.Size() != a.Size {
			logrus.WithField("file", p).Warn("not removing a file of the previous build: it changed since (build.json no longer describes it)")
			continue
		}
		h, err := hashFile(p)
		if err != nil || h.SHA256 != a.SHA256 {
			logrus.WithField("file", p).Warn("not removing a file of the previous build: its sha256 differs from the previous build.json")
			continue
		}
		if err := os.Remove(p); err != nil {
			logrus.WithError(err).WithField("file", p).Warn("could not remove a file of the previous build")
		}
	}
}

// createDisk creates the sparse disk image of size bytes. A size the
// output folder's filesystem cannot hold (ext4 files end at 16 TiB) is an
// error at $.disk.size.
func createDisk(p string, size int64, outDir string) (*os.File, error) {
	disk, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create disk image in %s: %w", outDir, unwrapPath(err))
	}
	if err := disk.Truncate(size); err != nil {
		disk.Close()
		return nil, &configs.Error{Path: "$.disk.size", Msg: fmt.Sprintf("%s: the filesystem of the output folder %s cannot hold a disk image of %d bytes, even a sparse one (%v); choose a smaller disk.size (the machine's STATE grows to its real disk on first boot) or an output folder on another filesystem", configs.Size(size), outDir, size, unwrapPath(err))}
	}
	return disk, nil
}
