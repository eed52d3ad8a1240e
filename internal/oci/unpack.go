package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Bounds of a flattening that do not depend on the image's size.
const (
	maxPathLen     = 4096
	maxNameLen     = 255
	maxXattrs      = 64
	maxXattrValue  = 64 << 10
	defaultMaxSize = 8 << 30
	defaultEntries = 1 << 20
	// maxHops bounds symlinks followed when reading the account files.
	maxHops = 40
	// maxAccountFile bounds /etc/passwd and /etc/group.
	maxAccountFile = 4 << 20
)

// UnpackOptions bound a flattening.
type UnpackOptions struct {
	// StageDir is where regular files' contents are kept until the Tree
	// has read them: one unlinked file (it needs room for every layer's
	// files), released by Rootfs.Close. Empty is os.TempDir().
	StageDir string
	// MaxBytes bounds the bytes of regular files over all layers (a file
	// a later layer replaces counts too); 0 is 8 GiB.
	MaxBytes int64
	// MaxEntries bounds the tar entries over all layers; 0 is 1<<20.
	MaxEntries int
}

type kind uint8

const (
	kindDir kind = iota
	kindReg
	kindSymlink
	kindFifo
)

// inode is one file of the image; hard links are several nodes sharing
// one inode.
type inode struct {
	kind     kind
	perm     fs.FileMode // permission, setuid, setgid and sticky bits
	uid, gid uint32
	size     int64 // regular files: bytes at off in the stage file
	off      int64
	target   string // symlinks
	xattrs   map[string][]byte
}

type node struct {
	ino  *inode
	kids map[string]*node // directories only
}

// Rootfs is a flattened image: its tree in memory (metadata only, bounded
// by MaxEntries), regular files' contents in one staged file on disk.
type Rootfs struct {
	img   *Image
	root  *node
	stage *os.File
	// Files and Bytes count the regular files (an inode once, whatever
	// its links) of the unpacked image and their bytes (what the image
	// adds to the root; AddMountPoints does not change them).
	Files int
	Bytes int64
}

// Unpack applies the image's layers in order, as overlayfs and Docker do:
// a layer's whiteouts (".wh.NAME") remove NAME from the layers below it,
// an opaque marker (".wh..wh..opq") empties its directory of what the
// layers below put there, and a later entry replaces an earlier one (a
// directory keeps its contents). Each layer's compressed digest is checked
// again on the way, and its uncompressed stream against the config's
// diff_id. Entries are refused, naming the layer and the file, for a path
// with "..", longer than 4096 bytes or a name longer than 255, a hard link
// to something outside the image or to a directory, a path under a
// symlink or a file, a device node outside /dev (those under /dev are
// dropped: runc mounts its own /dev), an unknown entry type, or too many
// entries or bytes.
func (img *Image) Unpack(opts UnpackOptions) (*Rootfs, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxSize
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = defaultEntries
	}
	stage, err := os.CreateTemp(opts.StageDir, "slate-oci-stage-*")
	if err != nil {
		return nil, fmt.Errorf("image %s: stage: %w", img.Ref, err)
	}
	// Unlinked at once: the open file keeps the data, and a build that
	// dies leaves nothing behind.
	if err := os.Remove(stage.Name()); err != nil {
		stage.Close()
		return nil, fmt.Errorf("image %s: stage: %w", img.Ref, err)
	}
	r, u := newRootfs(img, stage, opts)
	for i, l := range img.layers {
		if err := u.layer(l, img.diffIDs[i]); err != nil {
			r.Close()
			return nil, fmt.Errorf("image %s: layer %d (%s): %w", img.Ref, i, l.digest, err)
		}
	}
	if err := u.w.Flush(); err != nil {
		r.Close()
		return nil, fmt.Errorf("image %s: stage: %w", img.Ref, err)
	}
	r.count(r.root, map[*inode]bool{})
	return r, nil
}

