package ext4fs

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

const (
	inodeSize        = 256
	extraIsize       = 32 // covers the nanosecond, crtime and version fields
	firstIno         = 11 // inodes 1-10 are reserved
	rootIno          = 2
	journalIno       = 8
	lostFoundIno     = 11
	maxLinks         = 65000 // EXT4_LINK_MAX
	descSize         = 32    // group descriptor without the 64bit feature
	minJournalBlocks = 1024  // JBD2_MIN_JOURNAL_BLOCKS

	// Feature flags written to the superblock.
	compatHasJournal = 0x4
	compatExtAttr    = 0x8 // lets a writable mount store xattrs in the inode
	compatDirIndex   = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40

	roCompatSparseSuper = 0x1
	roCompatLargeFile   = 0x2
	roCompatHugeFile    = 0x8
	roCompatGdtCsum     = 0x10 // uninit_bg
	roCompatDirNlink    = 0x20
	roCompatExtraIsize  = 0x40

	// Group descriptor flags.
	bgInodeUninit = 0x1
	bgBlockUninit = 0x2
	bgInodeZeroed = 0x4
)

// geometry is the fixed layout of the filesystem: groups, where their
// metadata lives and how many inodes each holds.
type geometry struct {
	bs        int
	firstData uint32 // 1 with 1 KiB blocks (block 0 is the boot block), else 0
	blocks    uint32
	bpg       uint32 // blocks per group
	groups    uint32
	ipg       uint32 // inodes per group
	itBlocks  uint32 // inode table blocks per group
	gdtBlocks uint32
}

// newGeometry lays out a filesystem of size bytes with at least inodes
// inodes.
func newGeometry(size int64, bs int, inodes uint64) (*geometry, error) {
	g := &geometry{bs: bs, bpg: uint32(8 * bs)}
	if bs == 1024 {
		g.firstData = 1
	}
	nb := size / int64(bs)
	if nb > math.MaxUint32 {
		return nil, fmt.Errorf("ext4fs: size %d needs more than 2^32 blocks of %d bytes", size, bs)
	}
	g.blocks = uint32(nb)
	ipb := uint64(bs / inodeSize)
	align := ipb // whole inode table blocks...
	if align%8 != 0 {
		align = 8 // ...and whole bytes of inode bitmap
	}
	for {
		if g.blocks <= g.firstData {
			return nil, fmt.Errorf("ext4fs: size %d is too small", size)
		}
		g.groups = uint32((uint64(g.blocks-g.firstData) + uint64(g.bpg) - 1) / uint64(g.bpg))
		ipg := (inodes + uint64(g.groups) - 1) / uint64(g.groups)
		ipg = max(align, (ipg+align-1)/align*align)
		if ipg > uint64(8*bs) {
			return nil, fmt.Errorf("ext4fs: %d inodes do not fit in %d block groups of a %d-byte filesystem", inodes, g.groups, size)
		}
		g.ipg = uint32(ipg)
		g.itBlocks = uint32(ipg * inodeSize / uint64(bs))
		g.gdtBlocks = (g.groups*descSize + uint32(bs) - 1) / uint32(bs)
		if uint64(g.ipg)*uint64(g.groups) > math.MaxUint32 {
			return nil, fmt.Errorf("ext4fs: %d inodes per group in %d groups exceed 2^32 inodes", g.ipg, g.groups)
		}
		if g.overhead(0)+50 > g.bpg {
			// Without meta_bg every group with a superblock copy
			// holds the whole descriptor table.
			return nil, fmt.Errorf("ext4fs: size %d is too large for %d-byte blocks", size, bs)
		}
		last := g.groups - 1
		// Like mke2fs, drop a last group that would hold (almost) nothing
		// but its own metadata.
		if g.groupBlocks(last) < g.overhead(last)+50 {
			if g.groups == 1 {
				return nil, fmt.Errorf("ext4fs: size %d is too small for %d inodes", size, inodes)
			}
			g.blocks = g.groupStart(last)
			continue
		}
		return g, nil
	}
}

func (g *geometry) groupStart(i uint32) uint32 { return g.firstData + i*g.bpg }

func (g *geometry) groupBlocks(i uint32) uint32 {
	return min(g.bpg, g.blocks-g.groupStart(i))
}

