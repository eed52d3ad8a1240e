package ext4fs

import "testing"

// TestGolden pins the bytes of a few content sets, so that a change of the
// on-disk output (new features such as attributes must not alter images
// that do not use them) is a deliberate one: update the sums only when the
// format is meant to change.
func TestGolden(t *testing.T) {
	sums := map[string]string{
		"mixed":                   "1f512d63eb3ec08f3eb79ca216b6acca7e1c8c7b87783d66d910f84dcbd1baf3",
		"mixed-journal":           "fdf6a7f4d46659d53aa0c9b3753b8ccdf44da81f5cb2f9d5df1cf950b6c5d324",
		"mixed-1k-blocks":         "ce989cdb9dfc305fbe2e30e50523933e79184e68a60ca3612c9713f77ea84d58",
		"mixed-2k-blocks-journal": "697ec03a2f2ebb6b12a8bbdbc84920bb6f48a563987740264e17513ef8ac8053",
		"many-files":              "d5f1ed4cfdaa1242ce3e9a059dc9b1a4976b7a77f688e087188e69c6e20a4e38",
		"dir-2000-entries":        "82496bae900366e292f9171a4c00052f1c8d25c3876106132042632053f4f6cf",
		"tail-group-dropped":      "c8b01d1192fbae832cc55a3e787142df850c1d42b7d98c063e73b1b48de81a6c",
		"large-file-1k-blocks":    "1c4cbe5326f1b99a4bf5fef87abfe590e64ea8d4f11ff3eee9b0353eba5a3a8e",
	}
	seen := 0
	for _, c := range contentCases() {
		want, ok := sums[c.name]
		if !ok {
			continue
		}
		seen++
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.opts.Size > 64*mib {
				t.Skip("large image")
			}
			img := writeImage(t, build(t, c.opts, c.entries, false), c.opts.Size)
			if got := imageSum(t, img); got != want {
				t.Errorf("image sum %s, want %s", got, want)
			}
		})
	}
	if seen != len(sums) {
		t.Errorf("%d of %d golden cases found in contentCases", seen, len(sums))
	}
}
