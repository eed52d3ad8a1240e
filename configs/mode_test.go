package configs

import (
	"io/fs"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	good := []struct {
		in   string
		want Mode
	}{
		{"0755", 0o755}, {"755", 0o755}, {"0o755", 0o755}, {"644", 0o644},
		{"4755", 0o4755}, {"07777", 0o7777}, {"00000600", 0o600}, {"0", 0}, {"7", 7},
	}
	for _, tc := range good {
		got, err := ParseMode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMode(%q) = %o, %v; want %o", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0999", "493x", "rwx", "-755", "10000", "0o", "0x1ff", "7.5", "77777"} {
		if m, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) = %o; want an error", in, m)
		} else if !strings.Contains(err.Error(), "is not a mode") {
			t.Errorf("ParseMode(%q): %v", in, err)
		}
	}
}

func TestModeString(t *testing.T) {
	if got := Mode(0o755).String(); got != "0755" {
		t.Errorf("got %q", got)
	}
	if got := Mode(0o4711).String(); got != "4711" {
		t.Errorf("got %q", got)
	}
}

func TestModeFileMode(t *testing.T) {
	for _, tc := range []struct {
		in   Mode
		want fs.FileMode
	}{
		{0o644, 0o644},
		{0o4755, fs.ModeSetuid | 0o755},
		{0o2750, fs.ModeSetgid | 0o750},
		{0o1777, fs.ModeSticky | 0o777},
	} {
		if got := tc.in.FileMode(); got != tc.want {
			t.Errorf("Mode(%o).FileMode() = %v; want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzMode(f *testing.F) {
	for _, s := range []string{"0755", "755", "0o644", "0999", "10000", "", "00000000000000000000007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMode(in)
		if err != nil {
			return
		}
		if m > MaxMode {
			t.Fatalf("ParseMode(%q) = %o: above %o", in, m, MaxMode)
		}
		if back, err := ParseMode(m.String()); err != nil || back != m {
			t.Fatalf("ParseMode(%q) = %o, written %q, read back %o, %v", in, m, m.String(), back, err)
		}
	})
}
