// Package ext4fs writes ext4 filesystems deterministically, without cgo and
// without mke2fs.
//
// slate uses it twice: the builder creates each slot's read-only root
// filesystem from a file tree (byte-identical output for identical input,
// file data streamed from its source at write time, never the whole image in
// memory), and slate's init formats the empty writable STATE partition on
// first boot (only the metadata a fresh filesystem needs is written, so a
// multi-GiB partition is formatted in well under a second plus the journal).
//
// go-diskfs' ext4 writer is not used because it is not deterministic (random
// htree hash seed, time.Now in the superblock and inodes), has no hard links
// or device nodes, and is slow.
//
// The on-disk format is deliberately plain: 256-byte inodes, extents, linear
// directories, 32-byte group descriptors with uninit_bg checksums. There is
// no metadata_csum (uninit_bg gives lazy group initialisation without it),
// no 64bit (32-bit block numbers reach 16 TiB with 4 KiB blocks), no flex_bg
// (one group's metadata at its start is simpler and fast enough), and no
// resize_inode (slot roots are never resized, STATE is formatted at its final
// size after the partition has grown).
//
// Extended attributes (SetXattr: security.capability, SELinux labels,
// trusted.*, user.*, POSIX ACLs) live in the inode when they fit and in one
// attribute block otherwise, shared between inodes with the same set; see
// xattr.go.
//
// Usage: New, then Mkdir/AddFile/Symlink/Link/Mknod/SetXattr in any order
// (the output does not depend on the call order, only on the resulting
// tree), then WriteTo. Paths are "/"-separated and taken from the root; symlinks in them
// are not followed. An FS is not safe for concurrent use.
package ext4fs

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// Options describes the filesystem to create.
type Options struct {
	// Size of the filesystem in bytes, rounded down to BlockSize. A last
	// block group too small to be useful is dropped, as mke2fs does.
	Size int64
	// BlockSize is 1024, 2048 or 4096 (the default).
	BlockSize int
	// UUID is the filesystem UUID (s_uuid).
	UUID [16]byte
	// HashSeed is the directory hash seed (s_hash_seed), used by the kernel
	// when it turns a large directory into an htree on a writable mount.
	HashSeed [16]byte
	// Label is the volume name, at most 16 bytes.
	Label string
	// Time is used for every timestamp, in the superblock and in all
	// inodes. The zero value means the Unix epoch.
	Time time.Time
	// InodeRatio is the number of bytes per inode (default 16384).
	InodeRatio int
	// MinInodes is the smallest number of inodes the filesystem gets. The
	// count also grows by itself to hold the content.
	MinInodes int
	// JournalBlocks is the size of the internal journal in blocks: 0 means
	// no journal, a negative value picks the size mke2fs would pick for the
	// filesystem size. A journal has at least 1024 blocks.
	JournalBlocks int
}

// Stats describes the filesystem that WriteTo writes.
type Stats struct {
	BlockSize     int
	Blocks        uint64 // blocks in the filesystem
	FreeBlocks    uint64
	Inodes        uint64 // inodes in the filesystem
	FreeInodes    uint64
	Groups        int
	JournalBlocks int
	DataBytes     int64 // bytes of regular file content
}

// inode kinds.
const (
	kindDir = iota + 1
	kindFile
	kindSymlink
	kindChar
	kindBlock
	kindFifo
	kindSocket
)

// node is one inode of the tree; hard links are several directory entries
// naming the same node.
type node struct {
	kind     int
	perm     uint16 // permission and setuid/setgid/sticky bits
	uid, gid uint32
	nlink    int // directory entries naming a non-directory
	path     string

	// regular files
	size int64
	open func() (io.ReadCloser, error)
	// symlinks
	target string
	// devices
	major, minor uint32
	// directories
	children  map[string]*node // looked up only; output order comes from names
	minBlocks uint32

	// extended attributes, sorted as in a block, and where they go
	xattrs []*xattr
	ibody  []*xattr
	xblock []*xattr

	// filled in by plan
	ino    uint32
	names  []string // sorted children names
	nsub   int      // subdirectories
	data   []run    // data blocks in logical order
	leaves []uint32 // extent tree leaf blocks, if the extents do not fit in the inode
	xb     *xblock  // attribute block, if xblock is not empty
}

