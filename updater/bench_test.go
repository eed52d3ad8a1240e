package updater

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/slateos/slate/internal/bootentry"
	"github.com/slateos/slate/updater/payload"
)

// rootImage is a root-like image: stretches of incompressible data between
// zeros, like a filesystem with files and free space.
func rootImage(size int64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for off := int64(0); off < size; off += 1 << 20 {
		if r.IntN(3) == 0 {
			for i := off; i < min(off+1<<20, size); i += 8 {
				v := r.Uint64()
				for k := 0; k < 8 && i+int64(k) < size; k++ {
					b[i+int64(k)] = byte(v >> (8 * k))
				}
			}
		}
	}
	return b
}

func benchChannel(tb testing.TB, dir string, size int64) (Source, *payload.Manifest, []byte) {
	tb.Helper()
	if err := payload.GenerateKey(dir); err != nil {
		tb.Fatal(err)
	}
	key, err := payload.LoadPrivateKey(filepath.Join(dir, "update.key"))
	if err != nil {
		tb.Fatal(err)
	}
	root := rootImage(size)
	kp := filepath.Join(dir, "k")
	os.WriteFile(kp, []byte("kernel"), 0o644)
	ch := filepath.Join(dir, "channel")
	if _, err := payload.AddToChannel(ch, key, payload.Release{
		Name: "bench", Version: "2.0.0", KernelVersion: "6.1.0", Created: time.Unix(0, 0),
		Root: bytes.NewReader(root), RootSize: size, Kernel: kp, Initrd: kp,
	}); err != nil {
		tb.Fatal(err)
	}
	src, _ := NewSource(ch, nil)
	m, err := FetchManifest(context.Background(), src, key.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return src, m, root
}

// BenchmarkApplyVsDD compares applying a root image (decompress, verify,
// write, sync, read back) with dd writing the same bytes to the same kind
// of target (a file on the same filesystem, conv=fsync), in the same run.
func BenchmarkApplyVsDD(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	src, m, root := benchChannel(b, dir, size)
	raw := filepath.Join(dir, "root.raw")
	if err := os.WriteFile(raw, root, 0o644); err != nil {
		b.Fatal(err)
	}
	dd, err := exec.LookPath("dd")
	if err != nil {
		b.Fatal("dd not found")
	}
	var applyT, writeT, ddT time.Duration
	rootFile, _ := m.File(payload.RoleRoot)
	for i := 0; i < b.N; i++ {
		dev := filepath.Join(dir, "slot")
		os.WriteFile(dev, nil, 0o644)
		os.Truncate(dev, size)
		tg := Target{Slot: "b", RootDev: dev, RootSize: size, Boot: bootentry.Dir{Path: filepath.Join(dir, "esp")}, Options: "ro", Tries: 3}
		t0 := time.Now()
		if err := Apply(context.Background(), src, m, tg, nil); err != nil {
			b.Fatal(err)
		}
		applyT += time.Since(t0)
		// the write phase alone: download, decompress, hash, write, sync
		t0 = time.Now()
		v, err := openVerified(context.Background(), src, rootFile)
		if err != nil {
			b.Fatal(err)
		}
		if err := writeRoot(context.Background(), nil, v, rootFile, tg, func(int) {}); err != nil {
			b.Fatal(err)
		}
		v.Close()
		writeT += time.Since(t0)
		t0 = time.Now()
		out, err := exec.Command(dd, "if="+raw, "of="+dev, "bs=4M", "conv=fsync,notrunc", "status=none").CombinedOutput()
		if err != nil {
			b.Fatalf("dd: %v %s", err, out)
		}
		ddT += time.Since(t0)
	}
	mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mbs(writeT), "root-write-MiB/s")
	b.ReportMetric(mbs(applyT), "whole-apply-MiB/s")
	b.ReportMetric(mbs(ddT), "dd-MiB/s")
	b.ReportMetric(mbs(writeT)/mbs(ddT)*100, "write/dd-%")
	b.Logf("root write while applying (decompress, hash, write, sync): %.0f MiB/s; dd of the same bytes: %.0f MiB/s; ratio %.0f%% (target >= 80%%)",
		mbs(writeT), mbs(ddT), mbs(writeT)/mbs(ddT)*100)
	b.Logf("whole apply (with the read-back check and the ESP files): %.0f MiB/s", mbs(applyT))
}

// BenchmarkApplyMemory applies a 1 GiB root in a child process and reports
// its peak resident memory (target < 40 MiB).
func BenchmarkApplyMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		// the channel is made by its own process: wait4's peak RSS covers
		// a child and the descendants it waited for
		mk := exec.Command(os.Args[0], "-test.run=^TestApplyMemoryChild$")
		mk.Env = append(os.Environ(), "SLATE_APPLY_CHILD="+dir, "SLATE_APPLY_STAGE=make")
		if out, err := mk.CombinedOutput(); err != nil {
			b.Fatalf("make channel: %v\n%s", err, out)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestApplyMemoryChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SLATE_APPLY_CHILD="+dir, "SLATE_APPLY_STAGE=apply")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		// VmHWM from the child itself: wait4's ru_maxrss would carry the
		// parent's size across fork and exec.
		m := regexp.MustCompile(`PEAK-RSS-KB (\d+)`).FindSubmatch(out)
		if m == nil {
			b.Fatalf("child printed no peak:\n%s", out)
		}
		kb, _ := strconv.Atoi(string(m[1]))
		b.ReportMetric(float64(kb)/1024, "peak-RSS-MiB")
		b.Logf("peak RSS applying a 1 GiB root: %.1f MiB (target < 40 MiB)", float64(kb)/1024)
	}
}

// TestApplyMemoryChild is BenchmarkApplyMemory's child: the channel is
// made by a separate process so only Apply counts.
func TestApplyMemoryChild(t *testing.T) {
	dir := os.Getenv("SLATE_APPLY_CHILD")
	if dir == "" {
		t.Skip("run by BenchmarkApplyMemory")
	}
	if os.Getenv("SLATE_APPLY_STAGE") == "make" {
		benchChannel(t, dir, 1<<30)
		return
	}
	debug.SetMemoryLimit(MemoryLimit) // as the daemon does
	pubPEM, err := payload.LoadPublicKey(filepath.Join(dir, "update.pub"))
	if err != nil {
		t.Fatal(err)
	}
	src, _ := NewSource(filepath.Join(dir, "channel"), nil)
	m, err := FetchManifest(context.Background(), src, pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "slot")
	os.WriteFile(dev, nil, 0o644)
	os.Truncate(dev, 1<<30)
	tg := Target{Slot: "b", RootDev: dev, RootSize: 1 << 30, Boot: bootentry.Dir{Path: filepath.Join(dir, "esp")}, Options: "ro", Tries: 3}
	if err := Apply(context.Background(), src, m, tg, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	hwm := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(st)
	if hwm == nil {
		t.Fatalf("no VmHWM in /proc/self/status")
	}
	t.Logf("PEAK-RSS-KB %s", hwm[1])
}