// hasSuper reports whether group i holds a superblock and GDT copy
// (sparse_super: groups 0, 1 and powers of 3, 5 and 7).
func (g *geometry) hasSuper(i uint32) bool {
	if i <= 1 {
		return true
	}
	for _, b := range []uint32{3, 5, 7} {
		n := b
		for n < i {
			n *= b
		}
		if n == i {
			return true
		}
	}
	return false
}

// superBlocks is the number of blocks of superblock and GDT at the start of
// group i.
func (g *geometry) superBlocks(i uint32) uint32 {
	if g.hasSuper(i) {
		return 1 + g.gdtBlocks
	}
	return 0
}

func (g *geometry) overhead(i uint32) uint32 { return g.superBlocks(i) + 2 + g.itBlocks }

func (g *geometry) blockBitmap(i uint32) uint32 { return g.groupStart(i) + g.superBlocks(i) }
func (g *geometry) inodeBitmap(i uint32) uint32 { return g.blockBitmap(i) + 1 }
func (g *geometry) inodeTable(i uint32) uint32  { return g.blockBitmap(i) + 2 }
func (g *geometry) dataStart(i uint32) uint32   { return g.inodeTable(i) + g.itBlocks }
func (g *geometry) groupEnd(i uint32) uint32    { return g.groupStart(i) + g.groupBlocks(i) }

// defaultJournalBlocks is mke2fs' journal size for a filesystem of blocks
// blocks (ext2fs_default_journal_size), 0 if it is too small for one.
func defaultJournalBlocks(blocks int64) int {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// groupState is what a group descriptor records beyond the fixed layout.
type groupState struct {
	freeBlocks uint32
	freeInodes uint32
	usedDirs   uint32
	flags      uint16
	itUnused   uint32
}

// crc16Table is the table of the reflected CRC-16 with polynomial 0x8005
// (crc16 in Linux and e2fsprogs), which uninit_bg uses for group
// descriptor checksums.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(crc uint16, b []byte) uint16 {
	for _, x := range b {
		crc = crc>>8 ^ crc16Table[byte(crc)^x]
	}
	return crc
}

// buildGDT encodes all group descriptors, padded to whole blocks.
func (g *geometry) buildGDT(states []groupState, uuid [16]byte) []byte {
	b := make([]byte, int(g.gdtBlocks)*g.bs)
	le := binary.LittleEndian
	for i, s := range states {
		gi := uint32(i)
		d := b[i*descSize : (i+1)*descSize]
		le.PutUint32(d[0:], g.blockBitmap(gi))
		le.PutUint32(d[4:], g.inodeBitmap(gi))
		le.PutUint32(d[8:], g.inodeTable(gi))
		le.PutUint16(d[12:], uint16(s.freeBlocks))
		le.PutUint16(d[14:], uint16(s.freeInodes))
		le.PutUint16(d[16:], uint16(s.usedDirs))
		le.PutUint16(d[18:], s.flags)
		le.PutUint16(d[28:], uint16(s.itUnused))
		// ext2fs_group_desc_csum: crc16 over the fs UUID, the group
		// number and the descriptor up to the checksum field.
		var num [4]byte
		le.PutUint32(num[:], gi)
		crc := crc16(0xFFFF, uuid[:])
		crc = crc16(crc, num[:])
		crc = crc16(crc, d[:30])
		le.PutUint16(d[30:], crc)
	}
	return b
}

// timeFields splits t into the 32-bit seconds and the extra field of an
// inode timestamp (two epoch bits above the signed 32-bit range, 30 bits of
// nanoseconds). Times outside the representable range are clamped.
func timeFields(t time.Time) (uint32, uint32) {
	if t.IsZero() {
		return 0, 0
	}
	sec, nsec := t.Unix(), uint32(t.Nanosecond())
	const lo, hi = math.MinInt32, math.MinInt32 + 1<<34 - 1
	if sec < lo {
		sec, nsec = lo, 0
	}
	if sec > hi {
		sec, nsec = hi, 999999999
	}
	low := uint32(sec)
	epoch := uint32((sec-int64(int32(low)))>>32) & 3
	return low, nsec<<2 | epoch
}

// superTime gives the low 32 bits and the high byte of a superblock time,
// which is unsigned.
func superTime(t time.Time) (uint32, uint8) {
	if t.IsZero() || t.Unix() < 0 {
		return 0, 0
	}
	s := uint64(t.Unix())
	return uint32(s), uint8(s >> 32)
}

