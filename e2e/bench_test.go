package e2e

// Benchmarks of slate's budget (make bench). The machine they run on is
// shared and noisy, so each time is reported beside a reference measured
// in the same run (dd for the build, a do-nothing init for the boot) and
// the ratio is what to compare. A missed target is shown in the table, not
// failed: only a broken measurement fails.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/slateos/slate/builder"
	"github.com/slateos/slate/initramfs"
	"github.com/slateos/slate/internal/format/kmod"
	"github.com/slateos/slate/internal/qemu"
	"golang.org/x/sys/unix"
)

const (
	mib = 1 << 20

	targetBuild     = 3 * time.Second
	targetInitramfs = 16 * mib
	targetRoot      = 64 * mib
	targetBootRatio = 1.5
	targetInit      = 300 * time.Millisecond
	targetRSS       = 30 * mib

	// bootRounds is how many times each image boots in BenchmarkBoot; the
	// two kinds alternate so a burst of load hits both alike.
	bootRounds   = 3
	bootDeadline = 4 * time.Minute
)

var (
	readyRE = regexp.MustCompile(`^SLATE-READY `)
	floorRE = regexp.MustCompile(`^FLOOR-READY$`)
	initRE  = regexp.MustCompile(`^SLATE-INIT .*\btook=(\d+)ms\b`)
	rssRE   = regexp.MustCompile(`RSS pid1=(\d+) hwm=(\d+)`)
)

// slateBuild runs slate build of spec into out and returns its wall time.
func slateBuild(tb testing.TB, spec, out string, args ...string) time.Duration {
	tb.Helper()
	cmd := exec.Command(slateBin, append([]string{"build", "-c", spec, "-o", out}, args...)...)
	cmd.Env = append(os.Environ(), "SLATE_CACHE="+cacheDir())
	t0 := time.Now()
	b, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		tb.Fatalf("slate build -c %s %v: %v\n%s", spec, args, err, b)
	}
	return d
}

// once caches a value made once per process, such as a helper binary or
// the default image that several benchmarks read.
type once struct {
	sync.Once
	val string
	err error
}

var (
	floorOnce, rssOnce, defaultOnce once
)

func (o *once) get(tb testing.TB, mk func() (string, error)) string {
	tb.Helper()
	o.Do(func() { o.val, o.err = mk() })
	if o.err != nil {
		tb.Fatal(o.err)
	}
	return o.val
}

func helperBin(tb testing.TB, o *once, name string) string {
	return o.get(tb, func() (string, error) {
		p := filepath.Join(workDir, name)
		return p, goBuild(p, "./e2e/testdata/"+name)
	})
}

// defaultImage builds configs/default.yaml once, which also warms the
// cache, and returns the output folder.
func defaultImage(tb testing.TB) string {
	tb.Helper()
	return defaultOnce.get(tb, func() (string, error) {
		out := filepath.Join(workDir, "bench-default")
		cmd := exec.Command(slateBin, "build", "-c", defaultSpec(), "-o", out)
		cmd.Env = append(os.Environ(), "SLATE_CACHE="+cacheDir())
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("slate build -c %s: %w\n%s", defaultSpec(), err, b)
		}
		return out, nil
	})
}

func readReport(tb testing.TB, dir string) builder.Report {
	tb.Helper()
	var r builder.Report
	js, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(js, &r); err != nil {
		tb.Fatalf("%s/build.json: %v", dir, err)
	}
	return r
}

