package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// tailLines is how many console lines an error report carries.
const tailLines = 40

// stderrKeep bounds how much of QEMU's stderr is kept for error reports.
const stderrKeep = 16 << 10

// VM is a running (or finished) QEMU process.
type VM struct {
	cmd      *exec.Cmd
	accel    string
	forwards []Forward
	qmpPath  string
	tmpDir   string

	done    chan struct{} // closed once QEMU has exited and its output is read
	waitErr error         // QEMU's exit status; valid after done

	mu      sync.Mutex
	split   lineSplitter
	lines   []string
	cursor  int           // WaitFor looks at lines[cursor:]
	changed chan struct{} // closed and replaced whenever lines grow
	serial  io.Writer
	file    *os.File
	stderr  tailBuffer
}

// Start boots a VM. The VM lives until it exits by itself, Kill or Stop is
// called, or ctx ends (then QEMU is killed).
//
// A Forward with HostPort 0 gets a free loopback port. A port found free
// may be taken by another process before QEMU binds it, so Start then
// waits until QEMU is up (its QMP monitor answers) or has exited, and
// starts QEMU again with new ports when it exited for want of its
// forwarding rule; VM.Forwards tells the ports QEMU holds.
func Start(ctx context.Context, opts Options) (*VM, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !slices.ContainsFunc(opts.Forwards, func(f Forward) bool { return f.HostPort == 0 }) {
		return start(ctx, opts)
	}
	var last string
	for try := 1; try <= forwardTries; try++ {
		o := opts
		fw, err := pickPorts(opts.Forwards)
		if err != nil {
			return nil, err
		}
		o.Forwards = fw
		vm, err := start(ctx, o)
		if err != nil {
			return nil, err
		}
		if !vm.lostForward(ctx) {
			return vm, nil
		}
		last = strings.TrimSpace(vm.stderr.String())
		logrus.WithField("try", try).Debugf("qemu: a forwarded port was taken before QEMU bound it: %s", last)
	}
	return nil, fmt.Errorf("qemu: %d tries, each time a forwarded port was taken before QEMU could bind it: %s", forwardTries, last)
}

// forwardTries bounds Start's tries for forwards on free ports.
const forwardTries = 5

// forwardFailed is what QEMU prints when it cannot bind a hostfwd rule.
const forwardFailed = "Could not set up host forwarding rule"

// pickPort returns a free loopback port (a variable so tests can hand out a
// taken one).
var pickPort = func() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("qemu: free port for a forward: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pickPorts fills every HostPort 0 with a free port, each a different one.
func pickPorts(fws []Forward) ([]Forward, error) {
	out := append([]Forward(nil), fws...)
	used := map[int]bool{}
	for _, f := range fws {
		used[f.HostPort] = true
	}
	for i := range out {
		for out[i].HostPort == 0 {
			p, err := pickPort()
			if err != nil {
				return nil, err
			}
			if !used[p] {
				out[i].HostPort, used[p] = p, true
			}
		}
	}
	return out, nil
}

// lostForward waits until QEMU is up or gone and reports whether it exited
// because it could not bind a forwarded port. QEMU creates its netdevs
// before its main loop runs, and the QMP greeting comes from the main loop:
// a greeting means every forward is bound.
func (vm *VM) lostForward(ctx context.Context) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-vm.done:
			return strings.Contains(vm.stderr.String(), forwardFailed)
		case <-ctx.Done():
			return false
		default:
		}
		if qmpGreeting(vm.qmpPath, time.Second) == nil {
			return false
		}
		select {
		case <-vm.done:
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// Forwards returns the forwards QEMU was started with, HostPort 0 replaced
// by the port Start chose.
func (vm *VM) Forwards() []Forward { return append([]Forward(nil), vm.forwards...) }

func start(ctx context.Context, opts Options) (*VM, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Accel, err = resolveAccel(ctx, opts.Accel); err != nil {
		return nil, err
	}
	args, err := Args(opts)
	if err != nil {
		return nil, err
	}
	if usesOVMF(opts) {
		if err := ensureVars(varsPath(opts)); err != nil {
			return nil, err
		}
	}

	vm := &VM{accel: opts.Accel, forwards: opts.Forwards, done: make(chan struct{}), changed: make(chan struct{}), serial: opts.Serial}
	vm.stderr.max = stderrKeep
	if opts.SerialFile != "" {
		vm.file, err = os.OpenFile(opts.SerialFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("qemu: serial log: %w", err)
		}
	}
	// QMP lets Stop ask the guest to power off (ACPI power button).
	vm.tmpDir, err = os.MkdirTemp("", "slate-qemu-")
	if err != nil {
		vm.closeFile()
		return nil, fmt.Errorf("qemu: %w", err)
	}
	vm.qmpPath = filepath.Join(vm.tmpDir, "qmp.sock")
	args = append(args, "-qmp", "unix:"+optEscape(vm.qmpPath)+",server=on,wait=off")

	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = nil // /dev/null: QEMU must never touch the caller's terminal
	cmd.Stdout = consoleWriter{vm}
	cmd.Stderr = &vm.stderr
	// If the process running slate dies, QEMU dies with it instead of
	// lingering as an orphan that holds the image and forwarded ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	vm.cmd = cmd
	logrus.WithField("accel", opts.Accel).Debugf("qemu: %s %s", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		vm.closeFile()
		os.RemoveAll(vm.tmpDir)
		return nil, fmt.Errorf("qemu: start %s: %w", bin, err)
	}
	go vm.wait(ctx)
	return vm, nil
}

func (vm *VM) wait(ctx context.Context) {
	err := vm.cmd.Wait()
	vm.mu.Lock()
	if l, ok := vm.split.flush(); ok {
		vm.lines = append(vm.lines, l)
	}
	close(vm.changed)
	vm.changed = make(chan struct{})
	stderr := strings.TrimSpace(vm.stderr.String())
	vm.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		err = fmt.Errorf("qemu (accel %s): %w", vm.accel, err)
		if stderr != "" {
			err = fmt.Errorf("%w; stderr: %s", err, stderr)
		}
	}
	vm.waitErr = err
	vm.closeFile()
	os.RemoveAll(vm.tmpDir)
	close(vm.done)
}

