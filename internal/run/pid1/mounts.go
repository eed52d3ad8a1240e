package pid1

import (
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/run/cgroup"
)

// systemMount is one filesystem PID 1 mounts in the booted root, after
// switch_root (init moved /dev, /proc, /sys and /run into it), so nothing
// has to survive the move.
type systemMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	// magic is the filesystem's statfs type: a target already of that
	// type is left as it is (a second start of PID 1 in a test, a kernel
	// that mounted it).
	magic int64
}

// systemMounts are what containers need of the host: cgroup2 with
// nsdelegate (a cgroup namespace is a delegation boundary), a devpts of
// its own with the usual tty group and modes, and /dev/shm.
var systemMounts = []systemMount{
	{"cgroup2", cgroup.Mountpoint, "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate", unix.CGROUP2_SUPER_MAGIC},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,gid=5,mode=620,ptmxmode=666", unix.DEVPTS_SUPER_MAGIC},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", unix.TMPFS_MAGIC},
}

// mountSystem mounts systemMounts. A failure is logged and the boot goes
// on: services without cgroups still run, and a container says why it
// cannot start.
func mountSystem() {
	for _, m := range systemMounts {
		if err := m.mount(); err != nil {
			logrus.WithError(err).Error("system: mount")
		}
	}
}

func (m systemMount) mount() error {
	var st unix.Statfs_t
	if err := unix.Statfs(m.target, &st); err == nil && st.Type == m.magic {
		if m.magic != unix.TMPFS_MAGIC || isMountpoint(m.target) {
			return nil
		}
	}
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("%s: %w", m.target, err)
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if errors.Is(err, unix.EINVAL) && m.fstype == "cgroup2" {
		// a kernel without nsdelegate
		err = unix.Mount(m.source, m.target, m.fstype, m.flags, "")
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", m.fstype, m.target, m.data, err)
	}
	return nil
}

// isMountpoint reports whether dir is on another device than its parent
// (a tmpfs /dev/shm inside the /dev devtmpfs has the same magic as /run).
func isMountpoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(dir+"/..", &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}
