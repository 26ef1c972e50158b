package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// grace is how long an interrupted command may take to stop on its own
// (every phase checks the context per block) before the process exits
// anyway.
const grace = 2 * time.Second

// Exec runs this process's command line with engine eng (nil: none) and
// exits with its code. The first SIGINT or SIGTERM cancels the work, which
// stops within a block of it; a second signal, or a call into FAISS that
// does not return within the grace period, exits at once, taking the
// temporary outputs along. Outputs are only ever renamed into place when
// complete, so no partial file remains either way.
func Exec(eng Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cancel()
		select {
		case <-sig:
		case <-time.After(grace):
		}
		faissio.RemovePending()
		fmt.Fprintln(os.Stderr, "distillvq: interrupted (a FAISS call did not return within the grace period)")
		os.Exit(130)
	}()
	stop := profile()
	code := MainWith(ctx, os.Args, os.Stdout, os.Stderr, eng)
	stop()
	os.Exit(code)
}

// profile writes a CPU profile of the whole command to the file named by
// DISTILLVQ_CPUPROFILE, when set (distill/SPEED.md's profiles), and returns
// the function that finishes it.
func profile() func() {
	path := os.Getenv("DISTILLVQ_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "distillvq: DISTILLVQ_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
