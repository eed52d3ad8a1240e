// Package qemu runs slate images in QEMU for `slate vm run` and the end-to-end
// tests: it builds the command line, boots the VM (UEFI firmware and disk, or a
// direct kernel boot), streams and records the serial console, and stops the VM
// nicely or by a power cut.
//
// Only the serial console of the guest reaches the caller's writer: QEMU runs
// without display or monitor, its stdin is /dev/null and its own messages on
// stderr are kept for error reports.
package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Forward forwards a TCP port of the host to a port of the guest. The host side
// is always bound on 127.0.0.1 only, so a test VM never listens on the network.
// HostPort 0 asks Start for a free port (see Start and VM.Forwards).
type Forward struct{ HostPort, GuestPort int }

// FwCfg passes a host file to the guest through QEMU's fw_cfg device, as
// -fw_cfg name=NAME,file=FILE (for example opt/com.coreos/config).
type FwCfg struct{ Name, File string }

// Options describe one VM.
type Options struct {
	// Image is the disk image; its format comes from the extension (.qcow2 is
	// qcow2, anything else raw). It may be empty for a direct kernel boot.
	Image string
	// VarsFile is the writable copy of the OVMF variable store. Default:
	// <Image>.vars.fd beside the image. Start creates it from the OVMF template
	// when it does not exist, so boot entries and counters persist across runs.
	VarsFile string
	// Mem is the guest memory in QEMU's syntax ("1G", "512M"); default "1G".
	Mem string
	// CPUs is the number of virtual CPUs; default 1.
	CPUs int
	// Accel is "auto" (the default: KVM only if ProbeKVM says it works; the
	// environment variable SLATE_ACCEL overrides the choice), "tcg" or "kvm".
	// Args itself never probes and takes "auto" as "tcg"; Start resolves it.
	Accel string
	// Forwards are TCP forwards from 127.0.0.1 on the host into the guest.
	Forwards []Forward
	// FwCfg are files passed to the guest through fw_cfg.
	FwCfg []FwCfg
	// Network asks for the guest's virtio-net NIC with QEMU user networking
	// (the guest reaches the host at 10.0.2.2). That NIC is there by
	// default, as QEMU gives one: a test that needs the network says so
	// with Network, one that needs none says so with NoNetwork.
	Network bool
	// NoNetwork leaves the guest without a NIC (-nic none). It cannot be
	// combined with Network, Forwards or BootFile.
	NoNetwork bool
	// Serial receives the serial console stream as it comes (may be nil).
	Serial io.Writer
	// SerialFile, when set, also gets the serial stream appended.
	SerialFile string
	// Kernel, Initrd and Append select a direct kernel boot (no UEFI firmware)
	// instead of firmware and disk; Image is still attached when given.
	Kernel, Initrd, Append string
	// CDROM is an ISO image attached as a read-only CD-ROM, booted first
	// under UEFI (El Torito).
	CDROM string
	// BootFile selects a network boot: the firmware is SeaBIOS, whose
	// iPXE option ROM gets an address from QEMU's user network and
	// fetches BootFile (an iPXE script or kernel) by TFTP from TFTPDir.
	// It implies Network.
	BootFile, TFTPDir string
	// NoReboot makes a guest reboot (or a watchdog reset, or a panic with
	// panic=N) end QEMU instead of restarting the guest.
	NoReboot bool
	// Disks are more disks, each behind a storage controller of its own
	// (see Disk), attached after Image.
	Disks []Disk
	// NICs are more network cards by QEMU device model ("vmxnet3",
	// "rtl8139", "e1000", ...), each on a QEMU user network of its own,
	// attached after the one Network gives. Without Network (or Forwards
	// or BootFile) they replace the default NIC.
	NICs []string
	// ExtraArgs are appended to the command line as they are.
	ExtraArgs []string
}

// ApplyNetMode sets opts for `slate vm run --net MODE`: "user" (the
// default, a NIC on QEMU's user network, as QEMU gives one) or "none".
// netboot says --pxe is given, which needs the network.
func ApplyNetMode(opts *Options, mode string, netboot bool) error {
	switch mode {
	case "", "user":
		opts.Network = true
	case "none":
		if len(opts.Forwards) > 0 {
			return fmt.Errorf("--net none: --forward needs the network")
		}
		if netboot {
			return fmt.Errorf("--net none: --pxe needs the network")
		}
		opts.NoNetwork = true
	default:
		return fmt.Errorf("--net %q: want user or none", mode)
	}
	return nil
}

