package updater

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/updater/payload"
)

// FetchManifest reads a source's manifest envelope and checks that a key
// in trusted signed it before parsing the manifest inside: nothing
// unsigned is ever interpreted.
func FetchManifest(ctx context.Context, src Source, trusted ...ed25519.PublicKey) (*payload.Manifest, error) {
	data, _, err := src.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	m, err := payload.OpenEnvelope(trusted, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return m, nil
}

// Target is the idle slot an update is written to.
type Target struct {
	Slot     string // "a" or "b"
	RootDev  string // the slot's root partition (a block device, or a file in tests)
	RootSize int64  // its size in bytes
	Boot     bootentry.Dir
	Options  string // kernel command line of the new entry
	Tries    int    // boot tries of the new entry
	// Staging is a folder (on STATE) that holds the fetched kernel and
	// initramfs while the root is written; empty: the system's temp
	// folder.
	Staging string
	// BeforeWrite gives up the slot's old content right before the first
	// byte is written to RootDev; nil removes the slot's entry.
	BeforeWrite func(bootentry.Dir) error
	// Flip runs the write of the new entry (the daemon holds its lock
	// around it); nil runs it as is.
	Flip func(flip func() error) error
}

// MemoryLimit is the soft memory limit of the update daemon
// (debug.SetMemoryLimit): applying streams through a few buffers and the
// zstd window, and the garbage collector keeps the heap near that.
const MemoryLimit = 24 << 20

// Reporter receives progress: a state and key/value pairs.
type Reporter func(state string, kv ...any)

// Apply writes version m from src into the idle slot t and flips to it.
//
// The slot's old content is the machine's way back, so it is given up as
// late as possible: first the kernel and initramfs are fetched and
// verified into Staging, and the root's first megabytes fetched and
// decompressed, so a channel with a missing or corrupt file, or a dead
// server, costs nothing. Only then is the slot's entry removed (a
// half-written slot never boots) and the root written. The new entry (the
// flip) comes last, after the root, kernel and initramfs are written,
// read back or verified, and synced.
func Apply(ctx context.Context, src Source, m *payload.Manifest, t Target, report Reporter) error {
	if report == nil {
		report = func(string, ...any) {}
	}
	root, ok1 := m.File(payload.RoleRoot)
	kernel, ok2 := m.File(payload.RoleKernel)
	initrd, ok3 := m.File(payload.RoleInitrd)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("manifest of %s lacks a root, kernel or initrd file", m.Version)
	}
	if root.Size > t.RootSize {
		return fmt.Errorf("root image of %s is %d bytes, slot %s holds %d", m.Version, root.Size, t.Slot, t.RootSize)
	}
	boot := []struct {
		file   payload.File
		name   string
		staged *os.File
	}{{file: kernel, name: "vmlinuz"}, {file: initrd, name: "initrd.img"}}
	defer func() {
		for _, f := range boot {
			if f.staged != nil {
				f.staged.Close()
			}
		}
	}()
	for i := range boot {
		report("fetching", "version", m.Version, "slot", t.Slot, "file", boot[i].name)
		f, err := stageFile(ctx, src, boot[i].file, t.Staging)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", boot[i].name, m.Version, err)
		}
		boot[i].staged = f
	}
	v, err := openVerified(ctx, src, root)
	if err != nil {
		return err
	}
	defer v.Close()
	first := make([]byte, 2<<20)
	n, err := io.ReadFull(v, first)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("root image: %w", err)
	}
	first = first[:n]
	if t.BeforeWrite == nil {
		t.BeforeWrite = func(b bootentry.Dir) error {
			if err := b.RemoveSlot(t.Slot); err != nil {
				return fmt.Errorf("remove slot %s's entry: %w", t.Slot, err)
			}
			return nil
		}
	}
	if err := t.BeforeWrite(t.Boot); err != nil {
		return err
	}
	report("downloading", "version", m.Version, "slot", t.Slot, "percent", 0)
	if err := writeRoot(ctx, first, v, root, t, func(p int) {
		report("downloading", "version", m.Version, "slot", t.Slot, "percent", p)
	}); err != nil {
		return err
	}
	report("verifying", "version", m.Version, "slot", t.Slot)
	if err := readBack(t.RootDev, root); err != nil {
		return err
	}
	for _, f := range boot {
		report("writing", "version", m.Version, "slot", t.Slot, "file", f.name)
		if err := writeBootFile(f.staged, f.file, t, f.name); err != nil {
			return err
		}
	}
	report("flipping", "version", m.Version, "slot", t.Slot)
	dir := bootentry.SlotDir(t.Slot)
	var name string
	flip := func() error {
		var err error
		name, err = t.Boot.InstallEntry(bootentry.Config{
			Title:   fmt.Sprintf("slate %s %s (slot %s)", m.Name, m.Version, t.Slot),
			Version: m.Version,
			Slot:    t.Slot,
			Linux:   dir + "/vmlinuz",
			Initrd:  dir + "/initrd.img",
			Options: t.Options,
		}, t.Tries)
		return err
	}
	if t.Flip != nil {
		err = t.Flip(flip)
	} else {
		err = flip()
	}
	if err != nil {
		return fmt.Errorf("write the boot entry: %w", err)
	}
	report("staged", "version", m.Version, "slot", t.Slot, "entry", name)
	return nil
}

