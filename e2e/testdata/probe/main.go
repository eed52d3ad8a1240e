// Command probe runs inside a slate image under test. It checks from the
// inside what the end-to-end tests cannot see from the console alone and
// prints PROBE/CRASH lines for them.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	mode := "probe"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "crash":
		crash()
	case "hang":
		hang()
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "crashloop":
		fmt.Println("CRASHLOOP")
		time.Sleep(500 * time.Millisecond)
		os.Exit(3)
	case "mark":
		mark()
	case "status":
		status()
	case "apply":
		apply()
	case "hangcheck":
		hangcheck()
	case "say":
		fmt.Println(strings.Join(os.Args[2:], " "))
	case "igncheck":
		igncheck()
	case "meminfo":
		meminfo()
	case "accounts":
		accounts(os.Args[2:])
	case "mounts":
		mounts(os.Args[2:])
	case "modes":
		modes(os.Args[2:])
	default:
		probe()
	}
}

// crash fails its first two runs of each boot, then stays up: the
// supervisor must restart it (restart: on-failure).
func crash() {
	n := bump("/run/crash-count")
	fmt.Printf("CRASH run=%d\n", n)
	if n < 3 {
		os.Exit(1)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// hang stops the whole machine as a deadlocked kernel would: a panic
// that never reboots (kernel.panic=0 overrides the command line's
// panic=10). Only a hardware watchdog gets such a machine going again.
func hang() {
	fmt.Println("HANG now")
	if err := os.WriteFile("/proc/sys/kernel/panic", []byte("0"), 0o644); err != nil {
		fmt.Printf("HANG error=%q\n", err.Error())
		return
	}
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0o200); err != nil {
		fmt.Printf("HANG error=%q\n", err.Error())
	}
}

func probe() {
	if err := os.MkdirAll("/var/lib/probe", 0o755); err != nil {
		fmt.Printf("PROBE error=%q\n", err.Error())
	}
	boot := bump("/var/lib/probe/boots")
	usr := "denied"
	if err := os.WriteFile("/usr/probe-write", []byte("x"), 0o644); err == nil {
		usr = "allowed"
	} else if !errors.Is(err, syscall.EROFS) {
		usr = "error:" + strings.ReplaceAll(err.Error(), " ", "_")
	}
	etc := "ok"
	if err := os.WriteFile("/etc/probe-etc", []byte(strconv.Itoa(boot)), 0o644); err != nil {
		etc = "error"
	}
	host, _ := os.Hostname()
	fmt.Printf("PROBE boot=%d usr-write=%s etc-write=%s hostname=%s pid=%d ppid=%d\n", boot, usr, etc, host, os.Getpid(), os.Getppid())
	// Let the supervisor print SLATE-READY before asking it to stop.
	time.Sleep(2 * time.Second)
	action := "reboot"
	if boot >= 2 {
		action = "poweroff"
	}
	fmt.Printf("PROBE action=%s\n", action)
	out, err := exec.Command("/usr/bin/slate", action).CombinedOutput()
	if err != nil {
		fmt.Printf("PROBE %s-failed=%q out=%q\n", action, err.Error(), string(out))
		os.Exit(1)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// bump increments a counter file and returns the new value.
func bump(p string) int {
	b, _ := os.ReadFile(p)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	n++
	f, err := os.Create(p)
	if err == nil {
		fmt.Fprintf(f, "%d\n", n)
		_ = f.Sync()
		f.Close()
	}
	return n
}

// mark counts boots in /var and says which version runs.
func mark() {
	if err := os.MkdirAll("/var/lib/probe", 0o755); err != nil {
		fmt.Printf("MARK error=%q\n", err.Error())
	}
	n := bump("/var/lib/probe/boots")
	b, _ := os.ReadFile("/etc/os-release")
	v := "?"
	for _, l := range strings.Split(string(b), "\n") {
		if x, ok := strings.CutPrefix(l, "VERSION_ID="); ok {
			v = x
		}
	}
	fmt.Printf("MARK boot=%d version=%s\n", n, v)
}

type updStatus struct {
	State   string `json:"state"`
	Version string `json:"version"`
	Slot    string `json:"slot"`
	Current struct {
		State string
	} `json:"current"`
	Other struct {
		Slot, Version, State string
	} `json:"other"`
	Failed    map[string]any `json:"failed"`
	LastError string         `json:"last_error"`
	Lock      string         `json:"lock"`
	Halted    string         `json:"halted"`
}

// status prints the updater's status whenever it changes; with
// ROLLBACK_AFTER=<version>, once that version is blessed it rolls back
// and reboots.
func status() {
	last := ""
	rolled := false
	for {
		time.Sleep(time.Second)
		out, err := exec.Command("/usr/bin/slate", "update", "status", "--json").Output()
		if err != nil {
			continue
		}
		var st updStatus
		if err := json.Unmarshal(out, &st); err != nil {
			continue
		}
		var failed []string
		for v := range st.Failed {
			failed = append(failed, v)
		}
		sort.Strings(failed)
		line := fmt.Sprintf("STATUS state=%s version=%s slot=%s entry=%s other=%s/%s/%s failed=%s", st.State, st.Version, st.Slot, st.Current.State, st.Other.Slot, st.Other.Version, st.Other.State, strings.Join(failed, ","))
		if os.Getenv("STATUS_ERRORS") != "" {
			// the error is opt-in: other tests match the line to its end
			line += fmt.Sprintf(" error=%q", st.LastError)
		}
		if os.Getenv("STATUS_FLEET") != "" {
			// the fleet's part: the wait for the reboot lock, stop-the-line
			line += fmt.Sprintf(" lock=%q halted=%q", st.Lock, st.Halted)
		}
		if line != last {
			fmt.Println(line)
			last = line
		}
		if v := os.Getenv("ROLLBACK_AFTER"); v != "" && !rolled && st.Current.State == "good" && st.Version == v {
			rolled = true
			out, err := exec.Command("/usr/bin/slate", "update", "rollback").CombinedOutput()
			fmt.Printf("ROLLBACK err=%v out=%q\n", err, strings.ReplaceAll(string(out), "\n", " | "))
			if err == nil {
				_ = exec.Command("/usr/bin/slate", "reboot").Run()
			}
		}
	}
}

// apply runs `slate update apply` on every source in APPLY (space
// separated) and prints the outcome of each, then powers off.
func apply() {
	time.Sleep(2 * time.Second)
	for _, src := range strings.Fields(os.Getenv("APPLY")) {
		var out []byte
		var err error
		for i := 0; i < 30; i++ { // the daemon's socket may not be up yet
			out, err = exec.Command("/usr/bin/slate", "update", "apply", src).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "reach the updater") {
				break
			}
			time.Sleep(time.Second)
		}
		msg := strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | ")
		fmt.Printf("APPLY src=%s ok=%v out=%q\n", src, err == nil, msg)
	}
	fmt.Println("APPLY done")
	for {
		time.Sleep(time.Hour)
	}
}

// igncheck checks from inside what the e2e Ignition config provisioned.
func igncheck() {
	var bad []string
	check := func(what string, ok bool) {
		if !ok {
			bad = append(bad, what)
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	check("inline file", read("/etc/ign/inline.txt") == "hello inline\n")
	check("gzip file", read("/var/lib/ign/gz.txt") == "hello gzip\n")
	if st, err := os.Stat("/var/lib/ign/dir"); err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
		bad = append(bad, "directory")
	}
	t, err := os.Readlink("/etc/ign/link")
	check("symlink", err == nil && t == "/etc/ign/inline.txt")
	check("user", strings.Contains(read("/etc/passwd"), "\nalice:x:"))
	check("group", strings.Contains(read("/etc/group"), "devs:x:"))
	check("group member", strings.Contains(read("/etc/group"), ":alice"))
	check("ssh key", strings.Contains(read("/home/alice/.ssh/authorized_keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e slate-e2e"))
	v := "?"
	for _, l := range strings.Split(read("/etc/os-release"), "\n") {
		if x, ok := strings.CutPrefix(l, "VERSION_ID="); ok {
			v = x
		}
	}
	if len(bad) == 0 {
		fmt.Printf("IGNCHECK ok version=%s\n", v)
	} else {
		fmt.Printf("IGNCHECK fail version=%s missing=%s\n", v, strings.Join(bad, ","))
	}
}

// meminfo prints what the machine holds (MemTotal - MemFree: page cache
// and tmpfs included, which is where a root in RAM lives) once the
// system is up.
func meminfo() {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		fmt.Println("MEM err", err)
		os.Exit(1)
	}
	kv := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		kv[k] = n << 10
	}
	fmt.Printf("MEM used=%d total=%d shmem=%d\n", kv["MemTotal"]-kv["MemFree"], kv["MemTotal"], kv["Shmem"])
}

// accounts prints, for each user named, the hostname, the user's entry in
// /etc/shadow (password field only) and the groups that list it, and the
// number of its SSH keys.
func accounts(users []string) {
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	host, _ := os.Hostname()
	for _, u := range users {
		shadow, home := "?", ""
		for _, l := range strings.Split(read("/etc/shadow"), "\n") {
			if f := strings.Split(l, ":"); len(f) > 1 && f[0] == u {
				shadow = f[1]
			}
		}
		for _, l := range strings.Split(read("/etc/passwd"), "\n") {
			if f := strings.Split(l, ":"); len(f) > 5 && f[0] == u {
				home = f[5]
			}
		}
		var groups []string
		for _, l := range strings.Split(read("/etc/group"), "\n") {
			if f := strings.Split(l, ":"); len(f) > 3 {
				for _, m := range strings.Split(f[3], ",") {
					if m == u {
						groups = append(groups, f[0])
					}
				}
			}
		}
		keys := 0
		for _, l := range strings.Split(read(home+"/.ssh/authorized_keys"), "\n") {
			if strings.TrimSpace(l) != "" {
				keys++
			}
		}
		fmt.Printf("ACCOUNTS hostname=%s user=%s shadow=%s groups=%s keys=%d\n", host, u, shadow, strings.Join(groups, ","), keys)
	}
}

// mounts prints the options of the mounts on each folder named (the last
// mount on it, the one that is seen).
func mounts(dirs []string) {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, d := range dirs {
		opts := "none"
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 4 && f[1] == d {
				opts = f[3]
			}
		}
		fmt.Printf("MOUNT dir=%s opts=%s\n", d, opts)
	}
}

// modes prints the mode and owner of each file named.
func modes(paths []string) {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			fmt.Printf("MODE path=%s err=%q\n", p, err.Error())
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		fmt.Printf("MODE path=%s mode=%o uid=%d size=%d\n", p, sys.Mode&0o7777, sys.Uid, st.Size())
	}
}

// hangcheck waits until the updater is checking (the e2e channel server
// never answers), then times `slate update status`, `rollback` and
// `check` and prints a HANG line for each: none may wait for the stuck
// check.
func hangcheck() {
	for {
		time.Sleep(300 * time.Millisecond)
		out, err := exec.Command("/usr/bin/slate", "update", "status", "--json").Output()
		if err != nil {
			continue
		}
		var st updStatus
		if json.Unmarshal(out, &st) != nil || st.State != "checking" {
			continue
		}
		for _, op := range []string{"status", "rollback", "check"} {
			t0 := time.Now()
			out, err := exec.Command("/usr/bin/slate", "update", op).CombinedOutput()
			msg := strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | ")
			fmt.Printf("HANG op=%s ms=%d ok=%v out=%q\n", op, time.Since(t0).Milliseconds(), err == nil, msg)
		}
		fmt.Println("HANG done")
		for {
			time.Sleep(time.Hour)
		}
	}
}
