package distill

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// The speed benchmarks time the three phases of a FAISS-style IVFPQ build
// that SPEED.md compares with FAISS's own (testdata/phase_times.py):
//
//	go test -bench . -run '^$' -benchtime 1x ./distill/
//	DISTILLVQ_SPEED_DOCS=/work/data/glove341k/docs.npy DISTILLVQ_SPEED_NLIST=2337 \
//	    DISTILLVQ_SPEED_M=25 go test -bench . -run '^$' -benchtime 1x -timeout 1h ./distill/
//
// Settings come from the environment: DISTILLVQ_SPEED_DOCS (.npy; default
// the committed testdata/glove20k/docs.npy, skipped when the file is
// missing), DISTILLVQ_SPEED_NLIST (default 4*sqrt(n) capped at n/39, the
// CLI's), DISTILLVQ_SPEED_M (default 25; 0 for IVFFlat), DISTILLVQ_SPEED_NBITS
// (8), DISTILLVQ_SPEED_NITER (25), DISTILLVQ_SPEED_SEED (1234) and
// DISTILLVQ_SPEED_METRIC (ip). Each reports vectors/s: for the k-means
// phases, training vectors times iterations per second; for add, documents
// assigned and encoded per second.

type speedSetup struct {
	docs            faissio.Matrix
	metric          faissio.Metric
	nlist, m, nbits int
	niter           int
	seed            uint64
	// Trained once and shared by the benchmarks that need them.
	cent, books []float32
	residuals   faissio.Matrix
}

var (
	speedOnce sync.Once
	speed     *speedSetup
	speedSkip string
)

func speedEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// loadSpeed reads the data set and settings once per test binary.
func loadSpeed(b *testing.B) *speedSetup {
	speedOnce.Do(func() {
		path := os.Getenv("DISTILLVQ_SPEED_DOCS")
		if path == "" {
			path = filepath.Join("..", "testdata", "glove20k", "docs.npy")
		}
		if _, err := os.Stat(path); err != nil {
			// The embedded set is committed: its absence is a failure.
			b.Fatalf("no speed data set: %v", err)
		}
		docs, err := faissio.ReadVectors(path)
		if err != nil {
			b.Fatalf("reading %s: %v", path, err)
		}
		s := &speedSetup{docs: docs}
		metric := os.Getenv("DISTILLVQ_SPEED_METRIC")
		if metric == "" {
			metric = "ip"
		}
		if s.metric, err = faissio.ParseMetric(metric); err != nil {
			b.Fatal(err)
		}
		defNlist := max(1, min(int(4*math.Sqrt(float64(docs.Rows))), docs.Rows/39))
		s.nlist = speedEnvInt(b, "DISTILLVQ_SPEED_NLIST", defNlist)
		s.m = speedEnvInt(b, "DISTILLVQ_SPEED_M", 25)
		s.nbits = speedEnvInt(b, "DISTILLVQ_SPEED_NBITS", 8)
		s.niter = speedEnvInt(b, "DISTILLVQ_SPEED_NITER", 25)
		s.seed = uint64(speedEnvInt(b, "DISTILLVQ_SPEED_SEED", 1234))
		cfg := Config{Metric: s.metric, Nlist: s.nlist, M: s.m, Nbits: s.nbits, Niter: s.niter}
		if err := cfg.Check(docs.Rows, docs.Cols); err != nil {
			b.Fatal(err)
		}
		b.Logf("speed data %s: n=%d d=%d nlist=%d M=%d nbits=%d niter=%d metric=%s",
			path, docs.Rows, docs.Cols, s.nlist, s.m, s.nbits, s.niter, s.metric)
		speed = s
	})
	if speedSkip != "" {
		b.Skip(speedSkip)
	}
	if speed == nil {
		b.Fatal("speed setup failed earlier")
	}
	return speed
}

func (s *speedSetup) kmeansConfig() KMeansConfig {
	return KMeansConfig{Niter: s.niter, Seed: s.seed, Spherical: s.metric == faissio.InnerProduct, Metric: s.metric}
}

// centroids returns the coarse centroids that the PQ and add phases use:
// those of BenchmarkSpeedKMeans when it ran first, else trained here
// (untimed). The benchmarks run one after another, never concurrently.
func (s *speedSetup) centroids(b *testing.B) []float32 {
	if s.cent == nil {
		cent, err := KMeans(context.Background(), s.docs, s.nlist, s.kmeansConfig())
		if err != nil {
			b.Fatal(err)
		}
		s.cent = cent
	}
	return s.cent
}