// stageFile fetches a file's stored bytes into an unlinked temporary file
// in dir while verifying them: only a file that matched its manifest is
// returned, positioned at its start.
func stageFile(ctx context.Context, src Source, f payload.File, dir string) (*os.File, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("staging folder: %w", err)
		}
	}
	tmp, err := os.CreateTemp(dir, "stage-*")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	// unlinked at once: a crash leaves nothing behind
	_ = os.Remove(tmp.Name())
	rc, err := src.Open(ctx, f.Path, f.CompressedSize)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	defer rc.Close()
	v, err := payload.OpenFile(f, io.TeeReader(rc, tmp))
	if err != nil {
		tmp.Close()
		return nil, err
	}
	defer v.Close()
	if _, err := io.CopyBuffer(io.Discard, v, make([]byte, 256<<10)); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("staging: %w", err)
	}
	return tmp, nil
}

// writeRoot streams the root image into the partition, decompressing and
// verifying on the way: no full local copy, bounded memory.
// first is what was already read from v.
func writeRoot(ctx context.Context, first []byte, v io.Reader, f payload.File, t Target, progress func(int)) error {
	dev, err := os.OpenFile(t.RootDev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open slot %s (%s): %w", t.Slot, t.RootDev, err)
	}
	defer dev.Close()
	// Decompressing and hashing run in their own goroutine, a few
	// buffers ahead of the writes, so both cores work.
	type chunk struct {
		b   []byte
		err error
	}
	free := make(chan []byte, 3)
	for i := 0; i < cap(free); i++ {
		free <- make([]byte, 2<<20)
	}
	full := make(chan chunk, cap(free))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(full)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-rctx.Done():
				return
			}
			n, err := io.ReadFull(v, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			full <- chunk{b: buf[:n], err: err}
			if err != nil {
				return
			}
		}
	}()
	var written int64
	last := 0
	if len(first) > 0 {
		if _, err := dev.Write(first); err != nil {
			return fmt.Errorf("write slot %s (%s): %w", t.Slot, t.RootDev, err)
		}
		written = int64(len(first))
	}
	for c := range full {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(c.b) > 0 {
			if _, err := dev.Write(c.b); err != nil {
				return fmt.Errorf("write slot %s (%s): %w", t.Slot, t.RootDev, err)
			}
			written += int64(len(c.b))
			if p := int(written * 100 / f.Size); p/10 > last/10 && p < 100 {
				last = p
				progress(p)
			}
		}
		if errors.Is(c.err, io.EOF) {
			break
		}
		if c.err != nil {
			return fmt.Errorf("root image: %w", c.err)
		}
		free <- c.b[:cap(c.b)]
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sync slot %s: %w", t.Slot, err)
	}
	progress(100)
	return nil
}

// readBack hashes what reached the partition, not what the page cache
// holds: the cache is dropped first.
func readBack(p string, f payload.File) error {
	dev, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read back %s: %w", p, err)
	}
	defer dev.Close()
	_ = unix.Fadvise(int(dev.Fd()), 0, f.Size, unix.FADV_DONTNEED)
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(dev, f.Size), make([]byte, 4<<20))
	if err != nil {
		return fmt.Errorf("read back %s: %w", p, err)
	}
	if n != f.Size {
		return fmt.Errorf("read back %s: %d of %d bytes", p, n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("read back %s: sha256 %s, want %s: the disk did not keep what was written", p, got, f.SHA256)
	}
	return nil
}

// writeBootFile copies a staged file to the ESP, verifying it again (the
// staging disk may not have kept it).
func writeBootFile(staged io.Reader, f payload.File, t Target, name string) error {
	v, err := payload.OpenFile(f, staged)
	if err != nil {
		return fmt.Errorf("%s of slot %s: %w", name, t.Slot, err)
	}
	defer v.Close()
	// WriteSlotFile renames the file into place only after the verifier
	// reached a clean end.
	if _, err := t.Boot.WriteSlotFile(t.Slot, name, v); err != nil {
		return fmt.Errorf("%s of slot %s: %w", name, t.Slot, err)
	}
	return nil
}

// EntryOptions derives the new slot's kernel command line from the running
// entry's (or the new version's own arguments): the same console and extra
// arguments, with root= and slate.slot= pointing at the new slot, in the
// order the builder writes (cmdline.SlotOptions).
func EntryOptions(running string, slot, partUUID string) string {
	return cmdline.SlotOptions(slot, partUUID, cmdline.Fields(running))
}

// jitter spreads checks of a fleet: up to 10% of d either way.
func jitter(d time.Duration, r func(int64) int64) time.Duration {
	span := int64(d) / 5
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(r(span))
}

// verified is a file of a version read through its verifier.
type verified struct {
	*payload.Verifier
	rc io.Closer
}

func (v verified) Close() error {
	v.Verifier.Close()
	return v.rc.Close()
}

func openVerified(ctx context.Context, src Source, f payload.File) (verified, error) {
	rc, err := src.Open(ctx, f.Path, f.CompressedSize)
	if err != nil {
		return verified{}, err
	}
	v, err := payload.OpenFile(f, rc)
	if err != nil {
		rc.Close()
		return verified{}, err
	}
	return verified{Verifier: v, rc: rc}, nil
}
