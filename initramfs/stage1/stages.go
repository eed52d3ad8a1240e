package stage1

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/partitions"
)

// NewRoot is where the slot's root is mounted before switch_root.
const NewRoot = "/newroot"

// OverlayDir holds the upper and work folders of the /etc overlay on STATE.
const OverlayDir = "lib/slate/overlay/etc"

// boot is what the stages share: what init has learnt so far and where
// it works. On the machine root is "" and sys the kernel; a test gives a
// temporary folder and a fake.
type boot struct {
	root      string    // prefix of every path init opens: /proc, /sys, /dev, /run, /newroot, /lib/modules
	sys       Sys       // what needs the kernel
	start     time.Time // when run began
	procStart time.Time // when the process started (SLATE-INIT's took)
	// logSetup sends logs to the console once /dev is mounted; nil
	// leaves logging as it is (tests).
	logSetup func()

	cl       Cmdline
	kver     string       // uname -r
	memStart int64        // memory in use before init did anything
	ld       *kmod.Loader // the module loader, set by stage modules
	lt       *loadTimes
	probed   time.Time       // when the device modules were loaded
	disk     partitions.Disk // the disk with the slot's root (disk boot)
	ramDev   string          // the loop device of a root in RAM
	info     bootinfo.Info   // what boot.json will say
	peakMem  atomic.Int64    // most memory in use while the root came into RAM
	// ramLimit bounds bringing a root into RAM (ramRootLimit).
	ramLimit time.Duration
	ran      []string // the stages begun, in order
}

// path is p (an absolute path on the machine) under b's root.
func (b *boot) path(p string) string {
	if b.root == "" {
		return p
	}
	return filepath.Join(b.root, p)
}

func (b *boot) newRoot() string { return b.path(NewRoot) }

// stage is one named step of init. Its name is what SLATE-FAILED says
// when it fails; brk marks the stages slate.break= can stop at.
type stage struct {
	name string
	brk  bool
	run  func(*boot) error
}

// stages is init's plan: a boot from a disk slot, or (ram) one whose root
// is an image in RAM. Both begin with the same stages, up to and
// including cmdline, which tells which plan the rest follows.
func stages(ram bool) []stage {
	s := []stage{
		{name: "mount", run: (*boot).mountEarly},
		{name: "cmdline", run: (*boot).readCmdline},
		{name: "modules", brk: true, run: (*boot).loadModules},
	}
	if ram {
		s = append(s,
			stage{name: "root", brk: true, run: (*boot).makeNewRoot},
			stage{name: "netroot", run: (*boot).ramRoot},
			stage{name: "state", brk: true, run: (*boot).ramState},
		)
	} else {
		s = append(s,
			stage{name: "root", brk: true, run: (*boot).diskRoot},
			stage{name: "state", brk: true, run: (*boot).diskState},
		)
	}
	return append(s,
		stage{name: "etc", brk: true, run: (*boot).setupEtc},
		stage{name: "tmp", run: (*boot).mountTmp},
		stage{name: "switch_root", brk: true, run: (*boot).switchRoot},
	)
}

// breakStages are the names slate.break= accepts, in boot order.
func breakStages() []string {
	var names []string
	for _, s := range stages(false) {
		if s.brk {
			names = append(names, s.name)
		}
	}
	return names
}

// stageError carries the boot stage that failed, for SLATE-FAILED.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func fail(stage string, err error) error {
	if err == nil {
		return nil
	}
	return &stageError{stage: stage, err: err}
}

// run runs the stages in order until one fails. On the machine the last
// one execs the booted system, so run returns only with an error.
func (b *boot) run() error {
	for i := 0; ; i++ {
		// The plan is known once cmdline has run; before, both agree.
		plan := stages(b.cl.RAM)
		if i == len(plan) {
			return nil
		}
		st := plan[i]
		if st.brk && b.cl.Break == st.name {
			return fail(st.name, fmt.Errorf("stopped by slate.break=%s on the kernel command line", st.name))
		}
		b.ran = append(b.ran, st.name)
		if err := st.run(b); err != nil {
			return fail(st.name, err)
		}
	}
}

// failed prints SLATE-FAILED for err, the error run returned, and tells
// whether slate.debug asks to wait instead of rebooting.
func (b *boot) failed(err error) (wait bool) {
	stage := "init"
	if err == nil { // run ends by exec or with an error; never say nothing
		err = errors.New("init ran out of stages without switching root")
	}
	var se *stageError
	if errors.As(err, &se) {
		stage = se.stage
		err = se.err
	}
	bootlog.Event("FAILED", "stage", stage, "err", err.Error())
	// Read again rather than trust b.cl: a command line that did not
	// parse may still ask for slate.debug, with the same reader
	// (slate.debugger=1 is not slate.debug).
	raw, rerr := os.ReadFile(b.path(cmdline.Path))
	return rerr == nil && cmdline.Parse(string(raw)).Flag(cmdline.Debug)
}

func (b *boot) mountEarly() error {
	for _, m := range []struct{ src, dst, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		dst := b.path(m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := b.sys.Mount(m.src, dst, m.typ, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.typ, m.dst, err)
		}
	}
	if b.logSetup != nil {
		b.logSetup()
	}
	return nil
}

