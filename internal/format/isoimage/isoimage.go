// Package isoimage writes a UEFI-bootable live ISO around a FAT image of an
// EFI system partition: the same file boots from a CD/DVD (El Torito) and,
// written to a USB stick, from a disk (GPT).
//
// The image holds an ISO 9660 filesystem (level 1 names, no Rock Ridge or
// Joliet) with one folder, /SLATE, holding the El Torito boot catalog
// (BOOT.CAT) and the ESP image (EFIBOOT.IMG). The catalog has one entry:
// platform EFI, no emulation, pointing at EFIBOOT.IMG. The 32 KiB system
// area in front of the volume descriptors carries a protective MBR and a
// GPT (512-byte sectors) whose only partition, of type EFI System, covers
// exactly the bytes of EFIBOOT.IMG; the backup GPT sits in padding at the
// end of the image. Firmware reading the medium with 2048-byte blocks (an
// optical drive) finds no GPT at LBA 1 and uses El Torito; with 512-byte
// blocks (a disk) it finds the GPT first.
//
// Layout, in 2048-byte blocks: 0-15 system area, 16 primary volume
// descriptor, 17 El Torito boot record, 18 terminator, 19 L path table,
// 20 M path table, 21 root folder, 22 /SLATE, 23 boot catalog, zeros up to
// 1 MiB, the ESP image from 1 MiB (aligned as slate's disks are, for flash
// media), then zeros and the backup GPT. The ESP is the last file: El
// Torito may expose everything from its start to the end of the volume.
//
// The writer is this package's own rather than go-diskfs'
// filesystem/iso9660: that one stamps the volume descriptors and the boot
// catalog with time.Now() and every other record with the mtime of a copy
// of each file in a temporary workspace, so two runs a second apart
// differ; it also needs the whole ESP copied to disk first and writes no
// partition table. The subset needed here is small and fixed.
//
// Every timestamp is Options.Epoch, GUIDs derive from the volume ID, and
// every byte of the image is written, so equal inputs give equal images.
package isoimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/slateos/slate/partitions"
)

// Options describes the image that Write produces.
type Options struct {
	// VolumeID is the ISO 9660 volume identifier: 1 to 32 d-characters
	// (A-Z, 0-9, _). It also seeds the GPT disk and partition GUIDs.
	VolumeID string
	// ESP is a FAT filesystem image (the El Torito EFI boot image), with
	// the boot loader at /EFI/BOOT/BOOTX64.EFI.
	ESP io.ReaderAt
	// ESPSize is the size of ESP in bytes, a multiple of 512.
	ESPSize int64
	// Epoch is every timestamp in the image, stored in UTC to the second.
	// It must lie in 1900..2155, the range of ISO 9660 directory records.
	Epoch time.Time
}

const (
	blockSize  = 2048 // ISO 9660 logical block
	sectorSize = 512  // GPT sector, El Torito virtual sector

	systemAreaBlocks = 16
	pvdBlock         = 16
	bootRecordBlock  = 17
	terminatorBlock  = 18
	lPathBlock       = 19
	mPathBlock       = 20
	rootBlock        = 21
	slateBlock       = 22
	catalogBlock     = 23

	// espOffset is where the ESP image starts in the file.
	espOffset = 1 << 20
	espBlock  = espOffset / blockSize

	// gptTail is the backup GPT: 128 entries of 128 bytes, then the header.
	gptTail = 128*128 + sectorSize

	// maxESPSize keeps the image's size within a 32-bit ISO 9660 file
	// length (one extent) in whole 512-byte sectors.
	maxESPSize = 1<<32 - sectorSize

	// maxLoadSectors is the largest El Torito sector count.
	maxLoadSectors = 0xffff

	slateDir    = "SLATE"
	catalogName = "BOOT.CAT;1"
	espName     = "EFIBOOT.IMG;1"

	// Names of the GUIDs derived from the volume ID. They differ from the
	// names partitions.NewLayout uses, so an ISO and a disk built from the
	// same name never share a PARTUUID.
	diskGUIDName = "iso-disk"
	espGUIDName  = "iso-esp"
	espPartLabel = "ISO-ESP"
)

