package stage1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/netconf"
)

// Network bring-up for a network boot: interfaces get this long to appear
// after their drivers load, and DHCP this many rounds (each round asks on
// every interface at once and retries its requests) before the boot fails.
var (
	netWiredWait    = 15 * time.Second
	netDHCPAttempts = 4
	netDHCPTimeout  = 3 * time.Second
)

// netUp configures the first interface that gets a DHCP lease. The one
// the machine netbooted from (BOOTIF) is asked alone first: on a machine
// with several networks the root is most likely reachable where the boot
// script came from.
func netUp(ctx context.Context, cl Cmdline) (netconf.Lease, error) {
	if err := netconf.LoopbackUp(); err != nil {
		logrus.WithError(err).Warn("loopback")
	}
	// resolv.conf is written here and carried into the booted system's
	// view only through its own DHCP; init needs it for a root URL by name.
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return netconf.Lease{}, err
	}
	names, err := netconf.WaitWired(ctx, "/sys/class/net", netWiredWait)
	if err != nil {
		return netconf.Lease{}, fmt.Errorf("network: %w after %s (drivers loaded for the network cards found: see the module lines above)", err, netWiredWait)
	}
	var first []string
	if cl.BootIf != "" {
		if n := netconf.MACOf("/sys/class/net", cl.BootIf); n != "" {
			first = []string{n}
		}
	}
	dhcp := netconf.DHCP{Timeout: netDHCPTimeout, Retries: 2, LinkUp: 10 * time.Second, ResolvConf: "/etc/resolv.conf"}
	var last error
	for attempt := 1; attempt <= netDHCPAttempts; attempt++ {
		try := names
		if attempt == 1 && first != nil {
			try = first
		}
		l, err := dhcp.Request(ctx, try)
		if err == nil {
			return l, nil
		}
		last = err
		if attempt == netDHCPAttempts {
			break
		}
		logrus.WithError(err).WithField("attempt", attempt).Warn("DHCP failed, retrying")
		select {
		case <-ctx.Done():
			return netconf.Lease{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return netconf.Lease{}, fmt.Errorf("network: no DHCP lease on %s after %d attempts: %w", strings.Join(names, ", "), netDHCPAttempts, last)
}

// loopAttach puts a read-only loop device over path.
func loopAttach(path string) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("open /dev/loop-control (is the loop module in the initramfs?): %w", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("find a free loop device: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	var ld *os.File
	for i := 0; ; i++ {
		ld, err = os.OpenFile(dev, os.O_RDONLY, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond) // devtmpfs adds the node
	}
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer ld.Close()
	img, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer img.Close()
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY
	copy(cfg.Info.File_name[:], path)
	err = unix.IoctlLoopConfigure(int(ld.Fd()), &cfg)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		// Kernels before 5.8 have no LOOP_CONFIGURE: the two-step way.
		if err = unix.IoctlSetInt(int(ld.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err == nil {
			if err = unix.IoctlLoopSetStatus64(int(ld.Fd()), &cfg.Info); err != nil {
				_ = unix.IoctlSetInt(int(ld.Fd()), unix.LOOP_CLR_FD, 0)
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("attach %s to %s: %w", path, dev, err)
	}
	return dev, nil
}
