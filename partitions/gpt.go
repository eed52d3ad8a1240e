package partitions

import (
	"fmt"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// WriteGPT writes the protective MBR, primary and backup GPT of l to f,
// which must already be l.Size bytes long.
func WriteGPT(f *os.File, l Layout) error {
	t := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		GUID:               l.GUID,
		ProtectiveMBR:      true,
	}
	for _, p := range l.Parts {
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: p.Num,
			Start: uint64(p.Start / SectorSize),
			End:   uint64(p.End()/SectorSize) - 1,
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.Type),
			Name:  p.Label,
			GUID:  p.GUID,
		})
	}
	if err := t.Write(f, l.Size); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	return nil
}

// ReadGPT reads the partition table of an image file or block device
// (see ParseGPT); what it found amiss but could read past is dropped.
func ReadGPT(f *os.File, size int64) (Layout, error) {
	l, _, err := ReadGPTChecked(f, size)
	return l, err
}

// ReadGPTChecked is ReadGPT with what it found amiss.
func ReadGPTChecked(f *os.File, size int64) (Layout, GPTCheck, error) {
	l, c, err := ParseGPT(f, size)
	if err != nil {
		return Layout{}, c, fmt.Errorf("read GPT of %s: %w", f.Name(), err)
	}
	return l, c, nil
}

// GrowState moves the backup GPT to the end of a disk that is now larger
// than its table says and extends STATE (the last partition) to fill it.
// It reports whether anything changed. Used by init on first boot, before
// STATE gets its filesystem.
func GrowState(f *os.File, size int64) (bool, error) {
	// go-diskfs trusts the header's entry count and size: only a table
	// that slate's own reader found sane is handed to it.
	if _, _, err := ParseGPT(f, size); err != nil {
		return false, fmt.Errorf("read GPT of %s: %w", f.Name(), err)
	}
	t, err := gpt.Read(f, SectorSize, SectorSize)
	if err != nil {
		return false, fmt.Errorf("read GPT of %s: %w", f.Name(), err)
	}
	var state *gpt.Partition
	for _, p := range t.Partitions {
		if p != nil && strings.EqualFold(string(p.Type), TypeState) {
			state = p
		}
	}
	if state == nil {
		return false, fmt.Errorf("%s has no STATE partition (type %s)", f.Name(), TypeState)
	}
	// last usable sector of a GPT disk: size - 33 sectors (backup array +
	// header); keep the end 1 MiB-aligned as the builder does.
	newEnd := uint64((size-Align)/SectorSize) - 1
	if newEnd <= state.End {
		return false, nil
	}
	t.Resize(uint64(size))
	state.End = newEnd
	state.Size = (state.End - state.Start + 1) * SectorSize
	if err := t.Write(f, size); err != nil {
		return false, fmt.Errorf("rewrite GPT of %s: %w", f.Name(), err)
	}
	return true, nil
}
