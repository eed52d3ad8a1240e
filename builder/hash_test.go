package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestHashSparseFile(t *testing.T) {
	cases := []struct {
		name   string
		size   int64
		writes map[int64]string
	}{
		{"empty", 0, nil},
		{"all hole", 5 << 20, nil},
		{"data at start", 3 << 20, map[int64]string{0: "hello"}},
		{"data in the middle and at the end", 9 << 20, map[int64]string{4<<20 + 17: "middle", 9<<20 - 3: "end"}},
		{"dense", 1 << 16, map[int64]string{0: string(make([]byte, 1<<16))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(c.size); err != nil {
				t.Fatal(err)
			}
			for off, s := range c.writes {
				if _, err := f.WriteAt([]byte(s), off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			want, _ := os.ReadFile(p)
			sum := sha256.Sum256(want)
			got, err := hashFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if got.SHA256 != hex.EncodeToString(sum[:]) || got.Size != int64(len(want)) {
				t.Fatalf("hashFile = %+v, want %x size %d", got, sum, len(want))
			}
		})
	}
}
