package builder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// ext4Reader reads one file of a filesystem written by ext4fs (extents,
// linear directories, 32-byte group descriptors), which is what slot roots
// are: enough for slate inspect to read a slot's image.json. The disk is
// anybody's: every number is checked before it is used, and reads are
// bounded.
type ext4Reader struct {
	r         io.ReaderAt
	start     int64 // of the filesystem on the disk
	size      int64
	bs        int64
	inodeSize int64
	perGroup  uint32
	inodes    uint32
	groups    uint32
	descBlock int64
	reads     int // left before the reader gives up (a hostile extent tree)
}

const (
	ext4Magic      = 0xef53
	extentMagic    = 0xf30a
	extentsFlag    = 0x80000
	maxExtentDepth = 5
	maxDirBytes    = 64 << 20
	rootInode      = 2
	maxReads       = 100000
)

var errNotSlateFS = errors.New("not an ext4 filesystem written by slate")

func openExt4(r io.ReaderAt, start, size int64) (*ext4Reader, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, start+1024); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[56:]) != ext4Magic {
		return nil, errNoFS
	}
	logBS := binary.LittleEndian.Uint32(sb[24:])
	if logBS > 6 {
		return nil, fmt.Errorf("%w: block size 2^%d KiB", errNotSlateFS, logBS)
	}
	x := &ext4Reader{r: r, start: start, bs: 1024 << logBS, reads: maxReads}
	x.inodes = binary.LittleEndian.Uint32(sb[0:])
	blocks := int64(binary.LittleEndian.Uint32(sb[4:]))
	firstData := int64(binary.LittleEndian.Uint32(sb[20:]))
	perBlocks := int64(binary.LittleEndian.Uint32(sb[32:]))
	x.perGroup = binary.LittleEndian.Uint32(sb[40:])
	x.inodeSize = int64(binary.LittleEndian.Uint16(sb[88:]))
	x.size = blocks * x.bs
	if blocks == 0 || x.size > size || perBlocks == 0 || x.perGroup == 0 || x.inodeSize < 128 || x.inodeSize > x.bs {
		return nil, fmt.Errorf("%w: its superblock does not fit its partition", errNotSlateFS)
	}
	if incompat := binary.LittleEndian.Uint32(sb[96:]); incompat&0x80 != 0 { // 64bit: 64-byte descriptors
		return nil, fmt.Errorf("%w: 64bit feature", errNotSlateFS)
	}
	x.groups = uint32((blocks - firstData + perBlocks - 1) / perBlocks)
	x.descBlock = firstData + 1
	return x, nil
}

// read reads n bytes at byte offset off of the filesystem.
func (x *ext4Reader) read(off, n int64) ([]byte, error) {
	x.reads--
	if x.reads < 0 {
		return nil, fmt.Errorf("%w: too many reads for one file", errNotSlateFS)
	}
	if off < 0 || n < 0 || off+n > x.size {
		return nil, fmt.Errorf("%w: a reference beyond its end", errNotSlateFS)
	}
	b := make([]byte, n)
	if _, err := x.r.ReadAt(b, x.start+off); err != nil {
		return nil, err
	}
	return b, nil
}

type ext4Inode struct {
	mode  uint16
	size  int64
	flags uint32
	block []byte // i_block, 60 bytes
}

func (x *ext4Reader) inode(n uint32) (*ext4Inode, error) {
	if n == 0 || n > x.inodes {
		return nil, fmt.Errorf("%w: inode %d", errNotSlateFS, n)
	}
	g := (n - 1) / x.perGroup
	if g >= x.groups {
		return nil, fmt.Errorf("%w: inode %d", errNotSlateFS, n)
	}
	desc, err := x.read(x.descBlock*x.bs+int64(g)*32, 32)
	if err != nil {
		return nil, err
	}
	table := int64(binary.LittleEndian.Uint32(desc[8:]))
	raw, err := x.read(table*x.bs+int64((n-1)%x.perGroup)*x.inodeSize, 128)
	if err != nil {
		return nil, err
	}
	return &ext4Inode{
		mode:  binary.LittleEndian.Uint16(raw[0:]),
		size:  int64(binary.LittleEndian.Uint32(raw[4:])) | int64(binary.LittleEndian.Uint32(raw[108:]))<<32,
		flags: binary.LittleEndian.Uint32(raw[32:]),
		block: raw[40:100],
	}, nil
}

