package cgroup

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The watch follows memory.events as it changes and ends when the leaf
// goes; a plain folder stands in for the leaf (inotify works the same).
func TestWatchMemoryEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "leaf")
	l := &Leaf{Path: dir}
	var mu sync.Mutex
	var seen []MemoryEvents
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.WatchMemoryEvents(context.Background(), time.Hour, func(ev MemoryEvents) {
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
		})
	}()
	last := func() (MemoryEvents, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return MemoryEvents{}, 0
		}
		return seen[len(seen)-1], len(seen)
	}
	waitFor := func(want MemoryEvents) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if ev, n := last(); n > 0 && ev == want {
				return
			}
			if time.Now().After(deadline) {
				ev, n := last()
				t.Fatalf("last of %d events %+v, want %+v", n, ev, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The leaf appears later, as runc makes it, and with its files at
	// once, as cgroupfs shows them: made beside it and renamed into place,
	// so the watch never sees the folder without memory.events (which
	// means no memory controller).
	tmp := dir + ".new"
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "memory.events")
	if err := os.WriteFile(filepath.Join(tmp, "memory.events"), []byte("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the watch is waiting for the leaf
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(MemoryEvents{})
	// The poll is an hour: only inotify can bring the change. The new
	// counts are written in place in one write of the same length, as the
	// kernel changes the file: a truncate and a rewrite could be read
	// half-way.
	f, err := os.OpenFile(events, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(MemoryEvents{OOM: 1, OOMKill: 1})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end when the leaf went")
	}
}

// Without a memory controller there is nothing to watch; ctx ends a
// watch whose leaf never comes.
func TestWatchMemoryEventsEnds(t *testing.T) {
	dir := t.TempDir()
	l := &Leaf{Path: dir}
	done := make(chan struct{})
	go func() {
		l.WatchMemoryEvents(context.Background(), time.Second, func(MemoryEvents) { t.Error("an event without memory.events") })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch of a leaf without memory.events did not return")
	}
	ctx, cancel := context.WithCancel(context.Background())
	l = &Leaf{Path: filepath.Join(dir, "never")}
	done = make(chan struct{})
	go func() {
		l.WatchMemoryEvents(ctx, time.Second, func(MemoryEvents) {})
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
}
