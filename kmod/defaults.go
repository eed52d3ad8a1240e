package kmod

// DefaultInitramfs is what slate's init needs to find and mount the root on
// the machines slate targets (QEMU and common x86_64 servers): virtio (PCI,
// block, SCSI), NVMe, AHCI/SATA and SCSI disks, USB storage, ext4 for the
// slots and state, overlay for /etc, vfat with its code pages for the ESP,
// qemu_fw_cfg, crc32c for ext4 metadata checksums, and the i6300esb (QEMU)
// and iTCO (Intel) watchdogs that init arms.
//
// Measured on Debian's 6.1.0-56-amd64 (uncompressed .ko files): 48 modules
// with their dependencies, 8,046,816 bytes (7.67 MiB), led by ext4 (2.0 MB),
// libata, usbcore, xhci_hcd and scsi_mod. TestDefaultSets keeps it under
// 8 MiB.
var DefaultInitramfs = []string{
	// virtio
	"virtio_pci", "virtio_blk", "virtio_scsi",
	// disks
	"nvme", "ahci", "sd_mod",
	// USB storage
	"xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "usb_storage", "uas",
	// file systems
	"ext4", "overlay", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1",
	"crc32c", // ext4 metadata checksums: crc32c_intel and crc32c_generic
	"qemu_fw_cfg",
	// watchdogs
	"i6300esb", "iTCO_wdt",
}

// NetworkDrivers are the network cards common in servers and VMs.
var NetworkDrivers = []string{
	"virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice",
	"bnxt_en", "tg3", "r8169", "mlx4_en", "mlx5_core",
	"af_packet", // DHCP's raw sockets (built into Debian's kernel)
}

// DefaultRoot is what the booted system loads from its root: everything of
// DefaultInitramfs, NetworkDrivers, and the virtio devices that help a VM.
//
// Measured on Debian's 6.1.0-56-amd64 (uncompressed .ko files): 76 modules
// with their dependencies, 21,304,308 bytes (20.32 MiB); ice, mlx5_core and
// i40e (3.9, 1.9 and 1.1 MB) are half of the difference.
var DefaultRoot = concat(DefaultInitramfs, NetworkDrivers, []string{
	"virtio_rng", // entropy early in boot on VMs
	"virtio_console",
})

// DefaultNetboot is the initramfs of a machine that boots from the network
// or from RAM: it fetches its root over the network before any disk is
// involved, so it needs NetworkDrivers, and loop to mount the root image
// it holds in RAM.
var DefaultNetboot = concat(DefaultInitramfs, NetworkDrivers, []string{"loop"})

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
