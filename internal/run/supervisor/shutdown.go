package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// How long the last processes (orphans, daemons that left their service's
// group) get after the services are stopped.
const (
	killAllTermWait = 3 * time.Second
	killAllKillWait = 2 * time.Second
)

// finalShutdown is PID 1's end: the services are stopped; end every other
// process, flush and unmount the writable filesystems, power off or reboot.
// It returns only if reboot(2) fails.
func (s *supervisor) finalShutdown(kind Kind) error {
	// Only PID 1 may do this: kill(-1) outside it would hit every process
	// of the user.
	if os.Getpid() != 1 {
		return fmt.Errorf("final shutdown outside PID 1 (pid %d)", os.Getpid())
	}
	killAll(unix.SIGTERM, killAllTermWait)
	killAll(unix.SIGKILL, killAllKillWait)
	unix.Sync()
	unmountAll()
	unix.Sync()

	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if kind == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(2) for %s: %w", kind, err)
	}
	return nil
}

// killAll signals every process but PID 1 and waits up to wait for the
// user-space ones to be gone (the reaper collects them meanwhile).
func killAll(sig unix.Signal, wait time.Duration) {
	if err := unix.Kill(-1, sig); err != nil && err != unix.ESRCH {
		logrus.WithError(err).Warnf("supervisor: kill -1 %s", unix.SignalName(sig))
	}
	deadline := time.Now().Add(wait)
	for userProcesses() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

// userProcesses counts processes other than PID 1 that are user space:
// kernel threads and zombies have an empty cmdline.
func userProcesses() int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}

// unmountAll unmounts the writable filesystems in unmountPlan order,
// remounts read-only what is still busy, and the root last.
func unmountAll() {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		logrus.WithError(err).Error("supervisor: cannot read the mount table, filesystems stay mounted")
		return
	}
	mounts, err := parseMountInfo(f)
	f.Close()
	if err != nil {
		logrus.WithError(err).Error("supervisor: filesystems stay mounted")
		return
	}
	for _, m := range unmountPlan(mounts) {
		err := unix.Unmount(m.target, 0)
		if err == nil {
			logrus.WithField("mount", m.target).Info("supervisor: unmounted")
			continue
		}
		if rerr := unix.Mount("", m.target, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
			logrus.WithFields(logrus.Fields{"mount": m.target, "umount": err, "remount": rerr}).Error("supervisor: filesystem left read-write")
		} else {
			logrus.WithFields(logrus.Fields{"mount": m.target, "umount": err}).Info("supervisor: remounted read-only")
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logrus.WithError(err).Warn("supervisor: remount / read-only")
	}
}
