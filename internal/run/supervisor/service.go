package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/run/cgroup"
)

// backoffPolicy is how long a service waits before a restart: base after a
// run of at least reset, then doubling on each quick failure up to max.
type backoffPolicy struct {
	base, max, reset time.Duration
}

var defaultBackoff = backoffPolicy{base: 100 * time.Millisecond, max: 10 * time.Second, reset: 10 * time.Second}

// next is the delay before the next start, given the previous delay (0 for
// none yet) and how long the process that just ended ran.
func (p backoffPolicy) next(prev, ran time.Duration) time.Duration {
	if prev <= 0 || ran >= p.reset {
		return p.base
	}
	if prev >= p.max/2 {
		return p.max
	}
	return min(2*prev, p.max)
}

// exit is how one start of a service ended: a wait status, or an error
// when the process could not be started at all.
type exit struct {
	status   unix.WaitStatus
	startErr error
}

// failed reports whether the end counts as a failure for on-failure.
func (e exit) failed() bool {
	return e.startErr != nil || !e.status.Exited() || e.status.ExitStatus() != 0
}

// String is the key=value part of the exited line.
// kv is the end as a contract line's fields: err=, signal= or code=.
func (e exit) kv() []any {
	switch {
	case e.startErr != nil:
		return []any{"err", e.startErr.Error()}
	case e.status.Signaled():
		return []any{"signal", unix.SignalName(e.status.Signal())}
	default:
		return []any{"code", e.status.ExitStatus()}
	}
}

func (e exit) String() string {
	switch {
	case e.startErr != nil:
		return fmt.Sprintf("err=%q", e.startErr.Error())
	case e.status.Signaled():
		return "signal=" + unix.SignalName(e.status.Signal())
	default:
		return fmt.Sprintf("code=%d", e.status.ExitStatus())
	}
}

// shouldRestart applies a restart policy ("" is on-failure) to an end.
func shouldRestart(policy string, e exit) bool {
	switch policy {
	case configs.RestartAlways:
		return true
	case configs.RestartNever:
		return false
	default:
		return e.failed()
	}
}

// service is one entry of the spec and the state of its current process.
type service struct {
	spec Service
	// exitc receives the wait status of the current process from the
	// reaper. At most one process of a service runs at a time, so one slot
	// never blocks the reaper.
	exitc chan unix.WaitStatus
	log   *rotatingLog // nil when logs go to the console only
	// leaf is the service's cgroup, nil without cgroups. oomBase is its
	// oom_kill count when the current process started.
	leaf    *cgroup.Leaf
	leafErr error
	oomBase uint64
	// A container's leaf is made by runc at each start, kept after the
	// exit (runc run --keep) until the exit is recorded, then removed
	// (runc delete), so what it used is kept here: runOOM is the
	// oom_kill count of the current run (watched while it runs), and
	// oomTotal, cpuTotal and runCPU the kills and CPU time of the earlier
	// runs and the last CPU time read of this one. runEnded is set once
	// the run's use is added to the totals: a read of the kept leaf after
	// that would count it twice. Guarded by supervisor.statusMu.
	runOOM             atomic.Uint64
	oomTotal, cpuTotal uint64
	runCPU             uint64
	runEnded           bool

	// Guarded by supervisor.mu. outDone is closed once the current
	// process's output has all been copied.
	proc    *os.Process
	outDone chan struct{}

	// Dependencies, set by linkServices before any service starts: after
	// holds every service this one waits for (After and Requires),
	// requires those without which it is skipped. skipReason, when set,
	// says why it can never start.
	after, requires []*service
	skipReason      string
	// settled is closed once outcome first leaves pending.
	settled chan struct{}
	outcome outcome // guarded by supervisor.readyMu
	// done is closed when the service's goroutine has returned.
	done chan struct{}
	// target marks a systemd target (network-online.target,
	// multi-user.target) that units are ordered against: it runs nothing
	// and does not count for SLATE-READY.
	target bool
}

// helperProc is a running ExecStartPre, ExecStartPost or ExecStop command.
type helperProc struct {
	proc *os.Process
	// pid is proc's PID, read under supervisor.mu at the start: the
	// reaper's Release of a process that ended at once clears proc.Pid.
	pid   int
	exitc chan unix.WaitStatus
	// outDone is closed once the process's output has all reached the
	// console (its pipe is at EOF).
	outDone chan struct{}
}