func newRootfs(img *Image, stage *os.File, opts UnpackOptions) (*Rootfs, *unpacker) {
	r := &Rootfs{img: img, stage: stage, root: &node{ino: &inode{kind: kindDir, perm: 0o755}, kids: map[string]*node{}}}
	// Small files are many: one write per file would be a syscall each.
	return r, &unpacker{r: r, opts: opts, w: bufio.NewWriterSize(stage, 1<<20), buf: make([]byte, 64<<10)}
}

func (r *Rootfs) count(n *node, seen map[*inode]bool) {
	for _, k := range n.kids {
		if k.ino.kind == kindReg && !seen[k.ino] {
			seen[k.ino] = true
			r.Files++
			r.Bytes += k.ino.size
		}
		if k.ino.kind == kindDir {
			r.count(k, seen)
		}
	}
}

type unpacker struct {
	r       *Rootfs
	w       *bufio.Writer // the stage file
	buf     []byte
	opts    UnpackOptions
	entries int
	staged  int64
	// unpacked counts the uncompressed bytes of all layers.
	unpacked int64
}

type opKind uint8

const (
	opAdd opKind = iota
	opWhiteout
	opOpaque
)

// op is one change a layer makes. Paths are kept joined ("a/b", "" for
// the root) and split when applied: a layer's ops are held until its end,
// and a string costs its bytes only (bounded by nameBudget).
type op struct {
	kind    opKind
	path    string
	ino     *inode
	link    string // hard links: the existing path
	hasLink bool
}

// nameBudget bounds the bytes of the paths of one layer's ops, per entry
// allowed.
const nameBudget = 128

func splitJoined(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// limitedReader fails once more than n bytes have been read.
type limitedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, l.err
	}
	return n, err
}

func (u *unpacker) layer(l layer, diffID string) error {
	p, err := u.r.img.cache.blobPath(l.digest)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	return u.stream(f, l.digest, diffID)
}

// stream applies one layer read from blob, checking its digest and its
// uncompressed stream's (diffID).
func (u *unpacker) stream(blob io.Reader, digest, diffID string) error {
	compressed := newHashingReader(blob)
	br := bufio.NewReaderSize(compressed, 64<<10)
	magic, _ := br.Peek(4)
	var stream io.Reader = br
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		stream = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		stream = zr
	}
	// The uncompressed stream is bounded: regular files by MaxBytes, the
	// rest (headers, padding, data of entries that carry none) by a
	// generous allowance per entry.
	budget := u.opts.MaxBytes + int64(u.opts.MaxEntries)*4096 + 1<<20 - u.unpacked
	lim := &limitedReader{r: stream, n: budget, err: fmt.Errorf("unpacks to more than %d bytes", u.opts.MaxBytes)}
	diff := newHashingReader(lim)
	tr := tar.NewReader(diff)
	var ops []op
	var names int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		u.entries++
		if u.entries > u.opts.MaxEntries {
			return fmt.Errorf("more than %d entries in the image", u.opts.MaxEntries)
		}
		o, err := u.entry(hdr, tr)
		if err != nil {
			return fmt.Errorf("%q: %w", hdr.Name, err)
		}
		if o != nil {
			names += int64(len(o.path) + len(o.link))
			if names > nameBudget*int64(u.opts.MaxEntries) {
				return fmt.Errorf("paths longer than %d bytes in all (%d per entry allowed)", nameBudget*int64(u.opts.MaxEntries), nameBudget)
			}
			ops = append(ops, *o)
		}
	}
	// What follows the end-of-archive blocks is part of the diff_id too.
	if _, err := io.Copy(io.Discard, diff); err != nil {
		return fmt.Errorf("after the tar: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("after the stream: %w", err)
	}
	u.unpacked += diff.n
	if got := compressed.digest(); got != digest {
		return fmt.Errorf("the cached blob now has digest %s (remove it from the cache and pull again)", got)
	}
	if got := diff.digest(); got != diffID {
		return fmt.Errorf("uncompressed digest %s, the config's diff_id is %s", got, diffID)
	}
	return u.apply(ops)
}

