package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// probeTimeout bounds the KVM probe boot. OVMF reaches its boot manager in
// well under a second with working KVM (about 4 s under TCG on a slow host),
// so a probe that takes longer has found a KVM that does not work.
const probeTimeout = 8 * time.Second

var probe struct {
	mu     sync.Mutex
	done   bool
	result bool
}

// ProbeKVM reports whether KVM guests really run here. /dev/kvm existing is
// not enough: on some hosts (nested virtualisation) KVM guests stop with an
// emulation failure in the firmware, or QEMU aborts on a CPU feature. So the
// probe boots the UEFI firmware with a small empty disk, exactly as slate
// boots images (-accel kvm -cpu host), and wants the boot manager's line on
// the serial console within probeTimeout. Any doubt gives false. The result is
// kept for the life of the process, unless ctx ended the probe early.
func ProbeKVM(ctx context.Context) bool {
	if ctx == nil {
		ctx = context.Background()
	}
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if probe.done {
		return probe.result
	}
	start := time.Now()
	ok, err := probeBoot(ctx, "kvm", probeTimeout)
	log := logrus.WithField("took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		log = log.WithError(err)
	}
	log.WithField("kvm", ok).Debug("qemu: KVM probe")
	if ctx.Err() == nil {
		probe.done, probe.result = true, ok
	}
	return ok
}

var bdsRe = regexp.MustCompile(`BdsDxe`)

// probeBoot boots OVMF on an empty disk with accel and reports whether the
// firmware reached its boot manager within timeout.
func probeBoot(ctx context.Context, accel string, timeout time.Duration) (bool, error) {
	if accel == "kvm" {
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			return false, fmt.Errorf("qemu: %w", err)
		}
		f.Close()
	}
	dir, err := os.MkdirTemp("", "slate-kvm-probe-")
	if err != nil {
		return false, fmt.Errorf("qemu: %w", err)
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "empty.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		return false, fmt.Errorf("qemu: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	vm, err := Start(ctx, Options{Image: disk, Accel: accel, Mem: "256M"})
	if err != nil {
		return false, err
	}
	defer vm.Kill()

	// A KVM emulation failure pauses the guest rather than ending QEMU; QEMU
	// says so on stderr, which ends the probe early.
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-vm.done:
				return
			case <-t.C:
				if strings.Contains(vm.stderr.String(), "KVM internal error") {
					cancel()
					return
				}
			}
		}
	}()
	if _, err := vm.WaitFor(ctx, bdsRe); err != nil {
		select {
		case <-vm.done: // the exit error already carries stderr
		default:
			if s := strings.TrimSpace(vm.stderr.String()); s != "" {
				err = fmt.Errorf("%w; stderr: %s", err, s)
			}
		}
		return false, err
	}
	return true, nil
}

// resolveAccel turns "auto" into "kvm" or "tcg": SLATE_ACCEL decides when
// set, otherwise ProbeKVM does.
func resolveAccel(ctx context.Context, accel string) (string, error) {
	switch accel {
	case "tcg", "kvm":
		return accel, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("qemu: accel %q: want auto, tcg or kvm", accel)
	}
	switch env := os.Getenv("SLATE_ACCEL"); env {
	case "tcg", "kvm":
		return env, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("qemu: SLATE_ACCEL=%q: want auto, tcg or kvm", env)
	}
	if ProbeKVM(ctx) {
		return "kvm", nil
	}
	return "tcg", nil
}
