// Package fatfs writes and reads FAT32 filesystems, deterministically and
// in pure Go, for slate's EFI system partition.
//
// go-diskfs' FAT32 writer is not used: its images fail `fsck.vfat -n`
// ("Invalid '..' entry in the second slot", "Free cluster summary
// uninitialized") and its reader cannot list folders of images it wrote.
//
// Writing is builder-style, as in slate's ext4fs: New, then Mkdir and
// AddFile in any order, then WriteTo. The output depends only on the
// resulting tree and the Options, never on the call order: directory
// entries are sorted by name (byte order), directories are laid out first
// (root at cluster 2, then the others depth-first in name order), then file
// data, each file contiguous, in the same order. Every timestamp is
// Options.Time.
//
// Reading (Open) works on any FAT32 filesystem with 512..4096-byte sectors;
// FAT12/16 are refused. slate never edits a FAT image in place: the
// machine changes its ESP through the kernel's vfat mount.
//
// Layout of a written filesystem: 512-byte sectors; 32 reserved sectors
// (boot sector 0, FSInfo 1, backup boot sector 6, backup FSInfo 7); two
// FATs; media 0xF8; the data area starts on a cluster-size boundary (the
// FAT is padded to get there, as mkfs.fat does). The cluster size is the
// one Microsoft's FAT32 table (and mkfs.fat) picks for the size:
//
//	size <= 260 MiB   512 B clusters
//	size <= 8 GiB     4 KiB
//	size <= 16 GiB    8 KiB
//	size <= 32 GiB    16 KiB
//	larger            32 KiB
//
// FAT32 needs at least 65525 clusters (fewer and every FAT driver reads it
// as FAT16), so the smallest filesystem is about 32.6 MiB: 32 MiB exactly
// cannot be FAT32 with 512-byte sectors. The largest is 2 TiB (32-bit
// sector count).
package fatfs

import (
	"fmt"
	"time"
)

// Options describes the filesystem that a Builder writes.
type Options struct {
	// Size of the partition in bytes; the filesystem covers it, rounded
	// down to whole 512-byte sectors.
	Size int64
	// Label is the volume label, at most 11 characters, stored upper-case
	// (in the boot sector and as a root directory entry). Empty means
	// "NO NAME" and no label entry.
	Label string
	// VolumeID is the volume serial number, fixed for reproducible builds.
	VolumeID uint32
	// Time is every timestamp written. FAT stores 1980..2107 in local
	// time; the time is taken in its own location and clamped to that
	// range.
	Time time.Time
}

const (
	sectorSize      = 512
	reservedSectors = 32
	numFATs         = 2
	fsInfoSector    = 1
	backupBoot      = 6
	dirEntrySize    = 32
	// minClusters is the smallest cluster count of a FAT32 filesystem.
	minClusters = 65525
	// maxClusters keeps cluster numbers below the reserved values
	// (0x0FFFFFF7 bad cluster, 0x0FFFFFF8.. end of chain).
	maxClusters = 0x0ffffff5 - 2
	// maxDirEntries is FAT's limit of entries in one directory.
	maxDirEntries = 65536
	// maxFileSize is the largest FAT file (the size field is 32 bits).
	maxFileSize = 1<<32 - 1
)

// FAT entry values (FAT32 uses the low 28 bits).
const (
	fatMask  = 0x0fffffff
	fatEOC   = 0x0fffffff // end of chain as written
	fatBad   = 0x0ffffff7
	fatEOCLo = 0x0ffffff8 // anything from here up ends a chain
	fatMedia = 0x0ffffff8 // FAT[0]: media byte 0xF8 in the low byte
)

// Directory entry attributes.
const (
	attrReadOnly = 0x01
	attrHidden   = 0x02
	attrSystem   = 0x04
	attrVolumeID = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLFN      = attrReadOnly | attrHidden | attrSystem | attrVolumeID
)

