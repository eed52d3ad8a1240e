package builder

import (
	"context"
	"fmt"
	"github.com/slateos/slate/internal/run/cnet"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkBuildContainer compares a warm build of an image with one
// baked container (an 8 MiB image from a loopback registry) with the same
// build without it (target: at most 1.5×), and the root's growth for the
// container with the image's unpacked size (target: no more). The
// baseline of the growth carries runc and the containers' modules too
// (runc as a plain file, the modules by kernel.modules), so that the
// growth is the bundle alone.
func BenchmarkBuildContainer(b *testing.B) {
	slate := sharedSlate(b)
	cache := testCache(b, true)
	reg := newTestRegistry(b)
	ref, _ := reg.push(b, "web", "v1", testImage(b, 8<<20, 11))
	runc := filepath.Join(cache, "runc", RuncVersion, "runc")
	mods := "[" + strings.Join(cnet.Modules, ", ") + "]"
	specs := map[string]string{
		"without":  "",
		"with":     "containers:\n- {name: web, image: '" + ref + "', ports: ['8080:80']}\n",
		"baseline": "kernel: {modules: " + mods + "}\nroot:\n  files:\n  - {src: " + runc + ", dst: /usr/local/bin/runc}\n",
	}
	build := func(name string) (time.Duration, *Report) {
		dir := b.TempDir()
		t0 := time.Now()
		rep, err := Build(context.Background(), Options{Spec: containerSpec(b, specs[name]), OutDir: filepath.Join(dir, "out"), CacheDir: cache, Slate: slate})
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		took := time.Since(t0)
		os.RemoveAll(dir)
		return took, rep
	}
	// cold: fill the image and module caches
	build("with")
	build("without")
	b.ResetTimer()
	var with, without time.Duration
	var repWith, repWithout, repBase *Report
	// two rounds each, the fastest counts: the machine is shared
	for i := 0; i < 2*b.N; i++ {
		d, r := build("without")
		if i == 0 || d < without {
			without, repWithout = d, r
		}
		d, r = build("with")
		if i == 0 || d < with {
			with, repWith = d, r
		}
	}
	b.StopTimer()
	_, repBase = build("baseline")
	ratio := with.Seconds() / without.Seconds()
	unpacked := repWith.Containers[0].UnpackedBytes
	growth := repWith.RootUsed - repBase.RootUsed
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(without.Seconds(), "without-s")
	b.ReportMetric(with.Seconds(), "with-s")
	b.ReportMetric(ratio, "with/without")
	b.ReportMetric(float64(unpacked)/(1<<20), "unpacked-MiB")
	b.ReportMetric(float64(growth)/(1<<20), "growth-MiB")
	b.ReportMetric(float64(growth)/float64(unpacked), "growth/unpacked")
	b.Logf("warm build without a container %.2fs, with one %.2fs: %.2f× (target <= 1.5×, %s)", without.Seconds(), with.Seconds(), ratio, verdict(ratio <= 1.5))
	b.Logf("root used %s with the container, %s with runc and its modules only: the bundle adds %s for an image of %s unpacked (%.3f×, %+d KiB; target <= 1, %s)",
		mibs(repWith.RootUsed), mibs(repBase.RootUsed), mibs(growth), mibs(unpacked), float64(growth)/float64(unpacked), (growth-unpacked)>>10, verdict(growth <= unpacked))
	b.Logf("runc and the containers' modules add %s to a root without containers", mibs(repBase.RootUsed-repWithout.RootUsed))
}

func mibs(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
