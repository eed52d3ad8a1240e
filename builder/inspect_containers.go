package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/partitions"
)

// SlotContainers are the containers baked into one slot's root, as
// `slate inspect` lists them.
type SlotContainers struct {
	Slot       string                `json:"slot"`
	Version    string                `json:"version,omitempty"`
	Containers []imageinfo.Container `json:"containers"`
	// Problem says why the slot's image description could not be read
	// (an empty slot has none).
	Problem string `json:"problem,omitempty"`
}

// maxImageInfo bounds image.json read from a disk (a real one is a few
// KiB; the disk may be anybody's).
const maxImageInfo = 4 << 20

// InspectContainers reads the image description of each root slot of a
// disk image or an unmounted device and returns its containers. A slot
// with no filesystem is left out.
func InspectContainers(p string) ([]SlotContainers, error) {
	slots, err := readSlotInfos(p)
	if err != nil {
		return nil, err
	}
	var out []SlotContainers
	for _, s := range slots {
		switch {
		case errors.Is(s.err, errNoFS):
			continue
		case s.err != nil:
			out = append(out, SlotContainers{Slot: s.slot, Problem: s.err.Error()})
			continue
		}
		out = append(out, SlotContainers{Slot: s.slot, Version: s.info.Version, Containers: s.info.Containers})
	}
	return out, nil
}

// slotInfo is a root slot's image description, or why it could not be
// read (errNoFS: the slot has no filesystem).
type slotInfo struct {
	slot string
	info *imageinfo.Info
	err  error
}

// readSlotInfos reads /usr/lib/slate/image.json from each root slot of a
// disk image or an unmounted device, slot A first; a slot the partition
// table lacks is left out.
func readSlotInfos(p string) ([]slotInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: size: %w", p, err)
	}
	l, err := partitions.ReadGPT(f, size)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	var out []slotInfo
	for _, slot := range []string{"a", "b"} {
		label := partitions.SlotLabel(slot)
		var part *partitions.Part
		for i := range l.Parts {
			if l.Parts[i].Label == label {
				part = &l.Parts[i]
			}
		}
		if part == nil {
			continue
		}
		info, err := readImageInfo(f, part.Start, part.Size)
		out = append(out, slotInfo{slot: slot, info: info, err: err})
	}
	return out, nil
}

var errNoFS = errors.New("no ext4 filesystem")

// readImageInfo reads /usr/lib/slate/image.json from the root
// filesystem at start.
func readImageInfo(f *os.File, start, size int64) (*imageinfo.Info, error) {
	x, err := openExt4(f, start, size)
	if err != nil {
		return nil, err
	}
	b, err := x.readFile(imageinfo.Path, maxImageInfo)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", imageinfo.Path, err)
	}
	var i imageinfo.Info
	if err := json.Unmarshal(b, &i); err != nil {
		return nil, fmt.Errorf("%s: %w", imageinfo.Path, err)
	}
	return &i, nil
}

// WriteContainersText prints the slots' containers for people.
func WriteContainersText(w io.Writer, slots []SlotContainers) error {
	for _, s := range slots {
		if s.Problem != "" {
			fmt.Fprintf(w, "\nslot %s: containers unknown: %s\n", s.Slot, s.Problem)
			continue
		}
		if len(s.Containers) == 0 {
			continue
		}
		if s.Slot == "" { // a root booted from RAM
			fmt.Fprintf(w, "\ncontainers (%s):\n", s.Version)
		} else {
			fmt.Fprintf(w, "\ncontainers of slot %s (%s):\n", s.Slot, s.Version)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tIMAGE\tDIGEST\tUSER\tADDRESS\tPORTS")
		for _, c := range s.Containers {
			addr := c.Address
			if addr == "" {
				addr = c.NetworkMode()
			}
			ports := strings.Join(c.Ports, ",")
			if ports == "" {
				ports = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d:%d\t%s\t%s\n", c.Name, c.Image, c.Digest, c.UID, c.GID, addr, ports)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
