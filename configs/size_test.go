package configs

import (
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"1048576", MiB},
		{"512B", 512},
		{"4GiB", 4 * GiB},
		{"256MiB", 256 * MiB},
		{"1G", GiB},
		{"512M", 512 * MiB},
		{"4K", 4 * KiB},
		{"2T", 2 * TiB},
		{"1TiB", TiB},
		{"1.5GiB", GiB + 512*MiB},
		{"0.5M", 512 * KiB},
		{"4 GiB", 4 * GiB},
		{" 4gib ", 4 * GiB},
		{"007MiB", 7 * MiB},
		{"9223372036854775807", math.MaxInt64},
		{"8388607TiB", 8388607 * TiB},
	}
	for _, tc := range good {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"12XB", `unknown unit "XB"`},
		{"-1", "negative"},
		{"-4GiB", "negative"},
		{"1GB", "ambiguous"},
		{"1mb", "ambiguous"},
		{"1.5", "whole number of bytes"},
		{"0.3K", "whole number of bytes"},
		{"1.", "expected a number"},
		{".5G", "expected a number"},
		{"1.2.3M", "expected a number"},
		{"GiB", "expected a number"},
		{"+1", "unknown unit"},
		{"0x100", "unknown unit"},
		{"1e9", "unknown unit"},
		{"9223372036854775808", "larger than"},
		{"8388608TiB", "larger than"},
		{strings.Repeat("9", 100), "too long"},
	}
	for _, tc := range bad {
		_, err := ParseSize(tc.in)
		if err == nil {
			t.Errorf("ParseSize(%q) succeeded", tc.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), `"`) || !strings.Contains(err.Error(), "is not a size") || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseSize(%q) = %v; want it to say %q", tc.in, err, tc.why)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {KiB, "1KiB"}, {1536 * MiB, "1536MiB"},
		{3 * GiB, "3GiB"}, {TiB, "1TiB"}, {-5, "-5"}, {math.MaxInt64, "9223372036854775807"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q; want %q", int64(tc.in), got, tc.want)
		}
	}
}

func FuzzSize(f *testing.F) {
	for _, s := range []string{"0", "1", "4GiB", "1.5GiB", "512M", "12XB", "-1", "1GB", "9223372036854775807", "0.0000001K", "1 T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSize(in)
		if err != nil {
			if !strings.Contains(err.Error(), "is not a size") {
				t.Fatalf("error %q does not say what is wrong", err)
			}
			return
		}
		if s < 0 {
			t.Fatalf("ParseSize(%q) = %d: negative", in, s)
		}
		// The written form reads back to the same size.
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseSize(%q) = %d, written %q, read back %d, %v", in, s, s.String(), back, err)
		}
	})
}
