package partitions

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"

	"github.com/google/uuid"
)

// Bounds on what a GPT header may claim, checked before anything it
// claims is read: a disk is outside input (a USB stick, a crafted image),
// and init, the updater and inspect all read every disk's table.
const (
	// MaxGPTEntriesBytes bounds the partition entry array (the UEFI
	// default is 128 entries of 128 bytes, 16 KiB).
	MaxGPTEntriesBytes = 1 << 20
	minGPTEntrySize    = 128
	gptHeaderMin       = 92
)

var gptSignature = []byte("EFI PART")

// ErrNoGPT is returned for a disk with no GPT header at either end: not
// a damaged table, no table (an MBR disk, a blank one).
var ErrNoGPT = errors.New("no GPT")

// GPTCheck is what reading a GPT found amiss but could read past.
type GPTCheck struct {
	// UsedBackup: the primary table was damaged and the backup at the
	// end of the disk was read instead.
	UsedBackup bool
	// Grown: the disk is larger than its table says (an image written to
	// a bigger disk, before init's first boot grows STATE). Not in
	// Warnings: init puts it right itself.
	Grown    bool
	Warnings []string
}

func (c *GPTCheck) warn(format string, args ...any) {
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...))
}

var errNoSignature = errors.New("no GPT signature")

// gptHeader is the part of a GPT header slate uses.
type gptHeader struct {
	myLBA, altLBA         uint64
	firstUsable, lastUsab uint64
	diskGUID              string
	entriesLBA            uint64
	count, entrySize      uint32
	entriesCRC            uint32
}

// ParseGPT reads the GPT of a disk of size bytes, of SectorSize sectors,
// and checks it as firmware does: the header's signature and CRC, that the
// entry array is of sane size (entries of a multiple of 128 bytes, at most
// MaxGPTEntriesBytes in all) and lies within the disk, the array's CRC,
// and the backup header. A damaged primary table is read from the backup
// (said in the check); a damaged backup, a backup not at the end of the
// disk and partitions that run past the end of the disk are warnings. It
// reads at most 2 headers and 2 entry arrays, whatever the disk claims.
func ParseGPT(r io.ReaderAt, size int64) (Layout, GPTCheck, error) {
	var c GPTCheck
	if size < 3*SectorSize {
		return Layout{}, c, fmt.Errorf("disk of %d bytes is too small for a GPT", size)
	}
	lastLBA := uint64(size/SectorSize) - 1
	prim, parts, perr := readGPTAt(r, size, 1)
	if perr == nil {
		// The backup is checked, not used: the primary is good.
		switch {
		case prim.altLBA > lastLBA:
			c.warn("the backup GPT header should be at sector %d, past the end of the disk (sector %d): the disk is smaller than its table says (truncated?)", prim.altLBA, lastLBA)
		case prim.altLBA != lastLBA:
			c.Grown = true
			if prim.altLBA > 1 {
				if b, _, err := readGPTAt(r, size, prim.altLBA); err != nil {
					c.warn("the backup GPT is damaged: %v", err)
				} else if b.entriesCRC != prim.entriesCRC {
					c.warn("the backup GPT's partition entries differ from the primary's")
				}
			}
		default:
			if b, _, err := readGPTAt(r, size, lastLBA); err != nil {
				c.warn("the backup GPT is damaged: %v", err)
			} else if b.entriesCRC != prim.entriesCRC {
				c.warn("the backup GPT's partition entries differ from the primary's")
			}
		}
	} else {
		var berr error
		prim, parts, berr = readGPTAt(r, size, lastLBA)
		if errors.Is(perr, errNoSignature) && errors.Is(berr, errNoSignature) {
			return Layout{}, c, ErrNoGPT
		}
		if berr != nil {
			return Layout{}, c, fmt.Errorf("primary GPT: %w; backup GPT at sector %d: %v", perr, lastLBA, berr) //nolint:errorlint // the primary's error is the one callers test; the backup's is context
		}
		c.UsedBackup = true
		c.warn("the primary GPT is damaged (%v): the backup GPT at the end of the disk was read", perr)
	}
	l := Layout{Size: size, GUID: prim.diskGUID}
	for _, p := range parts {
		if p.End() > size {
			c.warn("partition %d (%s) runs past the end of the disk: it ends at byte %d of %d", p.Num, p.Label, p.End(), size)
		}
		l.Parts = append(l.Parts, p)
	}
	return l, c, nil
}

