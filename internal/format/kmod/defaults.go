package kmod

// The default module sets are made of the groups below, so a group can be
// measured on its own (make bench prints what each adds to the
// initramfs). Every name is a module of Debian's linux-image-amd64 (6.1),
// as TestDefaultSets checks; none of these drivers needs a firmware file
// to find a disk, and slate ships no firmware.

// BaseStorage is what finds the root on QEMU and on common desktops and
// small servers: virtio (PCI, block, SCSI), NVMe, AHCI/SATA and SCSI
// disks, USB storage.
var BaseStorage = []string{
	// virtio
	"virtio_pci", "virtio_blk", "virtio_scsi",
	// disks
	"nvme", "ahci", "sd_mod",
	// USB storage
	"xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "usb_storage", "uas",
}

// ServerStorage are the storage controllers of servers and hypervisors
// whose disks sit behind a RAID or SAS adapter: the root is not found
// without their driver in the initramfs.
var ServerStorage = []string{
	"megaraid_sas", // Broadcom/LSI MegaRAID SAS, Dell PERC; QEMU -device megasas
	"mpt3sas",      // Broadcom/LSI SAS2/SAS3 HBAs (SAS2008 and later), Dell HBA330
	"mptsas",       // LSI Fusion-MPT SAS (SAS1064/1068); VMware "LSI Logic SAS"; QEMU -device mptsas1068
	"mptspi",       // LSI Fusion-MPT parallel SCSI (53C1030); VMware "LSI Logic Parallel"
	"smartpqi",     // Microchip/Adaptec Smart Storage, HPE Smart Array Gen10
	"hpsa",         // HPE Smart Array (Gen8, Gen9)
	"aacraid",      // Adaptec RAID
	"sym53c8xx",    // LSI/Symbios 53C8xx SCSI; QEMU -device lsi53c895a
	"vmw_pvscsi",   // VMware paravirtual SCSI; QEMU -device pvscsi
	"hv_storvsc",   // Hyper-V and Azure disks (with hv_vmbus)
	// What the drivers above use, named so that a change of their
	// dependencies in a later kernel does not drop them silently.
	"scsi_transport_sas", "raid_class", "mptscsih", "mptbase",
}

// MMCStorage is eMMC and SD cards, the disks of small machines and
// single-board x86 computers.
var MMCStorage = []string{"mmc_block", "sdhci", "sdhci-pci", "sdhci-acpi"}

// BootSupport is the rest of what init needs: ext4 for the slots and
// state, overlay for /etc, vfat with its code pages for the ESP,
// qemu_fw_cfg, crc32c for ext4 metadata checksums, and the i6300esb
// (QEMU) and iTCO (Intel) watchdogs that PID 1 arms.
var BootSupport = []string{
	// file systems
	"ext4", "overlay", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1",
	"crc32c", // ext4 metadata checksums: crc32c_intel and crc32c_generic
	"qemu_fw_cfg",
	// watchdogs
	"i6300esb", "iTCO_wdt",
}

// DefaultInitramfs is what slate's init needs to find and mount the root
// on the machines slate targets: QEMU, hypervisors, clouds and common
// x86_64 servers.
//
// Measured on Debian's 6.1.0-57-amd64 (uncompressed .ko files): 71 modules
// with their dependencies, 12.2 MiB (7.7 MiB before ServerStorage and
// MMCStorage); ext4 (2.0 MB), mpt3sas, libata, usbcore and mmc_core lead.
// make bench shows what each group adds to the compressed initramfs.
// TestDefaultSets keeps the .ko files under 14 MiB.
var DefaultInitramfs = concat(BaseStorage, ServerStorage, MMCStorage, BootSupport)

// NetworkDrivers are the network cards of servers, hypervisors and clouds.
// Cards whose driver cannot work without a firmware file from
// linux-firmware (bnx2, bnx2x, qed) are left out: slate ships no firmware.
var NetworkDrivers = []string{
	// physical servers
	"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice",
	"bnxt_en", "tg3", "r8169", "mlx4_en", "mlx5_core", "atlantic",
	// virtual machines and clouds
	"virtio_net",
	"vmxnet3",         // VMware
	"hv_netvsc",       // Hyper-V, Azure
	"ena",             // AWS Elastic Network Adapter
	"gve",             // Google gVNIC
	"ixgbevf", "iavf", // Intel SR-IOV virtual functions (AWS ixgbevf, others iavf)
	"8139too", "8139cp", // Realtek RTL8139 (QEMU -device rtl8139, older VMs); 8139cp for the C+ chips
	"af_packet", // DHCP's raw sockets (built into Debian's kernel)
}

// DefaultRoot is what the booted system loads from its root: everything of
// DefaultInitramfs, NetworkDrivers, and the virtio devices that help a VM.
//
// Measured on Debian's 6.1.0-57-amd64 (uncompressed .ko files): 110
// modules with their dependencies, 27.1 MiB; mlx5_core, ice and i40e (3.9,
// 1.9 and 1.1 MB) are the largest. TestDefaultSets keeps it under 36 MiB.
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
