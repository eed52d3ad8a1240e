package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slateos/slate/configs"
)

// cmd is an ExecStartPre/Post/Stop line running the test binary in mode.
func cmd(mode string, ignore bool, args ...string) ExecCommand {
	self, _ := os.Executable()
	return ExecCommand{Argv: append([]string{self, "helper=" + mode}, args...), IgnoreFailure: ignore}
}

func TestExecStartPreAndPost(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "stamp")
	web := helperService(t, "web", "checkfile", configs.RestartNever, map[string]string{"HELPER_FILE": stamp, "HELPER_CODE": "0"})
	web.ExecStartPre = []ExecCommand{cmd("exit", true), cmd("touch", false)}
	web.ExecStartPost = []ExecCommand{cmd("say", false, "post", "ran")}
	bad := helperService(t, "bad", "sleep", configs.RestartNever, map[string]string{"HELPER_CODE": "3"})
	bad.ExecStartPre = []ExecCommand{cmd("exit", false)}
	ignored := helperService(t, "ignored", "sleep", configs.RestartNever, map[string]string{"HELPER_CODE": "3"})
	ignored.ExecStartPre = []ExecCommand{cmd("exit", true)}
	postFails := helperService(t, "postfails", "sleep", configs.RestartNever, map[string]string{"HELPER_CODE": "4"})
	postFails.ExecStartPost = []ExecCommand{cmd("exit", false)}
	once := oneshot(t, "once", "say", nil)
	once.Args = []string{"helper=say", "main"}
	once.ExecStartPre = []ExecCommand{cmd("say", false, "pre")}
	once.ExecStartPost = []ExecCommand{cmd("say", false, "post")}
	cfg, con := testConfig(t, web, bad, ignored, postFails, once)
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=web state=started`, 1)
	con.waitFor(t, `^\[web\] exists=true$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=bad state=stopped$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=ignored state=started`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=postfails state=stopped$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=once state=done$`, 1)
	if i, j := lineIndex(con, `^\[web\] post ran$`), lineIndex(con, `^SLATE-SERVICE name=web state=started`); i < 0 || i > j {
		t.Errorf("web started before its ExecStartPost ran:\n%s", con)
	}
	if !strings.Contains(con.String(), `name=bad state=failed err="ExecStartPre `) || strings.Contains(con.String(), "name=bad state=started") {
		t.Errorf("a failing ExecStartPre did not fail the start:\n%s", con)
	}
	if !strings.Contains(con.String(), `name=postfails state=failed err="ExecStartPost `) {
		t.Errorf("a failing ExecStartPost did not fail the start:\n%s", con)
	}
	pre, main, post := lineIndex(con, `^\[once\] pre$`), lineIndex(con, `^\[once\] main$`), lineIndex(con, `^\[once\] post$`)
	if pre < 0 || !(pre < main && main < post && post < lineIndex(con, `name=once state=done`)) {
		t.Errorf("oneshot order pre=%d main=%d post=%d:\n%s", pre, main, post, con)
	}
}

func TestExecStopAndTimeouts(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "stopped")
	web := helperService(t, "web", "sleep", configs.RestartNever, map[string]string{"HELPER_FILE": stamp, "HELPER_CODE": "0"})
	web.ExecStop = []ExecCommand{cmd("touch", false)}
	stubborn := helperService(t, "stubborn", "ignoreterm", configs.RestartNever, nil)
	stubborn.TimeoutStopSec = 200 * time.Millisecond
	slow := helperService(t, "slow", "sleep", configs.RestartNever, nil)
	slow.ExecStartPre = []ExecCommand{cmd("sleep", false)}
	slow.TimeoutStartSec = 300 * time.Millisecond
	flaky := helperService(t, "flaky", "exit", configs.RestartOnFailure, map[string]string{"HELPER_CODE": "1"})
	flaky.RestartSec = 700 * time.Millisecond
	cfg, con := testConfig(t, web, stubborn, slow, flaky)
	cfg.stopTimeout = 10 * time.Second // TimeoutStopSec must win
	r := start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=web state=started`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=stubborn state=started`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=slow state=failed err="ExecStartPre .*timed out"$`, 1)
	con.waitFor(t, `^SLATE-SERVICE name=flaky state=restarting in=700ms$`, 1)
	con.waitFor(t, `^\[stubborn\] ready$`, 1)
	begin := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("stop took %v: TimeoutStopSec=200ms was not honoured", d)
	}
	if _, err := os.Stat(stamp); err != nil {
		t.Errorf("ExecStop did not run: %v\n%s", err, con)
	}
	if lineIndex(con, `name=slow state=started`) >= 0 {
		t.Errorf("slow started although its ExecStartPre timed out")
	}
}

func TestTargets(t *testing.T) {
	saved := wiredWait
	wiredWait = 200 * time.Millisecond
	t.Cleanup(func() { wiredWait = saved })
	first := helperService(t, "first", "sleep", configs.RestartNever, nil)
	step := oneshot(t, "step", "sleepshort", nil)
	last := after(helperService(t, "last", "sleep", configs.RestartNever, nil), MultiUserTarget)
	online := after(helperService(t, "online", "sleep", configs.RestartNever, nil), NetworkOnlineTarget)
	needsNet := requires(after(helperService(t, "needsnet", "sleep", configs.RestartNever, nil), NetworkOnlineTarget), NetworkOnlineTarget)
	cfg, con := testConfig(t, last, first, step, online, needsNet)
	cfg.DHCP = true
	cfg.netDir = t.TempDir() // no interface: DHCP gives up
	start(t, cfg)
	con.waitFor(t, `^SLATE-READY`, 1)
	if i, j := lineIndex(con, `^SLATE-NET iface=none err=`), lineIndex(con, `name=online state=started`); i < 0 || j < i {
		t.Errorf("After=network-online.target did not wait for DHCP:\n%s", con)
	}
	if lineIndex(con, `^SLATE-SERVICE name=needsnet state=skipped reason="requires network-online.target, which failed"$`) < 0 {
		t.Errorf("Requires=network-online.target without a lease was not skipped:\n%s", con)
	}
	l := lineIndex(con, `name=last state=started`)
	for _, re := range []string{`name=first state=started`, `name=step state=done`, `name=online state=started`} {
		if i := lineIndex(con, re); i < 0 || i > l {
			t.Errorf("After=multi-user.target started before %q:\n%s", re, con)
		}
	}
}

func TestTargetsWithoutDHCP(t *testing.T) {
	online := requires(after(helperService(t, "online", "sleep", configs.RestartNever, nil), NetworkOnlineTarget), NetworkOnlineTarget)
	cfg, con := testConfig(t, online)
	start(t, cfg)
	con.waitFor(t, `^SLATE-SERVICE name=online state=started`, 1)
	con.waitFor(t, `^SLATE-READY`, 1)
}

func TestReadHostnameFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		data, want string
		err        bool
	}{
		{"node-1\n", "node-1", false},
		{"# set by ignition\n\n  web.example.com  \n", "web.example.com", false},
		{"\n", "", false},
		{"bad_name\n", "", true},
		{"-x\n", "", true},
		{strings.Repeat("a", 65) + "\n", "", true},
	} {
		name := filepath.Join(dir, "hostname")
		if err := os.WriteFile(name, []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readHostnameFile(name)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("%q: %q, %v; want %q, err=%v", tt.data, got, err, tt.want, tt.err)
		}
	}
	if got, err := readHostnameFile(filepath.Join(dir, "none")); got != "" || err != nil {
		t.Errorf("missing file: %q, %v", got, err)
	}
}
