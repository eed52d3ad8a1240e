// Package supervisor is PID 1 of a booted slate system: it sets the
// hostname, brings up the network, starts the services of the image spec,
// restarts them per policy, reaps every orphan, and on a shutdown request
// stops the services, unmounts the writable filesystems and powers off or
// reboots.
//
// The same code runs outside PID 1 (tests, a supervisor in a container):
// Run then makes the process a child subreaper so that orphans of its
// services are still reaped by it, and returns after stopping the services
// instead of calling reboot(2).
//
// Once the services start, Run owns every child of the process: it reaps
// them with wait4(-1), so nothing else in the process may start and wait
// for children of its own (exec.Cmd.Wait would fail with ECHILD) until Run
// returns. Config.BeforeServices runs before that and may.
//
// Console lines, one per event, key=value after a fixed prefix:
//
//	SLATE-SERVICE name=web state=started pid=42
//	SLATE-SERVICE name=web state=exited code=1        (or signal=SIGKILL)
//	SLATE-SERVICE name=web state=exited signal=SIGKILL oom=true (the OOM killer killed in its cgroup)
//	SLATE-SERVICE name=web state=failed err="..."     (could not be started)
//	SLATE-SERVICE name=web state=restarting in=200ms
//	SLATE-SERVICE name=web state=stopped              (policy says no restart)
//	SLATE-SERVICE name=init state=running pid=41      (a oneshot is running)
//	SLATE-SERVICE name=init state=done                (a oneshot exited 0)
//	SLATE-SERVICE name=init state=failed code=1       (a oneshot did not; or signal=)
//	SLATE-SERVICE name=web state=skipped reason="requires init, which failed"
//	SLATE-SERVICE name=web health=healthy             (a container's health check: starting,
//	                                                    healthy, or unhealthy err="...")
//	SLATE-READY version=1.2.0 slot=a                  (once, every service resolved)
//	SLATE-NET iface=eth0 addr=10.0.2.15/24 gw=10.0.2.2 (or err="...")
//	SLATE-SHUTDOWN action=poweroff                    (or reboot)
//
// Services start in dependency order: one starts once every service in its
// After and Requires has started (a simple service: its program runs; a
// oneshot: it exited 0). One whose Requires failed (a oneshot that did not
// exit 0, a simple service that never started or ended with a failure and
// is not restarted) or was skipped is skipped too; so are the services on
// a dependency cycle, and a service that requires a service that does not
// exist. An After that names no service is ignored with a warning.
//
// Two targets can be named in After and Requires as if they were services
// (Ignition units name them): network-online.target is reached when DHCP
// has its first lease (failed when it gave up; at once without DHCP), and
// multi-user.target once every service not ordered after it has settled.
//
// A service may have ExecStartPre and ExecStartPost commands, run to
// completion before and after its program starts (within its
// TimeoutStartSec), and ExecStop commands run at shutdown before its
// SIGTERM; a command marked IgnoreFailure only logs its failure.
// RestartSec replaces the backoff and TimeoutStopSec the stop timeout.
//
// Containers (FromContainer) are services whose command is runc run in
// the foreground: they are ordered, restarted and printed like any other,
// and at stop runc forwards the SIGTERM; past the stop timeout runc kill
// KILL and the cgroup's kill end them, and runc delete cleans up.
//
// With Config.Cgroups every service runs in its own cgroup leaf, born
// there (CLONE_INTO_CGROUP), with its limits; its memory, CPU time and
// OOM kills are in the status file.
//
// SLATE-READY comes once every service is resolved: simple services
// started, oneshots done or failed, skipped services reported. A simple
// service that never starts keeps it from coming: the system runs without
// something it was built to run. A failed oneshot does not: its failure
// has its own line and its dependents are skipped, and a system that is
// otherwise up stays reachable to be looked at.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/bootlog"
	"github.com/slateos/slate/internal/run/cgroup"
)

// DefaultLogDir is where each service's output is appended as <name>.log.
const DefaultLogDir = "/var/log/slate"

// servicePath is the PATH every service starts with; the spec's Env cannot
// replace it, so a service finds the same tools on every image.
const servicePath = "/usr/sbin:/usr/bin:/sbin:/bin"

