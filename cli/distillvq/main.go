// Command distillvq turns dense embeddings into FAISS IVF index files whose
// centroids and codebooks are trained for retrieval. See the README.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/distillvq/distillvq/cli"
	"github.com/distillvq/distillvq/faissio"
)

// grace is how long an interrupted command may take to stop on its own
// (each training step checks the context) before the process exits anyway.
const grace = 2 * time.Second

func main() {
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
		// A phase inside FAISS cannot be stopped from Go: leave without it,
		// taking any temporary output along. Outputs are only ever renamed
		// into place when complete, so no partial file remains.
		faissio.RemovePending()
		fmt.Fprintln(os.Stderr, "distillvq: interrupted (a FAISS call did not return within the grace period)")
		os.Exit(130)
	}()
	code := cli.Main(ctx, os.Args, os.Stdout, os.Stderr)
	os.Exit(code)
}