// splitName turns a layer's entry name into path components from the
// image's root ("./a/b", "/a/b", "a/b/" are all [a b]).
func splitName(name string) ([]string, error) {
	if len(name) > maxPathLen {
		return nil, fmt.Errorf("path longer than %d bytes", maxPathLen)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, errors.New("NUL in the path")
	}
	var out []string
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, errors.New(`".." in the path`)
		}
		if len(c) > maxNameLen {
			return nil, fmt.Errorf("a name longer than %d bytes", maxNameLen)
		}
		out = append(out, c)
	}
	return out, nil
}

func fileMode(m int64) fs.FileMode {
	perm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		perm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		perm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		perm |= fs.ModeSticky
	}
	return perm
}

func ownerID(v int, what string) (uint32, error) {
	if v < 0 || int64(v) > 1<<32-1 {
		return 0, fmt.Errorf("%s %d out of range", what, v)
	}
	return uint32(v), nil
}

// entry reads one tar entry into an operation (nil: nothing to do).
func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) (*op, error) {
	path, err := splitName(hdr.Name)
	if err != nil {
		return nil, err
	}
	if len(path) > 0 {
		base := path[len(path)-1]
		if rest, ok := strings.CutPrefix(base, ".wh."); ok {
			switch {
			case rest == ".wh..opq":
				return &op{kind: opOpaque, path: strings.Join(path[:len(path)-1], "/")}, nil
			case strings.HasPrefix(rest, ".wh."):
				// aufs' own bookkeeping (.wh..wh.plnk, .wh..wh.aufs).
				return nil, nil
			case rest == "" || rest == "." || rest == "..":
				return nil, errors.New("a whiteout of no name")
			}
			return &op{kind: opWhiteout, path: strings.Join(append(path[:len(path)-1:len(path)-1], rest), "/")}, nil
		}
	}
	uid, err := ownerID(hdr.Uid, "uid")
	if err != nil {
		return nil, err
	}
	gid, err := ownerID(hdr.Gid, "gid")
	if err != nil {
		return nil, err
	}
	ino := &inode{perm: fileMode(hdr.Mode), uid: uid, gid: gid}
	if err := xattrs(hdr, ino); err != nil {
		return nil, err
	}
	o := &op{kind: opAdd, path: strings.Join(path, "/"), ino: ino}
	switch hdr.Typeflag {
	case tar.TypeDir:
		ino.kind = kindDir
	case tar.TypeReg: // archive/tar reports the old TypeRegA as TypeReg
		ino.kind = kindReg
		if hdr.Size < 0 {
			return nil, errors.New("negative size")
		}
		if u.staged+hdr.Size > u.opts.MaxBytes {
			return nil, fmt.Errorf("the image's files are larger than %d bytes", u.opts.MaxBytes)
		}
		ino.off, ino.size = u.staged, hdr.Size
		// Through the buffer: bufio.Writer's ReadFrom would hand the copy
		// to the file's, unbuffered, with a new buffer per file.
		n, err := io.CopyBuffer(struct{ io.Writer }{u.w}, tr, u.buf)
		if err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
		if n != hdr.Size {
			return nil, fmt.Errorf("%d bytes of data, the header says %d", n, hdr.Size)
		}
		u.staged += n
	case tar.TypeSymlink:
		ino.kind = kindSymlink
		if hdr.Linkname == "" || len(hdr.Linkname) > maxPathLen || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return nil, errors.New("symlink target empty, too long or with NUL")
		}
		ino.target = hdr.Linkname
	case tar.TypeLink:
		if len(path) == 0 {
			return nil, errors.New("the root is not a directory (a hard link)")
		}
		link, err := splitName(hdr.Linkname)
		if err != nil {
			return nil, fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
		}
		if len(link) == 0 {
			return nil, errors.New("hard link to the root")
		}
		o.link, o.hasLink, o.ino = strings.Join(link, "/"), true, nil
	case tar.TypeFifo:
		ino.kind = kindFifo
	case tar.TypeChar, tar.TypeBlock:
		if len(path) > 0 && path[0] == "dev" {
			return nil, nil
		}
		return nil, errors.New("a device node outside /dev (slate does not put device nodes into a container's root)")
	case tar.TypeXGlobalHeader:
		return nil, nil
	default:
		return nil, fmt.Errorf("entry type %q is not supported", hdr.Typeflag)
	}
	if len(path) == 0 && (o.ino == nil || ino.kind != kindDir) {
		return nil, errors.New("the root is not a directory")
	}
	return o, nil
}

