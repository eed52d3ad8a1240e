package pid1

import (
	"testing"

	"github.com/slateos/slate/internal/cmdline"
)

// PID 1 reads the slot as init does: the last slate.slot= wins.
func TestSlotFrom(t *testing.T) {
	cases := []struct{ in, want string }{
		{"root=PARTUUID=x ro slate.slot=a", "a"},
		{"slate.slot=a slate.slot=b", "b"},
		{"slate.slots=a", "none"},
		{"slate.root_sha256=00 slate.root_size=1", "none"},
	}
	for _, c := range cases {
		if got := SlotFrom(cmdline.Parse(c.in)); got != c.want {
			t.Errorf("SlotFrom(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