// writeZeros writes size bytes of zeros to a new file and syncs it, the
// reference the build time is set against: with dd when the host has it,
// else the same in Go.
func writeZeros(tb testing.TB, path string, size int64) (time.Duration, string) {
	tb.Helper()
	defer os.Remove(path)
	count := (size + mib - 1) / mib
	if dd, err := exec.LookPath("dd"); err == nil {
		t0 := time.Now()
		b, err := exec.Command(dd, "if=/dev/zero", "of="+path, "bs=1M", fmt.Sprintf("count=%d", count), "conv=fsync", "status=none").CombinedOutput()
		if err != nil {
			tb.Fatalf("dd: %v\n%s", err, b)
		}
		return time.Since(t0), "dd"
	}
	t0 := time.Now()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, mib)
	for i := int64(0); i < count; i++ {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			tb.Fatalf("write %s: %v", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		tb.Fatalf("sync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return time.Since(t0), "go write+fsync"
}

// row is one line of a benchmark's table.
type row struct {
	what, got, target string
	ok                bool
}

func logTable(b *testing.B, rows []row) {
	b.Helper()
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tgot\ttarget\t")
	for _, r := range rows {
		verdict := ""
		if r.target != "" {
			verdict = "ok"
			if !r.ok {
				verdict = "OVER"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.what, r.got, r.target, verdict)
	}
	tw.Flush()
	b.Logf("\n%s", sb.String())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mibs(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }

// minDur is the least of ds: on a loaded machine the fastest run is the
// one least disturbed by others.
func minDur(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

// BenchmarkBuild times a build of the default image with a warm cache
// beside writing a file of the image's size with dd.
func BenchmarkBuild(b *testing.B) {
	needBuild(b)
	warm := defaultImage(b) // fills the cache the timed builds read
	size := readReport(b, warm).DiskSize
	if size <= 0 {
		b.Fatalf("build.json: disk_size %d", size)
	}
	b.ResetTimer()
	var builds, dds []time.Duration
	var how string
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		builds = append(builds, slateBuild(b, defaultSpec(), filepath.Join(dir, "out")))
		d, h := writeZeros(b, filepath.Join(dir, "zeros"), size)
		dds, how = append(dds, d), h
		// Neither the image nor the zeros are needed any more: free the
		// disk before the next round.
		os.RemoveAll(dir)
	}
	b.StopTimer()
	build, dd := minDur(builds), minDur(dds)
	ratio := build.Seconds() / dd.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(build.Seconds(), "build-s")
	b.ReportMetric(dd.Seconds(), "dd-s")
	b.ReportMetric(ratio, "build/dd")
	logTable(b, []row{
		{"build default image (warm cache)", secs(build), "<= " + secs(targetBuild), build <= targetBuild},
		{fmt.Sprintf("%s %s zeros, fsync", how, mibs(size)), secs(dd), "", true},
		{"build / dd", fmt.Sprintf("%.2fx", ratio), "", true},
	})
}

// BenchmarkImageSize reports the default image's compressed initramfs and
// the space used in its root, from build.json.
func BenchmarkImageSize(b *testing.B) {
	needBuild(b)
	r := readReport(b, defaultImage(b))
	if r.InitramfsSize <= 0 || r.RootUsed <= 0 {
		b.Fatalf("build.json: initramfs_size %d, root_used %d", r.InitramfsSize, r.RootUsed)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(r.InitramfsSize)/mib, "initramfs-MiB")
	b.ReportMetric(float64(r.RootUsed)/mib, "root-MiB")
	logTable(b, []row{
		{fmt.Sprintf("initramfs, compressed (%d modules)", r.InitramfsMods), mibs(r.InitramfsSize), "<= " + mibs(targetInitramfs), r.InitramfsSize <= targetInitramfs},
		{fmt.Sprintf("root used (%d modules)", r.RootModules), mibs(r.RootUsed), "<= " + mibs(targetRoot), r.RootUsed <= targetRoot},
	})
}

// bootResult is one boot: wall time from QEMU start to the wanted line,
// the CPU time QEMU used (up to the line, plus the moment it takes to end
// it), and the whole console.
type bootResult struct {
	took, cpu time.Duration
	lines     []string
}

// childrenCPU is the user and system time of this process's waited-for
// children. Around one boot, with nothing else started meanwhile, its
// growth is QEMU's own CPU time, which other load on the machine hardly
// changes, unlike the wall time.
func childrenCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bootUntil boots image under TCG until a console line matches re. With
// poweroff the guest must then end QEMU by itself; without, QEMU is killed.
func bootUntil(b *testing.B, image string, re *regexp.Regexp, poweroff bool) bootResult {
	b.Helper()
	// No NIC, as the boot times measured before QEMU's user NIC became
	// the default: the firmware's network drivers are not what is timed.
	return bootOptsUntil(b, qemu.Options{Image: image, SerialFile: filepath.Join(filepath.Dir(image), "serial.log"), NoNetwork: true}, re, poweroff)
}

// bootOptsUntil is bootUntil for any VM (a network boot, a CD-ROM).
func bootOptsUntil(b *testing.B, opts qemu.Options, re *regexp.Regexp, poweroff bool) bootResult {
	b.Helper()
	image := opts.Image + opts.CDROM + opts.TFTPDir
	opts.Accel = "tcg"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cpu0, t0 := childrenCPU(), time.Now()
	vm, err := qemu.Start(ctx, opts)
	if err != nil {
		b.Fatalf("start QEMU: %v", err)
	}
	defer vm.Kill()
	wctx, wcancel := context.WithTimeout(ctx, bootDeadline)
	defer wcancel()
	if _, err := vm.WaitFor(wctx, re); err != nil {
		b.Fatalf("%s: waiting for %q: %v\nconsole:\n%s", image, re, err, strings.Join(vm.Lines(), "\n"))
	}
	res := bootResult{took: time.Since(t0)}
	if poweroff {
		select {
		case <-vm.Exited():
		case <-time.After(time.Minute):
			b.Errorf("%s: the guest did not power off within a minute", image)
		}
	}
	if err := vm.Kill(); err != nil {
		b.Errorf("kill QEMU: %v", err)
	}
	res.cpu = childrenCPU() - cpu0
	res.lines = vm.Lines()
	return res
}

// initTook returns the time slate's init reports on its SLATE-INIT line.
func initTook(lines []string) (time.Duration, error) {
	for _, l := range lines {
		if m := initRE.FindStringSubmatch(l); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("SLATE-INIT line %q: %w", l, err)
			}
			if n > int64(time.Hour/time.Millisecond) {
				return 0, fmt.Errorf("SLATE-INIT line %q: took more than an hour", l)
			}
			return time.Duration(n) * time.Millisecond, nil
		}
	}
	return 0, errors.New("no SLATE-INIT ... took=NNNms line on the console")
}

// BenchmarkBoot times the default image from QEMU start to SLATE-READY
// against the floor: the same disk, firmware, systemd-boot and kernel with
// an init that only prints FLOOR-READY and powers off. It also reports
// init's own time up to switch_root from the SLATE-INIT line.
func BenchmarkBoot(b *testing.B) {
	needQEMU(b)
	slateImg := filepath.Join(defaultImage(b), "disk.raw")
	floorDir := filepath.Join(b.TempDir(), "floor")
	slateBuild(b, defaultSpec(), floorDir, "--slate", helperBin(b, &floorOnce, "floor"))
	floorImg := filepath.Join(floorDir, "disk.raw")
	b.ResetTimer()

	var slate, floor, inits, slateCPU, floorCPU []time.Duration
	for i := 0; i < b.N; i++ {
		for r := 0; r < bootRounds; r++ {
			runSlate := func() {
				res := bootUntil(b, slateImg, readyRE, false)
				it, err := initTook(res.lines)
				if err != nil {
					b.Fatalf("%v\nconsole:\n%s", err, strings.Join(res.lines, "\n"))
				}
				slate, inits = append(slate, res.took), append(inits, it)
				slateCPU = append(slateCPU, res.cpu)
			}
			runFloor := func() {
				res := bootUntil(b, floorImg, floorRE, true)
				floor, floorCPU = append(floor, res.took), append(floorCPU, res.cpu)
			}
			// Alternate which goes first so neither always follows the other.
			if r%2 == 0 {
				runSlate()
				runFloor()
			} else {
				runFloor()
				runSlate()
			}
		}
	}
	b.StopTimer()
	s, f, it := minDur(slate), minDur(floor), minDur(inits)
	ratio := s.Seconds() / f.Seconds()
	sc, fc := minDur(slateCPU), minDur(floorCPU)
	cpuRatio := sc.Seconds() / fc.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(s), "slate-ms")
	b.ReportMetric(ms(f), "floor-ms")
	b.ReportMetric(ratio, "slate/floor")
	b.ReportMetric(cpuRatio, "slate/floor-cpu")
	b.ReportMetric(ms(it), "init-ms")
	// The first boot of the image also creates STATE; the best round is
	// compared, each round is shown.
	logTable(b, []row{
		{"slate: QEMU start to SLATE-READY", bestOf(slate), "", true},
		{"floor: QEMU start to FLOOR-READY", bestOf(floor), "", true},
		{"slate / floor", fmt.Sprintf("%.2fx", ratio), fmt.Sprintf("<= %.1fx", targetBootRatio), ratio <= targetBootRatio},
		{"slate: QEMU CPU time", bestOf(slateCPU), "", true},
		{"floor: QEMU CPU time", bestOf(floorCPU), "", true},
		{"slate / floor in CPU time", fmt.Sprintf("%.2fx", cpuRatio), "", true},
		{"init: start to switch_root", bestOf(inits), fmt.Sprintf("< %d ms", targetInit.Milliseconds()), it < targetInit},
	})
}

// bestOf shows the least of ds and then every round in order.
func bestOf(ds []time.Duration) string {
	all := make([]string, len(ds))
	for i, d := range ds {
		all[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	return fmt.Sprintf("%d ms (rounds: %s)", minDur(ds).Milliseconds(), strings.Join(all, ", "))
}

// BenchmarkPID1Memory boots the default image plus a service that reads
// PID 1's resident memory after SLATE-READY and powers off.
var updRSSRE = regexp.MustCompile(`RSS-UPDATED rss=(\d+) hwm=(\d+)`)

// benchKey makes an update key pair for images that run the updater.
func benchKey(b *testing.B) string {
	dir := b.TempDir()
	if out, err := slate(b, "keygen", "-o", dir); err != nil {
		b.Fatalf("slate keygen: %v\n%s", err, out)
	}
	return filepath.Join(dir, "update.pub")
}

func BenchmarkPID1Memory(b *testing.B) {
	needQEMU(b)
	spec := filepath.Join(b.TempDir(), "rss.yaml")
	body := fmt.Sprintf(`name: slate-bench
version: 1.0.0
hostname: slate
root:
  files:
    - src: %s
      dst: /usr/local/bin/rss
      mode: "0755"
services:
  - name: hello
    command: /usr/bin/slate
    args: [version]
    restart: never
  - name: rss
    command: /usr/local/bin/rss
    restart: never
update:
  channel: http://10.0.2.2:9/
  public_key: %s
`, helperBin(b, &rssOnce, "rss"), benchKey(b))
	if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out")
	slateBuild(b, spec, out)
	b.ResetTimer()

	var rss, hwm, upd int64 = -1, -1, -1
	for i := 0; i < b.N; i++ {
		res := bootUntil(b, filepath.Join(out, "disk.raw"), rssRE, true)
		ready := -1
		for j, l := range res.lines {
			if ready < 0 && readyRE.MatchString(l) {
				ready = j
			}
			if m := rssRE.FindStringSubmatch(l); m != nil {
				if ready < 0 {
					b.Fatalf("RSS was read before SLATE-READY:\n%s", strings.Join(res.lines, "\n"))
				}
				r, err1 := strconv.ParseInt(m[1], 10, 64)
				h, err2 := strconv.ParseInt(m[2], 10, 64)
				if err := errors.Join(err1, err2); err != nil {
					b.Fatalf("console line %q: %v", l, err)
				}
				// The largest of the runs: memory is not made smaller by load.
				rss, hwm = max(rss, r*1024), max(hwm, h*1024)
				break
			}
		}
		for _, l := range res.lines {
			if m := updRSSRE.FindStringSubmatch(l); m != nil {
				r, _ := strconv.ParseInt(m[1], 10, 64)
				upd = max(upd, r*1024)
			}
			if strings.HasPrefix(l, "RSS-FAILED") || strings.HasPrefix(l, "SLATE-FAILED") {
				b.Errorf("console: %s", l)
			}
		}
	}
	b.StopTimer()
	if rss < 0 {
		b.Fatal("no RSS line")
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(rss)/mib, "pid1-rss-MiB")
	b.ReportMetric(float64(hwm)/mib, "pid1-hwm-MiB")
	if upd < 0 {
		b.Fatal("no RSS-UPDATED line: the update daemon was not running")
	}
	b.ReportMetric(float64(upd)/mib, "updated-idle-rss-MiB")
	logTable(b, []row{
		{"PID 1 VmRSS after SLATE-READY", mibs(rss), "< " + mibs(targetRSS), rss < targetRSS},
		{"PID 1 VmHWM (peak so far)", mibs(hwm), "", true},
		{"update daemon VmRSS, idle", mibs(upd), "< 20.0 MiB", upd < 20*mib},
	})
}

// The console parsers above read what the guest prints; they must take any
// line without failing the wrong way.
func TestInitTook(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  time.Duration
		ok    bool
	}{
		{[]string{"x", "SLATE-INIT slot=a root=/dev/vda2 took=187ms"}, 187 * time.Millisecond, true},
		{[]string{"SLATE-INIT slot=b root=/dev/vda3 took=0ms", "SLATE-INIT slot=a root=/dev/vda2 took=9ms"}, 0, true},
		{[]string{"SLATE-READY version=1.0.0 slot=a"}, 0, false},
		{[]string{"SLATE-INIT slot=a took=12s"}, 0, false},
		{[]string{"[svc] SLATE-INIT took=5ms"}, 0, false},
		{nil, 0, false},
	} {
		got, err := initTook(c.lines)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("initTook(%q) = %v, %v; want %v, ok=%v", c.lines, got, err, c.want, c.ok)
		}
	}
}

func FuzzInitTook(f *testing.F) {
	f.Add("SLATE-INIT slot=a root=/dev/vda2 took=187ms")
	f.Add("SLATE-INIT took=99999999999999999999999ms")
	f.Fuzz(func(t *testing.T, line string) {
		d, err := initTook([]string{line})
		if err == nil && (d < 0 || !strings.HasPrefix(line, "SLATE-INIT ")) {
			t.Errorf("initTook(%q) = %v", line, d)
		}
	})
}

// driverNICs are the network drivers added to kmod.NetworkDrivers for
// VMware, Hyper-V, clouds and RTL8139: BenchmarkDriverSets measures each.
var driverNICs = []string{"vmxnet3", "hv_netvsc", "ena", "gve", "ixgbevf", "iavf", "8139too", "8139cp", "atlantic"}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// kernelIndex opens the module tree of the cached kernel.
func kernelIndex(tb testing.TB) *kmod.Index {
	tb.Helper()
	dirs, _ := filepath.Glob(filepath.Join(cacheDir(), "kernel", "linux-image-amd64", "lib", "modules", "*"))
	if len(dirs) == 0 {
		tb.Fatalf("no module tree under %s", cacheDir())
	}
	ix, err := kmod.Open(dirs[0], "")
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

// writeInitramfs writes the initramfs the builder makes for a module set
// (slate as /init and the set's closure, zstd) to w and returns the
// number of modules.
func writeInitramfs(tb testing.TB, ix *kmod.Index, specs []string, w io.Writer) int {
	tb.Helper()
	mods, err := ix.Resolve(specs)
	if err != nil {
		tb.Fatal(err)
	}
	a := initramfs.New(builder.DefaultEpoch)
	bin := releaseSlate(tb)
	st, err := os.Stat(bin)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.AddFile("init", 0o755, st.Size(), func() (io.ReadCloser, error) { return os.Open(bin) }); err != nil {
		tb.Fatal(err)
	}
	if err := ix.WriteTree(a, mods); err != nil {
		tb.Fatal(err)
	}
	if _, err := a.WriteTo(w); err != nil {
		tb.Fatal(err)
	}
	return len(mods)
}

var releaseOnce once

// releaseSlate is slate built as make build builds it (-s -w: no symbol
// table and no DWARF), the /init a released image carries: the e2e
// tests' own slate keeps its debug information, which doubles its
// compressed size (10.2 against 5.3 MB).
func releaseSlate(tb testing.TB) string {
	return releaseOnce.get(tb, func() (string, error) {
		out := filepath.Join(workDir, "slate-release")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/slate")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build -ldflags '-s -w' ./cmd/slate: %w\n%s", err, b)
		}
		return out, nil
	})
}

