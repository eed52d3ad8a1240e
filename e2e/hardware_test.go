package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/internal/qemu"
	"github.com/slateos/slate/partitions"
)

var hwprobeOnce once

// slotBoot reads slot a's kernel, initramfs and kernel line from the ESP
// of a built disk image, for a direct kernel boot: OVMF has no driver
// for most server storage controllers, so it could not load them from a
// disk behind one.
func slotBoot(t testing.TB, image string) (kernel, initrd, options string) {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	l, err := partitions.ReadGPT(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := l.ESP()
	if !ok {
		t.Fatalf("%s: no ESP", image)
	}
	esp, err := bootentry.OpenESP(f, p)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := esp.Entries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, e := range ents {
		if e.Slot != "a" {
			continue
		}
		for _, k := range []struct{ key, name string }{{"linux", "vmlinuz"}, {"initrd", "initrd.img"}} {
			b, err := esp.ReadFile(e.Keys[k.key])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, k.name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"), e.Options
	}
	t.Fatalf("%s: no boot entry for slot a (entries %v)", image, ents)
	return "", "", ""
}

func sparseFile(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServerControllersAndNICs boots the default image once with its root
// disk behind an emulated MegaRAID SAS (megaraid_sas, as on Dell PERC),
// empty disks behind a VMware PVSCSI (vmw_pvscsi), an LSI 53C895A
// (sym53c8xx) and an LSI SAS1068 (mptsas) controller, and a VMware
// vmxnet3 and a Realtek RTL8139 NIC. Init must find the root's PARTUUID on
// the MegaRAID disk with the default initramfs; in the booted system a
// probe shows every disk behind its controller's driver and gets a DHCP
// lease on each NIC.
//
// The disk behind the LSI SAS1068 needs a SAS address (qemu.Disk gives it
// a wwn): with QEMU's default of 0, Linux's mptsas registers the 8 phys
// but takes nothing behind them for an end device, and no disk appears.
func TestServerControllersAndNICs(t *testing.T) {
	needQEMU(t)
	probe := hwprobeOnce.get(t, func() (string, error) {
		p := filepath.Join(workDir, "hwprobe")
		return p, goBuild(p, "./e2e/testdata/hwprobe")
	})
	spec := writeSpec(t, fmt.Sprintf(`name: slate-hw
version: 1.0.0
root:
  files:
    - src: %s
      dst: /usr/local/bin/hwprobe
      mode: "0755"
services:
  - name: hwprobe
    command: /usr/local/bin/hwprobe
    args: ["4"] # root, PVSCSI, 53C895A and SAS1068 disks
    restart: never
network:
  dhcp: true
`, probe))
	out := build(t, spec)
	image := filepath.Join(out, "disk.raw")
	kernel, initrd, options := slotBoot(t, image)
	const emptySize = 64 << 20
	vm := boot(t, "", qemu.Options{
		Kernel: kernel, Initrd: initrd, Append: options,
		Disks: []qemu.Disk{
			{File: image, Controller: "megasas"},
			{File: sparseFile(t, "pvscsi.raw", emptySize), Controller: "pvscsi"},
			{File: sparseFile(t, "sym.raw", emptySize), Controller: "lsi53c895a"},
			{File: sparseFile(t, "sas.raw", emptySize), Controller: "mptsas1068"},
		},
		NICs:       []string{"vmxnet3", "rtl8139"},
		SerialFile: filepath.Join(out, "serial.log"),
		// A failed boot ends QEMU at once instead of rebooting.
		NoReboot: true,
	})
	t0 := time.Now()
	m := waitLine(t, vm, `^SLATE-INIT slot=a root=/dev/(sd[a-z]+)2 took=(\d+)ms`, 4*time.Minute)
	rootDisk := m[1]
	t.Logf("SLATE-INIT after %s: root on %s, init took %s ms", time.Since(t0).Round(time.Millisecond), rootDisk, m[2])
	waitLine(t, vm, `^SLATE-READY version=1\.0\.0 slot=a$`, 3*time.Minute)
	waitLine(t, vm, `^\[hwprobe\] HWPROBE done$`, 3*time.Minute)
	t.Logf("probe done after %s", time.Since(t0).Round(time.Millisecond))
	select {
	case <-vm.Exited():
	case <-time.After(time.Minute):
		t.Error("the guest did not power off")
	}
	lines := vm.Lines()
	for _, l := range lines {
		if strings.Contains(l, `msg="modules loaded"`) {
			t.Logf("init: %s", l)
			break
		}
	}

	// Disks: the root's disk behind megaraid_sas, one disk behind each
	// other controller, of the size attached.
	disks := map[string][]string{} // driver -> disks
	sectors := map[string]string{}
	diskRE := regexp.MustCompile(`^\[hwprobe\] HWPROBE disk=(\S+) driver=(\S+) sectors=(\d+)$`)
	for _, l := range lines {
		if m := diskRE.FindStringSubmatch(l); m != nil {
			disks[m[2]] = append(disks[m[2]], m[1])
			sectors[m[1]] = m[3]
		}
	}
	t.Logf("disks by driver: %v", disks)
	if d := disks["megaraid_sas"]; len(d) != 1 || d[0] != rootDisk {
		t.Errorf("megaraid_sas disks %v, want the root's disk %s", d, rootDisk)
	}
	for _, drv := range []string{"vmw_pvscsi", "sym53c8xx", "mptsas"} {
		if d := disks[drv]; len(d) != 1 {
			t.Errorf("%s disks %v, want one", drv, d)
		} else if sectors[d[0]] != fmt.Sprint(emptySize/512) {
			t.Errorf("%s disk %s has %s sectors, want %d", drv, d[0], sectors[d[0]], emptySize/512)
		}
	}
	if countMatches(lines, `^\[hwprobe\] HWPROBE host=host\d+ driver=mptsas sas_phys=8$`) != 1 {
		t.Error("no SCSI host of mptsas with 8 SAS phys: the LSI SAS1068 controller was not bound")
	}
	if countMatches(lines, `^\[hwprobe\] HWPROBE root=/dev/`+rootDisk+`2 disk=`+rootDisk+` driver=megaraid_sas$`) != 1 {
		t.Errorf("the root is not mounted from %s2 behind megaraid_sas", rootDisk)
	}

	// NICs: a lease on each. QEMU's RTL8139 is a C+ chip, which 8139cp
	// drives (8139too leaves it alone).
	nicRE := regexp.MustCompile(`^\[hwprobe\] HWPROBE nic=(\S+) driver=(\S+) mac=\S+ (lease=10\.0\.2\.15|err=.*)$`)
	nics := map[string]string{} // driver -> result
	ifaces := map[string]string{}
	for _, l := range lines {
		if m := nicRE.FindStringSubmatch(l); m != nil {
			nics[m[2]] = m[3]
			ifaces[m[1]] = m[2]
		}
	}
	t.Logf("NICs: %v", nics)
	for _, drv := range []string{"vmxnet3", "8139cp"} {
		if nics[drv] != "lease=10.0.2.15" {
			t.Errorf("%s: %q, want a DHCP lease (10.0.2.15)", drv, nics[drv])
		}
	}
	// The supervisor brings up the first wired interface, one of the two.
	m2 := regexp.MustCompile(`^SLATE-NET iface=(\S+) addr=10\.0\.2\.15/24 gw=10\.0\.2\.2$`)
	got := ""
	for _, l := range lines {
		if m := m2.FindStringSubmatch(l); m != nil {
			got = m[1]
		}
	}
	if drv := ifaces[got]; drv != "vmxnet3" && drv != "8139cp" {
		t.Errorf("supervisor's lease on %q (driver %q), want one of the two NICs", got, drv)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "SLATE-FAILED") || strings.Contains(l, "HWPROBE-FAILED") {
			t.Errorf("console: %s", l)
		}
	}
	t.Logf("whole run %s", time.Since(t0).Round(time.Millisecond))
}
