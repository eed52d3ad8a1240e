package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slate inspect on a FIFO used to block in open(2), deaf to Ctrl-C.
func TestInspectRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newInspectCmd()
	cmd.SetArgs([]string{fifo})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Fatalf("err %v, want a named pipe error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slate inspect on a FIFO did not return")
	}
}