// Config is what Run needs: the identity of the running system, its services
// and network, and where output goes.
type Config struct {
	// StatusFile, when set, receives the system's state as JSON on every
	// change (see Status); DefaultStatusFile in a booted system.
	StatusFile string
	// Version and Slot are printed in the SLATE-READY line.
	Version, Slot string
	// Hostname is set with sethostname(2) when PID1 is true and it is not
	// empty.
	Hostname string
	// Services are started in dependency order (see the package
	// comment), then each restarted per its policy. Their names name their
	// log files and must be unique.
	Services []Service
	// DHCP brings up the first wired interface with DHCPv4, in the
	// background: services do not wait for it.
	DHCP bool
	// DHCPIface, when set, is the interface DHCP runs on instead of the
	// first wired one: the one init brought up to fetch a root.
	DHCPIface string
	// LogDir receives <service>.log files; DefaultLogDir when empty. Each
	// is rotated at 8 MiB to <service>.log.1 and .2.
	LogDir string
	// Cgroups, when set, puts every service in its own cgroup leaf
	// (Cgroups.Root/slate/<name>) with its Limits, and its use in the
	// status file; Run enables the controllers first. A container's leaf
	// is made by runc (config.json names it). Without it (or when the
	// set-up fails) services run in the supervisor's cgroup and one with
	// Limits fails to start.
	Cgroups *cgroup.Manager
	// Console receives service output prefixed with "[name] " and the
	// SLATE- lines; os.Stdout when nil (that is /dev/console in PID 1).
	Console io.Writer
	// PID1 is true when the process really is PID 1: it then sets the
	// hostname, brings up loopback, and ends a shutdown with reboot(2).
	PID1 bool
	// BeforeServices, when set, runs after hostname and loopback and before
	// DHCP and the services (for example to load network drivers). It runs
	// before the reaper starts, so it may start and wait for programs of
	// its own. An error is logged and the boot goes on: a PID 1 that stops
	// is a kernel panic.
	BeforeServices func(ctx context.Context) error
	// Provision, when set, runs once the network is being brought up and
	// before the services start (first-boot provisioning fetches its
	// config over the network). The services it returns are started with
	// the spec's. It must not wait for child processes of its own: the
	// reaper is running. An error stops the boot: nothing is started and
	// the supervisor only waits for a shutdown request.
	Provision func(ctx context.Context) ([]Service, error)

	// Knobs for tests; zero values mean the defaults below.
	backoff      backoffPolicy
	stopTimeout  time.Duration // SIGTERM to SIGKILL
	netDir       string        // /sys/class/net
	resolvConf   string        // /etc/resolv.conf
	passwdFile   string        // /etc/passwd, for Service.User
	groupFile    string        // /etc/group
	hostnameFile string        // /etc/hostname
	logMaxSize   int64         // a log file's bound, logMaxSize
	statsEvery   time.Duration // statsInterval
	// booted is called once the services are started (or, after a
	// failed provisioning, not) and Run waits for a shutdown, with the
	// number of services it supervises.
	booted func(supervised int)
}

// Default timings of a booted system.
const (
	defaultStopTimeout = 10 * time.Second
	// killWait bounds how long a stop waits for SIGKILLed processes to be
	// reaped: a process stuck in uninterruptible sleep must not hold up a
	// power-off forever.
	killWait = 5 * time.Second
)

// Kind is what a shutdown request asks for.
type Kind int

// Shutdown kinds. Halt is carried out as a power-off: a halted machine that
// keeps its power on is of no use to anyone and would leave a VM hanging.
const (
	Poweroff Kind = iota
	Reboot
	Halt
)

