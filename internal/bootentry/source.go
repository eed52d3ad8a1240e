package bootentry

import (
	"context"
	"fmt"
	"io/fs"
	"os"
)

// CheckSource refuses, before anything opens it, a path that is neither a
// regular file, a block device nor a folder (a PXE folder): opening a
// named pipe blocks until something writes to it, and a character device
// or socket is no disk.
func CheckSource(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	m := st.Mode()
	switch {
	case m.IsRegular(), m.IsDir(), m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return nil
	}
	kind := "a special file"
	switch {
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	}
	return fmt.Errorf("inspect %s: %s: give a disk image file, a block device, a PXE folder or an ISO", p, kind)
}

// WithContext runs fn and returns its result, or ctx's error as soon as
// ctx ends (Ctrl-C): a read stuck on a slow or hung device must not hold
// the command. fn goes on in the background until the process exits.
func WithContext[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("inspect: %w", ctx.Err())
	}
}
