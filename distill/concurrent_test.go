package distill

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// TestConcurrentUse trains, assigns and encodes from several goroutines at
// once (run it under -race) and requires the results of the same calls made
// one at a time: the shared SerialBLAS count and the per-call buffers keep
// the calls apart.
func TestConcurrentUse(t *testing.T) {
	docs := randMatrix(rand.New(rand.NewPCG(5, 6)), 3000, 16)
	cfg := Config{Metric: faissio.L2, Nlist: 12, M: 4, Nbits: 5, Niter: 6, Seed: 9}
	ref, err := TrainKMeans(context.Background(), docs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists := assign(ref, docs)
	codes := encode(ref, docs, lists)
	teacher := exactTopK(docs, docs.Slice(0, 300), 10, faissio.L2, nil)

	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for g := range 6 {
		wg.Go(func() {
			switch g % 3 {
			case 0:
				m, err := TrainKMeans(context.Background(), docs, cfg)
				if err != nil || !slices.Equal(m.Centroids, ref.Centroids) || !slices.Equal(m.Codebooks, ref.Codebooks) {
					errs <- "TrainKMeans differs when run concurrently"
				}
			case 1:
				if l := assign(ref, docs); !slices.Equal(l, lists) || !slices.Equal(encode(ref, docs, l), codes) {
					errs <- "Assign/Encode differ when run concurrently"
				}
			case 2:
				tt := exactTopK(docs, docs.Slice(0, 300), 10, faissio.L2, nil)
				if !slices.Equal(tt.Rows, teacher.Rows) || !slices.Equal(tt.Scores, teacher.Scores) {
					errs <- "ExactTopK differs when run concurrently"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
