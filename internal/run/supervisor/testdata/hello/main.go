// hello is the program of the containers that TestRealRunc runs through
// runc: it says who and where it is, counts its starts in its volume and
// answers /healthz on $PORT until SIGTERM or SIGQUIT (forever with
// $IGNORE_TERM), or uses 300 ms of CPU and exits with $BURN.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ro := os.WriteFile("/written", []byte("x"), 0o644) != nil
	n := 0
	if b, err := os.ReadFile("/data/count"); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	n++
	werr := os.WriteFile("/data/count", []byte(strconv.Itoa(n)), 0o644)
	fmt.Printf("hello pid=%d uid=%d ro=%t count=%d volerr=%v\n", os.Getpid(), os.Getuid(), ro, n, werr)
	if os.Getenv("BURN") != "" {
		// a short run that uses CPU time, then exits by itself
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		}
		fmt.Println("hello burned")
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	if os.Getenv("IGNORE_TERM") != "" {
		// (Go's runtime would exit(2) on a SIGTERM it does not handle,
		// even as PID 1 of a namespace.)
		signal.Ignore(syscall.SIGTERM)
		select {}
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGQUIT)
	if <-c == syscall.SIGQUIT {
		fmt.Println("hello got SIGQUIT")
		return
	}
	fmt.Println("hello got SIGTERM")
}