// content reads an inode's first limit bytes (its whole size when
// smaller) through its extent tree.
func (x *ext4Reader) content(in *ext4Inode, limit int64) ([]byte, error) {
	if in.flags&extentsFlag == 0 {
		return nil, fmt.Errorf("%w: a file without extents", errNotSlateFS)
	}
	size := min(in.size, limit)
	if size < 0 {
		return nil, fmt.Errorf("%w: negative size", errNotSlateFS)
	}
	out := make([]byte, size)
	if err := x.extents(in.block, out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func (x *ext4Reader) extents(node []byte, out []byte, depth int) error {
	if len(node) < 12 || binary.LittleEndian.Uint16(node[0:]) != extentMagic || depth > maxExtentDepth {
		return fmt.Errorf("%w: bad extent tree", errNotSlateFS)
	}
	entries := int(binary.LittleEndian.Uint16(node[2:]))
	level := binary.LittleEndian.Uint16(node[6:])
	if 12+entries*12 > len(node) {
		return fmt.Errorf("%w: bad extent tree", errNotSlateFS)
	}
	for i := range entries {
		e := node[12+i*12:]
		if level > 0 {
			leaf := int64(binary.LittleEndian.Uint32(e[4:])) | int64(binary.LittleEndian.Uint16(e[8:]))<<32
			child, err := x.read(leaf*x.bs, x.bs)
			if err != nil {
				return err
			}
			if err := x.extents(child, out, depth+1); err != nil {
				return err
			}
			continue
		}
		logical := int64(binary.LittleEndian.Uint32(e[0:]))
		n := int64(binary.LittleEndian.Uint16(e[4:]))
		if n > 32768 { // an uninitialized extent reads as zeros
			continue
		}
		phys := int64(binary.LittleEndian.Uint16(e[6:]))<<32 | int64(binary.LittleEndian.Uint32(e[8:]))
		from := logical * x.bs
		if from >= int64(len(out)) {
			continue
		}
		want := min(n*x.bs, int64(len(out))-from)
		b, err := x.read(phys*x.bs, want)
		if err != nil {
			return err
		}
		copy(out[from:], b)
	}
	return nil
}

// lookup follows an absolute path (no symbolic links) to its inode.
func (x *ext4Reader) lookup(p string) (*ext4Inode, error) {
	in, err := x.inode(rootInode)
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if in.mode&0xf000 != 0x4000 {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		dir, err := x.content(in, maxDirBytes)
		if err != nil {
			return nil, err
		}
		next := uint32(0)
		for off := 0; off+8 <= len(dir); {
			ino := binary.LittleEndian.Uint32(dir[off:])
			rec := int(binary.LittleEndian.Uint16(dir[off+4:]))
			nl := int(dir[off+6])
			if rec < 8 || off+rec > len(dir) || 8+nl > rec {
				return nil, fmt.Errorf("%w: bad directory entry", errNotSlateFS)
			}
			if ino != 0 && string(dir[off+8:off+8+nl]) == name {
				next = ino
				break
			}
			off += rec
		}
		if next == 0 {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		if in, err = x.inode(next); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// readFile reads a regular file of at most limit bytes.
func (x *ext4Reader) readFile(p string, limit int64) ([]byte, error) {
	in, err := x.lookup(p)
	if err != nil {
		return nil, err
	}
	if in.mode&0xf000 != 0x8000 {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if in.size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	return x.content(in, limit)
}
