package fatfs

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// mountCheck mounts the filesystem read-only through a loop device and
// compares the tree the kernel sees with want. The host kernel may have no
// vfat (the CI machines' does not), so without root, loop devices or vfat
// it is skipped: a kernel reads slate's ESPs in every QEMU end-to-end test
// anyway (systemd-boot and the guest kernel's vfat, which the updater
// mounts and writes).
func mountCheck(t *testing.T, img string, offset int64, want map[string][]byte) {
	t.Helper()
	t.Run("mount", func(t *testing.T) {
		if reason := mountUnavailable(); reason != "" {
			t.Skipf("cannot mount vfat: %s", reason)
		}
		mnt := t.TempDir()
		opts := "loop,ro,utf8,offset=" + strconv.FormatInt(offset, 10)
		if out, err := exec.Command("mount", "-t", "vfat", "-o", opts, img, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount: %v\n%s", err, out)
		}
		defer func() {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount: %v\n%s", err, out)
			}
		}()
		sameTree(t, "mount", want, walkOS(t, mnt))
	})
}

var (
	mountOnce   sync.Once
	mountReason string
)

// mountUnavailable says why vfat cannot be mounted here, or "".
func mountUnavailable() string {
	mountOnce.Do(func() { mountReason = probeMount() })
	return mountReason
}

func probeMount() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no loop devices"
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fss), "\tvfat\n") {
		exec.Command("modprobe", "vfat").Run()
		if fss, err = os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fss), "\tvfat\n") {
			return "the kernel has no vfat support"
		}
	}
	return ""
}
