package fatfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWriteESP writes a 256 MiB ESP holding the ESP set (~14 MiB:
// systemd-boot, a kernel, an initramfs, loader files) into a sparse file.
// The content is held in memory so that the writer is measured.
func BenchmarkWriteESP(b *testing.B) {
	c := espSet()
	data := map[string][]byte{}
	var total int64
	for _, f := range c.files {
		data[f.path] = patternBytes(f.seed, f.size)
		total += f.size
	}
	path := filepath.Join(b.TempDir(), "esp.img")
	b.SetBytes(total)
	for b.Loop() {
		fb, err := New(Options{Size: 256 * mib, Label: "ESP", Time: testTime})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range c.files {
			d := data[f.path]
			fb.AddFile(f.path, int64(len(d)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(d)), nil })
		}
		out, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := out.Truncate(256 * mib); err != nil {
			b.Fatal(err)
		}
		if err := fb.WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
