package pid1

import (
	"errors"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The hardware watchdog is what makes a hang count as a failed boot: a
// slot whose kernel or PID 1 stops (a deadlock, a panic with
// kernel.panic=0) is reset by the watchdog, systemd-boot's counting has
// already taken one of the slot's tries, and once they are used up the
// machine comes back on the other slot. PID 1 arms it and feeds it from a
// goroutine of its own for as long as it runs; it is never closed, so a
// reboot or power-off leaves it to the kernel and the firmware.

const (
	// watchdogDev is the kernel's first watchdog (i6300esb on QEMU,
	// iTCO_wdt on Intel servers; their modules are in every image).
	watchdogDev = "/dev/watchdog"
	// watchdogTimeout is asked of the device: long enough that a loaded
	// machine under emulation never misses a feed, short enough that a
	// hung slot's tries are used up within minutes.
	watchdogTimeout = 30 * time.Second
	// watchdogWait is how long PID 1 waits for the device: its driver is
	// loaded with async_probe, so the node may come a moment later.
	watchdogWait = 10 * time.Second
)

// watchdog is one watchdog device and how it is fed.
type watchdog struct {
	dev     string
	timeout time.Duration
	wait    time.Duration
	// setTimeout asks the driver for a timeout and returns the one it
	// took (WDIOC_SETTIMEOUT); a file that is no watchdog fails.
	setTimeout func(fd int, secs int) (int, error)
}

func newWatchdog() *watchdog {
	return &watchdog{dev: watchdogDev, timeout: watchdogTimeout, wait: watchdogWait, setTimeout: setWatchdogTimeout}
}

func setWatchdogTimeout(fd, secs int) (int, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs); err != nil {
		return 0, err
	}
	return unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
}

// arm waits for the device, opens it (which starts it), sets its timeout
// and feeds it at a quarter of the timeout until stop is closed (only
// tests close it). It reports whether the watchdog is armed. A machine
// without a watchdog runs as before.
func (w *watchdog) arm(stop <-chan struct{}) bool {
	deadline := time.Now().Add(w.wait)
	for {
		if _, err := os.Stat(w.dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			logrus.WithField("dev", w.dev).Info("no watchdog: a hang of this machine is not reset")
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	f, err := os.OpenFile(w.dev, os.O_WRONLY, 0)
	if err != nil {
		// busy (someone else holds it) or refused: nothing is armed
		logrus.WithError(err).WithField("dev", w.dev).Warn("watchdog: cannot open it; a hang of this machine is not reset")
		return false
	}
	timeout := w.timeout
	if got, err := w.setTimeout(int(f.Fd()), int(w.timeout/time.Second)); err != nil {
		// the device runs with its own timeout; feeding often enough for
		// ours is still right for any timeout of a second or more, so
		// feed every second
		logrus.WithError(err).WithField("dev", w.dev).Warn("watchdog: cannot set its timeout; feeding it every second")
		timeout = 4 * time.Second
	} else if got > 0 {
		// the driver may round it to what its hardware can count
		timeout = time.Duration(got) * time.Second
	}
	every := timeout / 4
	logrus.WithFields(logrus.Fields{"dev": w.dev, "timeout": timeout}).Info("watchdog armed")
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		warned := false
		for {
			// any byte but 'V' (the magic close) feeds it
			if _, err := f.Write([]byte{0}); err != nil && !errors.Is(err, unix.EINTR) && !warned {
				logrus.WithError(err).Warn("watchdog: feeding it")
				warned = true
			}
			select {
			case <-stop:
				_ = f.Close()
				return
			case <-t.C:
			}
		}
	}()
	return true
}
