// Command slate builds, inspects and runs slate images; inside an image
// the same binary is /init of the initramfs and PID 1 of the system.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/slateos/slate/initramfs/stage1"
	"github.com/slateos/slate/internal/run/pid1"
)

func main() {
	if os.Getpid() == 1 {
		// The kernel runs the initramfs' /init; init switches root and
		// execs the slot's /sbin/init, which is this binary again.
		if os.Args[0] == "/init" {
			stage1.Main()
		}
		pid1.Main()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(1)
	}
}
