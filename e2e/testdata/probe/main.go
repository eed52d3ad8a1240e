// Command probe runs inside a slate image under test. It checks from the
// inside what the end-to-end tests cannot see from the console alone and
// prints PROBE/CRASH lines for them.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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
