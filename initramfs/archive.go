// Package initramfs packs slate's initramfs: slate itself as /init, the
// boot module closure and a few device nodes, as a newc cpio archive
// (u-root's pkg/cpio) compressed with zstd. The init that runs from it
// lives in initramfs/stage1.
package initramfs

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// Archive collects the files of an initramfs in memory (it is small: the
// slate binary and a few MiB of modules) and writes them in a stable order.
type Archive struct {
	recs map[string]cpio.Record
	// Time is every record's mtime (SOURCE_DATE_EPOCH).
	Time time.Time
}

// New returns an empty archive with the folders init needs.
func New(t time.Time) *Archive {
	a := &Archive{recs: map[string]cpio.Record{}, Time: t}
	for _, d := range []string{"dev", "proc", "sys", "run", "newroot", "tmp"} {
		a.put(cpio.Directory(d, 0o755))
	}
	// The kernel opens /dev/console before init runs; without the node in
	// the archive init would start with no stdin/stdout.
	a.put(cpio.CharDev("dev/console", 0o600, 5, 1))
	a.put(cpio.CharDev("dev/null", 0o666, 1, 3))
	return a
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (a *Archive) put(r cpio.Record) {
	r.Name = clean(r.Name)
	a.recs[r.Name] = r
}

// Mkdir adds a folder and its parents.
func (a *Archive) Mkdir(p string, mode fs.FileMode) error {
	p = clean(p)
	if p == "" || p == "." {
		return nil
	}
	if err := a.Mkdir(path.Dir(p), 0o755); err != nil {
		return err
	}
	if r, ok := a.recs[p]; ok {
		if r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			return fmt.Errorf("initramfs: %s exists and is not a folder", p)
		}
		return nil
	}
	a.put(cpio.Directory(p, uint64(mode.Perm())))
	return nil
}

// AddFile adds a regular file; its content is read now.
func (a *Archive) AddFile(p string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", p, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("initramfs: read %s: %w", p, err)
	}
	if size >= 0 && int64(len(b)) != size {
		return fmt.Errorf("initramfs: %s: read %d bytes, expected %d", p, len(b), size)
	}
	return a.AddBytes(p, mode, b)
}

// AddBytes adds a regular file with the given content.
func (a *Archive) AddBytes(p string, mode fs.FileMode, b []byte) error {
	if err := a.Mkdir(path.Dir(clean(p)), 0o755); err != nil {
		return err
	}
	a.put(cpio.StaticRecord(b, cpio.Info{Name: p, Mode: cpio.S_IFREG | uint64(mode.Perm())}))
	return nil
}

// AddReaderAt adds a regular file whose size bytes are read from r only
// when the archive is written: a root image carried in the initramfs is
// not held in memory twice.
func (a *Archive) AddReaderAt(p string, mode fs.FileMode, r io.ReaderAt, size int64) error {
	if err := a.Mkdir(path.Dir(clean(p)), 0o755); err != nil {
		return err
	}
	a.put(cpio.Record{ReaderAt: io.NewSectionReader(r, 0, size), Info: cpio.Info{Name: p, Mode: cpio.S_IFREG | uint64(mode.Perm()), FileSize: uint64(size)}})
	return nil
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(p, target string) error {
	if err := a.Mkdir(path.Dir(clean(p)), 0o755); err != nil {
		return err
	}
	a.put(cpio.Symlink(p, target))
	return nil
}

// Len is the number of records.
func (a *Archive) Len() int { return len(a.recs) }

// WriteTo writes the zstd-compressed newc archive. Records are sorted by
// path (parents first), with fixed inode numbers, owner root and mtime
// a.Time, so equal inputs give equal bytes.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.recs))
	for n := range a.recs {
		names = append(names, n)
	}
	sort.Strings(names)
	cnt := &countWriter{w: w}
	enc, err := zstd.NewWriter(cnt, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return 0, fmt.Errorf("initramfs: zstd: %w", err)
	}
	cw := cpio.Newc.Writer(enc)
	for i, n := range names {
		r := a.recs[n]
		r.Ino = uint64(i + 1)
		r.UID, r.GID = 0, 0
		r.MTime = uint64(a.Time.Unix())
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		r.Dev, r.Major, r.Minor = 0, 0, 0
		if err := cw.WriteRecord(r); err != nil {
			enc.Close()
			return cnt.n, fmt.Errorf("initramfs: write %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		enc.Close()
		return cnt.n, fmt.Errorf("initramfs: trailer: %w", err)
	}
	if err := enc.Close(); err != nil {
		return cnt.n, fmt.Errorf("initramfs: compress: %w", err)
	}
	return cnt.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
