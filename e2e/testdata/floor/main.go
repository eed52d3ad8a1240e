// Command floor is the smallest possible init: as PID 1 it prints
// FLOOR-READY on the console and powers the machine off. Built into an
// image in place of slate (slate build --slate floor), it gives the boot
// time of the same firmware, loader and kernel with no init work at all:
// the floor that slate's boot time is measured against.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getpid() != 1 {
		// Never power off a machine it was not booted as init of.
		fmt.Fprintln(os.Stderr, "floor: not PID 1: refusing to run")
		os.Exit(2)
	}
	con := console()
	fmt.Fprintln(con, "FLOOR-READY")
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// PID 1 must not exit (the kernel would panic): report and wait.
	fmt.Fprintf(con, "FLOOR-FAILED poweroff: %v\n", err)
	select {}
}

// console returns where the line goes. The kernel gives init the console
// as stdout when the initramfs has /dev/console; when it does not, stdout
// is closed and the console is reached through a devtmpfs on /dev.
func console() io.Writer {
	if _, err := unix.FcntlInt(uintptr(1), unix.F_GETFD, 0); err == nil {
		return os.Stdout
	}
	f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		_ = os.MkdirAll("/dev", 0o755)
		_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
		f, err = os.OpenFile("/dev/console", os.O_WRONLY, 0)
	}
	if err != nil {
		return io.Discard
	}
	return f
}