// outputDrain bounds how long a finished command's output may take to
// reach the console: a command that left a process behind holding its
// pipe must not hold up the service.
const outputDrain = time.Second

// errTimeout ends a start or a command that ran past its timeout.
var errTimeout = errors.New("timed out")

// startTimeout is TimeoutStartSec: it bounds ExecStartPre and
// ExecStartPost together (and a oneshot's run); 0 is no limit.
func (svc *service) startTimeout() time.Duration {
	return max(svc.spec.TimeoutStartSec, 0)
}

// stopTimeout is TimeoutStopSec, or the supervisor's default; negative is
// no limit.
func (svc *service) stopTimeout(def time.Duration) time.Duration {
	if svc.spec.TimeoutStopSec != 0 {
		return svc.spec.TimeoutStopSec
	}
	return def
}

func (svc *service) oneshot() bool { return svc.spec.Type == configs.TypeOneshot }

// startServices starts one goroutine per service, which waits for the
// service's dependencies before starting it. With no services the system
// is ready at once.
func (s *supervisor) startServices() {
	for _, spec := range s.cfg.Services {
		svc := &service{spec: spec, exitc: make(chan unix.WaitStatus, 1), settled: make(chan struct{}), done: make(chan struct{})}
		if s.cgroups != nil {
			// A name that cannot be a cgroup fails the service's start
			// (prepareCgroup): every unit runs in its own cgroup.
			svc.leaf, svc.leafErr = s.cgroups.Leaf(spec.Name)
		}
		if s.logDir != "" {
			f, err := openLog(filepath.Join(s.logDir, spec.Name+".log"), s.cfg.logMaxSize, logKeep)
			if err != nil {
				logrus.WithError(err).WithField("service", spec.Name).Error("supervisor: service log goes to the console only")
			} else {
				svc.log = f
			}
		}
		s.services = append(s.services, svc)
	}
	s.targets = linkServices(s.services)
	if s.cgroups != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.statsLoop()
		}()
	}
	s.readyMu.Lock()
	s.maybeReadyLocked()
	s.readyMu.Unlock()
	for _, t := range s.targets {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.reachTarget(t)
		}()
	}
	for _, svc := range s.services {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(svc.done)
			if s.awaitDependencies(svc) {
				s.supervise(svc)
			}
		}()
	}
}

// startMain runs ExecStartPre, starts the main process, then runs
// ExecStartPost, all within TimeoutStartSec; a failure of either list
// (without "-") fails the start, and a main process already started is
// stopped again.
func (s *supervisor) startMain(svc *service) (int, error) {
	deadline := time.Time{}
	if d := svc.startTimeout(); d > 0 {
		deadline = time.Now().Add(d)
	}
	if err := s.prepareCgroup(svc); err != nil {
		return 0, err
	}
	if err := s.runCommands(svc, "ExecStartPre", svc.spec.ExecStartPre, deadline, false); err != nil {
		return 0, err
	}
	if svc.spec.Container != nil {
		if err := s.prepareContainer(svc); err != nil {
			return 0, err
		}
	}
	if svc.leaf != nil {
		svc.oomBase = svc.leaf.OOMKills()
		if svc.spec.Container != nil {
			s.statusMu.Lock()
			svc.runEnded = false
			s.statusMu.Unlock()
		}
	}
	pid, err := s.start(svc)
	if err != nil || svc.oneshot() {
		return pid, err
	}
	if err := s.runCommands(svc, "ExecStartPost", svc.spec.ExecStartPost, deadline, false); err != nil {
		s.mu.Lock()
		if svc.proc != nil {
			_ = svc.proc.Signal(unix.SIGKILL)
			_ = unix.Kill(-svc.proc.Pid, unix.SIGKILL)
		}
		s.mu.Unlock()
		<-svc.exitc
		return 0, err
	}
	return pid, nil
}

// runCommands runs cmds in order, each to completion, until deadline (zero:
// none). duringStop lets them run while the supervisor stops (ExecStop).
func (s *supervisor) runCommands(svc *service, kind string, cmds []ExecCommand, deadline time.Time, duringStop bool) error {
	for _, c := range cmds {
		timeout := time.Duration(0)
		if !deadline.IsZero() {
			if timeout = time.Until(deadline); timeout <= 0 {
				return fmt.Errorf("%s %s: %w", kind, c.Argv[0], errTimeout)
			}
		}
		err := s.runCommand(svc, c.Argv, timeout, duringStop)
		if errors.Is(err, errStopping) {
			return err
		}
		if err != nil {
			err = fmt.Errorf("%s %s: %w", kind, c.Argv[0], err)
			if !c.IgnoreFailure {
				return err
			}
			logrus.WithError(err).WithField("service", svc.spec.Name).Warn("supervisor: command failed, ignored (\"-\")")
		}
	}
	return nil
}