// FS is a filesystem being assembled in memory (metadata only; file data is
// read when WriteTo runs).
type FS struct {
	opts Options
	bs   int
	root *node
	lpf  *node
	all  []*node
}

// New checks opts and returns an empty filesystem holding only / and
// /lost+found.
func New(opts Options) (*FS, error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = 4096
	}
	switch opts.BlockSize {
	case 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("ext4fs: block size %d: want 1024, 2048 or 4096", opts.BlockSize)
	}
	if opts.Size <= 0 {
		return nil, fmt.Errorf("ext4fs: size %d: must be positive", opts.Size)
	}
	if len(opts.Label) > 16 {
		return nil, fmt.Errorf("ext4fs: label %q is %d bytes, at most 16 allowed", opts.Label, len(opts.Label))
	}
	if opts.InodeRatio == 0 {
		opts.InodeRatio = 16384
	}
	if opts.InodeRatio < 1024 {
		return nil, fmt.Errorf("ext4fs: inode ratio %d: at least 1024 bytes per inode", opts.InodeRatio)
	}
	if opts.MinInodes < 0 {
		return nil, fmt.Errorf("ext4fs: negative MinInodes %d", opts.MinInodes)
	}
	if opts.JournalBlocks < 0 {
		opts.JournalBlocks = defaultJournalBlocks(opts.Size / int64(opts.BlockSize))
		if opts.JournalBlocks == 0 {
			return nil, fmt.Errorf("ext4fs: size %d is too small for a journal", opts.Size)
		}
	}
	if opts.JournalBlocks > 0 && opts.JournalBlocks < minJournalBlocks {
		return nil, fmt.Errorf("ext4fs: journal of %d blocks: at least %d needed", opts.JournalBlocks, minJournalBlocks)
	}
	f := &FS{opts: opts, bs: opts.BlockSize}
	f.root = f.newNode(kindDir, 0o755, 0, 0, "/")
	f.lpf = f.newNode(kindDir, 0o700, 0, 0, "/lost+found")
	// mke2fs gives lost+found 16 KiB (at least two blocks) so that e2fsck
	// can reconnect files without allocating blocks.
	f.lpf.minBlocks = uint32(max(2, 16384/opts.BlockSize))
	f.root.children["lost+found"] = f.lpf
	return f, nil
}

func (f *FS) newNode(kind int, perm uint16, uid, gid uint32, p string) *node {
	n := &node{kind: kind, perm: perm, uid: uid, gid: gid, nlink: 1, path: p}
	if kind == kindDir {
		n.children = map[string]*node{}
	}
	f.all = append(f.all, n)
	return n
}

// splitPath turns "/a/b" (or "a/b") into its components. ".." is refused
// rather than resolved so that a bad source tree cannot escape a directory.
func splitPath(p string) ([]string, error) {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return nil, fmt.Errorf("ext4fs: path %q: \"..\" not allowed", p)
		case len(c) > 255:
			return nil, fmt.Errorf("ext4fs: path %q: name longer than 255 bytes", p)
		case strings.IndexByte(c, 0) >= 0:
			return nil, fmt.Errorf("ext4fs: path %q: NUL byte in name", p)
		}
		parts = append(parts, c)
	}
	return parts, nil
}

