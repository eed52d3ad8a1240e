// Package partitions is the one place that knows slate's disk layout: the
// GPT (labels, type GUIDs, sizes, GUIDs derived from the spec, the A/B
// slots' partitions), reading and checking a disk's table, and scanning
// the machine's disks. The boot entries that pick a slot are bootentry's.
package partitions

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Partition type GUIDs (Discoverable Partitions Specification).
const (
	TypeESP   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRoot  = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" // root, x86-64
	TypeState = "4D21B016-B534-45C2-A9FB-5C16E091FD2D" // var
)

// Partition labels and numbers (1-based, as the kernel names them).
const (
	LabelESP   = "ESP"
	LabelRootA = "ROOT-A"
	LabelRootB = "ROOT-B"
	LabelState = "STATE"

	NumESP   = 1
	NumRootA = 2
	NumRootB = 3
	NumState = 4
)

// SectorSize is the logical sector size slate images are built for.
const SectorSize = 512

// Align is the partition alignment.
const Align = 1 << 20

// Part is one partition of a planned disk.
type Part struct {
	Num   int
	Label string
	Type  string
	GUID  string
	Start int64 // bytes
	Size  int64 // bytes
}

// End is the first byte after the partition.
func (p Part) End() int64 { return p.Start + p.Size }

// Layout is the whole planned disk.
type Layout struct {
	Size  int64
	GUID  string
	Parts []Part
}

// ESP returns the EFI system partition (by type; the last one if a disk
// has several).
func (l Layout) ESP() (Part, bool) {
	var esp Part
	for _, p := range l.Parts {
		if strings.EqualFold(p.Type, TypeESP) {
			esp = p
		}
	}
	return esp, esp.Num != 0
}

// Part returns the partition with the given number.
func (l Layout) Part(num int) Part {
	for _, p := range l.Parts {
		if p.Num == num {
			return p
		}
	}
	return Part{}
}

// Plan lays out a disk of size bytes with the given ESP and root slot sizes;
// STATE takes what is left up to the backup GPT. seed makes the disk and
// partition GUIDs: the same seed gives the same GUIDs, so two builds of one
// spec are byte-identical, while two images get different ones.
func Plan(size, esp, root int64, seed string) (Layout, error) {
	if size%Align != 0 || esp%Align != 0 || root%Align != 0 {
		return Layout{}, fmt.Errorf("disk, ESP and root sizes must be multiples of 1 MiB")
	}
	l := Layout{Size: size, GUID: DeriveGUID(seed, "disk")}
	off := int64(Align)
	add := func(num int, label, typ string, sz int64) {
		l.Parts = append(l.Parts, Part{Num: num, Label: label, Type: typ, GUID: DeriveGUID(seed, label), Start: off, Size: sz})
		off += sz
	}
	add(NumESP, LabelESP, TypeESP, esp)
	add(NumRootA, LabelRootA, TypeRoot, root)
	add(NumRootB, LabelRootB, TypeRoot, root)
	// The backup GPT takes the last 33 sectors; keep STATE 1 MiB-aligned
	// at both ends.
	state := size - Align - off
	if state < Align {
		return Layout{}, fmt.Errorf("disk of %d bytes leaves no room for STATE after ESP (%d) and two root slots (%d each)", size, esp, root)
	}
	add(NumState, LabelState, TypeState, state)
	return l, nil
}

// DeriveGUID makes a stable version-4-shaped GUID from a seed and a name.
func DeriveGUID(seed, name string) string {
	h := sha256.Sum256([]byte("slate-guid\x00" + seed + "\x00" + name))
	var u uuid.UUID
	copy(u[:], h[:16])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return strings.ToUpper(u.String())
}

// SlotLabel returns the root partition label of slot "a" or "b".
func SlotLabel(slot string) string {
	if slot == "b" {
		return LabelRootB
	}
	return LabelRootA
}

// SlotNum returns the root partition number of slot "a" or "b".
func SlotNum(slot string) int {
	if slot == "b" {
		return NumRootB
	}
	return NumRootA
}

// Other returns the other slot.
func Other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}
