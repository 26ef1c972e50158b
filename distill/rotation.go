package distill

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Learning the rotation (DistillConfig.LearnRotation). An OPQ index
// searches x' = R x for documents and queries alike, R orthonormal, so the
// rotation is one more parameter of the students: with ŷ the
// reconstruction of a candidate in the rotated space (centroid plus PQ
// codewords) and q' = R q, a student score is s = q'·ŷ (inner product) or
// -||q' - ŷ||² (L2), so ∂s/∂R = (∂s/∂q') qᵀ with ∂s/∂q' = ŷ, or 2(ŷ - q').
// Summed over a query's candidates and then the queries, the gradient is
// G = Σ_q p_q qᵀ with p_q = Σ_c dL/ds_c ∂s_c/∂q', that is Pᵀ·Q, one sgemm
// per chunk of queries; the IVF student adds the same with the centroids
// it scores. The codes are held fixed between refreshes, as for the
// codebooks (straight-through), so ŷ does not move with R. Adding the
// documents' side of the straight-through estimator (ŷ following R x, so
// that only the quantization error turns) raised the held-out recall on
// GloVe 100k (.5462 against .5400) but lowered R10@10 of the evaluation
// queries at nprobe 1 / 4 / 16 to .3322 / .4863 / .5608 against .3340 /
// .4932 / .5658 without it: it is not used.
//
// The step keeps R orthonormal with the Cayley retraction: Adam turns G
// into a direction D (its first moment per element, its second moment one
// number for the whole matrix, so that the direction does not depend on
// the basis the coordinates are written in: an element-wise second moment
// rescales G coordinate by coordinate and turns the step away from the
// gradient's), A = D Rᵀ - R Dᵀ is skew-symmetric, and
//
//	R ← (I + η/2 A)⁻¹ (I - η/2 A) R = 2 (I + η/2 A)⁻¹ R - R,
//
// exactly orthonormal for any η (the Cayley transform of a skew matrix is
// orthogonal), to first order R - η (D - R Dᵀ R): the descent direction
// projected on the manifold. It is one LU factorisation and solve of a D×D
// system per step, in float64 (gonum's LAPACK, whose blocked products
// split the work the same way for any number of threads): 0.14 s at
// D = 512 on this machine's shared cores, nothing at D = 100. Rounding R
// back to float32 after each step moves it off orthonormality by float32
// rounding only: on GloVe 100k, after 6 epochs, max |RRᵀ - I| was
// 1.2e-6, FAISS's own rotation's error.

// DefaultLRRotation is DistillConfig.LRRotation when 0: the Cayley step
// size per unit of Adam direction, under the same warm-up and linear decay
// as the other parameters. On GloVe 100k (IVFPQ nlist 256, M 20) R10@10 at
// nprobe 1 / 4 / 16 was .3352 / .4940 / .5688 at 3e-4 and .3340 / .4932 /
// .5658 at 1e-3, against .3292 / .4877 / .5669 with the rotation frozen;
// 3e-3 validated worse than 1e-3 from epoch 2 on (all with the
// element-wise second moment, on the machine of 2026-12-03). With the
// whole-matrix second moment (2026-12-04, another machine, against the
// frozen rotation built there, nprobe 1 / 4 / nlist/16): 30k x 512 .3100 /
// .4827 / .5344 against .3091 / .4683 / .5217 (element-wise, 2026-12-03:
// .3028 / .4735 / .5262 against .3091 / .4782 / .5313); GloVe 100k .3355 /
// .4932 / .5640 against .3373 / .4901 / .5624. On the means of seeds 1-3
// at nlist/16 a larger step helps the 512-d set and hurts GloVe: 512-d
// frozen .5349, learned .5426 / .5446 / .5463 / .5453 at 3e-4 / 1e-3 /
// 2e-3 / 3e-3; GloVe frozen .5692, learned .5688 at 3e-4 and .5634 at
// 2e-3. The default is the step that does not lose on either.
const DefaultLRRotation = 3e-4

// rotationLearner holds the rotation being learned and its optimiser.
type rotationLearner struct {
	d   int
	R   []float32 // current rotation, D×D row-major, for the products
	opt *adam
	lr  float64
	dir []float64 // Adam's direction, D×D
}

func newRotationLearner(init []float32, d int, lr float64) *rotationLearner {
	r := &rotationLearner{d: d, R: make([]float32, d*d), opt: newAdamMoments(d*d, 1, lr), lr: lr, dir: make([]float64, d*d)}
	if init != nil {
		copy(r.R, init)
	} else {
		for i := range d {
			r.R[i*d+i] = 1
		}
	}
	return r
}

// step moves R against the gradient g (D×D, ∂L/∂R) by the Cayley
// retraction, with the learning rate scaled by scale.
func (r *rotationLearner) step(g []float64, scale float64) {
	eta := r.lr * scale
	r.opt.matrixDirection(g, r.dir)
	if eta == 0 {
		return
	}
	d := r.d
	R := mat.NewDense(d, d, nil)
	for i, v := range r.R {
		R.RawMatrix().Data[i] = float64(v)
	}
	D := mat.NewDense(d, d, r.dir)
	// X = D Rᵀ; A = X - Xᵀ; M = I + η/2 A.
	var X mat.Dense
	X.Mul(D, R.T())
	M := mat.NewDense(d, d, nil)
	xd, md := X.RawMatrix().Data, M.RawMatrix().Data
	h := eta / 2
	for i := range d {
		for j := range d {
			md[i*d+j] = h * (xd[i*d+j] - xd[j*d+i])
		}
		md[i*d+i] += 1
	}
	var lu mat.LU
	lu.Factorize(M)
	var S mat.Dense
	if err := lu.SolveTo(&S, false, R); err != nil {
		// I + η/2 A has eigenvalues 1 ± iθ: never singular.
		panic(fmt.Sprintf("distill: Cayley step: %v", err))
	}
	sd, rd := S.RawMatrix().Data, R.RawMatrix().Data
	for i := range r.R {
		r.R[i] = float32(2*sd[i] - rd[i])
	}
}

// matrixDirection updates the moments with the gradient g and writes
// Adam's step direction, the bias-corrected m / (√v + ε), into out (the
// update step would subtract lr times it), with one second moment v for
// all of g, the mean of its squares (a's only one, v[0]).
func (a *adam) matrixDirection(g, out []float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	var ss float64
	for _, gi := range g {
		ss += gi * gi
	}
	ss /= float64(len(g))
	a.v[0] = a.b2*a.v[0] + (1-a.b2)*ss
	den := math.Sqrt(a.v[0]/c2) + a.eps
	for i, gi := range g {
		a.m[i] = a.b1*a.m[i] + (1-a.b1)*gi
		out[i] = (a.m[i] / c1) / den
	}
}

// rotateRows writes y = R x for each of the n rows x of x (D floats each)
// into out, that is x Rᵀ, in blocks of rotationBlock rows each one sgemm:
// the very products faiss.ApplyRotation computes, so that the documents
// rotated here for training carry the bits of those the build rotates for
// export.
func rotateRows(R, x []float32, n, d int, out []float32) {
	for i := 0; i < n; i += rotationBlock {
		m := min(rotationBlock, n-i)
		sgemm(false, true, m, d, d, 1, x[i*d:], d, R, d, 0, out[i*d:], d)
	}
}

// rotationBlock is faiss.RotationBlock, the rows ApplyRotation multiplies
// at once; encodeIndices's blocks are the same size, so each is rotated by
// one product.
const rotationBlock = 4096
