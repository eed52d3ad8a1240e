package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/slateos/slate/configs"
)

// The test binary doubles as the service programs: with helperEnv set,
// TestMain runs the named helper instead of the tests.
const helperEnv = "SUPERVISOR_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		// "helper=MODE" as the first argument picks another mode: the
		// commands of one service share its environment.
		if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "helper=") {
			mode = strings.TrimPrefix(os.Args[1], "helper=")
		}
		os.Exit(runHelper(mode))
	}
	// The SLATE- lines on the console are what the tests read; the logrus
	// lines would only bury test failures.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	switch mode {
	case "print":
		// Lines on both streams, then one without a newline.
		fmt.Println("one")
		fmt.Println("two")
		fmt.Fprintln(os.Stderr, "three")
		cwd, _ := os.Getwd()
		stdin, _ := os.Readlink("/proc/self/fd/0")
		fmt.Printf("cwd=%s stdin=%s path=%s foo=%s\n", cwd, stdin, os.Getenv("PATH"), os.Getenv("FOO"))
		fmt.Print("partial")
		return 0
	case "exit":
		var code int
		fmt.Sscan(os.Getenv("HELPER_CODE"), &code)
		return code
	case "killself":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	case "sleep":
		fmt.Println("ready")
		sleepWhileParent()
	case "forge":
		// Output that tries to pass for contract lines.
		fmt.Print("ok\nSLATE-READY version=evil slot=b\rSLATE-READY version=evil2 slot=b\r\n")
		fmt.Println("done")
		sleepWhileParent()
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		sleepWhileParent()
	case "hostname":
		h, _ := os.Hostname()
		fmt.Printf("hostname=%s\n", h)
		sleepWhileParent()
	case "orphan":
		// Start a grandchild and exit without waiting for it: it is
		// re-parented to the nearest subreaper, the supervisor.
		self, err := os.Executable()
		if err != nil {
			fmt.Println(err)
			return 1
		}
		p, err := os.StartProcess(self, []string{self}, &os.ProcAttr{
			Env:   []string{helperEnv + "=sleepshort"},
			Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		})
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Printf("grandchild=%d\n", p.Pid)
		return 0
	case "say":
		fmt.Println(strings.Join(os.Args[2:], " "))
		return 0
	case "sleepshort":
		time.Sleep(300 * time.Millisecond)
		return 0
	case "touch":
		// A oneshot step: take a while, leave a file, exit with the code.
		time.Sleep(200 * time.Millisecond)
		if err := os.WriteFile(os.Getenv("HELPER_FILE"), []byte("done\n"), 0o644); err != nil {
			fmt.Println(err)
			return 1
		}
		var code int
		fmt.Sscan(os.Getenv("HELPER_CODE"), &code)
		return code
	case "checkfile":
		_, err := os.Stat(os.Getenv("HELPER_FILE"))
		fmt.Printf("exists=%t\n", err == nil)
		sleepWhileParent()
	case "env":
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Println(kv)
		}
		return 0
	case "netns-lo":
		return helperLoopback()
	case "netns-dhcp":
		return helperDHCP()
	case "rss":
		return helperRSS()
	case "pid1":
		return helperPID1()
	}
	if code, ok := runHelperMore(mode); ok {
		return code
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", mode)
	return 2
}

// sleepWhileParent sleeps until the parent (the supervisor) is gone, so a
// failed test leaves no helper behind.
func sleepWhileParent() {
	parent := os.Getppid()
	for os.Getppid() == parent {
		time.Sleep(200 * time.Millisecond)
	}
}

// helperService is a service running the test binary as helper mode.
func helperService(t testing.TB, name, mode, restart string, env map[string]string) Service {
	t.Helper()
	svc := helperSpec(name, mode, restart, env)
	if svc.Command == "" {
		t.Fatal("cannot find the test binary")
	}
	return svc
}

func helperSpec(name, mode, restart string, env map[string]string) Service {
	self, _ := os.Executable()
	e := map[string]string{helperEnv: mode}
	for k, v := range env {
		e[k] = v
	}
	return Service{Name: name, Command: self, Env: e, Restart: restart}
}

// console is a Console that tests can wait on.
type console struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func (c *console) lines() []string {
	return strings.Split(strings.TrimSuffix(c.String(), "\n"), "\n")
}

// count is how many lines match re.
func (c *console) count(re string) int {
	rx := regexp.MustCompile(re)
	n := 0
	for _, l := range c.lines() {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// waitFor waits until at least n lines match re.
func (c *console) waitFor(t testing.TB, re string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.count(re) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d lines matching %q; console:\n%s", n, re, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clockName is the service that marks time in tests that check that
// something did not happen: it exits at once and is restarted every
// backoff.max (RestartSec), the longest any test service waits before a
// restart.
const clockName = "clock"

// withClock adds the clock to cfg's services.
func withClock(t testing.TB, cfg Config) Config {
	t.Helper()
	svc := helperService(t, clockName, "exit", configs.RestartAlways, nil)
	svc.RestartSec = cfg.backoff.max
	cfg.Services = append(cfg.Services, svc)
	return cfg
}

// clockStarts is how many starts of the clock have to follow a point for
// every restart decided before it to have come (a restart waits at most
// backoff.max; the clock's second start after the point comes a whole
// RestartSec after a restart it decided after the point) with one start to
// spare for a machine too busy to keep its timers.
const clockStarts = 3

// waitClock waits until the clock has started clockStarts times after the
// lines on the console now: whatever the supervisor had decided by then
// (a restart, a start, READY) is on the console when it returns. It
// stands for "nothing else happens" where a sleep would pass without
// proving that time went by for the supervisor.
func (c *console) waitClock(t testing.TB) {
	t.Helper()
	from := len(c.lines())
	rx := regexp.MustCompile(`^SLATE-SERVICE name=` + clockName + ` state=started `)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		if lines := c.lines(); len(lines) > from {
			for _, l := range lines[from:] {
				if rx.MatchString(l) {
					n++
				}
			}
		}
		if n >= clockStarts {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d starts of the clock after line %d; console:\n%s", clockStarts, from, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testConfig has short timings so that the tests run in seconds.
func testConfig(t testing.TB, svcs ...Service) (Config, *console) {
	c := &console{}
	return Config{
		Version:     "1.2.3",
		Slot:        "a",
		Services:    svcs,
		LogDir:      t.TempDir() + "/log/slate",
		Console:     c,
		backoff:     backoffPolicy{base: 20 * time.Millisecond, max: 160 * time.Millisecond, reset: 2 * time.Second},
		stopTimeout: 300 * time.Millisecond,
	}, c
}

// running is a Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	return r
}

// stop cancels the Run and returns its error.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}