// productionLog sends init's logs to the console and the kernel log.
func productionLog() {
	bootlog.Setup(os.Stdout, "slate-init")
	// u-root's switch_root logs through the standard logger.
	log.SetOutput(io.Discard)
}

func (b *boot) readCmdline() error {
	raw, err := os.ReadFile(b.path(cmdline.Path))
	if err != nil {
		return err
	}
	if b.cl, err = ParseCmdline(string(raw)); err != nil {
		return err
	}
	b.kver = b.sys.KernelRelease()
	// What the machine holds before init does anything (kernel and the
	// unpacked initramfs): a RAM boot's cost is measured from here.
	b.memStart = b.memUsed()
	if b.cl.RAM {
		logrus.WithFields(logrus.Fields{"kernel": b.kver, "root_url": b.cl.Net.URL, "root_size": b.cl.Net.Size, "mem_used": b.memStart}).Info("slate init starting, root in RAM")
	} else {
		logrus.WithFields(logrus.Fields{"kernel": b.kver, "slot": b.cl.Slot, "root": b.cl.Root}).Info("slate init starting")
	}
	return nil
}

func (b *boot) loadModules() error {
	b.lt = &loadTimes{load: b.sys.LoadModule}
	// async_probe: a driver probes its devices in the background, so a
	// slow controller (AHCI scans its ports for ~350 ms under emulation)
	// does not hold up the disk that has the root.
	b.ld = &kmod.Loader{Dir: b.path(filepath.Join("/lib/modules", b.kver)), Load: b.lt.record, SysModule: b.path("/sys/module"), Params: "async_probe"}
	base := []string{"ext4", "overlay"}
	if b.cl.RAM {
		base = append(base, "loop")
	}
	if err := b.ld.Probe(base...); err != nil {
		return err
	}
	if _, err := b.ld.ProbeDevices(b.path("/sys")); err != nil {
		logrus.WithError(err).Debug("some device modules did not load")
	}
	logrus.WithFields(logrus.Fields{"took": bootlog.Since(b.start), "count": len(b.lt.names), "in_kernel": b.lt.total.Round(time.Millisecond), "slowest": b.lt.slowest(3)}).Info("modules loaded")
	b.probed = time.Now()
	if b.cl.RAM {
		// The module files have done their work (the drivers are in the
		// kernel now) and the booted system loads later ones from its
		// root: dropping them leaves their ~20 MiB of RAM to the root.
		if err := os.RemoveAll(b.ld.Dir); err != nil {
			logrus.WithError(err).Warn("drop the initramfs modules")
		}
	}
	return nil
}

func (b *boot) makeNewRoot() error { return os.MkdirAll(b.newRoot(), 0o755) }

func (b *boot) mountTmp() error {
	if err := b.sys.Mount("tmpfs", filepath.Join(b.newRoot(), "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	return nil
}

func (b *boot) switchRoot() error {
	if _, err := os.Stat(filepath.Join(b.newRoot(), "sbin/init")); err != nil {
		return fmt.Errorf("root %s has no /sbin/init: %w", b.info.Root, err)
	}
	if err := bootinfo.Write(b.path(bootinfo.Path), b.info); err != nil {
		return err
	}
	slot := b.cl.Slot
	if b.cl.RAM {
		slot = "none"
	}
	// took counts from package initialisation, the earliest point Go
	// code runs (PID 1's own start time is the kernel thread's, at boot).
	bootlog.Event("INIT", "slot", slot, "root", b.info.Root, "took", bootlog.Since(b.procStart))
	if err := b.sys.SwitchRoot(b.newRoot(), "/sbin/init"); err != nil {
		return err
	}
	return errors.New("exec of /sbin/init returned")
}

// setupEtc gives the system a writable /etc: an overlay whose lower layer
// is the slot's read-only /etc and whose upper layer lives on STATE, so
// local changes survive updates of the slot.
func (b *boot) setupEtc() error {
	nr := b.newRoot()
	upper := filepath.Join(nr, "var", OverlayDir, "upper")
	work := filepath.Join(nr, "var", OverlayDir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	etc := filepath.Join(nr, "etc")
	mergeAccounts(etc, upper)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", etc, upper, work)
	if err := b.sys.Mount("overlay", etc, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay on /etc (%s): %w", opts, err)
	}
	// Homes and /srv hold what people and provisioning put there: they
	// live on STATE too, bound over the root's empty folders.
	for _, d := range []struct {
		dir  string
		mode os.FileMode
	}{{"home", 0o755}, {"root", 0o700}, {"srv", 0o755}} {
		src := filepath.Join(nr, "var", "lib", "slate", "state", d.dir)
		dst := filepath.Join(nr, d.dir)
		if err := os.MkdirAll(src, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", src, err)
		}
		if _, err := os.Stat(dst); err != nil {
			continue // an older root without the folder
		}
		if err := b.sys.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on /%s: %w", src, d.dir, err)
		}
	}
	return nil
}

// loadTimes records how long each module load took: module loading is
// most of init's time under emulation, so the log says where it went.
type loadTimes struct {
	load  func(path, params string) error
	names []string
	times []time.Duration
	total time.Duration
}

func (l *loadTimes) record(path, params string) error {
	t := time.Now()
	err := l.load(path, params)
	d := time.Since(t)
	l.names = append(l.names, strings.TrimSuffix(filepath.Base(path), ".ko"))
	l.times = append(l.times, d)
	l.total += d
	return err
}