// String names the kind as it appears in the SLATE-SHUTDOWN line.
func (k Kind) String() string {
	switch k {
	case Poweroff:
		return "poweroff"
	case Reboot:
		return "reboot"
	case Halt:
		return "halt"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// signal is the signal PID 1 takes as a request of this kind; the mapping
// follows sysvinit and systemd, so tools such as ACPI daemons and container
// runtimes that send SIGTERM or SIGPWR to PID 1 do the expected thing.
func (k Kind) signal() (syscall.Signal, error) {
	switch k {
	case Poweroff:
		return unix.SIGUSR2, nil
	case Reboot:
		return unix.SIGTERM, nil
	case Halt:
		return unix.SIGUSR1, nil
	}
	return 0, fmt.Errorf("unknown shutdown kind %d", int(k))
}

// kindOf maps a signal received by PID 1 to the shutdown it asks for.
func kindOf(sig os.Signal) (Kind, bool) {
	switch sig {
	case unix.SIGTERM, unix.SIGINT: // SIGINT: ctrl-alt-del
		return Reboot, true
	case unix.SIGUSR2, unix.SIGPWR:
		return Poweroff, true
	case unix.SIGUSR1:
		return Halt, true
	}
	return 0, false
}

// shutdownSignals are the signals Run catches as shutdown requests.
var shutdownSignals = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR}

// RequestShutdown asks PID 1 to power off, reboot or halt, the way
// `slate poweroff` and `slate reboot` do. It returns once the signal is
// sent; the shutdown itself happens in PID 1.
func RequestShutdown(kind Kind) error {
	sig, err := kind.signal()
	if err != nil {
		return err
	}
	if err := unix.Kill(1, sig); err != nil {
		return fmt.Errorf("send %s to PID 1 for %s: %w", unix.SignalName(sig), kind, err)
	}
	return nil
}

// Run supervises the system until a shutdown is requested, by a signal (see
// Kind) or by cancelling ctx (taken as a power-off). With cfg.PID1 it then
// powers off or reboots the machine and returns only if that fails; without
// it, it returns nil once the services are stopped. It returns an error
// early, before starting anything, when the services are not valid.
func Run(ctx context.Context, cfg Config) error {
	if err := checkServices(cfg.Services); err != nil {
		return err
	}
	s := newSupervisor(cfg)

	// Catch shutdown requests before anything is started, so a request
	// that arrives during boot is not lost (or, outside PID 1, does not kill
	// the process with services left behind).
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, shutdownSignals...)
	defer signal.Stop(sigc)

	if cfg.PID1 {
		// Make ctrl-alt-del send SIGINT to PID 1 instead of rebooting on the
		// spot, so services are stopped and filesystems unmounted first.
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
			logrus.WithError(err).Warn("supervisor: cannot route ctrl-alt-del to PID 1")
		}
	} else {
		restore, err := becomeSubreaper()
		if err != nil {
			return err
		}
		defer restore()
	}

	// The hook runs before the reaper starts, so it may run programs with
	// exec.Cmd (modprobe, say) and wait for them itself.
	s.bringUp(ctx)

	stopReaper := s.startReaper()
	defer stopReaper()

	netCtx, cancelNet := context.WithCancel(ctx)
	defer cancelNet()
	var netDone sync.WaitGroup
	if cfg.DHCP {
		netDone.Add(1)
		go func() {
			defer netDone.Done()
			s.runDHCP(netCtx)
		}()
	} else {
		s.networkOnline(true) // nothing to wait for
	}

	if cfg.Provision != nil {
		extra, err := cfg.Provision(ctx)
		if err == nil && len(extra) > 0 {
			all := append(append([]Service(nil), s.cfg.Services...), extra...)
			if err = checkServices(all); err == nil {
				s.cfg.Services = all
			}
		}
		if err != nil {
			logrus.WithError(err).Error("supervisor: provisioning failed, not starting services")
			s.provisionFailed = true
		}
	}
	if !s.provisionFailed {
		if cfg.PID1 {
			s.setHostnameFromFile()
		}
		s.startServices()
	}
	if cfg.booted != nil {
		cfg.booted(len(s.services))
	}

	kind := Poweroff
	select {
	case sig := <-sigc:
		kind, _ = kindOf(sig)
		logrus.WithField("signal", sig.String()).Info("supervisor: shutdown requested")
	case <-ctx.Done():
		logrus.Info("supervisor: context done, shutting down")
	}

	cancelNet()
	s.stopServices()
	// dhclient gives up on a link that is not up only after its own
	// timeout; a shutdown does not wait for that.
	if !waitTimeout(&netDone, time.Second) {
		logrus.Warn("supervisor: DHCP still running at shutdown")
	}
	action := kind
	if action == Halt {
		action = Poweroff
	}
	s.event("SHUTDOWN", "action", action)
	if !cfg.PID1 {
		return nil
	}
	return s.finalShutdown(action)
}