// xattrs records the PAX SCHILY.xattr.* records of hdr.
func xattrs(hdr *tar.Header, ino *inode) error {
	keys := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > maxXattrs {
		return fmt.Errorf("more than %d extended attributes", maxXattrs)
	}
	slices.Sort(keys)
	ino.xattrs = map[string][]byte{}
	for _, k := range keys {
		name := strings.TrimPrefix(k, "SCHILY.xattr.")
		v := hdr.PAXRecords[k]
		if name == "" || len(name) > maxNameLen || strings.IndexByte(name, 0) >= 0 {
			return fmt.Errorf("extended attribute name %q is invalid", name)
		}
		if len(v) > maxXattrValue {
			return fmt.Errorf("extended attribute %s larger than %d bytes", name, maxXattrValue)
		}
		ino.xattrs[name] = []byte(v)
	}
	return nil
}

// apply changes the tree by one layer: first its whiteouts and opaque
// markers (they hide what the layers below have, wherever they are in the
// layer's tar), then its entries in order.
func (u *unpacker) apply(ops []op) error {
	for _, o := range ops {
		path := splitJoined(o.path)
		switch o.kind {
		case opWhiteout:
			if parent := u.r.find(path[:len(path)-1]); parent != nil && parent.ino.kind == kindDir {
				delete(parent.kids, path[len(path)-1])
			}
		case opOpaque:
			if d := u.r.find(path); d != nil && d.ino.kind == kindDir {
				d.kids = map[string]*node{}
			}
		}
	}
	for _, o := range ops {
		if o.kind != opAdd {
			continue
		}
		if err := u.add(o); err != nil {
			return fmt.Errorf("%q: %w", "/"+o.path, err)
		}
	}
	return nil
}

// find returns the node at path without following symlinks (nil: none).
func (r *Rootfs) find(path []string) *node {
	n := r.root
	for _, c := range path {
		if n.ino.kind != kindDir {
			return nil
		}
		if n = n.kids[c]; n == nil {
			return nil
		}
	}
	return n
}

func (u *unpacker) add(o op) error {
	path := splitJoined(o.path)
	if len(path) == 0 {
		// The root's own entry: its attributes (entry refuses a root that
		// is not a directory, a hard link included).
		if o.ino == nil || o.ino.kind != kindDir {
			return errors.New("the root is not a directory")
		}
		*u.r.root.ino = *o.ino
		return nil
	}
	parent := u.r.root
	for i, c := range path[:len(path)-1] {
		k := parent.kids[c]
		switch {
		case k == nil:
			// A layer may omit a parent's entry: it is a plain directory
			// (and counts as an entry: the tree stays bounded).
			if u.entries++; u.entries > u.opts.MaxEntries {
				return fmt.Errorf("more than %d entries in the image", u.opts.MaxEntries)
			}
			k = &node{ino: &inode{kind: kindDir, perm: 0o755}, kids: map[string]*node{}}
			parent.kids[c] = k
		case k.ino.kind == kindSymlink:
			return fmt.Errorf("/%s is a symlink: a layer may not write through it", strings.Join(path[:i+1], "/"))
		case k.ino.kind != kindDir:
			return fmt.Errorf("/%s is not a directory", strings.Join(path[:i+1], "/"))
		}
		parent = k
	}
	name := path[len(path)-1]
	ino := o.ino
	if o.hasLink {
		t := u.r.find(splitJoined(o.link))
		if t == nil {
			return fmt.Errorf("hard link to %q, which is not in the image", "/"+o.link)
		}
		if t.ino.kind == kindDir {
			return fmt.Errorf("hard link to the directory %q", "/"+o.link)
		}
		if o.link == o.path {
			return nil
		}
		parent.kids[name] = &node{ino: t.ino}
		return nil
	}
	if old := parent.kids[name]; old != nil && old.ino.kind == kindDir && ino.kind == kindDir {
		// A directory again: new attributes, same contents.
		old.ino = ino
		return nil
	}
	n := &node{ino: ino}
	if ino.kind == kindDir {
		n.kids = map[string]*node{}
	}
	parent.kids[name] = n
	return nil
}

