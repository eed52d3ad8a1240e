package payload

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Names of the stored files inside a version folder.
const (
	RootFile   = "root.img.zst"
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
)

// encoderWindow is the zstd window AddToChannel writes; well below MaxWindow so
// every machine can read what any builder writes.
const encoderWindow = 8 << 20

// Release is one version to publish with AddToChannel.
type Release struct {
	Name          string
	Version       string
	KernelVersion string
	KernelArgs    []string // see Manifest.KernelArgs
	Created       time.Time
	Root          io.Reader // the raw root partition image, streamed once
	RootSize      int64     // exact length of Root
	Kernel        string    // path of the kernel image
	Initrd        string    // path of the initramfs
}

// DefaultExpiry is how long a published top manifest is trusted unless
// PublishOptions.Expires says otherwise: long enough for a weekly refresh
// job to miss a run, short enough that a frozen channel is noticed within
// a week.
const DefaultExpiry = 7 * 24 * time.Hour

// MinExpiry and MaxExpiry bound PublishOptions.Expires.
const (
	MinExpiry = time.Second
	MaxExpiry = 366 * 24 * time.Hour
)

// LockFile is the lock a publisher holds (flock) while it changes a channel.
// A dot name: Serve never sends it.
const LockFile = ".slate-channel.lock"