func (vm *VM) closeFile() {
	if vm.file != nil {
		vm.file.Close()
	}
}

// consoleWriter receives QEMU's stdout, which is the serial console.
type consoleWriter struct{ vm *VM }

// Write never fails: a failing Serial writer or log file must not stall the
// pipe, or QEMU would block and the guest with it.
func (w consoleWriter) Write(p []byte) (int, error) {
	vm := w.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.serial != nil {
		if _, err := vm.serial.Write(p); err != nil {
			logrus.WithError(err).Warn("qemu: serial writer failed; no more console output to it")
			vm.serial = nil
		}
	}
	if vm.file != nil {
		if _, err := vm.file.Write(p); err != nil {
			logrus.WithError(err).Warn("qemu: serial log failed; no more console output to it")
			vm.file.Close()
			vm.file = nil
		}
	}
	if ls := vm.split.write(p); len(ls) > 0 {
		vm.lines = append(vm.lines, ls...)
		close(vm.changed)
		vm.changed = make(chan struct{})
	}
	return len(p), nil
}

// Lines returns the complete console lines so far, with \r removed.
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// WaitFor waits until a console line matches re and returns the submatches of
// the first such line. Each call looks only at lines after the line the
// previous WaitFor matched, so waiting for the same message twice waits for its
// second appearance (after a reboot, say). Only complete lines are matched.
// When QEMU exits first, WaitFor returns at once (not at ctx's deadline) with
// an error naming re, QEMU's exit status and the last console lines; when ctx
// ends first, the error names re, ctx's error and the last lines.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	return vm.waitUntil(ctx, fmt.Sprintf("console never matched %q", re), func(lines []string, from int) ([]string, int, bool) {
		for i := from; i < len(lines); i++ {
			if m := re.FindStringSubmatch(lines[i]); m != nil {
				return m, i + 1, true
			}
		}
		return nil, len(lines), false
	})
}

// WaitForNth waits until re has matched n console lines, counted from the
// first line QEMU printed (lines of earlier boots count too), and returns the
// submatches of the n-th. It neither uses nor moves WaitFor's place, and it
// fails as WaitFor does: at once when QEMU exits, naming re, the exit status
// and the last console lines.
func (vm *VM) WaitForNth(ctx context.Context, re *regexp.Regexp, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("qemu: WaitForNth: n=%d, want 1 or more", n)
	}
	seen, scanned := 0, 0
	what := fmt.Sprintf("console never matched %q", re)
	if n > 1 {
		what = fmt.Sprintf("console matched %q fewer than %d times", re, n)
	}
	return vm.waitUntil(ctx, what, func(lines []string, _ int) ([]string, int, bool) {
		for ; scanned < len(lines); scanned++ {
			if m := re.FindStringSubmatch(lines[scanned]); m != nil {
				seen++
				if seen == n {
					scanned++
					return m, -1, true
				}
			}
		}
		return nil, -1, false
	})
}

