package ext4fs

import (
	"encoding/binary"
	"time"
)

const (
	extentMagic    = 0xF30A
	maxExtentLen   = 32768 // longer lengths mark uninitialised extents
	inodeExtents   = 4     // extents (or index entries) in i_block
	flagExtents    = 0x80000
	fastSymlinkMax = 59 // targets up to 59 bytes live in i_block
)

// run is a contiguous range of blocks.
type run struct {
	start, len uint32
}

// extent is one leaf entry: logical block, length, physical start.
type extent struct {
	logical, len, start uint32
}

// extents splits n's data runs into extents of at most maxExtentLen.
func (n *node) extents() []extent {
	var out []extent
	var logical uint32
	for _, r := range n.data {
		for s, l := r.start, r.len; l > 0; {
			k := min(l, maxExtentLen)
			out = append(out, extent{logical, k, s})
			logical += k
			s += k
			l -= k
		}
	}
	return out
}

func putExtentHeader(b []byte, entries, maxEntries, depth int) {
	le := binary.LittleEndian
	le.PutUint16(b[0:], extentMagic)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(maxEntries))
	le.PutUint16(b[6:], uint16(depth))
}

func putExtent(b []byte, e extent) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], e.logical)
	le.PutUint16(b[4:], uint16(e.len))
	le.PutUint16(b[6:], 0) // start_hi: block numbers are 32-bit
	le.PutUint32(b[8:], e.start)
}

// leafCapacity is the number of extents in one extent tree leaf block.
func leafCapacity(bs int) int { return (bs - 12) / 12 }

// leafCount is the number of leaf blocks needed for n extents: none when
// they fit in the inode, else a depth-1 tree.
func leafCount(extents, bs int) int {
	if extents <= inodeExtents {
		return 0
	}
	c := leafCapacity(bs)
	return (extents + c - 1) / c
}

// encodeBlockMap fills i_block (60 bytes) with n's extent tree root.
func (n *node) encodeBlockMap(b []byte, bs int) {
	ext := n.extents()
	if len(n.leaves) == 0 {
		putExtentHeader(b, len(ext), inodeExtents, 0)
		for i, e := range ext {
			putExtent(b[12+12*i:], e)
		}
		return
	}
	putExtentHeader(b, len(n.leaves), inodeExtents, 1)
	c := leafCapacity(bs)
	le := binary.LittleEndian
	for i, leaf := range n.leaves {
		e := b[12+12*i:]
		le.PutUint32(e[0:], ext[i*c].logical) // ei_block
		le.PutUint32(e[4:], leaf)             // ei_leaf_lo
	}
}

// leafBlock encodes leaf block i of n's extent tree.
func (n *node) leafBlock(i, bs int) []byte {
	ext := n.extents()
	c := leafCapacity(bs)
	ext = ext[i*c : min(len(ext), (i+1)*c)]
	b := make([]byte, bs)
	putExtentHeader(b, len(ext), c, 0)
	for j, e := range ext {
		putExtent(b[12+12*j:], e)
	}
	return b
}

// usedBlocks is the number of blocks n owns, data and extent tree.
func (n *node) usedBlocks() uint64 {
	var t uint64
	for _, r := range n.data {
		t += uint64(r.len)
	}
	return t + uint64(len(n.leaves))
}

// modeType is the S_IF* part of i_mode and the directory entry file type.
func modeType(kind int) (uint16, uint8) {
	switch kind {
	case kindDir:
		return 0x4000, 2
	case kindFile:
		return 0x8000, 1
	case kindSymlink:
		return 0xA000, 7
	case kindChar:
		return 0x2000, 3
	case kindBlock:
		return 0x6000, 4
	case kindFifo:
		return 0x1000, 5
	case kindSocket:
		return 0xC000, 6
	}
	return 0, 0
}

// encodeInode writes n's 256-byte on-disk inode into b (which is zero).
func (n *node) encodeInode(b []byte, bs int, t time.Time) {
	le := binary.LittleEndian
	typ, _ := modeType(n.kind)
	le.PutUint16(b[0:], typ|n.perm)
	le.PutUint16(b[2:], uint16(n.uid))
	le.PutUint16(b[120:], uint16(n.uid>>16))
	le.PutUint16(b[24:], uint16(n.gid))
	le.PutUint16(b[122:], uint16(n.gid>>16))

	size := n.size
	links := n.nlink
	switch n.kind {
	case kindDir:
		size = int64(n.usedBlocks()) * int64(bs)
		links = 2 + n.nsub
		if links >= maxLinks {
			links = 1 // dir_nlink: the count is not tracked past the limit
		}
	case kindSymlink:
		size = int64(len(n.target))
	}
	le.PutUint32(b[4:], uint32(size))
	le.PutUint32(b[108:], uint32(size>>32))
	le.PutUint16(b[26:], uint16(links))

	// i_blocks counts 512-byte sectors, the attribute block included;
	// huge_file allows 48 bits.
	sectors := n.usedBlocks() * uint64(bs/512)
	if n.xb != nil {
		sectors += uint64(bs / 512)
		le.PutUint32(b[104:], n.xb.blk) // i_file_acl_lo
	}
	le.PutUint32(b[28:], uint32(sectors))
	le.PutUint16(b[116:], uint16(sectors>>32))

	switch n.kind {
	case kindDir, kindFile:
		le.PutUint32(b[32:], flagExtents)
		n.encodeBlockMap(b[40:100], bs)
	case kindSymlink:
		if len(n.target) <= fastSymlinkMax {
			copy(b[40:100], n.target)
		} else {
			le.PutUint32(b[32:], flagExtents)
			n.encodeBlockMap(b[40:100], bs)
		}
	case kindChar, kindBlock:
		// Same encoding as the kernel: the old 8:8 form when it fits,
		// else the new form in i_block[1].
		if n.major < 256 && n.minor < 256 {
			le.PutUint32(b[40:], n.major<<8|n.minor)
		} else {
			le.PutUint32(b[44:], n.minor&0xff|n.major<<8|(n.minor&^0xff)<<12)
		}
	}

	sec, extra := timeFields(t)
	for _, off := range []int{8, 12, 16} { // atime, ctime, mtime
		le.PutUint32(b[off:], sec)
	}
	le.PutUint16(b[128:], extraIsize)
	for _, off := range []int{132, 136, 140, 148} { // ctime, mtime, atime, crtime extra
		le.PutUint32(b[off:], extra)
	}
	le.PutUint32(b[144:], sec) // crtime
	n.encodeIbody(b)
}
