package distill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// Config describes the index to train.
type Config struct {
	Metric faissio.Metric
	Nlist  int
	// M is the number of PQ sub-quantizers; 0 trains an IVFFlat model.
	M, Nbits int
	// NoCoarse trains a PQ without IVF (FAISS's IndexPQ): Nlist must be 1
	// and its centroid is zero, so the codebooks quantize the vectors
	// themselves.
	NoCoarse bool
	// TrainSize caps the random sample of documents used for training; 0
	// means FAISS's habit: 256 points per centroid for the coarse k-means and
	// 256 per codeword for the PQ k-means.
	TrainSize int
	Niter     int    // k-means iterations, IVF and PQ; 0 means 25
	Seed      uint64 // same seed, same model
	// Progress, when set, is told of each phase's advance.
	Progress func(phase string, done, total int)
	// Times, when set, receives the wall time of each training phase.
	Times *PhaseTimes
}

// PhaseTimes is where TrainKMeans spends its time: the coarse k-means, and
// for IVFPQ the assignment of the PQ sample and the sub-space k-means.
type PhaseTimes struct {
	IVF time.Duration `json:"ivf_kmeans_ns"`
	PQ  time.Duration `json:"pq_train_ns"`
}

// Check reports whether the configuration can train on n documents of
// dimension d, so a build can fail before any work.
func (c Config) Check(n, d int) error {
	switch {
	case n < 1:
		return fmt.Errorf("no documents to train on")
	case c.Nlist < 1:
		return fmt.Errorf("nlist %d must be at least 1", c.Nlist)
	case c.Nlist > n:
		return fmt.Errorf("nlist %d is more than the %d documents", c.Nlist, n)
	case c.NoCoarse && (c.Nlist != 1 || c.M == 0):
		return fmt.Errorf("a PQ without IVF needs nlist 1 and M > 0, not nlist %d and M %d", c.Nlist, c.M)
	case c.M < 0:
		return fmt.Errorf("M %d must not be negative", c.M)
	case c.M > 0 && d%c.M != 0:
		return fmt.Errorf("M %d does not divide the dimension %d", c.M, d)
	case c.M > 0 && (c.Nbits < 1 || c.Nbits > 8):
		return fmt.Errorf("nbits %d outside 1..8", c.Nbits)
	case c.TrainSize < 0:
		return fmt.Errorf("train size %d must not be negative", c.TrainSize)
	case c.TrainSize > 0 && c.TrainSize < c.Nlist:
		return fmt.Errorf("train size %d is smaller than nlist %d", c.TrainSize, c.Nlist)
	case c.M > 0 && c.TrainSize > 0 && c.TrainSize < 1<<c.Nbits:
		return fmt.Errorf("train size %d is smaller than the %d codewords of 2^nbits", c.TrainSize, 1<<c.Nbits)
	case c.M > 0 && n < 1<<c.Nbits:
		return fmt.Errorf("%d documents cannot train 2^%d = %d PQ codewords", n, c.Nbits, 1<<c.Nbits)
	}
	return nil
}

func (c Config) progress(phase string) func(done, total int) {
	if c.Progress == nil {
		return nil
	}
	return func(done, total int) { c.Progress(phase, done, total) }
}

