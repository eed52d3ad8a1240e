package kmod

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDefaultSetsDriveServerHardware writes each default set as init and
// the booted system get it and probes the PCI devices of the storage
// controllers and network cards of servers, hypervisors and clouds: the
// driver of each must load (with what it needs) from that set alone.
// Before these drivers were in the sets, a root behind a MegaRAID, an LSI
// SAS HBA or a VMware PVSCSI controller was never found, and vmxnet3 and
// RTL8139 NICs had no driver.
func TestDefaultSetsDriveServerHardware(t *testing.T) {
	ix := realIndex(t)
	// PCI modaliases as the kernel writes them; the comments name the
	// QEMU device or the hardware.
	storage := []struct{ modalias, want string }{
		{"pci:v00001000d00000060sv00001000sd00001013bc01sc04i00", "megaraid_sas"}, // -device megasas (MegaRAID SAS 1078)
		{"pci:v00001000d00000078sv00001000sd00001013bc01sc04i00", "megaraid_sas"}, // -device megasas-gen2
		{"pci:v00001000d00000054sv00001000sd00000000bc01sc00i00", "mptsas"},       // -device mptsas1068
		{"pci:v00001000d00000030sv00000000sd00000000bc01sc00i00", "mptspi"},       // LSI 53C1030, VMware "LSI Logic Parallel"
		{"pci:v00001000d00000097sv00001028sd00001F45bc01sc07i00", "mpt3sas"},      // SAS3008, Dell HBA330
		{"pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc00i00", "vmw_pvscsi"},   // -device pvscsi
		{"pci:v00001000d00000012sv00000000sd00000000bc01sc00i00", "sym53c8xx"},    // -device lsi53c895a
		{"pci:v00009005d0000028Fsv0000103Csd00000600bc01sc04i00", "smartpqi"},     // HPE Smart Array Gen10
		{"pci:v0000103Cd00003239sv0000103Csd000021BDbc01sc04i00", "hpsa"},         // HPE Smart Array P440ar
		{"pci:v00009005d0000028Bsv00009005sd00000800bc01sc04i00", "aacraid"},      // Adaptec Series 6
		{"pci:v00008086d00000F14sv00008086sd00000000bc08sc05i01", "sdhci_pci"},    // Bay Trail eMMC
		{"acpi:VMBUS:", "hv_vmbus"}, // Hyper-V VMBus
	}
	nics := []struct{ modalias, want string }{
		{"pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00", "vmxnet3"},    // -device vmxnet3
		{"pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00", "8139cp"},     // -device rtl8139 (a C+ chip)
		{"pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00", "8139too"},    // older RTL8139 chips
		{"pci:v00001D0Fd0000EC20sv00000000sd00000000bc02sc00i00", "ena"},        // AWS ENA
		{"pci:v00001AE0d00000042sv00001AE0sd00000058bc02sc00i00", "gve"},        // Google gVNIC
		{"pci:v00001D6Ad000007B1sv00001D6Asd00000001bc02sc00i00", "atlantic"},   // Aquantia AQC107
		{"pci:v00008086d000010EDsv00008086sd00000000bc02sc00i00", "ixgbevf"},    // 82599 VF (AWS)
		{"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00", "e1000e"},     // -device e1000e
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "virtio_pci"}, // virtio-net's bus
	}
	for _, tt := range []struct {
		name  string
		set   []string
		devs  []struct{ modalias, want string }
		needs []string // loaded with the drivers
	}{
		{"DefaultInitramfs", DefaultInitramfs, storage, []string{"mptscsih", "mptbase", "scsi_transport_sas", "scsi_mod", "mmc_core"}},
		{"DefaultRoot", DefaultRoot, append(append([]struct{ modalias, want string }{}, storage...), nics...), []string{"mii"}},
		{"DefaultNetboot", DefaultNetboot, nics, []string{"mii"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mods, err := ix.Resolve(tt.set)
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			if err := ix.WriteTree(dirWriter{root}, mods); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "lib", "modules", ix.KernelVersion())
			sys := t.TempDir()
			for i, d := range tt.devs {
				addDevice(t, sys, fmt.Sprintf("pci0000:00/0000:00:%02x.0", i+1), d.modalias)
			}
			r := &recorder{t: t, dir: dir}
			l := &Loader{Dir: dir, Load: func(p, params string) error {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("load of a missing file: %v", err)
				}
				return r.load(p, params)
			}}
			loaded, err := l.ProbeDevices(sys)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.devs {
				if !slices.Contains(loaded, d.want) {
					t.Errorf("%s: %s not loaded from %s (loaded %v)", d.modalias, d.want, tt.name, loaded)
				}
			}
			for _, n := range tt.needs {
				if !slices.Contains(loaded, n) {
					t.Errorf("%s not loaded from %s (loaded %v)", n, tt.name, loaded)
				}
			}
			if tt.name == "DefaultInitramfs" {
				r.before("mptbase", "mptscsih")
				r.before("mptscsih", "mptsas")
				r.before("scsi_transport_sas", "mptsas")
			}
		})
	}
}

// BenchmarkProbeDevicesInitramfs measures what init pays for the size of
// its module set when it matches the devices of a q35 VM with a virtio
// disk (reading the index files and matching every modalias; loads are
// only recorded), for the initramfs set before the server storage and
// MMC drivers were added and for DefaultInitramfs.
func BenchmarkProbeDevicesInitramfs(b *testing.B) {
	ix := realIndex(b)
	sys := b.TempDir()
	for i, a := range []string{
		"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", // virtio-blk
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // ICH9 AHCI
		"pci:v00008086d000025ABsv00001AF4sd00001100bc08sc80i00", // i6300esb
		"pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00", // q35 host bridge
		"pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00", // ICH9 LPC
		"pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00", // ICH9 SMBus
		"acpi:QEMU0002:", "acpi:PNP0501:", "acpi:PNP0303:", "acpi:PNP0A08:PNP0A03:",
		"cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001,0093,0094,0095",
	} {
		d := filepath.Join(sys, "devices", fmt.Sprintf("dev%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "modalias"), []byte(a+"\n"), 0o444); err != nil {
			b.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		set  []string
	}{
		{"before", concat(BaseStorage, BootSupport)},
		{"DefaultInitramfs", DefaultInitramfs},
	} {
		b.Run(tt.name, func(b *testing.B) {
			mods, err := ix.Resolve(tt.set)
			if err != nil {
				b.Fatal(err)
			}
			root := b.TempDir()
			if err := ix.WriteTree(dirWriter{root}, mods); err != nil {
				b.Fatal(err)
			}
			dir := filepath.Join(root, "lib", "modules", ix.KernelVersion())
			for b.Loop() {
				l := &Loader{Dir: dir, Load: func(string, string) error { return nil }}
				if _, err := l.ProbeDevices(sys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