// runCommand runs one command of svc to completion, with the service's
// user, environment and folder, and its output on the console.
func (s *supervisor) runCommand(svc *service, argv []string, timeout time.Duration, duringStop bool) error {
	return s.runCommandOut(svc, argv, timeout, duringStop, false)
}

// runQuiet is runCommand with the command's output dropped (runc
// delete, health check commands): it would only bury the service's own.
func (s *supervisor) runQuiet(svc *service, argv []string, timeout time.Duration, duringStop bool) error {
	return s.runCommandOut(svc, argv, timeout, duringStop, true)
}

func (s *supervisor) runCommandOut(svc *service, argv []string, timeout time.Duration, duringStop, quiet bool) error {
	h, err := s.spawn(svc, argv, true, duringStop, quiet)
	if err != nil {
		return err
	}
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	stopc := s.stopc
	if duringStop {
		stopc = nil
	}
	var ws unix.WaitStatus
	select {
	case ws = <-h.exitc:
	case <-tc:
		s.signalHelper(h, unix.SIGKILL)
		<-h.exitc
		return errTimeout
	case <-stopc:
		s.signalHelper(h, unix.SIGTERM)
		select {
		case <-h.exitc:
		case <-time.After(killWait):
			s.signalHelper(h, unix.SIGKILL)
			<-h.exitc
		}
		return errStopping
	}
	// What an ExecStartPre or ExecStartPost printed comes before the
	// line that says how the start went.
	select {
	case <-h.outDone:
	case <-time.After(outputDrain):
	}
	if e := (exit{status: ws}); e.failed() {
		return errors.New(e.String())
	}
	return nil
}

// signalHelper signals a command and its group while it is unreaped.
func (s *supervisor) signalHelper(h *helperProc, sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.helpers[h.pid]; ok {
		_ = h.proc.Signal(sig)
		_ = unix.Kill(-h.pid, sig)
	}
}

// supervise starts a service and restarts it per policy until the
// supervisor stops.
func (s *supervisor) supervise(svc *service) {
	if svc.oneshot() {
		s.runOnce(svc)
		return
	}
	name := svc.spec.Name
	var delay time.Duration
	everStarted := false
	for {
		begin := time.Now()
		pid, err := s.startMain(svc)
		if errors.Is(err, errStopping) {
			return
		}
		var e exit
		if err != nil {
			e.startErr = err
			s.setStateReason(name, "failed", 0, err.Error())
			s.event("SERVICE", "name", name, "state", "failed", "err", err.Error())
		} else {
			s.setState(name, "started", pid)
			s.event("SERVICE", "name", name, "state", "started", "pid", pid)
			if !everStarted {
				everStarted = true
				s.settle(svc, up)
			}
			stopHealth := s.startHealth(svc)
			stopWatch := s.watchContainer(svc)
			e.status = <-svc.exitc
			stopWatch()
			stopHealth()
			s.exited(svc, e)
		}
		if s.isStopping() {
			return
		}
		if !shouldRestart(svc.spec.Restart, e) {
			s.setState(name, "stopped", 0)
			s.event("SERVICE", "name", name, "state", "stopped")
			if e.failed() {
				s.settle(svc, failed)
			}
			return
		}
		delay = s.cfg.backoff.next(delay, time.Since(begin))
		if svc.spec.RestartSec > 0 {
			delay = svc.spec.RestartSec
		}
		s.setState(name, "restarting", 0)
		s.event("SERVICE", "name", name, "state", "restarting", "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.stopc:
			t.Stop()
			return
		}
	}
}

