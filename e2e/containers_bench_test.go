package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slateos/slate/internal/qemu"
)

// BenchmarkContainerStart boots an image that runs the same HTTP program
// twice: as a baked container (runc, its own namespaces, cgroup, veth on
// the bridge, DNAT of its port) and as a plain service. From the switch
// to the root (SLATE-INIT) the host polls both through QEMU's forwards;
// the ratio of the two first answers is what a container's start costs
// beside a service's, under TCG.
func BenchmarkContainerStart(b *testing.B) {
	needQEMU(b)
	reg := newRegistry(b)
	ref := reg.push(b, ctrImage(b, "APP_VERSION=bench"), "slate/app:bench")
	app := ctrappOnce.get(b, func() (string, error) {
		p := filepath.Join(workDir, "ctrapp")
		return p, goBuild(p, "./e2e/testdata/ctrapp")
	})
	dir := b.TempDir()
	spec := filepath.Join(dir, "spec.yaml")
	// DHCP: without an update section nothing else turns the machine's
	// network on, and both answers come through QEMU's forwards
	body := fmt.Sprintf(`name: slate-ctr-bench
version: 1.0.0
network:
  dhcp: true
root:
  files:
    - {src: %s, dst: /usr/local/bin/ctrapp, mode: "0755"}
services:
  - name: plain
    command: /usr/local/bin/ctrapp
    env: {APP_VERSION: plain, APP_PORT: "8081"}
containers:
  - name: app
    image: %s
    ports: ["8080:8080"]
`, app, ref)
	if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	slateBuild(b, spec, out)
	var ctr, svc time.Duration
	for i := 0; i < b.N; i++ {
		vm := boot(b, machine(b, out), qemu.Options{Network: true, Forwards: []qemu.Forward{{GuestPort: 8080}, {GuestPort: 8081}}})
		fw := vm.Forwards()
		waitLine(b, vm, `^SLATE-INIT `, bootDeadline)
		t0 := time.Now()
		var wg sync.WaitGroup
		first := make([]time.Duration, len(fw))
		for j, f := range fw {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first[j] = firstAnswer(vm, f.HostPort, t0, 3*time.Minute)
			}()
		}
		wg.Wait()
		_ = vm.Kill()
		if first[0] == 0 || first[1] == 0 {
			b.Fatalf("no answer within 3 minutes (container %s, service %s):\n%s", first[0], first[1], vm.Lines())
		}
		ctr += first[0]
		svc += first[1]
	}
	n := time.Duration(b.N)
	b.ReportMetric((ctr / n).Seconds(), "container-s")
	b.ReportMetric((svc / n).Seconds(), "service-s")
	b.ReportMetric(float64(ctr)/float64(svc), "container/service")
	b.Logf("from SLATE-INIT to the first answer: container %s, plain service %s (%.2f×)",
		(ctr / n).Round(time.Millisecond), (svc / n).Round(time.Millisecond), float64(ctr)/float64(svc))
}

// firstAnswer polls 127.0.0.1:port every 50 ms and returns how long after
// t0 the first HTTP answer came, or 0 after d or when QEMU exits.
func firstAnswer(vm *qemu.VM, port int, t0 time.Time, d time.Duration) time.Duration {
	cl := &http.Client{Timeout: 2 * time.Second}
	for time.Since(t0) < d {
		select {
		case <-vm.Exited():
			return 0
		default:
		}
		if resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0
}
