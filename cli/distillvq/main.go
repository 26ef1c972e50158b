// Command distillvq turns dense embeddings into FAISS IVF index files whose
// centroids and codebooks are trained for retrieval. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/distillvq/distillvq/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
