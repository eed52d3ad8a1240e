package fetch

import (
	"strings"
	"testing"
)

// FuzzContentRange: the Content-Range a server sends never yields a
// negative offset or total, and a refused one is named as such.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes */10", "bytes -1-5/3", "bytes 9223372036854775807-9223372036854775807/1", "", "bytes 1-0/5", "bytes +1-2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, err := contentRangeStart(h)
		if err == nil && start < 0 {
			t.Fatalf("negative start %d from %q", start, h)
		}
		if err != nil && !strings.Contains(err.Error(), "malformed Content-Range") {
			t.Fatalf("error %v does not say what is wrong", err)
		}
		if total, ok := contentRangeTotal(h); ok && total < 0 {
			t.Fatalf("negative total from %q", h)
		}
	})
}
