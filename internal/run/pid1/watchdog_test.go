package pid1

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchdogFeeds: a device node that appears late is opened and fed
// at a quarter of its timeout until stopped; the timeout the driver took
// is the one fed for.
func TestWatchdogFeeds(t *testing.T) {
	cases := []struct {
		name string
		set  func(fd, secs int) (int, error)
		min  int // feeds seen within the wait
	}{
		{"driver takes the timeout", func(int, int) (int, error) { return 0, nil }, 3},
		{"no timeout ioctl", func(int, int) (int, error) { return 0, errors.New("inappropriate ioctl for device") }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dev := filepath.Join(t.TempDir(), "watchdog")
			asked := -1
			w := &watchdog{dev: dev, timeout: 200 * time.Millisecond, wait: 5 * time.Second,
				setTimeout: func(fd, secs int) (int, error) { asked = secs; return tc.set(fd, secs) }}
			go func() {
				time.Sleep(150 * time.Millisecond) // the node comes after PID 1 looks
				_ = os.WriteFile(dev, nil, 0o600)
			}()
			stop := make(chan struct{})
			defer close(stop)
			if !w.arm(stop) {
				t.Fatal("not armed")
			}
			if asked != 0 {
				// 200ms is asked as whole seconds: 0
				t.Errorf("asked for %d s", asked)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, _ := os.ReadFile(dev)
				if len(b) >= tc.min {
					for i, c := range b {
						if c == 'V' {
							t.Fatalf("byte %d is the magic close", i)
						}
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d feeds in 5 s, want %d", len(b), tc.min)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestWatchdogAbsent: a machine without a watchdog is not armed, and arm
// gives up after its wait.
func TestWatchdogAbsent(t *testing.T) {
	w := &watchdog{dev: filepath.Join(t.TempDir(), "none"), timeout: time.Second, wait: 200 * time.Millisecond,
		setTimeout: func(int, int) (int, error) { t.Error("set a timeout without a device"); return 0, nil }}
	t0 := time.Now()
	if w.arm(nil) {
		t.Fatal("armed without a device")
	}
	if d := time.Since(t0); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %s", d)
	}
}