// waitUntil calls match with the console lines (and WaitFor's cursor) each
// time they grow, until it reports a result, QEMU exits or ctx ends. match
// returns the new cursor, or -1 to leave it alone.
func (vm *VM) waitUntil(ctx context.Context, what string, match func(lines []string, cursor int) ([]string, int, bool)) ([]string, error) {
	for {
		vm.mu.Lock()
		m, cur, ok := match(vm.lines, vm.cursor)
		if cur >= 0 {
			vm.cursor = cur
		}
		changed := vm.changed
		vm.mu.Unlock()
		if ok {
			return m, nil
		}

		select {
		case <-vm.done:
			// Lines are final once done is closed; look at them once more.
			vm.mu.Lock()
			m, cur, ok := match(vm.lines, vm.cursor)
			if cur >= 0 {
				vm.cursor = cur
			}
			vm.mu.Unlock()
			if ok {
				return m, nil
			}
			return nil, fmt.Errorf("%s: QEMU exited first (%w)\n%s", what, vm.exitErr(), vm.tail())
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w\n%s", what, ctx.Err(), vm.tail())
		case <-changed:
		}
	}
}

// ErrExited is wrapped by the errors of the waits when QEMU exited before
// what they waited for.
var ErrExited = errors.New("qemu exited")

// exitErr describes how QEMU ended; valid once done is closed.
func (vm *VM) exitErr() error {
	if vm.waitErr != nil {
		return fmt.Errorf("%w: %w", ErrExited, vm.waitErr)
	}
	state := "exit status 0"
	if ps := vm.cmd.ProcessState; ps != nil {
		state = ps.String()
	}
	return fmt.Errorf("%w: %s", ErrExited, state)
}

// tail formats the last console lines for an error message.
func (vm *VM) tail() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	ls := vm.lines
	if len(ls) > tailLines {
		ls = ls[len(ls)-tailLines:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last %d console lines:", len(ls))
	for _, l := range ls {
		b.WriteString("\n| ")
		b.WriteString(l)
	}
	if p := strings.ReplaceAll(string(vm.split.partial), "\r", ""); p != "" {
		b.WriteString("\n| ")
		b.WriteString(p)
	}
	return b.String()
}

// Wait waits until QEMU exits. A guest power-off gives nil; the error
// otherwise carries QEMU's stderr.
func (vm *VM) Wait() error {
	<-vm.done
	return vm.waitErr
}

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.done }

// Kill cuts the power: QEMU gets SIGKILL now, and Kill returns once it is gone.
// Guest writes that the guest flushed are in the image (see the cache mode in
// Args); everything else the guest had in memory is lost.
func (vm *VM) Kill() error {
	select {
	case <-vm.done:
		return nil
	default:
	}
	if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: kill: %w", err)
	}
	<-vm.done
	return nil
}

// Stop asks the guest to power off (ACPI power button through QMP, or SIGTERM
// to QEMU if QMP does not answer) and kills QEMU if it has not exited within
// timeout. It returns nil only when QEMU exited cleanly in time.
func (vm *VM) Stop(timeout time.Duration) error {
	select {
	case <-vm.done:
		return vm.waitErr
	default:
	}
	if err := qmpCommand(vm.qmpPath, "system_powerdown", 2*time.Second); err != nil {
		logrus.WithError(err).Debug("qemu: QMP power-down failed; sending SIGTERM")
		if err := vm.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return errors.Join(fmt.Errorf("qemu: SIGTERM: %w", err), vm.Kill())
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-vm.done:
		return vm.waitErr
	case <-t.C:
		if err := vm.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("qemu: guest did not power off within %s: killed", timeout)
	}
}

// ErrTimeout is returned (wrapped) by Run when the guest outlives its time.
var ErrTimeout = errors.New("timed out")

// Run boots a VM, streams its console to opts.Serial and returns when the guest
// ends QEMU. After timeout (0: none) it kills QEMU and returns an error
// wrapping ErrTimeout; when ctx ends it kills QEMU and returns ctx's error.
func Run(ctx context.Context, opts Options, timeout time.Duration) error {
	if ctx == nil {
		ctx = context.Background()
	}
	vm, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-vm.done:
		return vm.waitErr
	case <-timer:
		if err := vm.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("qemu: VM still running after %s, killed: %w", timeout, ErrTimeout)
	case <-ctx.Done():
		if err := vm.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("qemu: VM killed: %w", ctx.Err())
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// ensureVars creates the writable firmware variable store from the OVMF
// template unless it exists. The copy is written beside the target and renamed
// into place, so an interrupted copy never leaves a truncated store.
func ensureVars(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("qemu: firmware vars: %w", err)
	}
	_, tmpl, err := FindOVMF()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(tmpl)
	if err != nil {
		return fmt.Errorf("qemu: firmware vars template: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".vars-*.tmp")
	if err != nil {
		return fmt.Errorf("qemu: firmware vars: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("qemu: firmware vars %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("qemu: firmware vars %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("qemu: firmware vars %s: %w", path, err)
	}
	return nil
}
