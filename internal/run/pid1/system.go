// Package pid1 is the glue between slate's init and the supervisor: as
// PID 1 of the booted system it reads the image description from the
// slot's root, loads the modules of devices present (NICs, watchdogs),
// and hands over to the supervisor.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/internal/boot/bootinfo"
	"github.com/slateos/slate/internal/bootdisk"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/cmdline"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/imageinfo"
	"github.com/slateos/slate/internal/machineid"
	"github.com/slateos/slate/internal/run/cgroup"
	"github.com/slateos/slate/internal/run/ignition"
	"github.com/slateos/slate/internal/run/provision"
	"github.com/slateos/slate/internal/run/supervisor"
)

// Main runs PID 1. It returns only if the supervisor cannot run at all;
// then it reports the failure and reboots so boot counting takes over.
func Main() {
	bootlog.Setup(os.Stdout, "slate")
	err := run()
	bootlog.Event("FAILED", "stage", "system", "err", err.Error())
	time.Sleep(5 * time.Second)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// Slot reads slate.slot= from the kernel command line; a machine whose
// root is in RAM has none.
func Slot() string {
	c, _ := cmdline.Read()
	return SlotFrom(c)
}

// SlotFrom is Slot for a parsed command line: the last slate.slot= wins,
// as it does for init, which mounted that slot's root.
func SlotFrom(c cmdline.Cmdline) string {
	if v := c.Get(cmdline.Slot); v != "" {
		return v
	}
	return "none"
}

func run() error {
	info, err := imageinfo.Load("/")
	if err != nil {
		return err
	}
	mountSystem()
	dir := filepath.Join("/lib/modules", info.KernelVersion)
	// fw_cfg carries a provisioning config on QEMU: load its driver first
	// and without async_probe, so the config is there when looked for
	// (the device probe below then finds the module loaded and skips it).
	_ = (&kmod.Loader{Dir: dir, SysModule: "/sys/module"}).Probe("qemu_fw_cfg")
	ld := &kmod.Loader{Dir: dir, SysModule: "/sys/module", Params: "async_probe"}
	if mods, err := ld.ProbeDevices("/sys"); err != nil {
		logrus.WithError(err).Warn("loading device modules")
	} else if len(mods) > 0 {
		logrus.WithField("modules", strings.Join(mods, ",")).Info("device modules loaded")
	}
	// The watchdog's driver was just loaded (async): arm it when its node
	// appears, without holding up the boot.
	go newWatchdog().arm(nil)
	setupContainerNetwork(info, dir)
	rawCmdline, _ := os.ReadFile(cmdline.Path)
	kc := cmdline.Parse(string(rawCmdline))
	dhcp := info.Network.DHCP
	if provision.URLFromCmdline(string(rawCmdline)) != "" {
		dhcp = true // the config is fetched over the network
	}
	services := supervisor.FromSpecs(info.Services)
	services = append(services, containerServices(info.Containers)...)
	services = append(services, sshServices(info)...)
	boot, berr := bootinfo.Read(bootinfo.Path)
	if berr != nil && !errors.Is(berr, os.ErrNotExist) {
		// Without the record this may be a machine without a slot: the
		// updater must not guess.
		logrus.WithError(berr).Error("cannot tell how this machine booted")
	}
	if boot.Iface != "" {
		dhcp = true // init's lease needs renewing, and the root came over the network
	}
	switch {
	case info.Update != nil && berr != nil && !errors.Is(berr, os.ErrNotExist):
		logrus.Warn("the updater does not run: the boot record is unreadable")
	case info.Update != nil && boot.RAM():
		// No slot to write: such a machine gets a new version by booting
		// new PXE files or a new ISO.
		logrus.Info("the root is in RAM: the updater does not run")
	case info.Update != nil:
		services = append(services, UpdaterService)
	}
	return supervisor.Run(context.Background(), supervisor.Config{
		Version:    info.Version,
		Slot:       SlotFrom(kc),
		Hostname:   info.Hostname,
		Services:   services,
		DHCP:       dhcp,
		DHCPIface:  boot.Iface,
		LogDir:     "/var/log/slate",
		Cgroups:    cgroup.New(),
		StatusFile: supervisor.DefaultStatusFile,
		Console:    os.Stdout,
		PID1:       true,
		Provision: func(ctx context.Context) ([]supervisor.Service, error) {
			return provisionHook(ctx, string(rawCmdline), info.KernelVersion, services)
		},
	})
}

// containerServices are the image's containers as services; one that
// cannot be run (its entry is broken) is reported and left out, and the
// others run: the updater's health gate then finds it missing.
func containerServices(cs []imageinfo.Container) []supervisor.Service {
	var out []supervisor.Service
	for _, c := range cs {
		svc, err := supervisor.FromContainer(c)
		if err != nil {
			logrus.WithError(err).WithField("container", c.Name).Error("container left out")
			bootlog.Event("SERVICE", "name", c.Name, "state", "failed", "err", err.Error())
			continue
		}
		out = append(out, svc)
	}
	return out
}

// provisionHook runs first-boot provisioning; a failure stops the boot
// with the report on the console, as Ignition does.
func provisionHook(ctx context.Context, cmdline, kver string, image []supervisor.Service) ([]supervisor.Service, error) {
	fetcher := &ignition.DefaultFetcher{}
	env := provision.Env{
		Cmdline: cmdline,
		FwCfg:   provision.FwCfgPath,
		Baked:   provision.BakedPath,
		ESP:     func() ([]byte, error) { return readESPConfig(kver) },
		Fetch: func(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
			return fetcher.Fetch(ctx, u, nil)
		},
	}
	for _, s := range image { // a unit may not replace one of them
		env.Services = append(env.Services, s.Name)
	}
	svcs, err := provision.Run(ctx, "/", env, fetcher, bootlog.Event)
	if err != nil {
		bootlog.Event("FAILED", "stage", "ignition", "err", err.Error())
		return nil, err
	}
	ensureMachineID()
	return svcs, nil
}

// ensureMachineID gives the machine its id once provisioning has run, so
// an id a config wrote to /etc/machine-id wins (and one that is not valid
// is replaced, with a line saying so). /etc's upper layer is on STATE: the
// id stays across updates and rollbacks.
func ensureMachineID() {
	id, created, replaced, err := machineid.Ensure(machineid.Path)
	switch {
	case err != nil:
		logrus.WithError(err).Error("no machine id: fleet coordination (reboot locks, reports) will not work")
	case replaced:
		logrus.WithField("id", id).Warn("machine id: /etc/machine-id was not 32 lowercase hex digits; replaced")
	case created:
		logrus.WithField("id", id).Info("machine id created")
	}
}

// readESPConfig reads /slate/config.ign from the ESP of the boot disk.
func readESPConfig(kver string) ([]byte, error) {
	ld := &kmod.Loader{Dir: filepath.Join("/lib/modules", kver), SysModule: "/sys/module"}
	m, err := bootdisk.Detect(func() error { return ld.Probe("vfat", "nls_cp437", "nls_ascii") })
	if err != nil {
		// no boot disk with an ESP: no config there either
		return nil, fmt.Errorf("%w (%v)", os.ErrNotExist, err) //nolint:errorlint // callers see "no config" only; why is context
	}
	var data []byte
	err = m.WithESP(func(dir string) error {
		var err error
		data, err = os.ReadFile(filepath.Join(dir, provision.ESPPath))
		return err
	})
	return data, err
}
