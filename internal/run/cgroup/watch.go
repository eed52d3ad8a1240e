package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// MemoryEvents are the counts of memory.events slate looks at.
type MemoryEvents struct {
	// OOM is how often the leaf hit its limit and the OOM killer ran;
	// OOMKill how many processes it killed.
	OOM, OOMKill uint64
}

// ReadMemoryEvents reads memory.events.
func (l *Leaf) ReadMemoryEvents() (MemoryEvents, error) {
	b, err := readFile(filepath.Join(l.Path, "memory.events"))
	if err != nil {
		return MemoryEvents{}, err
	}
	m, err := ParseKeyed(b)
	if err != nil {
		return MemoryEvents{}, err
	}
	return MemoryEvents{OOM: m["oom"], OOMKill: m["oom_kill"]}, nil
}

// WatchMemoryEvents calls seen with memory.events each time the kernel
// says it changed (and at least every poll), from when the leaf appears
// until it is removed or ctx is done. It is for a leaf someone else
// removes when its processes end (runc does, for a container): the OOM
// kill that ended the container must be read before the leaf is gone.
func (l *Leaf) WatchMemoryEvents(ctx context.Context, poll time.Duration, seen func(MemoryEvents)) {
	file := filepath.Join(l.Path, "memory.events")
	// Wait for the leaf: runc makes it once it has read its config.
	for {
		if _, err := os.Stat(l.Path); err == nil {
			if _, err := os.Stat(file); err != nil {
				return // no memory controller: nothing to watch
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		l.pollMemoryEvents(ctx, poll, seen)
		return
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, file, unix.IN_MODIFY); err != nil {
		return // gone already
	}
	buf := make([]byte, 4096)
	for {
		ev, err := l.ReadMemoryEvents()
		if err != nil {
			return
		}
		seen(ev)
		// Wait for a change, a poll tick or ctx, in slices short enough
		// to see ctx end.
		deadline := time.Now().Add(poll)
		for {
			if ctx.Err() != nil {
				return
			}
			wait := min(time.Until(deadline), 200*time.Millisecond)
			if wait <= 0 {
				break
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			if n > 0 {
				for {
					if _, err := unix.Read(fd, buf); err != nil {
						break // EAGAIN: drained
					}
				}
				break
			}
		}
	}
}

func (l *Leaf) pollMemoryEvents(ctx context.Context, poll time.Duration, seen func(MemoryEvents)) {
	for {
		ev, err := l.ReadMemoryEvents()
		if err != nil {
			return
		}
		seen(ev)
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
}
