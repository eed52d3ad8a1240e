// Command rss runs as a service inside a slate image under benchmark. Once
// the image has settled it prints PID 1's memory as
//
//	RSS pid1=<VmRSS kB> hwm=<VmHWM kB>
//
// and asks slate to power the machine off.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	// The supervisor prints SLATE-READY once every service has started;
	// wait past it so PID 1 is measured at rest, not while starting us.
	time.Sleep(5 * time.Second)
	f, err := os.Open("/proc/1/status")
	if err != nil {
		fmt.Printf("RSS-FAILED %v\n", err)
		os.Exit(1)
	}
	st, err := parseStatus(f)
	f.Close()
	if err != nil {
		fmt.Printf("RSS-FAILED /proc/1/status: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("RSS pid1=%d hwm=%d\n", st["VmRSS"], st["VmHWM"])
	// the update daemon, when the image has one
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || string(cmd) != "/usr/bin/slate\x00updated\x00" {
				continue
			}
			f, err := os.Open("/proc/" + e.Name() + "/status")
			if err != nil {
				continue
			}
			ust, err := parseStatus(f)
			f.Close()
			if err == nil {
				fmt.Printf("RSS-UPDATED rss=%d hwm=%d\n", ust["VmRSS"], ust["VmHWM"])
			}
		}
	}
	out, err := exec.Command("/usr/bin/slate", "poweroff").CombinedOutput()
	if err != nil {
		fmt.Printf("RSS-FAILED poweroff: %v: %s\n", err, out)
		os.Exit(1)
	}
}

// parseStatus reads the "Key:   N kB" lines of a /proc/PID/status file
// and returns them in kB; it needs VmRSS.
func parseStatus(r io.Reader) (map[string]int64, error) {
	m := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		m[k] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if _, ok := m["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS line")
	}
	return m, nil
}