// checkServices rejects what would make two services share a log file or
// make a start meaningless, then runs the one validation of a service
// (configs.CheckService, as the spec and Ignition's unit translation do)
// on each, and checks its Exec* command lines.
func checkServices(svcs []Service) error {
	seen := map[string]bool{}
	for i, svc := range svcs {
		switch {
		case svc.Name == "" || svc.Name == "." || svc.Name == ".." || strings.ContainsAny(svc.Name, "/\x00"):
			return fmt.Errorf("services[%d]: invalid name %q", i, svc.Name)
		case seen[svc.Name]:
			return fmt.Errorf("services[%d]: duplicate name %q", i, svc.Name)
		case svc.Command == "":
			return fmt.Errorf("services[%d] (%s): empty command", i, svc.Name)
		}
		seen[svc.Name] = true
		var bad []string
		for _, p := range configs.CheckService(svc.specFields()) {
			bad = append(bad, fmt.Sprintf("%s (at %s)", p.Msg, p.Field))
		}
		for kind, cmds := range map[string][]ExecCommand{"exec_start_pre": svc.ExecStartPre, "exec_start_post": svc.ExecStartPost, "exec_stop": svc.ExecStop} {
			for j, c := range cmds {
				if len(c.Argv) == 0 || c.Argv[0] == "" {
					bad = append(bad, fmt.Sprintf("empty command line (at %s[%d])", kind, j))
				}
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			return fmt.Errorf("services[%d] (%s): %s", i, svc.Name, strings.Join(bad, "; "))
		}
	}
	return nil
}

// becomeSubreaper makes orphans of the services children of this process,
// as they would be of PID 1, and returns a function restoring the previous
// setting.
func becomeSubreaper() (func(), error) {
	var prev int32
	// PR_GET_CHILD_SUBREAPER writes an int through the pointer argument.
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&prev)), 0, 0, 0); err != nil {
		return nil, fmt.Errorf("get child subreaper: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	return func() {
		if prev == 0 {
			_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		}
	}, nil
}

// supervisor is the state of one Run.
type supervisor struct {
	cfg     Config
	console *lineWriter
	logDir  string          // "" when it cannot be created: console only
	cgroups *cgroup.Manager // nil: no cgroups

	mu       sync.Mutex
	byPID    map[int]*service    // running service processes, by PID
	helpers  map[int]*helperProc // running ExecStartPre/Post/Stop commands
	targets  []*service
	stopping bool
	services []*service

	stopc    chan struct{} // closed when the services must stop
	wg       sync.WaitGroup
	readyMu  sync.Mutex // guards the services' outcomes too
	resolved int        // services settled in a way that counts for ready
	ready    bool
	outputWG sync.WaitGroup // output copiers

	provisionFailed bool

	// netUp is closed when DHCP has its first lease or gave up (netOK
	// says which): network-online.target.
	netUp   chan struct{}
	netOnce sync.Once
	netOK   bool

	statusMu     sync.Mutex
	status       Status
	statusWarned bool
}

func newSupervisor(cfg Config) *supervisor {
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.LogDir == "" {
		cfg.LogDir = DefaultLogDir
	}
	if cfg.backoff == (backoffPolicy{}) {
		cfg.backoff = defaultBackoff
	}
	if cfg.stopTimeout == 0 {
		cfg.stopTimeout = defaultStopTimeout
	}
	if cfg.netDir == "" {
		cfg.netDir = "/sys/class/net"
	}
	if cfg.resolvConf == "" {
		cfg.resolvConf = "/etc/resolv.conf"
	}
	if cfg.passwdFile == "" {
		cfg.passwdFile = "/etc/passwd"
	}
	if cfg.groupFile == "" {
		cfg.groupFile = "/etc/group"
	}
	if cfg.hostnameFile == "" {
		cfg.hostnameFile = "/etc/hostname"
	}
	if cfg.logMaxSize == 0 {
		cfg.logMaxSize = logMaxSize
	}
	if cfg.statsEvery == 0 {
		cfg.statsEvery = statsInterval
	}
	return &supervisor{
		cfg:     cfg,
		console: &lineWriter{w: cfg.Console},
		byPID:   map[int]*service{},
		helpers: map[int]*helperProc{},
		netUp:   make(chan struct{}),
		stopc:   make(chan struct{}),
	}
}