// parent returns the directory that holds p and the last component of p.
func (f *FS) parent(p string) (*node, string, error) {
	parts, err := splitPath(p)
	if err != nil {
		return nil, "", err
	}
	if len(parts) == 0 {
		return nil, "", fmt.Errorf("ext4fs: %q: the root directory exists already", p)
	}
	dir := f.root
	for i, c := range parts[:len(parts)-1] {
		next, ok := dir.children[c]
		if !ok {
			return nil, "", fmt.Errorf("ext4fs: %q: parent directory /%s does not exist", p, strings.Join(parts[:i+1], "/"))
		}
		if next.kind != kindDir {
			return nil, "", fmt.Errorf("ext4fs: %q: /%s is not a directory", p, strings.Join(parts[:i+1], "/"))
		}
		dir = next
	}
	name := parts[len(parts)-1]
	if _, ok := dir.children[name]; ok {
		return nil, "", fmt.Errorf("ext4fs: %q: %w", p, fs.ErrExist)
	}
	return dir, name, nil
}

// permBits maps the permission and special bits of an fs.FileMode to the
// low 12 bits of i_mode.
func permBits(m fs.FileMode) uint16 {
	b := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// Mkdir creates the directory p and any missing parents (with the same
// mode and owner). If p is an existing directory (including "/"), its mode
// and owner are set to perm, uid and gid, so a tree walked parents-first
// ends with every directory's own attributes.
func (f *FS) Mkdir(p string, perm fs.FileMode, uid, gid uint32) error {
	if perm.Type() != 0 && perm.Type() != fs.ModeDir {
		return fmt.Errorf("ext4fs: mkdir %q: mode %v is not a directory mode", p, perm)
	}
	parts, err := splitPath(p)
	if err != nil {
		return err
	}
	dir := f.root
	for i, c := range parts {
		next, ok := dir.children[c]
		if !ok {
			next = f.newNode(kindDir, permBits(perm), uid, gid, "/"+strings.Join(parts[:i+1], "/"))
			dir.children[c] = next
		} else if next.kind != kindDir {
			return fmt.Errorf("ext4fs: mkdir %q: /%s exists and is not a directory", p, strings.Join(parts[:i+1], "/"))
		}
		dir = next
	}
	dir.perm, dir.uid, dir.gid = permBits(perm), uid, gid
	return nil
}

// AddFile adds a regular file of size bytes. open is called once during
// WriteTo; the reader must deliver exactly size bytes. open may be nil for
// an empty file.
func (f *FS) AddFile(p string, perm fs.FileMode, uid, gid uint32, size int64, open func() (io.ReadCloser, error)) error {
	if perm.Type() != 0 {
		return fmt.Errorf("ext4fs: add %q: mode %v is not a regular file mode", p, perm)
	}
	if size < 0 {
		return fmt.Errorf("ext4fs: add %q: negative size %d", p, size)
	}
	if size > 0 && open == nil {
		return fmt.Errorf("ext4fs: add %q: %d bytes but no source", p, size)
	}
	dir, name, err := f.parent(p)
	if err != nil {
		return err
	}
	n := f.newNode(kindFile, permBits(perm), uid, gid, cleanPath(p))
	n.size, n.open = size, open
	dir.children[name] = n
	return nil
}

// Symlink creates a symbolic link at p pointing to target. Targets shorter
// than 60 bytes are stored in the inode, longer ones in a data block.
func (f *FS) Symlink(p, target string, uid, gid uint32) error {
	if target == "" {
		return fmt.Errorf("ext4fs: symlink %q: empty target", p)
	}
	if len(target) >= f.bs || len(target) >= 4096 {
		return fmt.Errorf("ext4fs: symlink %q: target of %d bytes is too long", p, len(target))
	}
	if strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("ext4fs: symlink %q: NUL byte in target", p)
	}
	dir, name, err := f.parent(p)
	if err != nil {
		return err
	}
	n := f.newNode(kindSymlink, 0o777, uid, gid, cleanPath(p))
	n.target = target
	dir.children[name] = n
	return nil
}

