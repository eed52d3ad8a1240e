package version

import (
	"strings"
	"testing"
)

// The one rule both the spec's version: and a channel manifest's
// "version" follow.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" accepts
	}{
		{"1.0.0", ""},
		{"0.0.0", ""},
		{"2.0.0-rc.1", ""},
		{"1.0.0-alpha.beta.1", ""},
		{"1.0.0-0a", ""},
		{"1.0.0-x-y", ""},
		{"10.20.30", ""},
		{"1.0.0-" + strings.Repeat("a", 58), ""}, // 64 characters: the limit
		{"1.0.0-" + strings.Repeat("a", 59), "is 65 characters; at most 64"},
		{"", "is not a semantic version"},
		{"1.0", `"1.0" is not a semantic version`},
		{"1.02.0", "is not a semantic version"},
		{"01.0.0", "is not a semantic version"},
		{"v1.0.0", "is not a semantic version"},
		{"1.0.0-", "is not a semantic version"},
		{"1.0.0-01", "is not a semantic version"},
		{"1.0.0-a..b", "is not a semantic version"},
		{"1.0.0-a_b", "is not a semantic version"},
		{"1.0.0 ", "is not a semantic version"},
		{"1.0.0+build", `"1.0.0+build" must not carry +build metadata`},
		{"1.0.0-rc.1+b.2", "must not carry +build metadata"},
	} {
		err := Check(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.10.0", "1.9.0", 1},
		{"1.0.0", "1.0.0", 0},
		{"1.0.0+b", "0.0.1", -1}, // invalid sorts first
		{"1.0.0-01", "0.0.1", -1},
		{"b", "a", 1},
	} {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("1.0.0-rc.1")
	f.Add("1.0.0+b")
	f.Fuzz(func(t *testing.T, s string) {
		if Check(s) == nil && (len(s) > MaxLen || strings.ContainsAny(s, "+ /")) {
			t.Fatalf("Check(%q) accepted", s)
		}
		_ = Compare(s, "1.0.0")
	})
}
