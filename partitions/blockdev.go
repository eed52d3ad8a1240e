package partitions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
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
// cannot be read or have no GPT are skipped: they are not ours. A disk
// whose GPT is not sane (see ParseGPT) is skipped with a warning naming it.
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
		l, check, err := ReadGPTChecked(f, d.Size)
		f.Close()
		log := logrus.WithField("disk", "/dev/"+name)
		if errors.Is(err, ErrNoGPT) {
			continue // not ours
		}
		if err != nil {
			// A crafted or damaged table must not stop a boot or an
			// update: the disk is left alone, and said so.
			warnOnce(log.WithError(err), name+err.Error(), "ignoring a disk whose GPT is not sane")
			continue
		}
		for _, w := range check.Warnings {
			warnOnce(log, name+w, "GPT: "+w)
		}
		d.Layout = l
		disks = append(disks, d)
	}
	return disks, nil
}

// warned keeps ScanDisks' warnings to one per disk and message: init and
// the updater scan again and again while they wait for a disk.
var warned sync.Map

func warnOnce(e *logrus.Entry, key, msg string) {
	if _, dup := warned.LoadOrStore(key, true); !dup {
		e.Warn(msg)
	}
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