// TrainKMeans trains a model the way FAISS does: k-means for the coarse
// centroids (spherical for inner product, as FAISS's IndexIVF sets it), then,
// for IVFPQ, k-means in each sub-space of the residuals to the assigned
// centroids. It is the baseline and the starting point of distillation.
//
// It stops with ctx's error when ctx is cancelled.
func TrainKMeans(ctx context.Context, docs faissio.Matrix, cfg Config) (*Model, error) {
	defer serialBLAS()()
	if err := cfg.Check(docs.Rows, docs.Cols); err != nil {
		return nil, err
	}
	d := docs.Cols
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x747261696e))
	train := docs
	size := cfg.TrainSize
	if size == 0 {
		size = 256 * cfg.Nlist
		if cfg.M > 0 {
			size = max(size, 256<<cfg.Nbits)
		}
	}
	if train.Rows > size {
		train = sampleRows(train, size, rng)
	}

	m := &Model{D: d, Metric: cfg.Metric, Nlist: cfg.Nlist, M: cfg.M, Nbits: cfg.Nbits}
	times := cfg.Times
	if times == nil {
		times = new(PhaseTimes)
	}
	t0 := time.Now()
	var err error
	seed := rng.Uint64()
	if cfg.NoCoarse {
		m.Centroids = make([]float32, d)
	} else {
		phase(ctx, "ivf-kmeans", func() {
			m.Centroids, err = KMeans(ctx, train, cfg.Nlist, KMeansConfig{
				Niter:     cfg.Niter,
				Seed:      seed,
				Spherical: cfg.Metric == faissio.InnerProduct,
				Metric:    cfg.Metric,
				Progress:  cfg.progress("IVF k-means"),
			})
		})
		if err != nil {
			return nil, err
		}
	}
	times.IVF = time.Since(t0)
	if cfg.M == 0 {
		return m, nil
	}
	t0 = time.Now()

	pqTrain := train
	if max := 256 << cfg.Nbits; pqTrain.Rows > max {
		pqTrain = sampleRows(pqTrain, max, rng)
	}
	res := faissio.Matrix{Rows: pqTrain.Rows, Cols: d, Data: make([]float32, pqTrain.Rows*d)}
	pqSeed := rng.Uint64()
	phase(ctx, "pq-train", func() {
		var lists []int64
		if lists, err = m.Assign(ctx, pqTrain); err != nil {
			return
		}
		m.residuals(pqTrain, lists, res.Data)
		m.Codebooks, err = trainCodebooks(ctx, res, cfg.M, cfg.Nbits, cfg.Niter, pqSeed, cfg.progress("PQ k-means"))
	})
	if err != nil {
		return nil, err
	}
	times.PQ = time.Since(t0)
	return m, nil
}

// trainCodebooks runs an L2 k-means in each of the M sub-spaces of x and
// returns the codebooks in FAISS's [M][ksub][dsub] order.
//
// The sub-space k-means are independent, so when they are small products
// (see assigner) goroutines own the cores one sub-space at a time each,
// every k-means single-threaded: no synchronisation but at the end, where
// splitting each k-means's iterations would meet 625 times. Sub-space s
// always gets seed+s, so the result does not depend on the threads.
func trainCodebooks(ctx context.Context, x faissio.Matrix, M, nbits, niter int, seed uint64, progress func(done, total int)) ([]float32, error) {
	d, ksub := x.Cols, 1<<nbits
	dsub := d / M
	books := make([]float32, d*ksub)
	workers := min(runtime.GOMAXPROCS(0), M)
	threads := 0 // each k-means runs its blocks on every core
	if workers > 1 && smallProduct(dsub, ksub) {
		threads = 1
	} else {
		workers = 1
	}
	errs := make([]error, M)
	var (
		failed atomic.Bool // the other sub-spaces are skipped
		mu     sync.Mutex
		done   int
	)
	ctxErr := eachJob(ctx, M, workers, func(int) func(int) {
		sub := faissio.Matrix{Rows: x.Rows, Cols: dsub, Data: make([]float32, x.Rows*dsub)}
		return func(s int) {
			if failed.Load() {
				return
			}
			for i := 0; i < x.Rows; i++ {
				copy(sub.Row(i), x.Row(i)[s*dsub:(s+1)*dsub])
			}
			cb, err := KMeans(ctx, sub, ksub, KMeansConfig{Niter: niter, Seed: seed + uint64(s), Metric: faissio.L2, threads: threads})
			if err != nil {
				errs[s] = fmt.Errorf("PQ sub-space %d: %w", s, err)
				failed.Store(true)
				return
			}
			copy(books[s*ksub*dsub:(s+1)*ksub*dsub], cb)
			if progress != nil {
				mu.Lock()
				done++
				progress(done, M)
				mu.Unlock()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if ctxErr != nil {
		return nil, ctxErr
	}
	return books, nil
}
