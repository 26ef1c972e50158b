package distill

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/distillvq/distillvq/faissio"
)

// KMeansConfig holds the settings of one k-means run. The zero value of each
// field means FAISS's default (ClusteringParameters in FAISS 1.7.3).
type KMeansConfig struct {
	Niter                int    // Lloyd iterations; 0 means 25
	MaxPointsPerCentroid int    // the sample is capped at K*MaxPointsPerCentroid; 0 means 256
	Seed                 uint64 // seeds sampling, initialisation and cluster splitting
	// Spherical renormalises centroids to unit norm after each update, as FAISS
	// does for an inner-product IVF quantizer.
	Spherical bool
	// Metric chooses the assignment: nearest by L2, or largest inner product.
	Metric   faissio.Metric
	Progress func(done, total int) // called after each iteration; may be nil
	// threads caps the goroutines of the assignment and update steps; 0
	// means GOMAXPROCS. trainCodebooks runs one k-means per goroutine with 1.
	threads int
}

func (c KMeansConfig) workers() int {
	if c.threads > 0 {
		return c.threads
	}
	return runtime.GOMAXPROCS(0)
}

func (c KMeansConfig) niter() int {
	if c.Niter > 0 {
		return c.Niter
	}
	return 25
}

func (c KMeansConfig) maxPoints() int {
	if c.MaxPointsPerCentroid > 0 {
		return c.MaxPointsPerCentroid
	}
	return 256
}

// KMeans clusters the rows of x into k centroids and returns them (k*x.Cols,
// row-major). Like FAISS it trains on a random sample of at most
// k*MaxPointsPerCentroid rows, starts from k distinct random rows, and
// splits a populous cluster whenever one empties.
//
// It stops with ctx's error when ctx is cancelled, between iterations.
func KMeans(ctx context.Context, x faissio.Matrix, k int, cfg KMeansConfig) ([]float32, error) {
	defer serialBLAS()()
	if k < 1 {
		return nil, fmt.Errorf("k-means: need at least 1 centroid, got %d", k)
	}
	if x.Rows < k {
		return nil, fmt.Errorf("k-means: %d training vectors cannot make %d centroids", x.Rows, k)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b6d65616e73))
	if max := k * cfg.maxPoints(); x.Rows > max {
		x = sampleRows(x, max, rng)
	}
	n, d := x.Rows, x.Cols

	cent := make([]float32, k*d)
	perm := rng.Perm(n)
	for i := 0; i < k; i++ {
		copy(cent[i*d:(i+1)*d], x.Row(perm[i]))
	}
	if cfg.Spherical {
		normalizeRows(cent, d)
	}

	labels := make([]int32, n)
	sums := make([]float64, k*d)
	counts := make([]int, k)
	a := newAssignerThreads(d, k, cfg.workers())
	for it := 0; it < cfg.niter(); it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := a.assign(ctx, view(x), cent, cfg.Metric, labels, nil); err != nil {
			return nil, err
		}
		clear(counts)
		for _, c := range labels {
			counts[c]++
		}
		updateCentroids(x, labels, counts, sums, cent, cfg.workers())
		splitEmpty(cent, d, counts, n, rng)
		if cfg.Spherical {
			normalizeRows(cent, d)
		}
		if cfg.Progress != nil {
			cfg.Progress(it+1, cfg.niter())
		}
	}
	return cent, nil
}

// updateCentroids sets each non-empty centroid to the mean of its rows,
// summed in float64 in row order. The sums are split by columns among
// goroutines (BLAS is idle here, so they own the cores): each column's sum
// runs over the rows in the same order whatever the split, so the result
// does not depend on the number of threads.
func updateCentroids(x faissio.Matrix, labels []int32, counts []int, sums []float64, cent []float32, workers int) {
	n, d, k := x.Rows, x.Cols, len(counts)
	work := func(j0, j1 int) {
		for c := 0; c < k; c++ {
			clear(sums[c*d+j0 : c*d+j1])
		}
		for i, c := range labels[:n] {
			s := sums[int(c)*d+j0 : int(c)*d+j1]
			for j, v := range x.Data[i*d+j0 : i*d+j1] {
				s[j] += float64(v)
			}
		}
		for c := 0; c < k; c++ {
			if counts[c] == 0 {
				continue
			}
			inv := 1 / float64(counts[c])
			for j := j0; j < j1; j++ {
				cent[c*d+j] = float32(sums[c*d+j] * inv)
			}
		}
	}
	if workers <= 1 || d < 2*16 || n*d < 1<<20 {
		work(0, d)
		return
	}
	workers = min(workers, d/16)
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func(j0, j1 int) {
			defer wg.Done()
			work(j0, j1)
		}(w*d/workers, (w+1)*d/workers)
	}
	work(0, d/workers)
	wg.Wait()
}

