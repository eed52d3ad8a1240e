package bootentry

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/slateos/slate/partitions"
)

// Report is what `slate inspect` tells about an image or a device.
type Report struct {
	Path       string            `json:"path"`
	Size       int64             `json:"size"`
	DiskGUID   string            `json:"disk_guid"`
	Partitions []partitions.Part `json:"partitions"`
	Slots      []SlotReport      `json:"slots"`
	Next       string            `json:"next_slot,omitempty"`
	NextEntry  string            `json:"next_entry,omitempty"`
	Problems   []string          `json:"problems,omitempty"`
	// UsedBackupGPT: the primary GPT is damaged and the backup was read
	// (Problems says why).
	UsedBackupGPT bool `json:"used_backup_gpt,omitempty"`
}

// SlotReport is one slot: its root partition and boot entry, if any.
type SlotReport struct {
	Slot      string `json:"slot"`
	Partition string `json:"partition"`
	Entry     string `json:"entry,omitempty"`
	Version   string `json:"version,omitempty"`
	State     string `json:"state"` // good, trying, bad, empty
	TriesLeft *int   `json:"tries_left,omitempty"`
	TriesDone *int   `json:"tries_done,omitempty"`
}

// Inspect reads the GPT and the ESP's boot entries of an image file or an
// unmounted block device.
func Inspect(p string) (*Report, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: size: %w", p, err)
	}
	l, check, err := partitions.ReadGPTChecked(f, size)
	if err != nil {
		return nil, err
	}
	r := &Report{Path: p, Size: size, DiskGUID: l.GUID, Partitions: l.Parts, UsedBackupGPT: check.UsedBackup}
	for _, w := range check.Warnings {
		r.Problems = append(r.Problems, "GPT: "+w)
	}
	if check.Grown {
		r.Problems = append(r.Problems, "GPT: the backup GPT is not at the end of the disk: the disk is larger than its table says (the first boot grows STATE and moves it)")
	}
	esp, ok := l.ESP()
	if !ok {
		return nil, fmt.Errorf("inspect %s: no EFI system partition (type %s): not a slate disk", p, partitions.TypeESP)
	}
	e, err := OpenESP(f, esp)
	if err != nil {
		return nil, err
	}
	ents, err := e.Entries()
	if err != nil {
		return nil, err
	}
	var plain []Entry
	for _, slot := range []string{"a", "b"} {
		sr := SlotReport{Slot: slot, Partition: partitions.SlotLabel(slot), State: "empty"}
		for _, en := range ents {
			if en.Slot != slot {
				continue
			}
			if sr.Entry != "" {
				r.Problems = append(r.Problems, fmt.Sprintf("slot %s has more than one entry: %s and %s", slot, sr.Entry, en.File))
				continue
			}
			sr.Entry, sr.Version, sr.State = en.File, en.Version, en.State()
			if en.Counted {
				left, done := en.Left, en.Done
				sr.TriesLeft, sr.TriesDone = &left, &done
			}
			plain = append(plain, en.Entry)
		}
		r.Slots = append(r.Slots, sr)
	}
	if n, ok := NextBoot(plain); ok {
		r.Next, r.NextEntry = n.Slot, n.Name()
	} else {
		r.Problems = append(r.Problems, "no bootable slot entry")
	}
	return r, nil
}

// WriteJSON prints the report for programs.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s: %s, disk GUID %s\n\n", r.Path, human(r.Size), r.DiskGUID)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tLABEL\tSTART\tSIZE\tTYPE GUID\tPARTUUID")
	for _, p := range r.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.Num, p.Label, human(p.Start), human(p.Size), p.Type, p.GUID)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tVERSION\tSTATE\tTRIES LEFT\tENTRY")
	for _, s := range r.Slots {
		tries := "-"
		if s.TriesLeft != nil {
			tries = fmt.Sprintf("%d (used %d)", *s.TriesLeft, *s.TriesDone)
		}
		v := s.Version
		if v == "" {
			v = "-"
		}
		e := s.Entry
		if e == "" {
			e = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Slot, v, s.State, tries, e)
	}
	tw.Flush()
	if r.Next != "" {
		fmt.Fprintf(w, "\nnext boot: slot %s (%s)\n", r.Next, r.NextEntry)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	return nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%dB", n)
	}
}
