package updater

import (
	"fmt"

	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/partitions"
)

// SlotTarget is a Target with the slot's partition GUID.
type SlotTarget struct {
	Target
	PartUUID string
}

// idleTarget returns the idle slot (the one not running) of the boot disk.
func idleTarget(disk *bootdisk.Disk, running string) (SlotTarget, error) {
	idle := partitions.Other(running)
	num := partitions.SlotNum(idle)
	for _, p := range disk.Layout.Parts {
		if p.Num == num && p.Label == partitions.SlotLabel(idle) {
			dev := disk.Dev(num)
			return SlotTarget{
				Target:   Target{Slot: idle, RootDev: dev, RootSize: p.Size, Tries: bootentry.DefaultTries},
				PartUUID: p.GUID,
			}, nil
		}
	}
	return SlotTarget{}, fmt.Errorf("disk %s has no %s partition", disk.Name, partitions.SlotLabel(idle))
}