// splitEmpty gives every empty cluster half of a populous one, chosen with
// probability growing with its size, by nudging a copy of its centroid apart
// from the original (FAISS's remedy, which keeps all k centroids in use).
func splitEmpty(cent []float32, d int, counts []int, n int, rng *rand.Rand) {
	k := len(counts)
	const eps = 1.0 / 1024
	for ci := 0; ci < k; ci++ {
		if counts[ci] != 0 {
			continue
		}
		cj := 0
		for {
			p := float64(counts[cj]-1) / float64(n-k)
			if rng.Float64() < p {
				break
			}
			cj = (cj + 1) % k
		}
		copy(cent[ci*d:(ci+1)*d], cent[cj*d:(cj+1)*d])
		for j := 0; j < d; j++ {
			if j%2 == 0 {
				cent[ci*d+j] *= 1 + eps
				cent[cj*d+j] *= 1 - eps
			} else {
				cent[ci*d+j] *= 1 - eps
				cent[cj*d+j] *= 1 + eps
			}
		}
		counts[ci] = counts[cj] / 2
		counts[cj] -= counts[ci]
	}
}

// sampleRows copies m distinct random rows of x, in random order.
func sampleRows(x faissio.Matrix, m int, rng *rand.Rand) faissio.Matrix {
	perm := rng.Perm(x.Rows)[:m]
	out := faissio.Matrix{Rows: m, Cols: x.Cols, Data: make([]float32, m*x.Cols)}
	for i, r := range perm {
		copy(out.Row(i), x.Row(r))
	}
	return out
}

func normalizeRows(v []float32, d int) {
	for i := 0; i+d <= len(v); i += d {
		var s float64
		for _, x := range v[i : i+d] {
			s += float64(x) * float64(x)
		}
		if s == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(s))
		for j := i; j < i+d; j++ {
			v[j] *= inv
		}
	}
}

// strided is a view of n vectors of dim floats, vector i starting at
// data[i*stride]. It lets PQ sub-spaces be read in place, without copying.
type strided struct {
	data           []float32
	n, dim, stride int
}

func view(x faissio.Matrix) strided {
	return strided{data: x.Data, n: x.Rows, dim: x.Cols, stride: x.Cols}
}

// assigner finds each vector's best centroid a block of rows at a time: one
// sgemm scores the block against all centroids, then a bounds-check-free
// scan takes each row's arg-min.
//
// The score is ||c||^2 - 2<x,c> for L2 (the sgemm adds -2<x,c> to a block
// pre-filled with the centroid norms, which costs nothing more than the
// zeroing OpenBLAS does for beta = 0) and -<x,c> for inner product, so one
// arg-min kernel serves both metrics.
//
// Goroutines own the cores (the callers hold SerialBLAS): each worker takes
// blocks of rows in turn, runs the block's sgemm on its own thread and scans
// it, so the workers meet only at the end. Blocks have a fixed size and
// each row's result depends only on its block's product, so the labels are
// the same whatever the number of threads.
type assigner struct {
	dim, k  int
	rows    int // rows per block
	workers int
	bufs    [][]float32 // one rows*k score block per worker
	norms   []float32
}

// blasInline is the largest m*n*k that OpenBLAS runs on the calling thread
// even when its pool has several (GEMM_MULTITHREAD_THRESHOLD).
const blasInline = 1 << 18

func newAssigner(dim, k int) *assigner { return newAssignerThreads(dim, k, runtime.GOMAXPROCS(0)) }

// smallProduct reports whether scoring against k centroids of dim floats is
// a small product (a PQ sub-space: 2^nbits codewords of a few dimensions),
// whose blocks are best kept to about blasInline multiply-adds.
func smallProduct(dim, k int) bool { return blasInline/(k*max(dim, 1)) >= 32 }

// newAssignerThreads makes an assigner that runs at most workers goroutines
// (1: the caller's only).
func newAssignerThreads(dim, k, workers int) *assigner {
	a := &assigner{dim: dim, k: k, workers: max(1, workers), norms: make([]float32, k)}
	if smallProduct(dim, k) {
		a.rows = blasInline / (k * max(dim, 1))
	} else {
		// Blocks of about 8 MiB of scores (897 rows for 2337 centroids),
		// half FAISS's 16 MiB tiles: on GloVe-341k sgemm plus scan ran
		// 0-8% faster on ~1000-row blocks than on 224- or 4096-row ones.
		a.rows = max(32, min(4096, (1<<21)/k))
		// A power of two, so that blocks of any multiple of 4096 rows
		// (the encoding's, a shard's) split into the same row ranges:
		// a product's last bits depend on the rows it is computed with.
		a.rows = 1 << (bits.Len(uint(a.rows)) - 1)
	}
	a.bufs = make([][]float32, a.workers)
	return a
}

