package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
)

// TestResources runs a supervisor with a few services in a process of its
// own (the test binary as a helper, without the testing framework) and
// checks its peak resident memory and that it uses no CPU while idle.
func TestResources(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{helperEnv + "=rss", "TMPDIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var hwm, rss, cpu int
	if _, err := fmt.Sscanf(lastLine(string(out)), "hwm=%d rss=%d idlecpu=%d", &hwm, &rss, &cpu); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	t.Logf("supervisor with 8 services: peak RSS %d KiB, RSS %d KiB, CPU while idle 1 s: %d µs", hwm, rss, cpu)
	if hwm > 30*1024 {
		t.Errorf("peak RSS %d KiB, want < 30 MiB", hwm)
	}
	if cpu > 50_000 {
		t.Errorf("%d µs of CPU in one idle second: busy loop?", cpu)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func helperRSS() int {
	var svcs []Service
	for i := range 8 {
		svcs = append(svcs, helperSpec(fmt.Sprintf("s%d", i), "sleep", configs.RestartAlways, nil))
	}
	con := &console{}
	cfg := Config{Version: "1", Slot: "a", Services: svcs, LogDir: os.Getenv("TMPDIR") + "/log", Console: con}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	deadline := time.Now().Add(10 * time.Second)
	for con.count(`^\[s\d\] ready$`) < 8 {
		if time.Now().After(deadline) {
			fmt.Println("services did not start:", con)
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(time.Second)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := func(r syscall.Rusage) int64 {
		return r.Utime.Nano()/1000 + r.Stime.Nano()/1000
	}
	hwm, rss := statusKB("VmHWM"), statusKB("VmRSS")
	cancel()
	if err := <-done; err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Printf("hwm=%d rss=%d idlecpu=%d\n", hwm, rss, cpu(after)-cpu(before))
	return 0
}

func statusKB(field string) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var n int
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n)
			return n
		}
	}
	return -1
}