// pqResiduals returns the PQ training set: the residuals of 256*2^nbits
// sampled documents to their nearest centroid, as FAISS's
// IndexIVFPQ::train_residual takes them.
func (s *speedSetup) pqResiduals(b *testing.B) faissio.Matrix {
	if s.residuals.Data == nil {
		m := &Model{D: s.docs.Cols, Metric: s.metric, Nlist: s.nlist, Centroids: s.centroids(b)}
		pq := s.docs
		if n := 256 << s.nbits; pq.Rows > n {
			pq = Sample(pq, n, s.seed)
		}
		s.residuals = faissio.Matrix{Rows: pq.Rows, Cols: pq.Cols, Data: make([]float32, pq.Rows*pq.Cols)}
		m.residuals(pq, assign(m, pq), s.residuals.Data)
	}
	return s.residuals
}

// model returns the trained model the add phase encodes with, reusing the
// codebooks of BenchmarkSpeedPQTrain when it ran first.
func (s *speedSetup) model(b *testing.B) *Model {
	m := &Model{D: s.docs.Cols, Metric: s.metric, Nlist: s.nlist, Centroids: s.centroids(b)}
	if s.m == 0 {
		return m
	}
	if s.books == nil {
		books, err := trainCodebooks(context.Background(), s.pqResiduals(b), s.m, s.nbits, s.niter, s.seed, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.books = books
	}
	m.M, m.Nbits, m.Codebooks = s.m, s.nbits, s.books
	return m
}

// cpuSeconds is the process's user+system CPU time so far, all threads
// (OpenBLAS's included).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// timer measures one benchmark's wall and CPU time.
type timer struct {
	wall time.Time
	cpu  float64
}

func startTimer(b *testing.B) timer {
	b.ResetTimer()
	return timer{time.Now(), cpuSeconds()}
}

// report reports the mean wall seconds per operation, vectors/s and the CPU
// seconds per operation: on a machine shared with other work the CPU time
// shows the work done when the wall time is disturbed.
func (t timer) report(b *testing.B, vectorsPerOp int) {
	sec := time.Since(t.wall).Seconds() / float64(b.N)
	b.ReportMetric(sec, "s/op")
	b.ReportMetric(float64(vectorsPerOp)/sec, "vectors/s")
	b.ReportMetric((cpuSeconds()-t.cpu)/float64(b.N), "cpu-s/op")
}

// BenchmarkSpeedKMeans is phase (a): the coarse k-means on FAISS's sample of
// 256 documents per centroid.
func BenchmarkSpeedKMeans(b *testing.B) {
	s := loadSpeed(b)
	sample := min(s.docs.Rows, 256*s.nlist)
	t := startTimer(b)
	for i := 0; i < b.N; i++ {
		cent, err := KMeans(context.Background(), s.docs, s.nlist, s.kmeansConfig())
		if err != nil {
			b.Fatal(err)
		}
		if s.cent == nil {
			s.cent = cent
		}
	}
	t.report(b, sample*s.niter)
}

// BenchmarkSpeedPQTrain is phase (b): the M sub-space k-means on the
// residuals of 256*2^nbits sampled documents.
func BenchmarkSpeedPQTrain(b *testing.B) {
	s := loadSpeed(b)
	if s.m == 0 {
		b.Skip("IVFFlat: no PQ")
	}
	res := s.pqResiduals(b)
	t := startTimer(b)
	for i := 0; i < b.N; i++ {
		books, err := trainCodebooks(context.Background(), res, s.m, s.nbits, s.niter, s.seed, nil)
		if err != nil {
			b.Fatal(err)
		}
		if s.books == nil {
			s.books = books
		}
	}
	t.report(b, res.Rows*s.niter)
}

// BenchmarkSpeedAdd is phase (c): every document's list and PQ code (or raw
// vector, for IVFFlat), in the blocks the CLI's encodeAll uses.
func BenchmarkSpeedAdd(b *testing.B) {
	s := loadSpeed(b)
	model := s.model(b)
	t := startTimer(b)
	for i := 0; i < b.N; i++ {
		const block = 1 << 16
		for r := 0; r < s.docs.Rows; r += block {
			x := s.docs.Slice(r, min(r+block, s.docs.Rows))
			encode(model, x, assign(model, x))
		}
	}
	t.report(b, s.docs.Rows)
}

// TestArgminIsFirstMinimum checks the arg-min, the vector kernel's (where
// the machine has it) and the four-lane scalar one, against a plain scan:
// the first minimum, NaNs skipped, index 0 when nothing is below +Inf.
func TestArgminIsFirstMinimum(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	t.Logf("vector kernel: %v", haveVectorArgmin())
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 255, 256, 2337} {
		for trial := 0; trial < 30; trial++ {
			row := make([]float32, n)
			for i := range row {
				switch trial % 6 {
				case 0:
					row[i] = float32(rng.NormFloat64())
				case 1:
					row[i] = float32(rng.IntN(3)) // many ties
				case 2:
					row[i] = []float32{inf, nan, 1, -inf}[rng.IntN(4)]
				case 3:
					row[i] = []float32{inf, nan}[rng.IntN(2)]
				case 4:
					row[i] = []float32{0, negZero, 1, nan}[rng.IntN(4)]
				case 5:
					row[i] = 10 + float32(rng.IntN(5))
					if i == n-1-trial%3 {
						row[i] = 1 // the minimum in the tail the kernel leaves
					}
				}
			}
			want, ws := 0, inf
			for i, v := range row {
				if v < ws {
					want, ws = i, v
				}
			}
			got, gs := argmin(row)
			if got != want || math.Float32bits(gs) != math.Float32bits(row0(row, want, ws)) {
				t.Fatalf("n=%d trial %d: argmin = %d (%v), want %d (%v) in %v", n, trial, got, gs, want, ws, row)
			}
			if got, gs := argminScalar(row); got != want || gs != ws {
				t.Fatalf("n=%d trial %d: argminScalar = %d (%v), want %d (%v) in %v", n, trial, got, gs, want, ws, row)
			}
		}
	}
}