// runOnce runs a oneshot service to completion: it has started when it
// exits 0 and failed otherwise, and is never restarted whatever its
// Restart says, since it is a step (create a user, format a disk) rather
// than something that keeps running.
func (s *supervisor) runOnce(svc *service) {
	name := svc.spec.Name
	var deadline time.Time
	if d := svc.startTimeout(); d > 0 {
		deadline = time.Now().Add(d)
	}
	fail := func(err error) {
		s.setStateReason(name, "failed", 0, err.Error())
		s.event("SERVICE", "name", name, "state", "failed", "err", err.Error())
		s.settle(svc, failed)
	}
	pid, err := s.startMain(svc)
	if errors.Is(err, errStopping) {
		return
	}
	if err != nil {
		fail(err)
		return
	}
	s.setState(name, "running", pid)
	s.event("SERVICE", "name", name, "state", "running", "pid", pid)
	var tc <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		tc = t.C
	}
	var e exit
	timedOut := false
	select {
	case e.status = <-svc.exitc:
	case <-tc:
		// TimeoutStartSec: a oneshot that has not finished has failed
		timedOut = true
		s.mu.Lock()
		if svc.proc != nil {
			_ = svc.proc.Signal(unix.SIGKILL)
			_ = unix.Kill(-svc.proc.Pid, unix.SIGKILL)
		}
		s.mu.Unlock()
		e.status = <-svc.exitc
	}
	// What the oneshot printed comes before what its ExecStartPost
	// prints.
	s.mu.Lock()
	outDone := svc.outDone
	s.mu.Unlock()
	select {
	case <-outDone:
	case <-time.After(outputDrain):
	}
	s.exited(svc, e)
	if s.isStopping() {
		return
	}
	if timedOut {
		fail(fmt.Errorf("TimeoutStartSec: %w", errTimeout))
		return
	}
	if e.failed() {
		s.setStateReason(name, "failed", 0, e.String())
		s.event("SERVICE", append([]any{"name", name, "state", "failed"}, e.kv()...)...)
		s.settle(svc, failed)
		return
	}
	if err := s.runCommands(svc, "ExecStartPost", svc.spec.ExecStartPost, deadline, false); err != nil {
		if !errors.Is(err, errStopping) {
			fail(err)
		}
		return
	}
	s.setState(name, "done", 0)
	s.event("SERVICE", "name", name, "state", "done")
	s.settle(svc, up)
}

// exited records and prints the end of a service's process, with oom=true
// when the OOM killer killed a process of its cgroup meanwhile.
func (s *supervisor) exited(svc *service, e exit) {
	name := svc.spec.Name
	kv := append([]any{"name", name, "state", "exited"}, e.kv()...)
	reason := ""
	s.refreshStats(svc)
	oom := false
	switch {
	case svc.leaf == nil:
	case svc.spec.Container != nil:
		// runc ran it with --keep: its leaf, made fresh for this run, is
		// there until runc delete, and its memory.events counts this
		// run's kills alone (an exit code of 137 is no evidence: any
		// SIGKILL gives it, and /slate's count has every unit's kills).
		kills := max(svc.runOOM.Swap(0), svc.leaf.OOMKills())
		oom = kills > 0
		s.statusMu.Lock()
		svc.oomTotal += kills
		svc.cpuTotal += svc.runCPU
		svc.runCPU = 0
		svc.runEnded = true
		// the status has the run's kills even when the leaf could not be
		// read after the exit (the watch saw them)
		s.initStatusLocked()
		for i := range s.status.Services {
			if x := &s.status.Services[i]; x.Name == name {
				x.OOMKills, x.CPUUsec = svc.oomTotal, svc.cpuTotal
			}
		}
		s.statusMu.Unlock()
		// the kept container and its leaf have been read: gone with
		// them (at a stop, cleanupContainer deletes it)
		s.runcDelete(svc, false)
	default:
		oom = svc.leaf.OOMKills() > svc.oomBase
	}
	if oom {
		kv = append(kv, "oom", true)
		reason = "oom-killed"
	}
	s.setStateReason(name, "exited", 0, reason)
	s.event("SERVICE", kv...)
}

// watchContainer follows the OOM kills of a running container's leaf
// until the returned function is called (its runc exited).
func (s *supervisor) watchContainer(svc *service) func() {
	if svc.spec.Container == nil || svc.leaf == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.leaf.WatchMemoryEvents(ctx, time.Second, func(ev cgroup.MemoryEvents) {
			for {
				cur := svc.runOOM.Load()
				if ev.OOMKill <= cur || svc.runOOM.CompareAndSwap(cur, ev.OOMKill) {
					return
				}
			}
		})
	}()
	return func() {
		cancel()
		<-done
	}
}