// ErrInvalid is wrapped by every error about Options.
var ErrInvalid = errors.New("invalid ISO options")

// Write writes the image to w from offset 0 and returns its size. If w has
// a Truncate(int64) error method (an *os.File), the file is cut to that
// size, so a longer old file leaves nothing behind.
func Write(w io.WriterAt, o Options) (int64, error) {
	if w == nil {
		return 0, fmt.Errorf("isoimage: nil writer")
	}
	if err := o.check(); err != nil {
		return 0, err
	}
	l := newLayout(o.ESPSize)

	head := make([]byte, espOffset)
	tail := make([]byte, l.size-l.espEnd)
	o.writeISO(head, l)
	if err := o.writeGPT(head, tail, l); err != nil {
		return 0, err
	}

	if err := writeFull(w, head, 0); err != nil {
		return 0, fmt.Errorf("isoimage: write system area and ISO 9660 metadata: %w", err)
	}
	if err := copyESP(w, o.ESP, o.ESPSize); err != nil {
		return 0, err
	}
	if err := writeFull(w, tail, l.espEnd); err != nil {
		return 0, fmt.Errorf("isoimage: write backup GPT: %w", err)
	}
	if t, ok := w.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(l.size); err != nil {
			return 0, fmt.Errorf("isoimage: truncate output to %d bytes: %w", l.size, err)
		}
	}
	return l.size, nil
}

func (o Options) check() error {
	if err := checkVolumeID(o.VolumeID); err != nil {
		return err
	}
	switch {
	case o.ESP == nil:
		return fmt.Errorf("isoimage: ESP is nil: %w", ErrInvalid)
	case o.ESPSize <= 0:
		return fmt.Errorf("isoimage: ESPSize %d: must be positive: %w", o.ESPSize, ErrInvalid)
	case o.ESPSize%sectorSize != 0:
		return fmt.Errorf("isoimage: ESPSize %d: must be a multiple of %d (a FAT image is whole sectors): %w", o.ESPSize, sectorSize, ErrInvalid)
	case o.ESPSize > maxESPSize:
		return fmt.Errorf("isoimage: ESPSize %d: larger than %d, the largest ISO 9660 file: %w", o.ESPSize, int64(maxESPSize), ErrInvalid)
	}
	if o.Epoch.IsZero() {
		return fmt.Errorf("isoimage: Epoch is not set: %w", ErrInvalid)
	}
	if y := o.Epoch.UTC().Year(); y < 1900 || y > 2155 {
		return fmt.Errorf("isoimage: Epoch %s: year must be 1900..2155 in UTC: %w", o.Epoch.UTC().Format(time.RFC3339), ErrInvalid)
	}
	// Fail before writing anything if the ESP is shorter than it claims.
	var b [1]byte
	if n, err := o.ESP.ReadAt(b[:], o.ESPSize-1); n != 1 {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("isoimage: ESP: cannot read byte %d of ESPSize %d: %w", o.ESPSize-1, o.ESPSize, err)
	}
	return nil
}

