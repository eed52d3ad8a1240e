package supervisor

import (
	"fmt"
	"os"
	"sync"
)

// Log files are bounded so that a chatty service or container cannot
// fill STATE: <name>.log grows to logMaxSize, then becomes <name>.log.1
// (the previous .1 becomes .2, and so on up to logKeep); at most
// (logKeep+1) × logMaxSize bytes per unit, 24 MiB by default.
const (
	logMaxSize = 8 << 20
	logKeep    = 2
)

// rotatingLog is one unit's log file. Writes come from the output
// copiers of its main process and of its commands, hence the lock.
type rotatingLog struct {
	mu      sync.Mutex
	path    string
	maxSize int64
	keep    int
	f       *os.File
	size    int64
	failed  bool // a rotation failed: stop writing rather than grow
}

// openLog opens (appending to) the log at path.
func openLog(path string, maxSize int64, keep int) (*rotatingLog, error) {
	l := &rotatingLog{path: path, maxSize: maxSize, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *rotatingLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write writes p (one line) whole to the current file, rotating first
// when it would pass the bound. A line is never split across files.
func (l *rotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil || l.failed {
		return len(p), nil
	}
	if l.size > 0 && l.size+int64(len(p)) > l.maxSize {
		if err := l.rotate(); err != nil {
			l.failed = true
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate shifts name.log.(k) to .(k+1), dropping the last, and starts a
// new name.log.
func (l *rotatingLog) rotate() error {
	l.f.Close()
	l.f = nil
	if l.keep <= 0 {
		if err := os.Remove(l.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", l.path, err)
		}
	} else {
		_ = os.Remove(fmt.Sprintf("%s.%d", l.path, l.keep))
		for i := l.keep - 1; i >= 1; i-- {
			_ = os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
		}
		if err := os.Rename(l.path, l.path+".1"); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", l.path, err)
		}
	}
	return l.open()
}

// Close closes the current file.
func (l *rotatingLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
