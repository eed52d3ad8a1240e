package configs

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		err  string
	}{
		{"SIGQUIT", syscall.SIGQUIT, ""},
		{"quit", syscall.SIGQUIT, ""},
		{"SigInt", syscall.SIGINT, ""},
		{"TERM", syscall.SIGTERM, ""},
		{"SIGKILL", syscall.SIGKILL, ""},
		{"3", syscall.SIGQUIT, ""},
		{"64", 64, ""},
		{"SIGRTMIN", 34, ""},
		{"SIGRTMIN+3", 37, ""},
		{"rtmin+30", 64, ""},
		{"SIGRTMAX", 64, ""},
		{"RTMAX-1", 63, ""},
		{"", 0, "empty signal"},
		{"0", 0, "from 1 to 64"},
		{"65", 0, "from 1 to 64"},
		{"300", 0, "unknown signal"},
		{"-3", 0, "unknown signal"},
		{"SIGRTMIN+31", 0, "real-time signals are 34 to 64"},
		{"SIGRTMAX-31", 0, "real-time signals are 34 to 64"},
		{"SIGRTMIN-1", 0, "RTMIN is followed by +N"},
		{"SIGRTMAX+1", 0, "RTMAX is followed by -N"},
		{"SIGRTMIN+", 0, "RTMIN is followed by +N"},
		{"SIGRTMIN++1", 0, "RTMIN is followed by +N"},
		{"SIGNOPE", 0, "unknown signal"},
		{"SIG", 0, "unknown signal"},
		{"SIGQUIT ", 0, "unknown signal"},
		{"SIG QUIT", 0, "unknown signal"},
		{"\u017figquit", 0, "unknown signal"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSignal(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSignal(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSignal(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"SIGQUIT", "term", "9", "SIGRTMIN+3", "RTMAX-2", "SIGRTMIN+", "0", "sig"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			return
		}
		if sig < 1 || sig > 64 || !isASCII(s) {
			t.Fatalf("ParseSignal(%q) = %d, out of range", s, sig)
		}
		// A signal that parses is the same by its number and in any case.
		if n, err := ParseSignal(strconv.Itoa(int(sig))); err != nil || n != sig {
			t.Fatalf("ParseSignal(%d) = %d, %v", sig, n, err)
		}
		for _, v := range []string{strings.ToLower(s), strings.ToUpper(s)} {
			if n, err := ParseSignal(v); err != nil || n != sig {
				t.Fatalf("ParseSignal(%q) = %d, %v; %q gave %d", v, n, err, s, sig)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