func initramfsSize(tb testing.TB, ix *kmod.Index, specs []string) (int64, int) {
	var cw countWriter
	n := writeInitramfs(tb, ix, specs, &cw)
	return cw.n, n
}

func without(list, drop []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

func kibs(n int64) string { return fmt.Sprintf("%+.0f KiB", float64(n)/1024) }

// BenchmarkDriverSets shows what each storage controller and network card
// driver of the default sets adds to the compressed initramfs, against
// the sets before they were added (the initramfs as the builder writes
// it: slate as /init, built as make build does, and the modules, zstd).
func BenchmarkDriverSets(b *testing.B) {
	needBuild(b)
	ix := kernelIndex(b)
	oldInit, oldNet := oldSets()
	var rows []row
	base, baseN := initramfsSize(b, ix, oldInit)
	bare, _ := initramfsSize(b, ix, []string{"af_packet"}) // built in: slate alone
	rows = append(rows,
		row{"slate as /init (make build: -s -w), compressed", mibs(bare), "", true},
		row{fmt.Sprintf("initramfs before (%d modules)", baseN), mibs(base), "", true})
	groups := [][]string{}
	for _, d := range kmod.ServerStorage {
		// The helpers come with the drivers that use them.
		if !slices.Contains([]string{"mptscsih", "mptbase", "scsi_transport_sas", "raid_class"}, d) {
			groups = append(groups, []string{d})
		}
	}
	groups = append(groups, kmod.MMCStorage)
	for _, g := range groups {
		s, n := initramfsSize(b, ix, concatLists(oldInit, g))
		rows = append(rows, row{fmt.Sprintf("  + %s (+%d modules)", strings.Join(g, ", "), n-baseN), kibs(s - base), "", true})
	}
	all, allN := initramfsSize(b, ix, kmod.DefaultInitramfs)
	rows = append(rows, row{fmt.Sprintf("initramfs default (%d modules)", allN), mibs(all) + " (" + kibs(all-base) + ")", "<= " + mibs(targetInitramfs), all <= targetInitramfs})

	nbase, nbaseN := initramfsSize(b, ix, oldNet)
	rows = append(rows, row{fmt.Sprintf("netboot initramfs before (%d modules)", nbaseN), mibs(nbase), "", true})
	for _, d := range driverNICs {
		s, n := initramfsSize(b, ix, concatLists(oldNet, []string{d}))
		rows = append(rows, row{fmt.Sprintf("  + %s (+%d modules)", d, n-nbaseN), kibs(s - nbase), "", true})
	}
	nall, nallN := initramfsSize(b, ix, kmod.DefaultNetboot)
	rows = append(rows, row{fmt.Sprintf("netboot initramfs default (%d modules)", nallN), mibs(nall) + " (" + kibs(nall-nbase) + ")", "<= " + mibs(targetInitramfs), nall <= targetInitramfs})
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(all)/mib, "initramfs-MiB")
	b.ReportMetric(float64(nall)/mib, "netboot-initramfs-MiB")
	printTable(b, rows)
}