// geometry is the layout of a FAT32 filesystem with 512-byte sectors.
type geometry struct {
	totalSectors uint32
	spc          uint32 // sectors per cluster
	fatSectors   uint32 // sectors per FAT
	clusters     uint32 // data clusters, numbered 2..clusters+1
}

func (g geometry) dataStart() uint32 { return reservedSectors + numFATs*g.fatSectors }

func (g geometry) clusterSize() int64 { return int64(g.spc) * sectorSize }

// sectorsPerCluster is Microsoft's FAT32 cluster-size table (fatgen103,
// DskTableFAT32), which mkfs.fat follows too.
func sectorsPerCluster(total uint32) uint32 {
	switch {
	case total <= 532480: // 260 MiB
		return 1
	case total <= 16777216: // 8 GiB
		return 8
	case total <= 33554432: // 16 GiB
		return 16
	case total <= 67108864: // 32 GiB
		return 32
	}
	return 64
}

// layout computes the geometry of a filesystem of size bytes.
func layout(size int64) (geometry, error) {
	if size < 0 || size/sectorSize > 0xffffffff {
		return geometry{}, fmt.Errorf("fatfs: size %d: FAT32 with 512-byte sectors holds at most 2 TiB", size)
	}
	total := uint32(size / sectorSize)
	g := geometry{totalSectors: total, spc: sectorsPerCluster(total)}
	if total < reservedSectors+numFATs+g.spc {
		return geometry{}, fmt.Errorf("fatfs: size %d is too small for FAT32 (at least %d clusters needed)", size, minClusters)
	}
	clustersFor := func(fat uint32) uint32 {
		used := uint64(reservedSectors) + numFATs*uint64(fat)
		if used >= uint64(total) {
			return 0
		}
		return (total - uint32(used)) / g.spc
	}
	fits := func(fat uint32) bool { return uint64(fat)*sectorSize/4 >= uint64(clustersFor(fat))+2 }
	// The smallest FAT that maps every cluster it leaves: a larger FAT
	// leaves fewer clusters, so fits is monotonic and a binary search
	// finds it.
	lo, hi := uint32(1), (total-reservedSectors)/numFATs
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	fat := lo
	// Pad the FAT so that the data area starts on a cluster boundary.
	for i := uint32(0); i < g.spc && (reservedSectors+numFATs*fat)%g.spc != 0; i++ {
		fat++
	}
	g.fatSectors = fat
	g.clusters = clustersFor(fat)
	if g.clusters < minClusters {
		return geometry{}, fmt.Errorf("fatfs: size %d is too small for FAT32: %d clusters of %d bytes, at least %d needed (about 32.6 MiB)",
			size, g.clusters, g.clusterSize(), minClusters)
	}
	if g.clusters > maxClusters {
		return geometry{}, fmt.Errorf("fatfs: size %d gives %d clusters, more than FAT32 can number", size, g.clusters)
	}
	return g, nil
}

// fatTime encodes t as FAT date, time and 10 ms fraction, clamped to the
// range FAT can store.
func fatTime(t time.Time) (date, tm uint16, tenth byte) {
	lo := time.Date(1980, 1, 1, 0, 0, 0, 0, t.Location())
	hi := time.Date(2107, 12, 31, 23, 59, 59, 990000000, t.Location())
	if t.Before(lo) {
		t = lo
	}
	if t.After(hi) {
		t = hi
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	tenth = byte(t.Second()%2*100 + t.Nanosecond()/10000000)
	return date, tm, tenth
}

// parseTime decodes a FAT date and time (in UTC; FAT has no zone). Invalid
// fields give the zero-ish values time.Date normalises them to.
func parseTime(date, tm uint16) time.Time {
	if date == 0 {
		return time.Time{}
	}
	return time.Date(1980+int(date>>9), time.Month(date>>5&0xf), int(date&0x1f),
		int(tm>>11), int(tm>>5&0x3f), int(tm&0x1f)*2, 0, time.UTC)
}
