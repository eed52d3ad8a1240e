package ext4fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchFiles is ~100 MiB in 1200 files of mixed sizes, held in memory so
// that the benchmark measures the writer, not the source.
func benchFiles() [][]byte {
	var files [][]byte
	var total int64
	for i := 0; total < 100*mib; i++ {
		size := int64(i*7919) % (160 * kib)
		if i%100 == 0 {
			size = 4 * mib
		}
		b, _ := io.ReadAll(&pattern{seed: byte(i), size: size})
		files = append(files, b)
		total += size
	}
	return files
}

// BenchmarkWriteRoot writes a root-like tree through ext4fs into a sparse
// file ("ext4fs") next to writing the same bytes sequentially ("plain").
func BenchmarkWriteRoot(b *testing.B) {
	files := benchFiles()
	var total int64
	for _, f := range files {
		total += int64(len(f))
	}
	dir := b.TempDir()

	b.Run("ext4fs", func(b *testing.B) {
		b.SetBytes(total)
		path := filepath.Join(dir, "fs.img")
		for b.Loop() {
			f, err := New(Options{Size: 512 * mib})
			if err != nil {
				b.Fatal(err)
			}
			for i, data := range files {
				d := fmt.Sprintf("/usr/lib/d%02d", i%40)
				if err := f.Mkdir(d, 0o755, 0, 0); err != nil {
					b.Fatal(err)
				}
				data := data
				err := f.AddFile(fmt.Sprintf("%s/f%04d", d, i), 0o644, 0, 0, int64(len(data)), func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(data)), nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			out, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := out.Truncate(512 * mib); err != nil {
				b.Fatal(err)
			}
			if err := f.WriteTo(out, 0); err != nil {
				b.Fatal(err)
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("plain", func(b *testing.B) {
		b.SetBytes(total)
		path := filepath.Join(dir, "plain")
		for b.Loop() {
			out, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			for _, data := range files {
				if _, err := out.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFormatState formats an empty 64 GiB filesystem into a sparse
// file, as slate's init does for STATE on first boot.
func BenchmarkFormatState(b *testing.B) {
	for _, journal := range []int{0, 32768, -1} {
		b.Run(fmt.Sprintf("journal%d", journal), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "state.img")
			for b.Loop() {
				f, err := New(Options{Size: 64 << 30, JournalBlocks: journal})
				if err != nil {
					b.Fatal(err)
				}
				out, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := out.Truncate(64 << 30); err != nil {
					b.Fatal(err)
				}
				if err := f.WriteTo(out, 0); err != nil {
					b.Fatal(err)
				}
				if err := out.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