// readGPTAt reads and checks the header at lba and its entry array.
func readGPTAt(r io.ReaderAt, size int64, lba uint64) (gptHeader, []Part, error) {
	sectors := uint64(size / SectorSize)
	b := make([]byte, SectorSize)
	if err := readFull(r, b, int64(lba)*SectorSize); err != nil {
		return gptHeader{}, nil, fmt.Errorf("read header: %w", err)
	}
	h, err := parseGPTHeader(b, lba, sectors)
	if err != nil {
		return h, nil, err
	}
	arr := make([]byte, int(h.count)*int(h.entrySize)) // bounded by parseGPTHeader
	if err := readFull(r, arr, int64(h.entriesLBA)*SectorSize); err != nil {
		return h, nil, fmt.Errorf("read partition entries: %w", err)
	}
	if got := crc32.ChecksumIEEE(arr); got != h.entriesCRC {
		return h, nil, fmt.Errorf("partition entries CRC is %08x, the header says %08x", got, h.entriesCRC)
	}
	var parts []Part
	for i := 0; i < int(h.count); i++ {
		e := arr[i*int(h.entrySize):][:minGPTEntrySize]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			continue // unused entry
		}
		first := binary.LittleEndian.Uint64(e[32:40])
		last := binary.LittleEndian.Uint64(e[40:48])
		if last < first {
			return h, nil, fmt.Errorf("partition entry %d ends (sector %d) before it starts (sector %d)", i+1, last, first)
		}
		if first >= 1<<54 || last >= 1<<54 {
			return h, nil, fmt.Errorf("partition entry %d: sector %d is beyond any disk", i+1, max(first, last))
		}
		var name []uint16
		for j := 56; j+1 < minGPTEntrySize; j += 2 {
			u := binary.LittleEndian.Uint16(e[j:])
			if u == 0 {
				break
			}
			name = append(name, u)
		}
		parts = append(parts, Part{
			Num:   i + 1,
			Label: string(utf16.Decode(name)),
			Type:  mixedGUID(e[0:16]),
			GUID:  mixedGUID(e[16:32]),
			Start: int64(first) * SectorSize,
			Size:  int64(last-first+1) * SectorSize,
		})
	}
	return h, parts, nil
}

// parseGPTHeader checks a header sector read at lba of a disk of sectors.
func parseGPTHeader(b []byte, lba, sectors uint64) (gptHeader, error) {
	var h gptHeader
	if !bytes.Equal(b[0:8], gptSignature) {
		return h, errNoSignature
	}
	hs := binary.LittleEndian.Uint32(b[12:16])
	if hs < gptHeaderMin || hs > SectorSize {
		return h, fmt.Errorf("header size %d is not within %d..%d", hs, gptHeaderMin, SectorSize)
	}
	want := binary.LittleEndian.Uint32(b[16:20])
	hdr := append([]byte(nil), b[:hs]...)
	copy(hdr[16:20], []byte{0, 0, 0, 0})
	if got := crc32.ChecksumIEEE(hdr); got != want {
		return h, fmt.Errorf("header CRC is %08x, the header says %08x", got, want)
	}
	h.myLBA = binary.LittleEndian.Uint64(b[24:32])
	h.altLBA = binary.LittleEndian.Uint64(b[32:40])
	h.firstUsable = binary.LittleEndian.Uint64(b[40:48])
	h.lastUsab = binary.LittleEndian.Uint64(b[48:56])
	h.diskGUID = mixedGUID(b[56:72])
	h.entriesLBA = binary.LittleEndian.Uint64(b[72:80])
	h.count = binary.LittleEndian.Uint32(b[80:84])
	h.entrySize = binary.LittleEndian.Uint32(b[84:88])
	h.entriesCRC = binary.LittleEndian.Uint32(b[88:92])
	if h.myLBA != lba {
		return h, fmt.Errorf("header at sector %d says it is at sector %d", lba, h.myLBA)
	}
	if h.entrySize < minGPTEntrySize || h.entrySize%minGPTEntrySize != 0 {
		return h, fmt.Errorf("partition entry size %d is not a multiple of %d", h.entrySize, minGPTEntrySize)
	}
	total := uint64(h.count) * uint64(h.entrySize)
	if total > MaxGPTEntriesBytes {
		return h, fmt.Errorf("%d partition entries of %d bytes (%d bytes) exceed %d bytes", h.count, h.entrySize, total, MaxGPTEntriesBytes)
	}
	arrSectors := (total + SectorSize - 1) / SectorSize
	if h.entriesLBA < 2 || h.entriesLBA >= sectors || arrSectors > sectors-h.entriesLBA {
		return h, fmt.Errorf("partition entries at sector %d (%d sectors) do not lie within the disk (%d sectors)", h.entriesLBA, arrSectors, sectors)
	}
	if h.entriesLBA <= lba && lba < h.entriesLBA+arrSectors {
		return h, fmt.Errorf("partition entries at sector %d overlap the header", h.entriesLBA)
	}
	if h.firstUsable > h.lastUsab+1 {
		return h, fmt.Errorf("first usable sector %d is after the last, %d", h.firstUsable, h.lastUsab)
	}
	return h, nil
}

// mixedGUID renders a GUID stored as GPT stores them (the first three
// fields little-endian), upper case.
func mixedGUID(b []byte) string {
	var u uuid.UUID
	copy(u[:], b[:16])
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	return strings.ToUpper(u.String())
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%d bytes at byte %d: the disk ends first", len(b), off)
	}
	return err
}