// PublishOptions say how a version is signed into a channel.
type PublishOptions struct {
	// Keys sign the version's manifest and the top manifest; during a key
	// rotation, the old and the new key. At least one.
	Keys []ed25519.PrivateKey
	// Expires is how long the top manifest is trusted; 0 is DefaultExpiry.
	Expires time.Duration
	// Force publishes into a channel whose top manifest is of another
	// image name or does not verify with any of Keys. Every machine that
	// follows the channel sees the change, so this is for a deliberate
	// re-keying or re-naming, never a default.
	Force bool
	// Rollout, when not nil, gives the version being published to the
	// fleet in these waves (see Rollout), counted from its publishing;
	// nil: all at once. It must pass ValidateWaves.
	Rollout []Wave
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

func (o *PublishOptions) check() error {
	if len(o.Keys) == 0 {
		return errors.New("no signing key")
	}
	if len(o.Keys) > MaxSignatures {
		return fmt.Errorf("%d signing keys, at most %d", len(o.Keys), MaxSignatures)
	}
	for i, k := range o.Keys {
		if len(k) != ed25519.PrivateKeySize {
			return fmt.Errorf("signing key %d is %d bytes, want %d", i+1, len(k), ed25519.PrivateKeySize)
		}
	}
	if o.Expires == 0 {
		o.Expires = DefaultExpiry
	}
	if o.Expires < MinExpiry || o.Expires > MaxExpiry {
		return fmt.Errorf("expiry %s is out of range (%s to %s)", o.Expires, MinExpiry, MaxExpiry)
	}
	if o.Rollout != nil {
		if err := ValidateWaves(o.Rollout); err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

func (o *PublishOptions) publicKeys() []ed25519.PublicKey {
	pubs := make([]ed25519.PublicKey, len(o.Keys))
	for i, k := range o.Keys {
		pubs[i] = k.Public().(ed25519.PublicKey)
	}
	return pubs
}

// AddToChannel is Publish with one signing key and the default expiry.
func AddToChannel(dir string, key ed25519.PrivateKey, in Release) (*Manifest, error) {
	return Publish(dir, in, PublishOptions{Keys: []ed25519.PrivateKey{key}})
}

// Publish adds in to the channel folder dir (created if missing):
//
//	dir/<version>/root.img.zst, vmlinuz, initrd.img, manifest.json
//	dir/manifest.json   (only if <version> is not older than the one there)
//
// Every manifest.json is an envelope (see SignEnvelope): the manifest and
// its signatures in one file. The top one also carries published (now)
// and expires (now + Expires).
//
// The root image is compressed with zstd as it streams in, and every size
// and hash is computed while writing, so memory stays bounded whatever the
// image size. The version folder is assembled under a hidden temporary
// name and renamed into place, and the top file is replaced by one rename
// after it, so a reader sees the old channel or the new one, never a mix.
//
// Publish holds an exclusive flock on dir/.slate-channel.lock from its
// first look at the channel to its last write, so two publishers take
// turns. Under the lock it refuses (unless Force) a channel whose top
// manifest names another image or does not verify with any of the keys:
// machines following it trust neither. It refuses a channel folder that
// holds a private key, which a web server would hand out.
//
// Publishing a version that already exists succeeds if its content (name,
// kernel version, kernel arguments, creation time, and each file's size
// and sha256) is the same and its manifest verifies with the keys;
// otherwise it is an error naming the version.
func Publish(dir string, in Release, o PublishOptions) (*Manifest, error) {
	m, err := publish(dir, in, o)
	if err != nil {
		return nil, fmt.Errorf("add %s to channel %s: %w", in.Version, dir, err)
	}
	return m, nil
}

func publish(dir string, in Release, o PublishOptions) (*Manifest, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := validateName(in.Name); err != nil {
		return nil, err
	}
	if err := ValidateVersion(in.Version); err != nil {
		return nil, err
	}
	if err := validateKernelVersion(in.KernelVersion); err != nil {
		return nil, err
	}
	if in.Created.IsZero() {
		return nil, errors.New("release has no creation time")
	}
	created, err := parseCreated(in.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return nil, err
	}
	if in.Root == nil {
		return nil, errors.New("release has no root image")
	}
	if in.RootSize <= 0 || in.RootSize > MaxFileSize {
		return nil, fmt.Errorf("root size %d is out of range (1 to %d)", in.RootSize, MaxFileSize)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockChannel(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	top, err := CheckChannel(dir, in.Name, o.publicKeys(), o.Force)
	if err != nil {
		return nil, err
	}

	// Build the version in a hidden folder next to its final place, so the
	// rename is within one file system. Serve hides dot names.
	tmp, err := os.MkdirTemp(dir, ".incoming-"+in.Version+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}

	m := &Manifest{
		Format:        FormatVersion,
		Name:          in.Name,
		Version:       in.Version,
		KernelVersion: in.KernelVersion,
		KernelArgs:    in.KernelArgs,
		Created:       created,
	}
	root, err := writeZstd(filepath.Join(tmp, RootFile), in.Root, in.RootSize)
	if err != nil {
		return nil, fmt.Errorf("root image: %w", err)
	}
	root.Role, root.Path = RoleRoot, path.Join(in.Version, RootFile)
	kernel, err := copyFile(filepath.Join(tmp, KernelFile), in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	kernel.Role, kernel.Path = RoleKernel, path.Join(in.Version, KernelFile)
	initrd, err := copyFile(filepath.Join(tmp, InitrdFile), in.Initrd)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	initrd.Role, initrd.Path = RoleInitrd, path.Join(in.Version, InitrdFile)
	m.Files = []File{root, kernel, initrd}

	data := m.Marshal()
	// What we write must be what every reader accepts.
	if _, err := ParseManifest(data); err != nil {
		return nil, fmt.Errorf("internal error: generated manifest does not parse: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, ManifestFile), SignEnvelope(data, o.Keys...)); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}

	final := filepath.Join(dir, in.Version)
	existing, err := readVersion(final, o.publicKeys())
	switch {
	case err == nil:
		if !sameContent(existing, m) {
			return nil, fmt.Errorf("version %s already exists in the channel with different content; publish a new version instead", in.Version)
		}
		// Identical: keep what is there (its compressed bytes may differ
		// if an older zstd wrote them) and make sure the top level is right.
		m = existing
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(tmp, final); err != nil {
			return nil, fmt.Errorf("version %s: %w", in.Version, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("version %s already exists in the channel but cannot be used: %w", in.Version, err)
	}

	if top != nil && CompareVersions(m.Version, top.Version) < 0 {
		// An older version is kept for machines that apply it by hand;
		// the channel keeps offering the newer one.
		return m, nil
	}
	topM := *m
	topM.Rollout = nextRollout(m.Version, top, o.Rollout)
	if err := writeTop(dir, &topM, top, o); err != nil {
		return nil, err
	}
	return &topM, nil
}

// Refresh re-signs the channel's top manifest with a new published time
// and expiry, without a new version: a publisher runs it (slate channel
// refresh) more often than the expiry, so machines can tell a live channel
// from a frozen one. The top must verify with one of the keys and must
// point at a version folder that is there, unless Force. Its rollout, if
// any, is kept as it is (the waves' start does not move).
func Refresh(dir string, o PublishOptions) (*Manifest, error) {
	m, err := retop(dir, o, nil)
	if err != nil {
		return nil, fmt.Errorf("refresh channel %s: %w", dir, err)
	}
	return m, nil
}

// SetRollout re-signs the top manifest, as Refresh does, with new waves
// for the version it offers. The waves keep counting from the rollout's
// start, or, if the top had no rollout, from its published time (its last
// publish or refresh, not the version's first publish), and a pause stays.
func SetRollout(dir string, waves []Wave, o PublishOptions) (*Manifest, error) {
	if err := ValidateWaves(waves); err != nil {
		return nil, fmt.Errorf("set the rollout of channel %s: %w", dir, err)
	}
	m, err := retop(dir, o, func(m *Manifest) {
		r := rolloutOf(m)
		r.Waves = append([]Wave(nil), waves...)
		m.Rollout = r
	})
	if err != nil {
		return nil, fmt.Errorf("set the rollout of channel %s: %w", dir, err)
	}
	return m, nil
}

// Pause re-signs the top manifest, as Refresh does, as paused: every
// machine that has not begun to apply its version holds until Resume. A
// channel without a rollout gets one wave of 100%. Pausing a paused
// channel keeps its paused time. The pause stays across new versions
// published into the channel.
func Pause(dir string, o PublishOptions) (*Manifest, error) {
	m, err := retop(dir, o, func(m *Manifest) {
		r := rolloutOf(m)
		if !r.Paused {
			r.Paused, r.PausedAt = true, time.Time{} // writeTop stamps it
		}
		m.Rollout = r
	})
	if err != nil {
		return nil, fmt.Errorf("pause channel %s: %w", dir, err)
	}
	return m, nil
}

// Resume re-signs the top manifest, as Refresh does, without the pause;
// the waves are as before (their start does not move, so waves whose time
// has come open at once). Resuming a channel that is not paused is a
// refresh.
func Resume(dir string, o PublishOptions) (*Manifest, error) {
	m, err := retop(dir, o, func(m *Manifest) {
		if m.Rollout != nil {
			r := *m.Rollout
			r.Paused, r.PausedAt = false, time.Time{}
			m.Rollout = &r
		}
	})
	if err != nil {
		return nil, fmt.Errorf("resume channel %s: %w", dir, err)
	}
	return m, nil
}

// rolloutOf is a copy of m's rollout to change, or for a manifest without
// one, all at once counted from its last signing (m.Published: the last
// publish or refresh). Nothing in the channel records when the version was
// first published (the version folder's manifest has no published time),
// so that is the earliest honest start; the README says so.
func rolloutOf(m *Manifest) *Rollout {
	if m.Rollout != nil {
		r := *m.Rollout
		r.Waves = append([]Wave(nil), r.Waves...)
		return &r
	}
	return &Rollout{Waves: append([]Wave(nil), AllAtOnce...), Start: m.Published}
}

// nextRollout is the rollout of version in a new top manifest that
// replaces top, given the waves asked for (nil: none). The same version
// keeps its start (re-publishing does not restart its waves); a new
// version starts when it is published (zero: writeTop stamps it). A pause
// stays until Resume, across versions: the publisher who paused the
// channel resumes it.
func nextRollout(version string, top *Manifest, waves []Wave) *Rollout {
	var prev *Rollout
	if top != nil {
		prev = top.Rollout
	}
	same := top != nil && top.Version == version
	if waves == nil {
		switch {
		case same && prev != nil:
			r := *prev
			return &r
		case prev != nil && prev.Paused:
			return &Rollout{Waves: append([]Wave(nil), AllAtOnce...), Paused: true, PausedAt: prev.PausedAt}
		}
		return nil
	}
	r := &Rollout{Waves: append([]Wave(nil), waves...)}
	if same {
		r.Start = top.Published
		if prev != nil {
			r.Start = prev.Start
		}
	}
	if prev != nil && prev.Paused {
		r.Paused, r.PausedAt = true, prev.PausedAt
	}
	return r
}

// retop re-signs the channel's top manifest under the publisher lock,
// after edit (if not nil) has changed a copy of it.
func retop(dir string, o PublishOptions, edit func(*Manifest)) (*Manifest, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	unlock, err := lockChannel(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	top, err := CheckChannel(dir, "", o.publicKeys(), o.Force)
	if err != nil {
		return nil, err
	}
	if top == nil {
		return nil, errors.New("the channel has no top manifest yet: publish a version first (slate build --channel)")
	}
	if _, err := os.Stat(filepath.Join(dir, top.Version)); err != nil && !o.Force {
		return nil, fmt.Errorf("the top manifest names %s, whose folder is missing: %w", top.Version, err)
	}
	m := *top
	if edit != nil {
		edit(&m)
	}
	if err := writeTop(dir, &m, top, o); err != nil {
		return nil, err
	}
	return &m, nil
}

// writeTop signs m as the channel's top manifest and puts it in place with
// one atomic rename. published only grows: a publisher whose clock is
// behind the last one's still writes a newer manifest, so machines never
// take a fresh publish for a replay.
func writeTop(dir string, m *Manifest, prev *Manifest, o PublishOptions) error {
	now := o.Now().UTC().Truncate(time.Second)
	if prev != nil && !now.After(prev.Published) {
		now = prev.Published.Truncate(time.Second).Add(time.Second)
	}
	m.Published = now
	m.Expires = now.Add(o.Expires)
	if r := m.Rollout; r != nil {
		// Zero times are "now": a new version's waves start, a pause
		// begins, with this signature.
		if r.Start.IsZero() {
			r.Start = now
		}
		if r.Paused && r.PausedAt.IsZero() {
			r.PausedAt = now
		}
	}
	data := m.Marshal()
	if _, err := ParseManifest(data); err != nil {
		return fmt.Errorf("internal error: generated manifest does not parse: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, ManifestFile), SignEnvelope(data, o.Keys...), 0o644); err != nil {
		return err
	}
	// A format 1 signature beside a format 2 envelope would only confuse.
	if err := os.Remove(filepath.Join(dir, LegacySignatureFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// CheckChannel is what a publisher checks before it changes a channel: no
// private key in the folder (ever, even with force), and a top manifest,
// if there is one, that verifies with one of pubs and names the image name
// (if not empty). It returns the current top manifest, nil if there is
// none (with force: the top as it is, unverified, or nil if it does not
// parse). The builder calls it before a build as well, so a build that could
// not be published fails in seconds, not after minutes.
func CheckChannel(dir, name string, pubs []ed25519.PublicKey, force bool) (*Manifest, error) {
	keys, err := FindPrivateKeys(dir)
	if err != nil {
		return nil, fmt.Errorf("look for private keys in the channel folder: %w", err)
	}
	if len(keys) > 0 {
		return nil, fmt.Errorf("the channel folder holds a private key (%s): a web server would publish it; move it out of %s", strings.Join(keys, ", "), dir)
	}
	data, err := readBounded(filepath.Join(dir, ManifestFile), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("top manifest: %w", err)
	}
	top, err := OpenEnvelope(pubs, data)
	if err != nil {
		if force {
			// Taken over as it is: its version still orders the
			// channel and its publish time still only grows.
			return readUnverified(data), nil
		}
		return nil, fmt.Errorf("the channel's top manifest does not verify with the signing key(s) %s: %w; machines following it would refuse this version (use --force to take the channel over)", keyIDs(pubs), err)
	}
	if name != "" && top.Name != name && !force {
		return nil, fmt.Errorf("the channel serves image %q, this is %q: machines following it would refuse this version (use another channel, or --force)", top.Name, name)
	}
	return top, nil
}

// readUnverified parses a top manifest without checking its signatures,
// for a forced publish or refresh only; nil if it does not parse.
func readUnverified(data []byte) *Manifest {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil
	}
	m, err := ParseManifest(env.Signed)
	if err != nil {
		return nil
	}
	return m
}

func keyIDs(pubs []ed25519.PublicKey) string {
	ids := make([]string, len(pubs))
	for i, k := range pubs {
		ids[i] = KeyID(k)
	}
	return strings.Join(ids, ", ")
}

// lockChannel takes the channel's publisher lock, waiting for another
// publisher to finish.
func lockChannel(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock channel: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock channel: %w", err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// readVersion loads and checks the manifest of an existing version folder.
// A missing folder gives an error wrapping fs.ErrNotExist.
func readVersion(dir string, pubs []ed25519.PublicKey) (*Manifest, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	data, err := readBounded(filepath.Join(dir, ManifestFile), 1<<20)
	if err != nil {
		return nil, noExist(err)
	}
	return OpenEnvelope(pubs, data)
}

// noExist hides fs.ErrNotExist for files inside a folder that exists: that
// folder is damaged, not absent, and must not be replaced silently.
func noExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("incomplete version folder: %s", err.Error())
	}
	return err
}

func sameContent(a, b *Manifest) bool {
	if a.Name != b.Name || a.Version != b.Version || a.KernelVersion != b.KernelVersion || !a.Created.Equal(b.Created) ||
		strings.Join(a.KernelArgs, " ") != strings.Join(b.KernelArgs, " ") {
		return false
	}
	for _, r := range roles {
		fa, oka := a.File(r)
		fb, okb := b.File(r)
		if !oka || !okb || fa.Size != fb.Size || fa.SHA256 != fb.SHA256 || fa.Path != fb.Path {
			return false
		}
	}
	return true
}

// writeZstd compresses size bytes from r into the new file dst and returns
// the sizes and hashes of both sides.
func writeZstd(dst string, r io.Reader, size int64) (File, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	f, err := Compress(out, r, size)
	if err != nil {
		return File{}, err
	}
	if err := out.Sync(); err != nil {
		return File{}, err
	}
	return f, out.Close()
}

// Compress streams exactly size bytes from r through zstd into w, as a
// channel stores a root image, and returns both sides' sizes and hashes. Memory use
// is the encoder's window and buffers, independent of size.
func Compress(w io.Writer, r io.Reader, size int64) (File, error) {
	stored := &hashWriter{w: w, sum: sha256.New()}
	enc, err := zstd.NewWriter(stored,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(encoderWindow),
		// One goroutine: the output is the same for the same input and
		// options on any machine, which reproducible builds need.
		zstd.WithEncoderConcurrency(1),
	)
	if err != nil {
		return File{}, err
	}
	raw := &hashWriter{w: enc, sum: sha256.New()}
	// Read one byte past size to catch a source longer than promised.
	n, err := io.Copy(raw, io.LimitReader(r, size+1))
	if err != nil {
		enc.Close()
		return File{}, fmt.Errorf("after %d bytes: %w", n, err)
	}
	if n != size {
		enc.Close()
		if n > size {
			return File{}, fmt.Errorf("image is longer than its stated size %d", size)
		}
		return File{}, fmt.Errorf("image has %d bytes, stated size is %d", n, size)
	}
	if err := enc.Close(); err != nil {
		return File{}, err
	}
	return File{
		Size:             raw.n,
		SHA256:           hex.EncodeToString(raw.sum.Sum(nil)),
		CompressedSize:   stored.n,
		CompressedSHA256: hex.EncodeToString(stored.sum.Sum(nil)),
		Compression:      CompressionZstd,
	}, nil
}

// copyFile copies src to dst uncompressed: kernels and initramfs images are
// already compressed.
func copyFile(dst, src string) (File, error) {
	if src == "" {
		return File{}, errors.New("no file given")
	}
	in, err := os.Open(src)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	w := &hashWriter{w: out, sum: sha256.New()}
	if _, err := io.Copy(w, io.LimitReader(in, MaxFileSize+1)); err != nil {
		return File{}, fmt.Errorf("copy %s: %w", src, err)
	}
	if w.n == 0 || w.n > MaxFileSize {
		return File{}, fmt.Errorf("%s: size %d is out of range (1 to %d)", src, w.n, MaxFileSize)
	}
	if err := out.Sync(); err != nil {
		return File{}, err
	}
	if err := out.Close(); err != nil {
		return File{}, err
	}
	h := hex.EncodeToString(w.sum.Sum(nil))
	return File{Size: w.n, CompressedSize: w.n, SHA256: h, CompressedSHA256: h, Compression: CompressionNone}, nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type hashWriter struct {
	w   io.Writer
	sum hash.Hash
	n   int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.sum.Write(p[:n])
	h.n += int64(n)
	return n, err
}
