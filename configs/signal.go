package configs

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Real-time signals as the C library numbers them (it keeps the kernel's
// 32 and 33 for itself), as Docker's SIGRTMIN+N does.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// ParseSignal reads a signal the way an image's STOPSIGNAL names it (the
// builder checks the image's, PID 1 stops the container with it): a name
// with or without SIG in any case ("SIGQUIT", "quit"), a number from 1
// to 64 ("3"), or a real-time signal counted from either end
// ("SIGRTMIN+3", "RTMAX-1").
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return 0, fmt.Errorf("empty signal")
	}
	for i := 0; i < len(s); i++ {
		// ToUpper would make "ſigquit" SIGQUIT
		if s[i] >= 0x80 {
			return 0, fmt.Errorf("unknown signal %q", s)
		}
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, fmt.Errorf("signal %q: a number is from 1 to %d", s, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for _, end := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN", sigRTMin, 1}, {"RTMAX", sigRTMax, -1}} {
		rest, ok := strings.CutPrefix(name, end.prefix)
		if !ok {
			continue
		}
		n := 0
		if rest != "" {
			want := "+"
			if end.sign < 0 {
				want = "-"
			}
			off, ok := strings.CutPrefix(rest, want)
			v, err := strconv.ParseUint(off, 10, 8)
			if !ok || err != nil || off[0] == '+' {
				return 0, fmt.Errorf("signal %q: %s is followed by %sN", s, end.prefix, want)
			}
			n = int(v)
		}
		sig := end.base + end.sign*n
		if sig < sigRTMin || sig > sigRTMax {
			return 0, fmt.Errorf("signal %q: real-time signals are %d to %d", s, sigRTMin, sigRTMax)
		}
		return syscall.Signal(sig), nil
	}
	if name != "" && strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == "" {
		if sig := unix.SignalNum("SIG" + name); sig != 0 {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