// event writes one SLATE- line to the console, formatted by bootlog as
// every contract line is: no name or error message can break it.
func (s *supervisor) event(kind string, kv ...any) {
	s.console.writeLine([]byte(bootlog.Format(kind, kv...) + "\n"))
}

// bringUp does what must happen before the services: hostname, loopback,
// log folder, the caller's hook.
func (s *supervisor) bringUp(ctx context.Context) {
	if s.cfg.PID1 {
		if h := s.cfg.Hostname; h != "" {
			if err := unix.Sethostname([]byte(h)); err != nil {
				logrus.WithError(err).WithField("hostname", h).Error("supervisor: set hostname")
			}
		}
		if err := loopbackUp(); err != nil {
			logrus.WithError(err).Error("supervisor: loopback")
		}
	}
	if m := s.cfg.Cgroups; m != nil {
		if ctrls, err := m.Setup(); err != nil {
			logrus.WithError(err).Error("supervisor: no cgroups: services run without limits, containers cannot start")
		} else {
			s.cgroups = m
			logrus.WithField("controllers", strings.Join(ctrls, ",")).Info("supervisor: cgroups set up")
		}
	}
	if err := os.MkdirAll(s.cfg.LogDir, 0o755); err != nil {
		logrus.WithError(err).Error("supervisor: service logs go to the console only")
	} else {
		s.logDir = s.cfg.LogDir
	}
	if s.cfg.BeforeServices != nil {
		if err := s.cfg.BeforeServices(ctx); err != nil {
			logrus.WithError(err).Error("supervisor: before-services hook failed, booting on")
		}
	}
}

// setHostnameFromFile sets the hostname from /etc/hostname when the
// writable /etc has one (a provisioning config or an operator wrote it),
// as CoreOS and Flatcar do; the spec's hostname, set earlier, stays
// otherwise. It runs after provisioning, so a first boot's config takes
// effect on that boot.
func (s *supervisor) setHostnameFromFile() {
	h, err := readHostnameFile(s.cfg.hostnameFile)
	if err != nil {
		logrus.WithError(err).Error("supervisor: hostname file ignored")
		return
	}
	if h == "" {
		return
	}
	if err := unix.Sethostname([]byte(h)); err != nil {
		logrus.WithError(err).WithField("hostname", h).Error("supervisor: set hostname")
		return
	}
	logrus.WithField("hostname", h).Info("supervisor: hostname set from " + s.cfg.hostnameFile)
}

// readHostnameFile reads the hostname in name as hostname(5) says: the
// first line that is not empty or a comment, trimmed; "" when the file
// does not exist or names none.
func readHostnameFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(l) > 64 || !validHostname(l) {
			return "", fmt.Errorf("%s: %q is not a valid hostname", name, l)
		}
		return l, nil
	}
	return "", nil
}

func validHostname(h string) bool {
	for lab := range strings.SplitSeq(h, ".") {
		if lab == "" || len(lab) > 63 || lab[0] == '-' || lab[len(lab)-1] == '-' {
			return false
		}
		for _, c := range lab {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// networkOnline records the end of DHCP's first round: network-online.target.
func (s *supervisor) networkOnline(ok bool) {
	s.netOnce.Do(func() {
		s.netOK = ok
		close(s.netUp)
	})
}

// maybeReadyLocked prints SLATE-READY once every service is resolved (see
// settle).
func (s *supervisor) maybeReadyLocked() {
	if s.ready || s.resolved < len(s.services) {
		return
	}
	s.ready = true
	s.setReady()
	s.event("READY", "version", s.cfg.Version, "slot", s.cfg.Slot)
	logrus.WithFields(logrus.Fields{"version": s.cfg.Version, "slot": s.cfg.Slot}).Info("slate is ready")
}

// errStopping is returned by start once a shutdown has begun.
var errStopping = errors.New("supervisor is stopping")

// waitTimeout waits for wg up to d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