// row0 is the value argmin returns for index i: the element itself (its
// sign, for a zero), or +Inf when nothing is below it.
func row0(row []float32, i int, s float32) float32 {
	if len(row) == 0 || s > math.MaxFloat32 {
		return s
	}
	return row[i]
}

// TestAssignSameForAnyThreadCount checks that the assignment, for the BLAS
// blocks (coarse centroids) and the per-goroutine ones (PQ sub-spaces),
// does not depend on the number of workers.
func TestAssignSameForAnyThreadCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ n, d, k int }{{3000, 100, 700}, {5000, 4, 256}, {777, 5, 16}} {
		x := randMatrix(rng, c.n, c.d)
		cent := randMatrix(rng, c.k, c.d).Data
		for _, metric := range []faissio.Metric{faissio.L2, faissio.InnerProduct} {
			var ref []int32
			var refScore []float32
			for _, w := range []int{1, 2, 3} {
				a := newAssignerThreads(c.d, c.k, w)
				labels, score := make([]int32, c.n), make([]float32, c.n)
				a.assign(context.Background(), view(x), cent, metric, labels, score)
				if ref == nil {
					ref, refScore = labels, score
					continue
				}
				if !slices.Equal(labels, ref) || !slices.Equal(score, refScore) {
					t.Errorf("n=%d d=%d k=%d %v: %d workers assign differently from 1", c.n, c.d, c.k, metric, w)
				}
			}
		}
	}
}

// TestPQSameForAnyThreadCount checks that PQ training (one sub-space per
// goroutine) and encoding (one block per goroutine) give the same codebooks
// and codes with one core as with several.
func TestPQSameForAnyThreadCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const n, d, M, nbits, nlist = 9000, 20, 5, 6, 8
	x := randMatrix(rng, n, d)
	run := func(procs int) ([]float32, []byte) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		books, err := trainCodebooks(context.Background(), x, M, nbits, 6, 77, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := &Model{D: d, Metric: faissio.L2, Nlist: nlist, Centroids: randMatrix(rng, nlist, d).Data, M: M, Nbits: nbits, Codebooks: books}
		return books, encode(m, x, assign(m, x))
	}
	cent := rng.Uint64()
	rng = rand.New(rand.NewPCG(cent, 1))
	b1, c1 := run(1)
	rng = rand.New(rand.NewPCG(cent, 1))
	b3, c3 := run(3)
	if !slices.Equal(b1, b3) {
		t.Error("codebooks differ between 1 and 3 threads")
	}
	if !slices.Equal(c1, c3) {
		t.Error("codes differ between 1 and 3 threads")
	}
}