// assign writes the best centroid of each vector of v to labels and, when
// score is not nil, its score: the inner product for InnerProduct (largest
// wins), ||c||^2 - 2<x,c> for L2 (smallest wins; add ||x||^2 for the
// distance).
//
// It stops between blocks with ctx's error once ctx is cancelled.
func (a *assigner) assign(ctx context.Context, v strided, cent []float32, metric faissio.Metric, labels []int32, score []float32) error {
	k, d := a.k, a.dim
	l2 := metric == faissio.L2
	if l2 {
		for c := 0; c < k; c++ {
			a.norms[c] = dot(cent[c*d:(c+1)*d], cent[c*d:(c+1)*d])
		}
	}
	nblocks := (v.n + a.rows - 1) / a.rows
	// block scores rows [i0, i0+m) of v into buf and takes their arg-mins.
	block := func(buf []float32, i0, m int) {
		dots := buf[:m*k]
		alpha, beta := float32(-1), float32(0)
		if l2 {
			for i := 0; i < m; i++ {
				copy(dots[i*k:(i+1)*k], a.norms)
			}
			alpha, beta = -2, 1
		}
		sgemm(false, true, m, k, d, alpha, v.data[i0*v.stride:], v.stride, cent, d, beta, dots, k)
		for i := 0; i < m; i++ {
			best, bs := argmin(dots[i*k : (i+1)*k])
			labels[i0+i] = int32(best)
			if score != nil {
				if !l2 {
					bs = -bs
				}
				score[i0+i] = bs
			}
		}
	}
	return eachJob(ctx, nblocks, a.workers, func(w int) func(int) {
		if len(a.bufs[w]) < min(a.rows, v.n)*k {
			a.bufs[w] = make([]float32, min(a.rows, v.n)*k)
		}
		buf := a.bufs[w]
		return func(b int) {
			i0 := b * a.rows
			block(buf, i0, min(a.rows, v.n-i0))
		}
	})
}

// argmin returns the index and value of the smallest element of row, the
// first one on ties; NaNs are never chosen (an all-NaN or all-+Inf row gives
// index 0 and +Inf). It is a quarter of a distilled build's CPU time (the
// k-means assignments and every PQ encoding scan their scores with it), so
// rows of 32 or more go to a vector kernel where there is one: 4.9x faster
// on 256 scores, 3.9x on 2337, the same result.
func argmin(row []float32) (int, float32) {
	if i, s, ok := argminVector(row); ok {
		return i, s
	}
	return argminScalar(row)
}

// argminScalar is argmin in Go: the reference of the vector kernel, and
// argmin itself on short rows and machines without it. Four independent
// lanes keep the compares from waiting on each other; the lanes are merged
// by value, then by index, which gives exactly the first minimum.
func argminScalar(row []float32) (int, float32) {
	inf := float32(math.Inf(1))
	b0, b1, b2, b3 := 0, 1, 2, 3
	s0, s1, s2, s3 := inf, inf, inf, inf
	c := 0
	for ; c+4 <= len(row); c += 4 {
		r := row[c : c+4 : c+4]
		if r[0] < s0 {
			b0, s0 = c, r[0]
		}
		if r[1] < s1 {
			b1, s1 = c+1, r[1]
		}
		if r[2] < s2 {
			b2, s2 = c+2, r[2]
		}
		if r[3] < s3 {
			b3, s3 = c+3, r[3]
		}
	}
	for ; c < len(row); c++ {
		if row[c] < s0 {
			b0, s0 = c, row[c]
		}
	}
	if s1 < s0 || s1 == s0 && b1 < b0 {
		b0, s0 = b1, s1
	}
	if s3 < s2 || s3 == s2 && b3 < b2 {
		b2, s2 = b3, s3
	}
	if s2 < s0 || s2 == s0 && b2 < b0 {
		b0, s0 = b2, s2
	}
	return b0, s0
}

// Sample returns m distinct rows of x drawn at random with the given seed.
func Sample(x faissio.Matrix, m int, seed uint64) faissio.Matrix {
	return sampleRows(x, m, rand.New(rand.NewPCG(seed, 0x73616d706c65)))
}
