package distill

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

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
	a := newAssigner(d, k)
	for it := 0; it < cfg.niter(); it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a.assign(view(x), cent, cfg.Metric, labels, nil)
		clear(sums)
		clear(counts)
		for i := 0; i < n; i++ {
			c := int(labels[i])
			counts[c]++
			s := sums[c*d : (c+1)*d]
			for j, v := range x.Row(i) {
				s[j] += float64(v)
			}
		}
		for c := 0; c < k; c++ {
			if counts[c] == 0 {
				continue
			}
			inv := 1 / float64(counts[c])
			for j := 0; j < d; j++ {
				cent[c*d+j] = float32(sums[c*d+j] * inv)
			}
		}
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

// assigner finds each vector's best centroid a block at a time: one sgemm for
// the block's inner products with all centroids, then a scan per row.
type assigner struct {
	dim, k int
	block  int
	dots   []float32
	norms  []float32
}

func newAssigner(dim, k int) *assigner {
	// Keep the block's score matrix near 16 MiB.
	block := max(1, min(8192, (4<<20)/k))
	return &assigner{dim: dim, k: k, block: block, dots: make([]float32, block*k), norms: make([]float32, k)}
}

// assign writes the best centroid of each vector of v to labels and, when
// score is not nil, its score: the inner product for InnerProduct (largest
// wins), ||c||^2 - 2<x,c> for L2 (smallest wins; add ||x||^2 for the
// distance).
func (a *assigner) assign(v strided, cent []float32, metric faissio.Metric, labels []int32, score []float32) {
	k, d := a.k, a.dim
	if metric == faissio.L2 {
		for c := 0; c < k; c++ {
			var s float32
			for _, x := range cent[c*d : (c+1)*d] {
				s += x * x
			}
			a.norms[c] = s
		}
	}
	for i0 := 0; i0 < v.n; i0 += a.block {
		m := min(a.block, v.n-i0)
		dots := a.dots[:m*k]
		sgemm(false, true, m, k, d, 1, v.data[i0*v.stride:], v.stride, cent, d, 0, dots, k)
		for i := 0; i < m; i++ {
			row := dots[i*k : (i+1)*k]
			best, bs := 0, float32(0)
			if metric == faissio.L2 {
				bs = float32(math.Inf(1))
				for c, dot := range row {
					if s := a.norms[c] - 2*dot; s < bs {
						best, bs = c, s
					}
				}
			} else {
				bs = float32(math.Inf(-1))
				for c, dot := range row {
					if dot > bs {
						best, bs = c, dot
					}
				}
			}
			labels[i0+i] = int32(best)
			if score != nil {
				score[i0+i] = bs
			}
		}
	}
}

// Sample returns m distinct rows of x drawn at random with the given seed.
func Sample(x faissio.Matrix, m int, seed uint64) faissio.Matrix {
	return sampleRows(x, m, rand.New(rand.NewPCG(seed, 0x73616d706c65)))
}
