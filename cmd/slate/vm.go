package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slateos/slate/internal/qemu"
)

func newVMCmd() *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Run images in QEMU"}
	var serial, mem, accel, until, ign, pxeDir, pxeVia, iso, netMode string
	var timeout time.Duration
	var forwards []string
	var sshOn bool
	var sshPort int
	var sshUser string
	run := &cobra.Command{
		Use:   "run [IMAGE]",
		Short: "Boot an image in QEMU (UEFI) with the serial console on stdout; or PXE files, or a live ISO",
		Example: `  slate vm run out/disk.raw --until SLATE-READY
  slate vm run --pxe out/pxe
  slate vm run --iso out/live.iso`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fw, err := parseForwards(forwards)
			if err != nil {
				return err
			}
			image := ""
			if len(args) == 1 {
				image = args[0]
			}
			if image == "" && pxeDir == "" && iso == "" {
				return fmt.Errorf("nothing to boot: name a disk image, --pxe DIR or --iso FILE")
			}
			var sshc *vmSSH
			if sshOn {
				if sshc, err = newVMSSH(image, sshPort, sshUser); err != nil {
					return err
				}
				fw = append(fw, qemu.Forward{HostPort: sshPort, GuestPort: sshc.guestPort})
			} else if cmd.Flags().Changed("ssh-port") || cmd.Flags().Changed("ssh-user") {
				return fmt.Errorf("--ssh-port and --ssh-user are for --ssh")
			}
			if pxeDir != "" && iso != "" {
				return fmt.Errorf("--pxe and --iso cannot be combined")
			}
			if cmd.Flags().Changed("pxe-via") && pxeDir == "" {
				return fmt.Errorf("--pxe-via is for --pxe")
			}
			opts := qemu.Options{
				Image:      image,
				CDROM:      iso,
				Mem:        mem,
				Accel:      accel,
				Forwards:   fw,
				Serial:     os.Stdout,
				SerialFile: serial,
			}
			if err := qemu.ApplyNetMode(&opts, netMode, pxeDir != ""); err != nil {
				return err
			}
			if ign != "" {
				// where Ignition (and slate) look for a config on QEMU
				opts.FwCfg = append(opts.FwCfg, qemu.FwCfg{Name: "opt/com.coreos/config", File: ign})
			}
			if iso != "" && image == "" {
				// The ISO's folder is the build's: keep the firmware's
				// variables out of it.
				tmp, err := os.MkdirTemp("", "slate-vm-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				opts.VarsFile = filepath.Join(tmp, "vars.fd")
			}
			if pxeDir != "" {
				p := &qemu.PXE{Dir: pxeDir, Via: pxeVia}
				if err := p.Start(); err != nil {
					return err
				}
				defer p.Close()
				p.Apply(&opts)
				fmt.Fprintf(os.Stderr, "slate: serving %s over TFTP (QEMU) and %s\n", pxeDir, p.URL())
			}
			var re *regexp.Regexp
			if until != "" {
				if re, err = regexp.Compile(until); err != nil {
					return fmt.Errorf("--until: %w", err)
				}
			}
			return runVM(cmd.Context(), opts, re, timeout, sshc)
		},
	}
	run.Flags().StringVar(&serial, "serial", "", "also write the serial console to this file")
	run.Flags().DurationVar(&timeout, "timeout", 0, "stop the VM after this long (0: no limit)")
	run.Flags().StringVar(&mem, "mem", "1G", "guest memory")
	run.Flags().StringVar(&accel, "accel", "auto", "accelerator: auto (KVM only when a probe boot works), tcg, kvm")
	run.Flags().StringVar(&ign, "ignition", "", "pass this Ignition config to the guest through QEMU's fw_cfg (opt/com.coreos/config)")
	run.Flags().StringVar(&until, "until", "", "stop the VM (exit 0) once a console line matches this regular expression")
	run.Flags().StringVar(&netMode, "net", "user", "the guest's network: user (a virtio NIC on QEMU's user network, the host is 10.0.2.2) or none (no NIC)")
	run.Flags().StringSliceVar(&forwards, "forward", nil, "forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (HOSTPORT:GUESTPORT, repeatable)")
	run.Flags().StringVar(&pxeDir, "pxe", "", "netboot the files of slate build --format pxe from this folder (SeaBIOS and iPXE, QEMU's TFTP, a loopback HTTP server for the root)")
	run.Flags().StringVar(&pxeVia, "pxe-via", "tftp", "with --pxe: fetch boot.ipxe, kernel and initramfs by tftp or http (much faster under emulation)")
	run.Flags().StringVar(&iso, "iso", "", "boot this live ISO as a CD-ROM (UEFI)")
	run.Flags().BoolVar(&sshOn, "ssh", false, "forward a loopback port to the guest's ssh port (the image's ssh.port) and print the ssh command once the guest's host key is on the console")
	run.Flags().IntVar(&sshPort, "ssh-port", 0, "with --ssh: the loopback port (0: a free one)")
	run.Flags().StringVar(&sshUser, "ssh-user", "", "with --ssh: the user in the printed command (default: yours, as ssh's own default)")
	vm.AddCommand(run)
	return vm
}

// runVM boots and runs the VM until the guest ends QEMU, or (re not
// nil) until a console line matches re, or timeout (0: none) passes.
func runVM(ctx context.Context, opts qemu.Options, re *regexp.Regexp, timeout time.Duration, sshc *vmSSH) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	vm, err := qemu.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer vm.Kill()
	if sshc != nil {
		go sshc.watch(ctx, vm, os.Stderr)
	}
	if re == nil {
		select {
		case <-vm.Exited():
			return vm.Wait()
		case <-ctx.Done():
			_ = vm.Kill()
			if timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("qemu: VM still running after %s, killed: %w", timeout, qemu.ErrTimeout)
			}
			return fmt.Errorf("qemu: VM killed: %w", ctx.Err())
		}
	}
	if _, err := vm.WaitFor(ctx, re); err != nil {
		return fmt.Errorf("waiting for %q on the console: %w", re, err)
	}
	fmt.Fprintf(os.Stderr, "slate: console matched %q, stopping the VM\n", re)
	// The guest has no ACPI power-button handling, so a clean request
	// would only time out; the image is read-only or journaled anyway.
	_ = vm.Kill()
	return nil
}

func parseForwards(ss []string) ([]qemu.Forward, error) {
	var out []qemu.Forward
	for _, s := range ss {
		h, g, ok := strings.Cut(s, ":")
		hp, err1 := strconv.Atoi(h)
		gp, err2 := strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 {
			return nil, fmt.Errorf("--forward %q: want HOSTPORT:GUESTPORT with ports 1-65535", s)
		}
		out = append(out, qemu.Forward{HostPort: hp, GuestPort: gp})
	}
	return out, nil
}