// Link creates a hard link p to the existing non-directory existing (a
// symlink is linked itself, not followed).
func (f *FS) Link(p, existing string) error {
	parts, err := splitPath(existing)
	if err != nil {
		return err
	}
	target := f.root
	for _, c := range parts {
		if target.kind != kindDir {
			target = nil
			break
		}
		target = target.children[c]
		if target == nil {
			break
		}
	}
	if target == nil {
		return fmt.Errorf("ext4fs: link %q to %q: %w", p, existing, fs.ErrNotExist)
	}
	if target.kind == kindDir {
		return fmt.Errorf("ext4fs: link %q to %q: cannot hard link a directory", p, existing)
	}
	if target.nlink >= maxLinks {
		return fmt.Errorf("ext4fs: link %q to %q: too many links", p, existing)
	}
	dir, name, err := f.parent(p)
	if err != nil {
		return err
	}
	target.nlink++
	dir.children[name] = target
	return nil
}

// Mknod creates a device node, named pipe or socket. mode carries the type
// (fs.ModeDevice, with fs.ModeCharDevice for a character device;
// fs.ModeNamedPipe; fs.ModeSocket) and the permission bits. major and minor
// are ignored for pipes and sockets.
func (f *FS) Mknod(p string, mode fs.FileMode, major, minor uint32, uid, gid uint32) error {
	var kind int
	switch t := mode.Type(); {
	case t == fs.ModeDevice|fs.ModeCharDevice:
		kind = kindChar
	case t == fs.ModeDevice:
		kind = kindBlock
	case t == fs.ModeNamedPipe:
		kind = kindFifo
	case t == fs.ModeSocket:
		kind = kindSocket
	default:
		return fmt.Errorf("ext4fs: mknod %q: mode %v is not a device, pipe or socket", p, mode)
	}
	if kind == kindChar || kind == kindBlock {
		// Linux's dev_t has 12 bits of major and 20 bits of minor.
		if major >= 1<<12 || minor >= 1<<20 {
			return fmt.Errorf("ext4fs: mknod %q: device %d:%d out of range", p, major, minor)
		}
	} else {
		major, minor = 0, 0
	}
	dir, name, err := f.parent(p)
	if err != nil {
		return err
	}
	n := f.newNode(kind, permBits(mode), uid, gid, cleanPath(p))
	n.major, n.minor = major, minor
	dir.children[name] = n
	return nil
}

func cleanPath(p string) string {
	parts, _ := splitPath(p)
	return "/" + strings.Join(parts, "/")
}

// Stats lays the filesystem out (as WriteTo would) and describes it. It
// fails, naming the path, if the content does not fit.
func (f *FS) Stats() (Stats, error) {
	p, err := f.plan()
	if err != nil {
		return Stats{}, err
	}
	return p.stats(), nil
}

// Entry describes one path of the tree being assembled, as Lookup finds it.
type Entry struct {
	// Mode has the type bits (fs.ModeDir, fs.ModeSymlink, ...) and the
	// permission, setuid, setgid and sticky bits.
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64  // regular files
	Target   string // symbolic links
}

// find returns the node p names (symlinks are not followed); op names the
// operation in the error.
func (f *FS) find(op, p string) (*node, error) {
	parts, err := splitPath(p)
	if err != nil {
		return nil, err
	}
	n := f.root
	for i, c := range parts {
		next, ok := n.children[c]
		if !ok {
			return nil, fmt.Errorf("ext4fs: %s %q: /%s: %w", op, p, strings.Join(parts[:i+1], "/"), fs.ErrNotExist)
		}
		n = next
	}
	return n, nil
}

// Lookup returns what p holds in the tree so far (symlinks on the way are
// not followed), so that callers can check what they added.
func (f *FS) Lookup(p string) (Entry, error) {
	n, err := f.find("lookup", p)
	if err != nil {
		return Entry{}, err
	}
	m := fs.FileMode(n.perm & 0o777)
	if n.perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.kind {
	case kindDir:
		m |= fs.ModeDir
	case kindSymlink:
		m |= fs.ModeSymlink
	case kindChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case kindBlock:
		m |= fs.ModeDevice
	case kindFifo:
		m |= fs.ModeNamedPipe
	case kindSocket:
		m |= fs.ModeSocket
	}
	return Entry{Mode: m, UID: n.uid, GID: n.gid, Size: n.size, Target: n.target}, nil
}