// AddMountPoints makes sure each mount point exists with the right kind:
// a missing one (and its missing parents) is created as root's (a
// directory 0755, a file 0644 and empty), and one of the wrong kind (a
// symlink too: runc would follow it, and cannot create its target in a
// read-only root) is replaced. A parent that is there but not a directory
// (a symlink such as /var/run -> /run, or a file) is an error naming the
// mount point and that path: replacing it would drop what the image put
// there.
func (r *Rootfs) AddMountPoints(mps []MountPoint) error {
	for _, mp := range mps {
		path, err := splitName(mp.Path)
		if err != nil || len(path) == 0 || !strings.HasPrefix(mp.Path, "/") {
			return fmt.Errorf("mount point %q: not an absolute path below /", mp.Path)
		}
		parent := r.root
		for i, c := range path[:len(path)-1] {
			k := parent.kids[c]
			switch {
			case k == nil:
				k = &node{ino: &inode{kind: kindDir, perm: 0o755}, kids: map[string]*node{}}
				parent.kids[c] = k
			case k.ino.kind == kindSymlink:
				return fmt.Errorf("mount point %s: /%s is a symlink (to %s) in the image, not a directory", mp.Path, strings.Join(path[:i+1], "/"), k.ino.target)
			case k.ino.kind != kindDir:
				return fmt.Errorf("mount point %s: /%s is not a directory in the image", mp.Path, strings.Join(path[:i+1], "/"))
			}
			parent = k
		}
		name := path[len(path)-1]
		k := parent.kids[name]
		switch {
		case mp.Dir && (k == nil || k.ino.kind != kindDir):
			parent.kids[name] = &node{ino: &inode{kind: kindDir, perm: 0o755}, kids: map[string]*node{}}
		case !mp.Dir && (k == nil || k.ino.kind != kindReg):
			parent.kids[name] = &node{ino: &inode{kind: kindReg, perm: 0o644}}
		}
	}
	return nil
}

// WriteTo emits the tree to t: directories before their contents, names
// in byte order, each entry's extended attributes right after it, hard
// links last (each to the first path of its inode in that order). The
// same layers give the same calls.
func (r *Rootfs) WriteTo(t Tree) error {
	w := &treeWriter{t: t, r: r, first: map[*inode]string{}}
	if err := w.dir("/", r.root); err != nil {
		return err
	}
	for _, l := range w.links {
		if err := t.Link(l[0], l[1]); err != nil {
			return fmt.Errorf("%s: %w", l[0], err)
		}
	}
	return nil
}

