package bootentry

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckSource(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "disk.img")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		path, err string
	}{
		{fifo, "a named pipe (FIFO)"},
		{"/dev/null", "a character device"},
		{filepath.Join(dir, "none"), "no such file"},
		{file, ""},
		{dir, ""},
	}
	for _, c := range cases {
		err := CheckSource(c.path)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("CheckSource(%s) = %v, want %q", c.path, err, c.err)
		}
	}
}

func TestWithContextReturnsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err := WithContext(ctx, func() (int, error) { <-block; return 1, nil })
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if v, err := WithContext(context.Background(), func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("%d %v", v, err)
	}
}
