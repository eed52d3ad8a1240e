package pid1

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/machineid"
	"github.com/slateos/slate/internal/run/supervisor"
	"github.com/slateos/slate/updater"
	"github.com/slateos/slate/updater/payload"
)

// UpdaterService is how PID 1 runs the updater when the spec has an
// update section.
var UpdaterService = supervisor.Service{
	Name:    "slate-updated",
	Command: "/usr/bin/slate",
	Args:    []string{"updated"},
	Restart: configs.RestartAlways,
}

// RunUpdater is `slate updated`: the update daemon of this machine.
func RunUpdater() error {
	// SLATE-UPDATE lines go to the console itself, not through the
	// supervisor's "[slate-updated] " prefix, so they read like every
	// other contract line; logs go to stdout (console and log file).
	console := io.Writer(os.Stdout)
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		console = f
	}
	bootlog.Setup(os.Stdout, "slate-updated")
	bootlog.SetEvents(console)
	info, err := imageinfo.Load("/")
	if err != nil {
		return err
	}
	if info.Update == nil {
		return fmt.Errorf("this image has no update section in its spec")
	}
	pubs, err := payload.LoadPublicKeys(updater.PublicKeyPath)
	if err != nil {
		return err
	}
	ld := &kmod.Loader{Dir: filepath.Join("/lib/modules", info.KernelVersion), SysModule: "/sys/module"}
	disk, err := bootdisk.Detect(func() error { return ld.Probe("vfat", "nls_cp437", "nls_ascii") })
	if err != nil {
		return err
	}
	// PID 1 wrote the id before services started; without one the daemon
	// still updates, but refuses a reboot lock (see updater/lock.go).
	mid, err := machineid.Read(machineid.Path)
	if err != nil {
		logrus.WithError(err).Warn("updater: no machine id")
	}
	d := &updater.Daemon{
		MachineID:  mid,
		Name:       info.Name,
		Version:    info.Version,
		Slot:       Slot(),
		Config:     *info.Update,
		PublicKeys: pubs,
		Disk:       disk,
		StateFile:  updater.DefaultStateFile,
		StatusFile: supervisor.DefaultStatusFile,
		Containers: gatedContainers(info.Containers),
		Reboot:     func() error { return supervisor.RequestShutdown(supervisor.Reboot) },
	}
	debug.SetMemoryLimit(updater.MemoryLimit)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return d.Run(ctx)
}

// gatedContainers are the containers the health gate covers: those that
// are meant to keep running (restart is not never).
func gatedContainers(cs []imageinfo.Container) []string {
	var names []string
	for _, c := range cs {
		if c.Restart != configs.RestartNever {
			names = append(names, c.Name)
		}
	}
	return names
}
