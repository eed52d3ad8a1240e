// Command ctrapp is the program of the e2e tests' container images: an
// HTTP server on :8080 that says who and where it runs, so a test on the
// host can check the container's isolation from the answer.
//
//	GET /        JSON: version, uid, gid, pid, hostname, root_read_only,
//	             starts (a counter kept in the volume at /data), history
//	GET /healthz 200 once started
//	GET /exit    exits with status 3 (the supervisor restarts it)
//	GET /alloc   allocates and touches memory until the OOM killer ends it
//
// APP_VERSION names the version; APP_MODE=crash exits 1 half a second
// after each start instead of serving; APP_PORT replaces 8080 (the
// benchmark runs the same program as a plain service beside it).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	version := os.Getenv("APP_VERSION")
	starts, history := count(version)
	fmt.Printf("ctrapp %s start %d uid=%d pid=%d\n", version, starts, os.Getuid(), os.Getpid())
	if os.Getenv("APP_MODE") == "crash" {
		time.Sleep(500 * time.Millisecond)
		fmt.Println("ctrapp crashing on purpose")
		os.Exit(1)
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		err := os.WriteFile("/probe-write", []byte("x"), 0o644)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"version": version, "uid": os.Getuid(), "gid": os.Getgid(), "pid": os.Getpid(),
			"hostname": host, "root_read_only": errors.Is(err, syscall.EROFS),
			"starts": starts, "history": history,
		})
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "bye")
		go func() { time.Sleep(100 * time.Millisecond); fmt.Println("ctrapp exiting on request"); os.Exit(3) }()
	})
	http.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "allocating")
		go func() {
			var keep [][]byte
			for {
				b := make([]byte, 8<<20)
				for i := range b {
					b[i] = 1
				}
				keep = append(keep, b)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	})
	port := os.Getenv("APP_PORT")
	if port == "" {
		port = "8080"
	}
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Println("ctrapp:", err)
		os.Exit(2)
	}
}

// count adds this start to /data/starts (one line per start: the version)
// and returns how many starts it now holds and their versions.
func count(version string) (int, []string) {
	b, _ := os.ReadFile("/data/starts")
	lines := strings.Fields(string(b))
	lines = append(lines, version)
	if err := os.WriteFile("/data/starts", []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		fmt.Println("ctrapp: volume:", err)
		return -1, nil
	}
	return len(lines), lines
}
