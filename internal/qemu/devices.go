package qemu

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Disk is one more disk image attached behind a storage controller of its
// own, to see a guest find its disks behind the controllers of servers
// and hypervisors (a direct kernel boot then, as OVMF has no driver for
// most of them).
type Disk struct {
	// File is the image; .qcow2 is qcow2, anything else raw.
	File string
	// Controller is QEMU's device model: a SCSI host adapter ("megasas",
	// "megasas-gen2", "mptsas1068", "pvscsi", "lsi53c895a",
	// "virtio-scsi-pci"; the disk is a scsi-hd on it), "nvme" or
	// "virtio-blk-pci".
	Controller string
}

// scsiControllers are the SCSI host adapters a Disk may sit behind.
var scsiControllers = map[string]bool{
	"megasas": true, "megasas-gen2": true, "mptsas1068": true, "pvscsi": true,
	"lsi53c895a": true, "lsi53c810": true, "virtio-scsi-pci": true,
}

// sasWWNBase is the NAA 5 (IEEE Registered) world wide name with QEMU's
// OUI 52:54:00 that the SAS addresses of disks behind an mptsas1068 count
// up from.
const sasWWNBase uint64 = 0x5525400000000000

// nicModels are the network cards NICs may name.
var nicModels = map[string]bool{
	"virtio-net-pci": true, "e1000": true, "e1000e": true,
	"vmxnet3": true, "rtl8139": true, "pcnet": true, "ne2k_pci": true,
}

// deviceArgs returns the command line for opts.Disks and opts.NICs.
func deviceArgs(opts Options) ([]string, error) {
	var args []string
	for i, d := range opts.Disks {
		if !isFile(d.File) {
			return nil, fmt.Errorf("qemu: disk %d (%s): %s: not a readable file", i, d.Controller, d.File)
		}
		drive := fmt.Sprintf("xd%d", i)
		args = append(args, "-drive", "file="+optEscape(d.File)+",format="+diskFormat(d.File)+
			",if=none,id="+drive+",cache=writeback")
		switch {
		case scsiControllers[d.Controller]:
			hba := fmt.Sprintf("xhba%d", i)
			disk := "scsi-hd,drive=" + drive + ",bus=" + hba + ".0"
			if d.Controller == "mptsas1068" {
				// QEMU's SAS1068 reports a disk's wwn as its SAS address,
				// and scsi-hd's default is 0. Linux's mptsas takes only
				// an attached device with a non-zero SAS address for an
				// end device (mptsas_is_end_device), so without one it
				// registers the phys but never scans a target: no disk.
				// Real SAS disks always have one; this is NAA 5 with
				// QEMU's OUI 52:54:00, one address per disk.
				disk += fmt.Sprintf(",wwn=0x%x", sasWWNBase+uint64(i)+1)
			}
			args = append(args, "-device", d.Controller+",id="+hba, "-device", disk)
		case d.Controller == "nvme":
			args = append(args, "-device", fmt.Sprintf("nvme,drive=%s,serial=slate%d", drive, i))
		case d.Controller == "virtio-blk-pci":
			args = append(args, "-device", "virtio-blk-pci,drive="+drive)
		default:
			return nil, fmt.Errorf("qemu: disk %d (%s): controller %q: want one of %s, nvme or virtio-blk-pci", i, d.File, d.Controller, strings.Join(sortedKeys(scsiControllers), ", "))
		}
	}
	for i, model := range opts.NICs {
		if !nicModels[model] {
			return nil, fmt.Errorf("qemu: NIC %d: model %q: want one of %s", i, model, strings.Join(sortedKeys(nicModels), ", "))
		}
		// Each card has a user network of its own: every one gets a DHCP
		// lease (10.0.2.15) from QEMU, and none depends on another.
		id := fmt.Sprintf("xn%d", i)
		args = append(args, "-netdev", "user,id="+id, "-device", model+",netdev="+id)
	}
	return args, nil
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
