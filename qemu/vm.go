package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	cmd     *exec.Cmd
	accel   string
	qmpPath string
	tmpDir  string

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
func Start(ctx context.Context, opts Options) (*VM, error) {
	if ctx == nil {
		ctx = context.Background()
	}
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

	vm := &VM{accel: opts.Accel, done: make(chan struct{}), changed: make(chan struct{}), serial: opts.Serial}
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
// second appearance (after a reboot, say). Only complete lines are matched. The
// error, when QEMU exits or ctx ends first, carries the last console lines.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		vm.mu.Lock()
		for i := vm.cursor; i < len(vm.lines); i++ {
			if m := re.FindStringSubmatch(vm.lines[i]); m != nil {
				vm.cursor = i + 1
				vm.mu.Unlock()
				return m, nil
			}
		}
		vm.cursor = len(vm.lines)
		changed := vm.changed
		vm.mu.Unlock()

		select {
		case <-vm.done:
			// Lines are final once done is closed; look at them once more.
			vm.mu.Lock()
			more := vm.cursor < len(vm.lines)
			vm.mu.Unlock()
			if more {
				continue
			}
			err := vm.waitErr
			if err == nil {
				err = errors.New("qemu exited")
			}
			return nil, fmt.Errorf("console never matched %q: %w\n%s", re, err, vm.tail())
		case <-ctx.Done():
			return nil, fmt.Errorf("console never matched %q: %w\n%s", re, ctx.Err(), vm.tail())
		case <-changed:
		}
	}
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