// prepareCgroup makes a plain service's leaf with its limits before its
// first process starts; a container's is made by runc from config.json.
func (s *supervisor) prepareCgroup(svc *service) error {
	if svc.leafErr != nil {
		return svc.leafErr
	}
	if svc.spec.Container != nil {
		return nil
	}
	lim := svc.spec.Limits
	if svc.leaf == nil {
		if lim != (configs.Limits{}) {
			return errors.New("limits are set (memory, cpus or pids) but cgroups are not available")
		}
		return nil
	}
	return svc.leaf.Create(cgroup.Limits{Memory: lim.Memory.Bytes(), CPUs: lim.CPUs, PIDs: int64(lim.PIDs)})
}

func (s *supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// start starts one process of svc with its output going to the console and
// its log. The PID is registered under s.mu, which the reaper takes before
// it looks a PID up, so an exit that comes before StartProcess returns is
// still given to the service.
func (s *supervisor) start(svc *service) (int, error) {
	h, err := s.spawn(svc, append([]string{svc.spec.Command}, svc.spec.Args...), false, false, false)
	if err != nil {
		return 0, err
	}
	return h.pid, nil
}

// spawn starts argv as svc's main process or, with helper, as one of its
// commands (registered apart, so the reaper hands its status to the
// command's waiter). Only helper commands with duringStop start once the
// supervisor is stopping. quiet drops the output. A plain service's
// processes start in its cgroup leaf; a container's (runc) in PID 1's
// cgroup, since runc puts the container in the leaf itself.
func (s *supervisor) spawn(svc *service, argv []string, helper, duringStop, quiet bool) (*helperProc, error) {
	env, cred, err := s.identity(svc.spec)
	if err != nil {
		return nil, err
	}
	dir := svc.spec.WorkingDirectory
	if dir == "" {
		dir = "/"
	} else if _, err := os.Stat(dir); err != nil {
		// The child's chdir error would read "fork/exec <command>: no
		// such file or directory", blaming the command.
		return nil, fmt.Errorf("working directory: %w", err)
	}
	path, err := lookPath(argv[0], envValue(env, "PATH"))
	if err != nil {
		return nil, err
	}
	stdin, err := openStdin()
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	sys := &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if svc.leaf != nil && svc.spec.Container == nil {
		attr, dir, err := svc.leaf.Attr(sys)
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		sys = attr
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping && !duringStop {
		r.Close()
		w.Close()
		return nil, errStopping
	}
	proc, err := os.StartProcess(path, argv, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{stdin, w, w},
		// A session of its own: the service has no controlling terminal,
		// and the whole group can be signalled at stop time.
		Sys: sys,
	})
	w.Close()
	if err != nil {
		r.Close()
		return nil, err // a *PathError: "fork/exec /path: reason"
	}
	h := &helperProc{proc: proc, pid: proc.Pid, outDone: make(chan struct{})}
	if helper {
		h.exitc = make(chan unix.WaitStatus, 1)
		s.helpers[proc.Pid] = h
	} else {
		svc.proc, svc.outDone = proc, h.outDone
		s.byPID[proc.Pid] = svc
	}
	var log io.Writer // a nil *os.File in an interface would not be nil
	if svc.log != nil {
		log = svc.log
	}
	s.outputWG.Add(1)
	go func() {
		defer s.outputWG.Done()
		defer close(h.outDone)
		defer r.Close()
		if quiet {
			_, _ = io.Copy(io.Discard, r)
			return
		}
		copyLines(r, s.console, "["+svc.spec.Name+"] ", log)
	}()
	return h, nil
}

// identity is the environment and the credential a service starts with:
// for a User, HOME, USER and LOGNAME of the account; then the
// environment files in order; then Env; PATH when none of them sets it.
// Everything is read again at each start, so a restart sees changes made
// by provisioning or an operator.
func (s *supervisor) identity(spec Service) ([]string, *syscall.Credential, error) {
	vars := map[string]string{}
	var cred *syscall.Credential
	if spec.User != "" {
		a, err := lookupUser(spec.User, s.cfg.passwdFile, s.cfg.groupFile)
		if err != nil {
			return nil, nil, err
		}
		cred = a.credential()
		if a.name != "" {
			vars["USER"], vars["LOGNAME"] = a.name, a.name
		}
		if a.home != "" {
			vars["HOME"] = a.home
		}
	}
	if err := readEnvironmentFiles(vars, spec.EnvironmentFile); err != nil {
		return nil, nil, err
	}
	for k, v := range spec.Env {
		vars[k] = v
	}
	return serviceEnv(vars), cred, nil
}

// openStdin opens /dev/null, or when there is none (a /dev not mounted
// yet) the read end of a pipe with no writer, which reads the same: EOF.
func openStdin() (*os.File, error) {
	if f, err := os.Open(os.DevNull); err == nil {
		return f, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	w.Close()
	return r, nil
}

// serviceEnv is the environment of a service: PATH, then the spec's
// variables in name order (a PATH in the spec wins).
func serviceEnv(vars map[string]string) []string {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	env := make([]string, 0, len(vars)+1)
	if _, ok := vars["PATH"]; !ok {
		env = append(env, "PATH="+servicePath)
	}
	for _, k := range names {
		env = append(env, k+"="+vars[k])
	}
	return env
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds a command the way execvp does, but in the service's PATH
// rather than the supervisor's own.
func lookPath(cmd, path string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, cmd)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in %s", cmd, path)
}

// stopServices stops restarts and starts; then, for every service at
// once, runs its ExecStop commands if its main process runs, sends
// SIGTERM to it and its group, and SIGKILL when it is still running after
// its TimeoutStopSec (the stop timeout by default); and waits for them to
// be reaped (bounded by killWait after the SIGKILL).
func (s *supervisor) stopServices() {
	s.mu.Lock()
	s.stopping = true
	close(s.stopc)
	s.mu.Unlock()

	var stops sync.WaitGroup
	for _, svc := range s.services {
		stops.Add(1)
		go func() {
			defer stops.Done()
			s.stopService(svc)
		}()
	}
	stops.Wait()
	if !waitTimeout(&s.wg, killWait) {
		logrus.Error("supervisor: services still running after SIGKILL")
	}
	// Output copiers end when the last writer of their pipe is gone; an
	// orphan that kept the pipe open must not hold up the shutdown.
	waitTimeout(&s.outputWG, time.Second)
	for _, svc := range s.services {
		if svc.log != nil {
			svc.log.Close()
		}
	}
}

// stopService stops one service (see stopServices).
func (s *supervisor) stopService(svc *service) {
	timeout := svc.stopTimeout(s.cfg.stopTimeout)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	s.mu.Lock()
	running := svc.proc != nil
	s.mu.Unlock()
	if running && len(svc.spec.ExecStop) > 0 {
		if err := s.runCommands(svc, "ExecStop", svc.spec.ExecStop, deadline, true); err != nil {
			logrus.WithError(err).WithField("service", svc.spec.Name).Warn("supervisor: ExecStop failed")
		}
	}
	sent := false
	if c := svc.spec.Container; running && c != nil && c.StopSignal != 0 {
		sent = s.signalContainer(svc, c.StopSignal)
	}
	if !sent {
		s.mu.Lock()
		s.signalLocked(svc, unix.SIGTERM)
		s.mu.Unlock()
	}
	var tc <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(max(time.Until(deadline), 0))
		defer t.Stop()
		tc = t.C
	}
	if svc.spec.Container != nil {
		defer s.cleanupContainer(svc)
	} else if svc.leaf != nil {
		// What the service left behind in its cgroup goes with it.
		defer func() { _ = svc.leaf.Kill() }()
	}
	select {
	case <-svc.done:
		return
	case <-tc:
	}
	s.mu.Lock()
	running = svc.proc != nil
	s.mu.Unlock()
	if running {
		logrus.WithField("service", svc.spec.Name).Warn("supervisor: service ignored SIGTERM, killing it")
	}
	if svc.spec.Container != nil && running {
		// SIGKILL to runc would leave the container running: its
		// processes are killed first, and runc then exits with them,
		// reporting the container's end (code=137).
		s.killContainer(svc)
		select {
		case <-svc.done:
			return
		case <-time.After(time.Second):
		}
	}
	s.mu.Lock()
	s.signalLocked(svc, unix.SIGKILL)
	s.mu.Unlock()
	select {
	case <-svc.done:
	case <-time.After(killWait):
	}
}

// signalLocked sends sig to svc's main process and its group. The reaper
// reaps under s.mu, so a registered PID has not been reaped and cannot
// name another process or group yet.
func (s *supervisor) signalLocked(svc *service, sig syscall.Signal) {
	if svc.proc == nil {
		return
	}
	_ = svc.proc.Signal(sig)
	_ = unix.Kill(-svc.proc.Pid, sig)
}
