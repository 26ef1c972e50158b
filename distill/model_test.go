package distill

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// randMatrix is for checks of exactness (a kernel against brute force), never
// of quality: those use real data.
func randMatrix(rng *rand.Rand, n, d int) faissio.Matrix {
	m := faissio.Matrix{Rows: n, Cols: d, Data: make([]float32, n*d)}
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64())
	}
	return m
}

func TestPackCodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for nbits := 1; nbits <= 8; nbits++ {
		for _, M := range []int{1, 3, 8, 13} {
			idx := make([]uint8, M)
			for i := range idx {
				idx[i] = uint8(rng.IntN(1 << nbits))
			}
			code := make([]byte, (M*nbits+7)/8)
			packCode(code, idx, nbits)
			got := make([]uint8, M)
			unpackCode(code, got, nbits)
			if !slices.Equal(got, idx) {
				t.Fatalf("nbits %d M %d: unpacked %v, packed %v", nbits, M, got, idx)
			}
		}
	}
	// FAISS packs LSB first: two 4-bit codes 0x3, 0xA make the byte 0xA3.
	code := make([]byte, 1)
	packCode(code, []uint8{0x3, 0xA}, 4)
	if code[0] != 0xA3 {
		t.Fatalf("packed 4-bit codes 3,10 as %#x, want 0xa3", code[0])
	}
}

func bruteNearest(x []float32, cent []float32, d int, metric faissio.Metric) int {
	best, bs := -1, math.Inf(1)
	for c := 0; c*d < len(cent); c++ {
		var s float64
		for j := 0; j < d; j++ {
			if metric == faissio.L2 {
				df := float64(x[j] - cent[c*d+j])
				s += df * df
			} else {
				s -= float64(x[j]) * float64(cent[c*d+j])
			}
		}
		if s < bs {
			best, bs = c, s
		}
	}
	return best
}

func TestAssignAndEncodeMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d, nlist = 500, 24, 7
	x := randMatrix(rng, n, d)
	for _, metric := range []faissio.Metric{faissio.L2, faissio.InnerProduct} {
		for _, nbits := range []int{3, 8} {
			m := &Model{D: d, Metric: metric, Nlist: nlist, Centroids: randMatrix(rng, nlist, d).Data,
				M: 6, Nbits: nbits, Codebooks: randMatrix(rng, 1<<nbits, d).Data}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			lists := assign(m, x)
			codes := encode(m, x, lists)
			idx := make([]uint8, m.M)
			dsub, ksub := m.Dsub(), m.Ksub()
			mismatches := 0
			for i := 0; i < n; i++ {
				if want := bruteNearest(x.Row(i), m.Centroids, d, metric); int(lists[i]) != want {
					mismatches++
				}
				r := make([]float32, d)
				for j := range r {
					r[j] = x.Row(i)[j] - m.Centroids[int(lists[i])*d+j]
				}
				unpackCode(codes[i*m.CodeSize():(i+1)*m.CodeSize()], idx, nbits)
				for s := 0; s < m.M; s++ {
					want := bruteNearest(r[s*dsub:(s+1)*dsub], m.Codebooks[s*ksub*dsub:(s+1)*ksub*dsub], dsub, faissio.L2)
					if int(idx[s]) != want {
						mismatches++
					}
				}
			}
			// Float32 sums in a different order may flip a near tie; nothing more.
			if mismatches > 2 {
				t.Errorf("%v nbits %d: %d assignments differ from brute force", metric, nbits, mismatches)
			}
		}
	}
}