// ovmfPairs are the firmware code images and their matching variable store
// templates as distributions install them. Code and vars must come from the
// same pair: a 2 MiB vars store does not work with the 4 MiB code image.
var ovmfPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},         // Debian 12, Ubuntu 22.04+
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},               // older Debian/Ubuntu
	{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},     // Fedora
	{"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}, // Arch
	{"/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"},
	{"/usr/share/qemu/ovmf-x86_64-code.bin", "/usr/share/qemu/ovmf-x86_64-vars.bin"}, // openSUSE
}

// FindOVMF returns the UEFI firmware code image and the template of its
// variable store.
func FindOVMF() (code, varsTemplate string, err error) {
	for _, p := range ovmfPairs {
		if isFile(p[0]) && isFile(p[1]) {
			return p[0], p[1], nil
		}
	}
	return "", "", errors.New("qemu: OVMF UEFI firmware not found (looked for " +
		ovmfPairs[0][0] + " and others): install the ovmf package (apt-get install ovmf)")
}

// binaryName is the QEMU system emulator slate runs.
const binaryName = "qemu-system-x86_64"

// Binary returns the path of qemu-system-x86_64.
func Binary() (string, error) {
	p, err := exec.LookPath(binaryName)
	if err != nil {
		return "", fmt.Errorf("qemu: %s not found in PATH: install qemu-system-x86 (apt-get install qemu-system-x86): %w", binaryName, err)
	}
	return p, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// varsPath is where the writable firmware variable store of opts lives.
func varsPath(opts Options) string {
	if opts.VarsFile != "" {
		return opts.VarsFile
	}
	if opts.Image == "" {
		return opts.CDROM + ".vars.fd"
	}
	return opts.Image + ".vars.fd"
}

// usesOVMF reports whether opts boot through the UEFI firmware.
func usesOVMF(opts Options) bool { return opts.Kernel == "" && opts.BootFile == "" }

// diskFormat maps the image name to QEMU's format name.
func diskFormat(image string) string {
	if strings.EqualFold(filepath.Ext(image), ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// optEscape escapes a value inside a QEMU option string, where a comma
// separates options and a doubled comma stands for a literal one.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

var memRe = regexp.MustCompile(`^[1-9][0-9]*[KMGT]?$`)

// Args returns QEMU's command line for opts (without the binary name). It
// checks opts and reads the file system to find the firmware and check that the
// named files exist, but changes nothing: Start creates the vars file.
func Args(opts Options) ([]string, error) {
	mem := opts.Mem
	if mem == "" {
		mem = "1G"
	}
	if !memRe.MatchString(mem) {
		return nil, fmt.Errorf("qemu: memory size %q: want a number with an optional K, M, G or T suffix, such as 1G", mem)
	}
	cpus := opts.CPUs
	if cpus == 0 {
		cpus = 1
	}
	if cpus < 0 || cpus > 255 {
		return nil, fmt.Errorf("qemu: cpus %d: want 1 to 255", cpus)
	}

	machine := "q35"
	if opts.BootFile != "" {
		// SeaBIOS then prints to the serial port, and so does the iPXE
		// ROM it runs: what iPXE fetched, or why it failed, is on the
		// console with the rest.
		machine += ",graphics=off"
	}
	args := []string{"-nodefaults", "-machine", machine}
	switch opts.Accel {
	case "", "auto", "tcg":
		// -cpu max gives the guest every feature TCG emulates, so a generic
		// x86-64 kernel takes its usual paths.
		args = append(args, "-accel", "tcg", "-cpu", "max")
	case "kvm":
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		return nil, fmt.Errorf("qemu: accel %q: want auto, tcg or kvm", opts.Accel)
	}
	args = append(args, "-m", mem, "-smp", strconv.Itoa(cpus),
		// The serial console is QEMU's stdout; nothing else may print there.
		"-display", "none", "-monitor", "none", "-serial", "stdio")
	if opts.NoReboot {
		args = append(args, "-no-reboot")
	}

	if opts.Kernel != "" {
		if !isFile(opts.Kernel) {
			return nil, fmt.Errorf("qemu: kernel %s: not a readable file", opts.Kernel)
		}
		args = append(args, "-kernel", opts.Kernel)
		if opts.Initrd != "" {
			if !isFile(opts.Initrd) {
				return nil, fmt.Errorf("qemu: initrd %s: not a readable file", opts.Initrd)
			}
			args = append(args, "-initrd", opts.Initrd)
		}
		if opts.Append != "" {
			args = append(args, "-append", opts.Append)
		}
	} else if opts.BootFile != "" {
		// SeaBIOS (QEMU's default firmware) runs the NIC's iPXE ROM,
		// which also reads scripts; -boot n puts the network first.
		if fi, err := os.Stat(opts.TFTPDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("qemu: TFTP folder %q: not a folder", opts.TFTPDir)
		}
		if opts.CDROM != "" {
			return nil, errors.New("qemu: a network boot and a CD-ROM boot cannot be combined")
		}
		args = append(args, "-boot", "n")
	} else {
		if opts.Initrd != "" || opts.Append != "" {
			return nil, errors.New("qemu: initrd and append need a kernel (direct kernel boot)")
		}
		if opts.Image == "" && opts.CDROM == "" {
			return nil, errors.New("qemu: no disk image, CD-ROM, boot file or kernel: nothing to boot")
		}
		code, _, err := FindOVMF()
		if err != nil {
			return nil, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(code),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(varsPath(opts)))
	}

	if opts.Image != "" {
		if fi, err := os.Stat(opts.Image); err != nil {
			return nil, fmt.Errorf("qemu: disk image: %w", err)
		} else if fi.IsDir() {
			return nil, fmt.Errorf("qemu: disk image %s is a directory", opts.Image)
		}
		// cache=writeback: writes go through the host page cache and every
		// guest flush becomes an fdatasync of the image (and, for qcow2, a
		// write-out of QEMU's metadata caches first). So data the guest has
		// fsynced is in the image file before a SIGKILL of QEMU, which is what
		// the power-cut tests rely on. cache=unsafe ignores guest flushes and
		// can lose qcow2 metadata on a kill.
		args = append(args, "-drive", "file="+optEscape(opts.Image)+
			",format="+diskFormat(opts.Image)+",if=virtio,cache=writeback")
	}

	if opts.CDROM != "" {
		if !isFile(opts.CDROM) {
			return nil, fmt.Errorf("qemu: CD-ROM image %s: not a readable file", opts.CDROM)
		}
		// q35's AHCI controller takes an ide-cd; bootindex puts it before
		// the disk, as a machine booting a live medium would.
		args = append(args, "-drive", "file="+optEscape(opts.CDROM)+",format=raw,if=none,id=cd0,media=cdrom,readonly=on",
			"-device", "ide-cd,drive=cd0,bootindex=0")
	}

	if opts.NoNetwork && (opts.Network || len(opts.Forwards) > 0 || opts.BootFile != "" || len(opts.NICs) > 0) {
		return nil, fmt.Errorf("qemu: no network (NoNetwork) cannot be combined with a NIC, forwards or a network boot")
	}
	// As with QEMU's own default NIC, cards named in NICs replace the
	// default one unless Network (or what needs it) asks for it too.
	defaultNIC := opts.Network || len(opts.Forwards) > 0 || opts.BootFile != "" || len(opts.NICs) == 0
	switch {
	case opts.NoNetwork:
		args = append(args, "-nic", "none")
	case defaultNIC:
		netdev := "user,id=n0"
		if opts.BootFile != "" {
			netdev += ",tftp=" + optEscape(opts.TFTPDir) + ",bootfile=" + optEscape(opts.BootFile)
		}
		for _, f := range opts.Forwards {
			if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
				return nil, fmt.Errorf("qemu: forward %d->%d: ports must be 1 to 65535", f.HostPort, f.GuestPort)
			}
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
		}
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0")
	}

	for _, fc := range opts.FwCfg {
		// QEMU reserves names outside opt/ and limits them to 55 bytes.
		if !strings.HasPrefix(fc.Name, "opt/") || len(fc.Name) > 55 || len(fc.Name) <= len("opt/") || strings.Contains(fc.Name, ",") {
			return nil, fmt.Errorf("qemu: fw_cfg name %q: want opt/<name>, at most 55 bytes, no comma", fc.Name)
		}
		if !isFile(fc.File) {
			return nil, fmt.Errorf("qemu: fw_cfg %s: file %s: not a readable file", fc.Name, fc.File)
		}
		args = append(args, "-fw_cfg", "name="+fc.Name+",file="+optEscape(fc.File))
	}

	more, err := deviceArgs(opts)
	if err != nil {
		return nil, err
	}
	args = append(args, more...)

	// A watchdog the guest may arm; it does nothing until the guest opens it.
	args = append(args, "-device", "i6300esb")
	return append(args, opts.ExtraArgs...), nil
}