// oldSets are the default initramfs and netboot sets before the server
// storage controllers, MMC and the VM and cloud NICs were added.
func oldSets() (initramfs, netboot []string) {
	initramfs = concatLists(kmod.BaseStorage, kmod.BootSupport)
	return initramfs, concatLists(initramfs, without(kmod.NetworkDrivers, driverNICs), []string{"loop"})
}

// BenchmarkDriverSetsInit times init's module loading under TCG with the
// initramfs before and after the driver additions: direct kernel boots of
// the same default image (kernel, kernel line and disk), alternating.
func BenchmarkDriverSetsInit(b *testing.B) {
	needQEMU(b)
	ix := kernelIndex(b)
	oldInit, _ := oldSets()
	out := filepath.Join(b.TempDir(), "out")
	slateBuild(b, defaultSpec(), out)
	image := filepath.Join(out, "disk.raw")
	kernel, _, options := slotBoot(b, image)
	initrds := map[string]string{}
	for name, set := range map[string][]string{"before": oldInit, "default": kmod.DefaultInitramfs} {
		p := filepath.Join(out, "initrd-"+name)
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		writeInitramfs(b, ix, set, f)
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		initrds[name] = p
	}
	b.ResetTimer()
	type times struct{ start, init, mods, inKernel []time.Duration }
	res := map[string]*times{"before": {}, "default": {}}
	for i := 0; i < b.N; i++ {
		for r := 0; r < bootRounds; r++ {
			order := []string{"before", "default"}
			if r%2 == 1 {
				order = []string{"default", "before"}
			}
			for _, name := range order {
				br := bootOptsUntil(b, qemu.Options{Image: image, Kernel: kernel, Initrd: initrds[name], Append: options, NoReboot: true,
					SerialFile: filepath.Join(out, "serial-"+name+".log")}, initRE, false)
				it, err := initTook(br.lines)
				if err != nil {
					b.Fatalf("%v\nconsole:\n%s", err, strings.Join(br.lines, "\n"))
				}
				mt, ik, err := modulesLoaded(br.lines)
				if err != nil {
					b.Fatalf("%s: %v\nconsole:\n%s", name, err, strings.Join(br.lines, "\n"))
				}
				t := res[name]
				t.start, t.init, t.mods, t.inKernel = append(t.start, br.took), append(t.init, it), append(t.mods, mt), append(t.inKernel, ik)
			}
		}
	}
	b.StopTimer()
	var rows []row
	for _, name := range []string{"before", "default"} {
		t := res[name]
		rows = append(rows,
			row{"initramfs " + name + ": QEMU start to SLATE-INIT", bestOf(t.start), "", true},
			row{"initramfs " + name + ": init to switch_root", bestOf(t.init), "", true},
			row{"initramfs " + name + ": init's module loading", bestOf(t.mods), "", true},
			row{"initramfs " + name + ": of which in the kernel", bestOf(t.inKernel), "", true})
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(minDur(res["default"].mods)-minDur(res["before"].mods)), "modules-delta-ms")
	b.ReportMetric(ms(minDur(res["default"].start)-minDur(res["before"].start)), "to-init-delta-ms")
	printTable(b, rows)
}