// superblock encodes the 1024-byte superblock for the copy in group grp.
func (p *plan) superblock(grp uint32, freeBlocks uint64) []byte {
	g, o := p.g, p.opts
	b := make([]byte, 1024)
	le := binary.LittleEndian
	le.PutUint32(b[0:], g.ipg*g.groups)
	le.PutUint32(b[4:], g.blocks)
	le.PutUint32(b[8:], 0) // no reserved blocks: roots are read-only, STATE belongs to the system anyway
	le.PutUint32(b[12:], uint32(freeBlocks))
	le.PutUint32(b[16:], g.ipg*g.groups-p.lastIno)
	le.PutUint32(b[20:], g.firstData)
	logBS := uint32(0)
	for 1024<<logBS < g.bs {
		logBS++
	}
	le.PutUint32(b[24:], logBS) // s_log_block_size
	le.PutUint32(b[28:], logBS) // s_log_cluster_size
	le.PutUint32(b[32:], g.bpg)
	le.PutUint32(b[36:], g.bpg) // s_clusters_per_group
	le.PutUint32(b[40:], g.ipg)
	wt, wtHi := superTime(o.Time)
	le.PutUint32(b[48:], wt)       // s_wtime
	le.PutUint16(b[54:], 0xFFFF)   // s_max_mnt_count -1: no forced checks
	le.PutUint16(b[56:], 0xEF53)   // s_magic
	le.PutUint16(b[58:], 1)        // s_state: clean
	le.PutUint16(b[60:], 1)        // s_errors: continue
	le.PutUint32(b[64:], wt)       // s_lastcheck
	le.PutUint32(b[76:], 1)        // s_rev_level: dynamic
	le.PutUint32(b[84:], firstIno) // s_first_ino
	le.PutUint16(b[88:], inodeSize)
	le.PutUint16(b[90:], uint16(grp)) // s_block_group_nr
	compat := uint32(compatExtAttr | compatDirIndex)
	if p.journal != nil {
		compat |= compatHasJournal
	}
	le.PutUint32(b[92:], compat)
	le.PutUint32(b[96:], incompatFiletype|incompatExtents)
	le.PutUint32(b[100:], roCompatSparseSuper|roCompatLargeFile|roCompatHugeFile|
		roCompatGdtCsum|roCompatDirNlink|roCompatExtraIsize)
	copy(b[104:120], o.UUID[:])
	copy(b[120:136], o.Label)
	copy(b[236:252], o.HashSeed[:])
	b[252] = 1                        // s_def_hash_version: half_md4, as mke2fs
	le.PutUint32(b[256:], 0x4|0x8)    // s_default_mount_opts: user_xattr, acl
	le.PutUint32(b[264:], wt)         // s_mkfs_time
	le.PutUint16(b[348:], extraIsize) // s_min_extra_isize
	le.PutUint16(b[350:], extraIsize) // s_want_extra_isize
	le.PutUint32(b[352:], 1)          // s_flags: signed directory hash, as mke2fs on x86
	if p.journal != nil {
		le.PutUint32(b[224:], journalIno)
		b[253] = 1 // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
		var ib [60]byte
		p.journal.encodeBlockMap(ib[:], g.bs)
		copy(b[268:328], ib[:])
		sz := p.journal.size
		le.PutUint32(b[328:], uint32(sz>>32))
		le.PutUint32(b[332:], uint32(sz))
	}
	b[0x274] = wtHi // s_wtime_hi
	b[0x276] = wtHi // s_mkfs_time_hi
	b[0x277] = wtHi // s_lastcheck_hi
	return b
}

// journalSuperblock encodes the block at the start of a clean, empty jbd2
// v2 journal (big-endian, as jbd2 is).
func (p *plan) journalSuperblock() []byte {
	b := make([]byte, p.g.bs)
	be := binary.BigEndian
	be.PutUint32(b[0:], 0xC03B3998) // h_magic
	be.PutUint32(b[4:], 4)          // h_blocktype: superblock v2
	be.PutUint32(b[12:], uint32(p.g.bs))
	be.PutUint32(b[16:], uint32(p.opts.JournalBlocks)) // s_maxlen
	be.PutUint32(b[20:], 1)                            // s_first
	be.PutUint32(b[24:], 1)                            // s_sequence
	be.PutUint32(b[28:], 0)                            // s_start: clean, nothing to replay
	copy(b[48:64], p.opts.UUID[:])                     // s_uuid
	be.PutUint32(b[64:], 1)                            // s_nr_users
	return b
}
