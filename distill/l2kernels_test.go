package distill

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The codeword kernels give the bits of the plain loops, for sub-vector
// lengths the SSE kernel takes (multiples of 4) and ones it leaves to Go.
func TestCodewordKernelsAreTheLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ M, ksub, dsub int }{{1, 16, 4}, {64, 256, 12}, {16, 256, 8}, {8, 32, 32}, {25, 256, 4}, {3, 16, 3}, {5, 64, 2}} {
		cb := make([]float32, c.M*c.ksub*c.dsub)
		for i := range cb {
			cb[i] = float32(rng.NormFloat64())
		}
		r := make([]float32, c.M*c.dsub)
		for i := range r {
			r[i] = float32(rng.NormFloat64())
		}
		code := make([]uint8, c.M)
		for s := range code {
			code[s] = uint8(rng.IntN(c.ksub))
		}
		wantR, gotR := slices.Clone(r), slices.Clone(r)
		wantG, gotG := slices.Clone(cb), slices.Clone(cb)
		alpha := float32(rng.NormFloat64())
		for s, cw := range code {
			for k := range c.dsub {
				wantR[s*c.dsub+k] -= cb[(s*c.ksub+int(cw))*c.dsub+k]
				wantG[(s*c.ksub+int(cw))*c.dsub+k] += alpha * r[s*c.dsub+k]
			}
		}
		subCodewords(gotR, cb, code, c.ksub, c.dsub)
		addCodewords(gotG, r, alpha, code, c.ksub, c.dsub)
		for i := range wantR {
			if math.Float32bits(gotR[i]) != math.Float32bits(wantR[i]) {
				t.Fatalf("%+v: subCodewords r[%d] = %v, want %v", c, i, gotR[i], wantR[i])
			}
		}
		for i := range wantG {
			if math.Float32bits(gotG[i]) != math.Float32bits(wantG[i]) {
				t.Fatalf("%+v: addCodewords gc[%d] = %v, want %v", c, i, gotG[i], wantG[i])
			}
		}
	}
}

// l2Sq agrees with a float64 sum at every length, through the SSE kernel
// (16 and up, with tails) and the Go loop, and reads only len(q) entries.
func TestL2SqIsTheSquaredDistance(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := 0; n <= 80; n++ {
		for _, size := range []int{n, n + 688} {
			q, x := make([]float32, size), make([]float32, size+3)
			var want float64
			for i := range q {
				q[i], x[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
				d := float64(q[i]) - float64(x[i])
				want += d * d
			}
			x[size], x[size+1], x[size+2] = 1e30, 1e30, 1e30
			if got := float64(l2Sq(q, x)); math.Abs(got-want) > 1e-5*want+1e-6 {
				t.Fatalf("length %d: l2Sq %v, want %v", size, got, want)
			}
		}
	}
}

func BenchmarkL2Sq(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	q, x := make([]float32, 768), make([]float32, 768)
	for i := range q {
		q[i], x[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	var s float32
	for range b.N {
		s += l2Sq(q, x)
	}
	_ = s
}