// printTable is logTable for tables longer than the benchmark log keeps
// without -v: it prints to stdout.
func printTable(b *testing.B, rows []row) {
	b.Helper()
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\nmeasure\tgot\ttarget\t\n", b.Name())
	for _, r := range rows {
		verdict := ""
		if r.target != "" {
			verdict = "ok"
			if !r.ok {
				verdict = "OVER"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.what, r.got, r.target, verdict)
	}
	tw.Flush()
	fmt.Print(sb.String())
}

func concatLists(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var modsLoadedRE = regexp.MustCompile(`msg="modules loaded".*\bin_kernel=(\S+).*\btook=(\d+)ms`)

// modulesLoaded reads init's "modules loaded" log line: the time from
// init's start to the end of module loading, and the time spent in the
// kernel's module loads.
func modulesLoaded(lines []string) (took, inKernel time.Duration, err error) {
	for _, l := range lines {
		if m := modsLoadedRE.FindStringSubmatch(l); m != nil {
			ik, err1 := time.ParseDuration(m[1])
			n, err2 := strconv.ParseInt(m[2], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return 0, 0, fmt.Errorf("line %q: %w", l, err)
			}
			if n > int64(time.Hour/time.Millisecond) || ik < 0 {
				return 0, 0, fmt.Errorf("line %q: not a boot's time", l)
			}
			return time.Duration(n) * time.Millisecond, ik, nil
		}
	}
	return 0, 0, errors.New(`no msg="modules loaded" line on the console`)
}

func TestModulesLoaded(t *testing.T) {
	for _, c := range []struct {
		line     string
		took, ik time.Duration
		ok       bool
	}{
		{`time="23:47:30.574" level=info msg="modules loaded" count=31 in_kernel=10.766s slowest="jbd2:2491ms" took=29564ms`, 29564 * time.Millisecond, 10766 * time.Millisecond, true},
		{`time="1" level=info msg="modules loaded" count=2 in_kernel=950ms slowest="" took=12ms`, 12 * time.Millisecond, 950 * time.Millisecond, true},
		{`time="1" level=info msg="modules loaded" count=2 in_kernel=bogus took=12ms`, 0, 0, false},
		{`time="1" level=info msg="device modules loaded" modules="vmxnet3"`, 0, 0, false},
		{`SLATE-INIT slot=a root=/dev/vda2 took=187ms`, 0, 0, false},
		{`msg="modules loaded" in_kernel=1s took=9999999999999ms`, 0, 0, false},
	} {
		took, ik, err := modulesLoaded([]string{c.line})
		if (err == nil) != c.ok || took != c.took || ik != c.ik {
			t.Errorf("modulesLoaded(%q) = %v, %v, %v; want %v, %v, ok=%v", c.line, took, ik, err, c.took, c.ik, c.ok)
		}
	}
}

func FuzzModulesLoaded(f *testing.F) {
	f.Add(`msg="modules loaded" count=31 in_kernel=10.766s took=29564ms`)
	f.Add(`msg="modules loaded" in_kernel=1h took=99999999999999999999ms`)
	f.Fuzz(func(t *testing.T, line string) {
		took, _, err := modulesLoaded([]string{line})
		if err == nil && (took < 0 || !strings.Contains(line, `msg="modules loaded"`)) {
			t.Errorf("modulesLoaded(%q) = %v", line, took)
		}
	})
}
