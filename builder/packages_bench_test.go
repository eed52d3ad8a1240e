package builder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
	"github.com/slateos/slate/internal/deb"
	"github.com/slateos/slate/internal/deb/debtest"
)

// sshPackages is the package set of an image with an ssh server and a
// shell.
var sshPackages = []string{"openssh-server", "busybox-static", "ca-certificates"}

// mirrorReachable says whether the build host's Debian mirror answers.
func mirrorReachable(mirror, suite string) bool {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Head(mirror + "/dists/" + suite + "/InRelease")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// bigRepo stands in for the mirror when it cannot be reached: 50
// packages in a dependency chain, 20 MB of .deb that do not compress.
func bigRepo(b *testing.B) (*debtest.Repo, []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pkgs []debtest.Pkg
	for i := 0; i < 50; i++ {
		body := make([]byte, 400<<10)
		for k := range body {
			body[k] = byte(rng.Uint32())
		}
		p := debtest.Pkg{Name: fmt.Sprintf("pkg%02d", i), Version: "1.0-1", Files: []debtest.File{
			{Name: "./usr/"}, {Name: "./usr/lib/"}, {Name: fmt.Sprintf("./usr/lib/pkg%02d.so", i), Body: string(body)}}}
		if i > 0 {
			p.Depends = fmt.Sprintf("pkg%02d", i-1)
		}
		pkgs = append(pkgs, p)
	}
	return debtest.NewRepo(b, pkgs), []string{"pkg49"}
}

// BenchmarkBuildPackages measures the packages step of a build of the
// ssh package set against the host's mirror (a 20 MB loopback
// repository when it is unreachable): cold (resolve against the index,
// download every .deb, unpack) and warm (from the lock and a warm cache,
// unpack), and the root size the packages add to the image.
func BenchmarkBuildPackages(b *testing.B) {
	slate := sharedSlate(b)
	var spec *configs.Spec
	where := ""
	if m := deb.HostMirror(configs.DefaultDebianSuite); mirrorReachable(m, configs.DefaultDebianSuite) {
		s, err := configs.Parse([]byte("name: pbench\nversion: 1.0.0\npackages: ["+strings.Join(sshPackages, ", ")+"]\n"), "p.yaml")
		if err != nil {
			b.Fatal(err)
		}
		spec, where = s, "the build host's mirrors"
	} else {
		r, names := bigRepo(b)
		spec, where = pkgSpec(b, r, "", names...), "a loopback repository, the mirror being unreachable"
	}
	step := func(cache, lock string) (time.Duration, *job) {
		j, err := newJob(Options{Spec: spec, OutDir: filepath.Join(b.TempDir(), "out"), CacheDir: cache, Slate: slate, Lock: lock})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := j.resolvePackages(context.Background()); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), j
	}
	var cold, warm time.Duration
	var j *job
	for b.Loop() {
		cache := testCache(b, false)
		cold, j = step(cache, "")
		lock := filepath.Join(b.TempDir(), "p.yaml.lock")
		l := j.pkgLock
		if err := l.Write(lock); err != nil {
			b.Fatal(err)
		}
		warm, _ = step(cache, lock)
		os.RemoveAll(filepath.Join(cache, "deb"))
	}
	var debBytes int64
	for _, p := range j.pkgLock.Packages {
		debBytes += p.Size
	}
	unpacked := j.pkgs.unpacked.Size()
	var suites []string
	for _, s := range j.pkgLock.Sources {
		suites = append(suites, s.Mirror+" "+s.Suite)
	}
	where += " (" + strings.Join(suites, ", ") + ")"

	// the root with and without the packages (warm caches)
	cache := testCache(b, false)
	with, err := Build(context.Background(), Options{Spec: spec, OutDir: filepath.Join(b.TempDir(), "with"), CacheDir: cache, Slate: slate})
	if err != nil {
		b.Fatal(err)
	}
	plain := *spec
	plain.Packages, plain.Debian = nil, nil
	without, err := Build(context.Background(), Options{Spec: &plain, OutDir: filepath.Join(b.TempDir(), "without"), CacheDir: cache, Slate: slate})
	if err != nil {
		b.Fatal(err)
	}
	added := with.RootUsed - without.RootUsed
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cold.Seconds(), "cold-s")
	b.ReportMetric(warm.Seconds(), "warm-s")
	b.ReportMetric(float64(len(j.pkgLock.Packages)), "packages")
	b.ReportMetric(float64(debBytes)/(1<<20), "deb-MiB")
	b.ReportMetric(float64(unpacked)/(1<<20), "unpacked-MiB")
	b.ReportMetric(float64(added)/(1<<20), "root-added-MiB")
	b.Logf("%s from %s: %d packages, %s of .deb, %s unpacked", strings.Join(spec.Packages, " "), where, len(j.pkgLock.Packages), mibs(debBytes), mibs(unpacked))
	b.Logf("resolve + fetch + unpack: cold %.2fs (index, every .deb), warm %.2fs (lock, cached .debs)", cold.Seconds(), warm.Seconds())
	b.Logf("root used %s with the packages, %s without: they add %s", mibs(with.RootUsed), mibs(without.RootUsed), mibs(added))
}