func TestKMeansDeterministicAndImproves(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Well separated blobs: k-means must find a partition far better than
	// its random start, and use every centroid.
	const k, d, per = 16, 8, 60
	x := faissio.Matrix{Rows: k * per, Cols: d, Data: make([]float32, k*per*d)}
	for c := 0; c < k; c++ {
		center := randMatrix(rng, 1, d).Data
		for i := 0; i < per; i++ {
			for j := 0; j < d; j++ {
				x.Data[(c*per+i)*d+j] = 10*center[j] + float32(rng.NormFloat64())
			}
		}
	}
	cfg := KMeansConfig{Seed: 42, Metric: faissio.L2}
	a, err := KMeans(context.Background(), x, k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := KMeans(context.Background(), x, k, cfg)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different centroids")
	}
	sse := func(cent []float32) float64 {
		var s float64
		for i := 0; i < x.Rows; i++ {
			c := bruteNearest(x.Row(i), cent, d, faissio.L2)
			for j := 0; j < d; j++ {
				df := float64(x.Row(i)[j] - cent[c*d+j])
				s += df * df
			}
		}
		return s
	}
	// Lloyd's iterations never raise the objective: the same seed with more
	// iterations continues the same trajectory.
	prev := math.Inf(1)
	for _, it := range []int{1, 3, 10, 25} {
		c, _ := KMeans(context.Background(), x, k, KMeansConfig{Seed: 42, Niter: it, Metric: faissio.L2})
		got := sse(c)
		if got > prev*(1+1e-6) {
			t.Errorf("SSE rose to %.1f after %d iterations from %.1f", got, it, prev)
		}
		prev = got
	}
	if first, _ := KMeans(context.Background(), x, k, KMeansConfig{Seed: 42, Niter: 1, Metric: faissio.L2}); sse(a) >= sse(first) {
		t.Errorf("25 iterations did not improve on 1")
	}
}

func TestConfigValidate(t *testing.T) {
	x := faissio.Matrix{Rows: 300, Cols: 10, Data: make([]float32, 3000)}
	for _, c := range []Config{
		{Nlist: 0},
		{Nlist: 301},
		{Nlist: 4, M: 3, Nbits: 8},
		{Nlist: 4, M: 5, Nbits: 9},
		{Nlist: 4, M: 5, Nbits: 0},
		{Nlist: 4, M: 5, Nbits: 8, TrainSize: 100},
		{Nlist: 4, TrainSize: 2},
	} {
		if _, err := TrainKMeans(context.Background(), x, c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// weightedError is (u-û)ᵀW(u-û) in float64.
func weightedError(m *Model, u []float32, idx []uint8) float64 {
	d, dsub, ksub := m.D, m.Dsub(), m.Ksub()
	e := make([]float64, d)
	for s, k := range idx {
		for a := 0; a < dsub; a++ {
			e[s*dsub+a] = float64(u[s*dsub+a] - m.Codebooks[(s*ksub+int(k))*dsub+a])
		}
	}
	var v float64
	for a := 0; a < d; a++ {
		for b := 0; b < d; b++ {
			v += e[a] * float64(m.EncodeWeight[a*d+b]) * e[b]
		}
	}
	return v
}

// TestWeightedEncoding checks the query-weighted encoder: with one
// sub-quantizer it finds the exact weighted optimum, and with several it
// never ends worse than FAISS's nearest-codeword codes for any vector.
func TestWeightedEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const n, d = 300, 12
	x := randMatrix(rng, n, d)
	q := randMatrix(rng, 400, d)
	for i := 0; i < q.Rows; i++ { // an anisotropic query distribution
		q.Row(i)[0] *= 4
		q.Row(i)[5] += q.Row(i)[0]
	}
	for _, M := range []int{1, 4} {
		m := &Model{D: d, Metric: faissio.InnerProduct, Nlist: 1, Centroids: make([]float32, d),
			M: M, Nbits: 4, Codebooks: randMatrix(rng, 16, d).Data}
		lists := make([]int64, n)
		plain := make([]uint8, n*M)
		m.encodeIndices(context.Background(), x, lists, plain, weightedPasses)
		m.EncodeWeight = must(SecondMoment(context.Background(), q))
		weighted := make([]uint8, n*M)
		m.encodeIndices(context.Background(), x, lists, weighted, weightedPasses)
		better := 0
		for i := 0; i < n; i++ {
			ew, ep := weightedError(m, x.Row(i), weighted[i*M:(i+1)*M]), weightedError(m, x.Row(i), plain[i*M:(i+1)*M])
			if ew > ep*(1+1e-5)+1e-6 {
				t.Fatalf("M=%d row %d: weighted error %.6g above the plain codes' %.6g", M, i, ew, ep)
			}
			if ew < ep*(1-1e-5) {
				better++
			}
			if M == 1 {
				best := math.Inf(1)
				for k := 0; k < 16; k++ {
					best = math.Min(best, weightedError(m, x.Row(i), []uint8{uint8(k)}))
				}
				if ew > best*(1+1e-4)+1e-6 {
					t.Fatalf("row %d: weighted error %.6g, exact optimum %.6g", i, ew, best)
				}
			}
		}
		if better < n/10 {
			t.Errorf("M=%d: weighting improved only %d of %d codes", M, better, n)
		}
	}
}
