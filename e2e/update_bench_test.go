package e2e

import (
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

// BenchmarkUpdate times an update from the moment the updater finds the
// new version to SLATE-READY on it (under TCG, both machines' console
// read live).
func BenchmarkUpdate(b *testing.B) {
	needQEMU(b)
	c := newChannel(b)
	v1 := c.publish(b, updSpec{version: "1.0.0"})
	c.publish(b, updSpec{version: "1.1.0"})
	var total time.Duration
	for i := 0; i < b.N; i++ {
		vm := boot(b, machine(b, v1), qemu.Options{Network: true})
		nthMatch(b, vm, `^SLATE-UPDATE state=downloading version=1\.1\.0 slot=b percent=0`, 1, 3*time.Minute)
		found := time.Now()
		nthMatch(b, vm, `^SLATE-READY version=1\.1\.0 slot=b$`, 1, 3*time.Minute)
		d := time.Since(found)
		total += d
		nthMatch(b, vm, `^SLATE-UPDATE state=blessed version=1\.1\.0`, 1, 2*time.Minute)
		_ = vm.Kill()
	}
	avg := total / time.Duration(b.N)
	b.ReportMetric(float64(avg.Milliseconds()), "found-to-ready-ms")
	b.Logf("update found to SLATE-READY on the new version: %s", avg.Round(time.Millisecond))
}
