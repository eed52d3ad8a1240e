package payload

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// heapPeak samples the heap in use; ReadMemStats stops the world, so callers
// sample every few MiB, not on every read.
type heapPeak struct{ base, peak uint64 }

func newHeapPeak() *heapPeak {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &heapPeak{base: ms.HeapInuse, peak: ms.HeapInuse}
}

func (h *heapPeak) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

func (h *heapPeak) growth() uint64 { return h.peak - h.base }

// sampling calls sample every 16 MiB passing through it.
type sampling struct {
	r    io.Reader
	h    *heapPeak
	n    int64
	next int64
}

func (s *sampling) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n >= s.next {
		s.h.sample()
		s.next = s.n + 16<<20
	}
	return n, err
}

// TestVerifyMemoryBounded compresses and then verifies a 1 GiB root image
// (mostly zeros, one random 64 KiB block per 4 MiB) and checks that the heap
// grows by a bounded amount, independent of the image size.
func TestVerifyMemoryBounded(t *testing.T) {
	const size = 1 << 30
	const limit = 48 << 20 // decoder window (8 MiB) and buffers, with room
	dir := t.TempDir()
	path := filepath.Join(dir, RootFile)

	h := newHeapPeak()
	start := time.Now()
	f, err := writeZstd(path, &sampling{r: newSparseImage(size, 64, 42), h: h}, size)
	if err != nil {
		t.Fatal(err)
	}
	f.Role, f.Path = RoleRoot, "1.0.0/"+RootFile
	t.Logf("compress: %d MiB -> %.1f MiB in %v, heap growth %.1f MiB",
		size>>20, float64(f.CompressedSize)/(1<<20), time.Since(start).Round(time.Millisecond), float64(h.growth())/(1<<20))
	if h.growth() > limit {
		t.Errorf("compressing grew the heap by %d MiB, limit %d MiB", h.growth()>>20, limit>>20)
	}

	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	buf := make([]byte, 1<<20)
	want := sha256.New()
	img := newSparseImage(size, 64, 42)
	h = newHeapPeak()
	start = time.Now()
	v, err := OpenFile(f, in)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var n int64
	next := int64(0)
	for {
		k, err := v.Read(buf)
		n += int64(k)
		if n >= next {
			h.sample()
			next += 16 << 20
		}
		if err == io.EOF { //nolint:errorlint // io.Reader must return io.EOF itself, unwrapped: that is what is tested
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	h.sample()
	t.Logf("verify: %d MiB in %v (%.0f MB/s), heap growth %.1f MiB (peak in use %.1f MiB)",
		n>>20, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds()/1e6,
		float64(h.growth())/(1<<20), float64(h.peak)/(1<<20))
	if n != size {
		t.Fatalf("verified %d bytes", n)
	}
	if stored, out := v.Counts(); stored != f.CompressedSize || out != size {
		t.Errorf("Counts() = %d, %d; want %d, %d", stored, out, f.CompressedSize, size)
	}
	if h.growth() > limit {
		t.Errorf("verifying grew the heap by %d MiB, limit %d MiB", h.growth()>>20, limit>>20)
	}
	// The hash the verifier accepted is really the image's.
	io.Copy(want, img)
	if got := hex.EncodeToString(want.Sum(nil)); got != f.SHA256 {
		t.Errorf("manifest sha256 %s, image %s", f.SHA256, got)
	}
}

func BenchmarkVerify(b *testing.B) {
	cases := []struct {
		name string
		size int64
		src  func() io.Reader
		zstd bool
	}{
		{"zstd/sparse-root-64MiB", 64 << 20, func() io.Reader { return newSparseImage(64<<20, 4, 1) }, true},
		{"zstd/zeros-256MiB", 256 << 20, func() io.Reader { return newSparseImage(256<<20, 0, 1) }, true},
		{"zstd/random-32MiB", 32 << 20, func() io.Reader { return newSparseImage(32<<20, 1, 1) }, true},
		{"none/random-32MiB", 32 << 20, func() io.Reader { return newSparseImage(32<<20, 1, 1) }, false},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var stored bytes.Buffer
			var f File
			if bc.zstd {
				var err error
				if f, err = Compress(&stored, bc.src(), bc.size); err != nil {
					b.Fatal(err)
				}
			} else {
				io.Copy(&stored, bc.src())
				sum := sha256hex(stored.Bytes())
				f = File{Size: bc.size, CompressedSize: bc.size, SHA256: sum, CompressedSHA256: sum, Compression: CompressionNone}
			}
			f.Role, f.Path = RoleRoot, "x/root"
			buf := make([]byte, 1<<20)
			b.SetBytes(bc.size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				v, err := OpenFile(f, bytes.NewReader(stored.Bytes()))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{v}, buf); err != nil {
					b.Fatal(err)
				}
				v.Close()
			}
		})
	}
}
