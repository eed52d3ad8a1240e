package qemu

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgsDisksAndNICs(t *testing.T) {
	dir := t.TempDir()
	kernel := touch(t, filepath.Join(dir, "vmlinuz"), 1)
	a, b, c := touch(t, filepath.Join(dir, "root.raw"), 1<<20), touch(t, filepath.Join(dir, "b.qcow2"), 1<<20), touch(t, filepath.Join(dir, "c,d.raw"), 1<<20)
	sas := touch(t, filepath.Join(dir, "sas.raw"), 1<<20)
	args, err := Args(Options{
		Kernel: kernel,
		Disks:  []Disk{{a, "megasas"}, {b, "nvme"}, {c, "virtio-blk-pci"}, {sas, "mptsas1068"}, {sas, "mptsas1068"}},
		NICs:   []string{"vmxnet3", "rtl8139"},
	})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-drive file=" + a + ",format=raw,if=none,id=xd0,cache=writeback -device megasas,id=xhba0 -device scsi-hd,drive=xd0,bus=xhba0.0",
		"-drive file=" + b + ",format=qcow2,if=none,id=xd1,cache=writeback -device nvme,drive=xd1,serial=slate1",
		"-drive file=" + strings.ReplaceAll(c, ",", ",,") + ",format=raw,if=none,id=xd2,cache=writeback -device virtio-blk-pci,drive=xd2",
		// a SAS address of its own for each disk behind an mptsas1068
		"-device mptsas1068,id=xhba3 -device scsi-hd,drive=xd3,bus=xhba3.0,wwn=0x5525400000000004 ",
		"-device mptsas1068,id=xhba4 -device scsi-hd,drive=xd4,bus=xhba4.0,wwn=0x5525400000000005 ",
		"-netdev user,id=xn0 -device vmxnet3,netdev=xn0 -netdev user,id=xn1 -device rtl8139,netdev=xn1",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q:\n%s", want, line)
		}
	}
	// other controllers' disks keep QEMU's default (no WWN)
	if n := strings.Count(line, "wwn="); n != 2 {
		t.Errorf("%d disks with a wwn, want the 2 behind mptsas1068:\n%s", n, line)
	}
	// the extra NICs do not bring the default one
	if slices.Contains(args, "virtio-net-pci,netdev=n0") {
		t.Errorf("a virtio-net NIC without Network: %s", line)
	}

	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"unknown controller", Options{Kernel: kernel, Disks: []Disk{{a, "floppy"}}}, `controller "floppy"`},
		{"missing disk", Options{Kernel: kernel, Disks: []Disk{{filepath.Join(dir, "nope"), "pvscsi"}}}, "nope: not a readable file"},
		{"unknown NIC", Options{Kernel: kernel, NICs: []string{"vmxnet3", "tulip"}}, `NIC 1: model "tulip"`},
		{"option injection", Options{Kernel: kernel, NICs: []string{"e1000,netdev=n0"}}, "want one of"},
	} {
		if _, err := Args(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestDeviceModelsExist checks every controller and NIC model Options
// accepts against this QEMU's own list: a model QEMU lacks would fail
// only when a VM starts.
func TestDeviceModelsExist(t *testing.T) {
	bin, err := Binary()
	need(t, "qemu-system-x86_64", err)
	out, err := exec.Command(bin, "-device", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -device help: %v\n%s", bin, err, out)
	}
	models := append(append(sortedKeys(scsiControllers), sortedKeys(nicModels)...), "nvme", "virtio-blk-pci", "scsi-hd")
	for _, m := range models {
		if !strings.Contains(string(out), `name "`+m+`"`) {
			t.Errorf("QEMU has no device %q", m)
		}
	}
}
