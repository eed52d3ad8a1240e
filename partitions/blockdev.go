package partitions

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Disk is a whole disk with its GPT.
type Disk struct {
	Name   string // vda, nvme0n1, sda
	Size   int64
	Layout Layout
	Parts  map[int]string // partition number -> device name (vda2, nvme0n1p2)
}

// Dev is the /dev path of a partition of d.
func (d Disk) Dev(num int) string { return "/dev/" + d.Parts[num] }

// ScanDisks reads the GPT of every whole disk the kernel knows. Disks that
// cannot be read or have no GPT are skipped: they are not ours.
func ScanDisks(sysBlock, devDir string) ([]Disk, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", sysBlock, err)
	}
	var disks []Disk
	for _, e := range ents {
		name := e.Name()
		base := filepath.Join(sysBlock, name)
		if _, err := os.Stat(filepath.Join(base, "partition")); err == nil {
			continue // a partition, handled under its disk
		}
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		d := Disk{Name: name, Parts: map[int]string{}}
		sectors, err := readInt(filepath.Join(base, "size"))
		if err != nil || sectors == 0 {
			continue
		}
		d.Size = sectors * 512
		// partitions appear as sub-folders of the disk in sysfs
		subs, _ := os.ReadDir(filepath.Join(sysBlock, name))
		for _, s := range subs {
			n, err := readInt(filepath.Join(sysBlock, name, s.Name(), "partition"))
			if err == nil {
				d.Parts[int(n)] = s.Name()
			}
		}
		if len(d.Parts) == 0 {
			continue
		}
		f, err := os.Open(filepath.Join(devDir, name))
		if err != nil {
			continue
		}
		l, err := ReadGPT(f, d.Size)
		f.Close()
		if err != nil {
			continue
		}
		d.Layout = l
		disks = append(disks, d)
	}
	return disks, nil
}

// FindPartUUID finds the disk and partition number holding a PARTUUID.
func FindPartUUID(disks []Disk, id string) (Disk, int, bool) {
	for _, d := range disks {
		for _, p := range d.Layout.Parts {
			if strings.EqualFold(p.GUID, id) {
				if _, ok := d.Parts[p.Num]; ok {
					return d, p.Num, true
				}
			}
		}
	}
	return Disk{}, 0, false
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