func checkVolumeID(id string) error {
	if id == "" || len(id) > 32 {
		return fmt.Errorf("isoimage: VolumeID %q: must be 1 to 32 characters: %w", id, ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		if !isDChar(id[i]) {
			return fmt.Errorf("isoimage: VolumeID %q: character %q at %d is not one of A-Z 0-9 _: %w", id, id[i], i, ErrInvalid)
		}
	}
	return nil
}

func isDChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// layout is where things go, in bytes.
type layout struct {
	espSize int64
	espEnd  int64 // end of the ESP bytes (sector-aligned, maybe not block-aligned)
	size    int64 // whole image, a multiple of blockSize
}

func newLayout(espSize int64) layout {
	l := layout{espSize: espSize, espEnd: espOffset + espSize}
	l.size = roundUp(l.espEnd+gptTail, blockSize)
	return l
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

func (l layout) blocks() uint32 { return uint32(l.size / blockSize) }

// loadSectors is the El Torito sector count of the boot entry.
//
// The count is 16 bits of 512-byte sectors, at most 32 MiB - 512, and the
// ESP is usually larger. EDK2 (MdeModulePkg/Universal/Disk/PartitionDxe/
// ElTorito.c: OVMF, and the many EDK2-based PC firmwares) turns the count
// of a no-emulation entry into a partition of count × 2048 bytes, and a
// count below 2 into a partition from the image's first block to the end
// of the volume (the primary volume descriptor's volume space size, or the
// medium if that is smaller). A clamped 0xFFFF would so expose 128 MiB and
// cut larger images short, while 0 always covers the whole image, which is
// the last file here. xorriso (1.5.4, checked with -report_el_torito) also
// writes 0 for an EFI image above 0xFFFF sectors, and Arch Linux's
// mkarchiso, whose efiboot.img carries kernel and initramfs, leaves the
// count to xorriso. Images that fit get their exact size, as the El Torito
// specification says.
func (l layout) loadSectors() uint16 {
	n := l.espSize / sectorSize
	if n > maxLoadSectors {
		return 0
	}
	return uint16(n)
}

// writeISO fills the volume descriptors, path tables, folders and boot
// catalog into head, the first espOffset bytes of the image.
func (o Options) writeISO(head []byte, l layout) {
	ts := recordTime(o.Epoch)
	blk := func(n int) []byte { return head[n*blockSize : (n+1)*blockSize] }

	root := blk(rootBlock)
	off := putRecord(root, 0, rootBlock, blockSize, true, []byte{0}, ts)
	off += putRecord(root, off, rootBlock, blockSize, true, []byte{1}, ts)
	putRecord(root, off, slateBlock, blockSize, true, []byte(slateDir), ts)

	// Identifiers in ISO 9660 order (byte order after padding, which for
	// these names is plain byte order).
	slate := blk(slateBlock)
	off = putRecord(slate, 0, slateBlock, blockSize, true, []byte{0}, ts)
	off += putRecord(slate, off, rootBlock, blockSize, true, []byte{1}, ts)
	off += putRecord(slate, off, catalogBlock, blockSize, false, []byte(catalogName), ts)
	putRecord(slate, off, espBlock, uint32(l.espSize), false, []byte(espName), ts)

	ptSize := putPathTable(blk(lPathBlock), binary.LittleEndian)
	putPathTable(blk(mPathBlock), binary.BigEndian)

	o.putPVD(blk(pvdBlock), l, uint32(ptSize), ts)
	putBootRecord(blk(bootRecordBlock))
	putTerminator(blk(terminatorBlock))
	putCatalog(blk(catalogBlock), l.loadSectors())
}

// putRecord writes a directory record at b[off:] and returns its length.
func putRecord(b []byte, off int, extent, size uint32, dir bool, id []byte, ts [7]byte) int {
	n := 33 + len(id)
	if n%2 == 1 {
		n++
	}
	r := b[off : off+n]
	r[0] = byte(n)
	both32(r[2:], extent)
	both32(r[10:], size)
	copy(r[18:25], ts[:])
	if dir {
		r[25] = 0x02
	}
	both16(r[28:], 1) // volume sequence number
	r[32] = byte(len(id))
	copy(r[33:], id)
	return n
}

// putPathTable writes the path table (root, then /SLATE) in byte order bo
// and returns its size.
func putPathTable(b []byte, bo binary.ByteOrder) int {
	off := 0
	add := func(id []byte, extent uint32, parent uint16) {
		b[off] = byte(len(id))
		bo.PutUint32(b[off+2:], extent)
		bo.PutUint16(b[off+6:], parent)
		copy(b[off+8:], id)
		off += 8 + len(id) + len(id)%2
	}
	add([]byte{0}, rootBlock, 1)
	add([]byte(slateDir), slateBlock, 1)
	return off
}

func putVDHeader(b []byte, typ byte) {
	b[0] = typ
	copy(b[1:6], "CD001")
	b[6] = 1
}

func (o Options) putPVD(b []byte, l layout, ptSize uint32, ts [7]byte) {
	putVDHeader(b, 1)
	padded(b[8:40], "") // system identifier
	padded(b[40:72], o.VolumeID)
	both32(b[80:], l.blocks()) // volume space size: the whole file
	both16(b[120:], 1)         // volume set size
	both16(b[124:], 1)         // volume sequence number
	both16(b[128:], blockSize)
	both32(b[132:], ptSize)
	binary.LittleEndian.PutUint32(b[140:], lPathBlock)
	binary.BigEndian.PutUint32(b[148:], mPathBlock)
	putRecord(b, 156, rootBlock, blockSize, true, []byte{0}, ts)
	padded(b[190:318], "")             // volume set identifier
	padded(b[318:446], "")             // publisher
	padded(b[446:574], "")             // data preparer
	padded(b[574:702], "SLATE")        // application
	padded(b[702:739], "")             // copyright file
	padded(b[739:776], "")             // abstract file
	padded(b[776:813], "")             // bibliographic file
	copy(b[813:830], decTime(o.Epoch)) // creation
	copy(b[830:847], decTime(o.Epoch)) // modification
	copy(b[847:864], unsetDecTime())   // expiration
	copy(b[864:881], unsetDecTime())   // effective
	b[881] = 1                         // file structure version
}

func putBootRecord(b []byte) {
	putVDHeader(b, 0)
	copy(b[7:39], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[71:], catalogBlock)
}

func putTerminator(b []byte) { putVDHeader(b, 255) }

// putCatalog writes the validation entry and the one default entry.
func putCatalog(b []byte, sectors uint16) {
	v := b[0:32]
	v[0] = 1
	v[1] = 0xef // platform: EFI
	copy(v[4:28], "SLATE")
	v[30], v[31] = 0x55, 0xaa
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(v[i:])
	}
	binary.LittleEndian.PutUint16(v[28:], -sum)

	e := b[32:64]
	e[0] = 0x88 // bootable
	e[1] = 0    // no emulation
	binary.LittleEndian.PutUint16(e[6:], sectors)
	binary.LittleEndian.PutUint32(e[8:], espBlock)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:], v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func padded(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

// recordTime is a directory record's 7-byte date: years since 1900,
// month, day, hour, minute, second, offset from GMT in 15 minutes.
func recordTime(t time.Time) [7]byte {
	t = t.UTC()
	return [7]byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// decTime is a volume descriptor's 17-byte date: "YYYYMMDDHHMMSScc" and
// the GMT offset.
func decTime(t time.Time) []byte {
	t = t.UTC()
	b := fmt.Appendf(nil, "%04d%02d%02d%02d%02d%02d00", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())
	return append(b, 0)
}

func unsetDecTime() []byte { return append([]byte("0000000000000000"), 0) }

// writeGPT puts the protective MBR and primary GPT into head and the
// backup GPT into tail, through go-diskfs' GPT writer (as slate's disks
// are written).
func (o Options) writeGPT(head, tail []byte, l layout) error {
	start := uint64(espOffset / sectorSize)
	t := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		GUID:               partitions.DeriveGUID(o.VolumeID, diskGUIDName),
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1,
			Start: start,
			End:   start + uint64(l.espSize/sectorSize) - 1,
			Size:  uint64(l.espSize),
			Type:  gpt.Type(partitions.TypeESP),
			Name:  espPartLabel,
			GUID:  partitions.DeriveGUID(o.VolumeID, espGUIDName),
		}},
	}
	m := &memImage{size: l.size, head: head, tail: tail, tailOff: l.espEnd}
	if err := t.Write(m, l.size); err != nil {
		return fmt.Errorf("isoimage: GPT: %w", err)
	}
	return nil
}

// copyESP copies the ESP image to its place in w.
func copyESP(w io.WriterAt, r io.ReaderAt, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		p := buf[:min(int64(len(buf)), size-off)]
		n, err := r.ReadAt(p, off)
		if n < len(p) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("isoimage: ESP: read at %d of ESPSize %d: %w", off+int64(n), size, err)
		}
		if err := writeFull(w, p, espOffset+off); err != nil {
			return fmt.Errorf("isoimage: write ESP image: %w", err)
		}
		off += int64(n)
	}
	return nil
}

func writeFull(w io.WriterAt, p []byte, off int64) error {
	n, err := w.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("at %d: %w", off+int64(n), err)
	}
	return nil
}