type treeWriter struct {
	t     Tree
	r     *Rootfs
	first map[*inode]string
	links [][2]string
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func (w *treeWriter) dir(p string, n *node) error {
	if err := w.t.Mkdir(p, n.ino.perm, n.ino.uid, n.ino.gid); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := w.xattrs(p, n.ino); err != nil {
		return err
	}
	names := make([]string, 0, len(n.kids))
	for name := range n.kids {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		k := n.kids[name]
		kp := join(p, name)
		if k.ino.kind == kindDir {
			if err := w.dir(kp, k); err != nil {
				return err
			}
			continue
		}
		if first, ok := w.first[k.ino]; ok {
			w.links = append(w.links, [2]string{kp, first})
			continue
		}
		w.first[k.ino] = kp
		if err := w.leaf(kp, k.ino); err != nil {
			return fmt.Errorf("%s: %w", kp, err)
		}
		if err := w.xattrs(kp, k.ino); err != nil {
			return err
		}
	}
	return nil
}

func (w *treeWriter) leaf(p string, ino *inode) error {
	switch ino.kind {
	case kindReg:
		return w.t.AddFile(p, ino.perm, ino.uid, ino.gid, ino.size, w.r.opener(ino))
	case kindSymlink:
		return w.t.Symlink(p, ino.target, ino.uid, ino.gid)
	case kindFifo:
		return w.t.Mknod(p, fs.ModeNamedPipe|ino.perm, 0, 0, ino.uid, ino.gid)
	}
	return fmt.Errorf("inode kind %d", ino.kind)
}

func (w *treeWriter) xattrs(p string, ino *inode) error {
	names := make([]string, 0, len(ino.xattrs))
	for k := range ino.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if err := w.t.SetXattr(p, k, ino.xattrs[k]); err != nil {
			return fmt.Errorf("%s: extended attribute %s: %w", p, k, err)
		}
	}
	return nil
}

type sectionCloser struct{ *io.SectionReader }

func (sectionCloser) Close() error { return nil }

// opener reads a file's content from the stage file (shared; ReadAt is
// safe for concurrent use).
func (r *Rootfs) opener(ino *inode) func() (io.ReadCloser, error) {
	off, size := ino.off, ino.size
	return func() (io.ReadCloser, error) {
		if r.stage == nil {
			return nil, errors.New("the flattened image was closed")
		}
		return sectionCloser{io.NewSectionReader(r.stage, off, size)}, nil
	}
}

// Close releases the staged file contents (the file was unlinked when
// Unpack created it); the Tree must have read them.
func (r *Rootfs) Close() error {
	if r.stage == nil {
		return nil
	}
	err := r.stage.Close()
	r.stage = nil
	return err
}

// readFile returns the content of the regular file at p in the image,
// following symlinks inside the image (nil, nil: no such file).
func (r *Rootfs) readFile(p string, limit int64) ([]byte, error) {
	n, err := r.resolve(p)
	if err != nil || n == nil {
		return nil, err
	}
	if n.ino.kind != kindReg {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if n.ino.size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	if r.stage == nil {
		return nil, errors.New("the flattened image was closed")
	}
	b := make([]byte, n.ino.size)
	if _, err := r.stage.ReadAt(b, n.ino.off); err != nil {
		return nil, fmt.Errorf("%s: stage: %w", p, err)
	}
	return b, nil
}

// resolve finds p following symlinks as the kernel would with the image's
// root as "/" (nil, nil: nothing there).
func (r *Rootfs) resolve(p string) (*node, error) {
	todo, err := splitName(p)
	if err != nil {
		return nil, err
	}
	var stack []*node // the directories walked, root excluded
	cur := r.root
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			cur = r.root
			if len(stack) > 0 {
				cur = stack[len(stack)-1]
			}
			continue
		}
		if cur.ino.kind != kindDir {
			return nil, nil
		}
		k := cur.kids[c]
		if k == nil {
			return nil, nil
		}
		if k.ino.kind == kindSymlink {
			if hops++; hops > maxHops {
				return nil, fmt.Errorf("%s: too many symlinks", p)
			}
			t := k.ino.target
			var parts []string
			for s := range strings.SplitSeq(t, "/") {
				if s != "" && s != "." {
					parts = append(parts, s)
				}
			}
			if strings.HasPrefix(t, "/") {
				stack, cur = nil, r.root
			}
			todo = append(parts, todo...)
			continue
		}
		stack = append(stack, k)
		cur = k
	}
	return cur, nil
}
