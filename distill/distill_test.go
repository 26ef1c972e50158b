package distill

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// gradProblem is a small distillation state whose loss can be evaluated at
// perturbed parameters with the codes held fixed, as in one training step.
func gradProblem(metric faissio.Metric, lossName, ivfLoss string) (*trainer, []float32, []candidate) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, d, nlist, M, nbits = 60, 12, 5, 3, 2
	docs := randMatrix(rng, n, d)
	m := &Model{D: d, Metric: metric, Nlist: nlist, Centroids: randMatrix(rng, nlist, d).Data,
		M: M, Nbits: nbits, Codebooks: randMatrix(rng, 1<<nbits, d).Data}
	for i := range m.Codebooks {
		m.Codebooks[i] *= 0.5
	}
	loss := lossFuncs[must(ParseLoss(lossName))]
	t := newTrainer(DistillConfig{IVFLoss: must(ParseIVFLoss(ivfLoss))}, docs, m, assign(m, docs))
	t.loss, t.temp, t.ivfW = loss, 0.7, 0.3
	must(0, t.refreshCodes(context.Background()))
	q := randMatrix(rng, 1, d).Data
	var cands []candidate
	for i := 0; i < 25; i++ {
		doc := int32(rng.IntN(n))
		cands = append(cands, candidate{doc, Score(metric, q, docs.Row(int(doc)))})
	}
	return t, q, cands
}

// objective is the weighted loss of one query at the current parameters.
func (t *trainer) objective(q []float32, cands []candidate) float64 {
	g := newWorkerGrad(t.model, t.rot != nil)
	g.reset()
	t.queryGrad(q, cands, g)
	return g.lossPQ + t.ivfW*g.lossIVF
}

// TestGradientsMatchFiniteDifferences checks the hand-written gradients of
// every loss, both metrics and both IVF losses against central differences
// of the loss, with the PQ codes fixed (the straight-through estimator's
// backward pass is exact for fixed codes).
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		for _, lossName := range lossNames {
			for _, ivfLoss := range []string{"list", "doc"} {
				t.Run(fmt.Sprintf("%s/%s/%s", metric, lossName, ivfLoss), func(t *testing.T) {
					tr, q, cands := gradProblem(metric, lossName, ivfLoss)
					g := newWorkerGrad(tr.model, false)
					g.reset()
					tr.queryGrad(q, cands, g)
					obj := func() float64 { return tr.objective(q, cands) }
					checkFiniteDifferences(t, "centroid", tr.model.Centroids, obj, func(i int) float64 {
						pq, ivf := tr.centroidGrad([]*workerGrad{g}, i)
						return pq + tr.ivfW*ivf
					}, 1e-3)
					checkFiniteDifferences(t, "codeword", tr.model.Codebooks, obj, func(i int) float64 { return float64(g.gC[i]) }, 1e-3)
				})
			}
		}
	}
}

// TestRotationGradientMatchesFiniteDifferences checks the learned
// rotation's gradient (rotation.go) against central differences of the
// loss in every entry of R, for both metrics, both IVF losses and two
// losses, the codes fixed as in a step: the students score R q against
// reconstructions in the rotated space.
func TestRotationGradientMatchesFiniteDifferences(t *testing.T) {
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		for _, lossName := range []string{"listnet", "mse"} {
			for _, ivfLoss := range []string{"list", "doc"} {
				t.Run(fmt.Sprintf("%s/%s/%s", metric, lossName, ivfLoss), func(t *testing.T) {
					tr, q, cands := gradProblem(metric, lossName, ivfLoss)
					d := tr.d
					tr.rot = newRotationLearner(randomRotation(d, 3), d, 0)
					must(0, tr.refreshCodes(context.Background()))
					g := newWorkerGrad(tr.model, true)
					g.reset()
					tr.queryGrad(q, cands, g)
					var norm float64
					for i := range g.gR {
						norm = math.Max(norm, math.Abs(g.gR[i]+tr.ivfW*g.gRivf[i]))
					}
					if norm == 0 {
						t.Fatal("the rotation's gradient is zero")
					}
					checkFiniteDifferences(t, "rotation", tr.rot.R, func() float64 { return tr.objective(q, cands) },
						func(i int) float64 { return g.gR[i] + tr.ivfW*g.gRivf[i] }, 1e-3*norm)
				})
			}
		}
	}
}

// checkFiniteDifferences compares analytic(i), the gradient of objective
// in p[i], with its central difference, within abs + 2% of it; it reports
// the first entry that differs.
func checkFiniteDifferences(t *testing.T, name string, p []float32, objective func() float64, analytic func(i int) float64, abs float64) {
	t.Helper()
	for i := range p {
		old := p[i]
		const h = 1e-2
		p[i] = old + h
		up := objective()
		p[i] = old - h
		down := objective()
		p[i] = old
		num := (up - down) / (2 * h)
		if a := analytic(i); math.Abs(num-a) > abs+0.02*math.Abs(num) {
			t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g", name, i, a, num)
			return
		}
	}
}

// randomRotation is a d×d orthonormal matrix: the Cayley transform of a
// random skew-symmetric one.
func randomRotation(d int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	r := newRotationLearner(nil, d, 1)
	g := make([]float64, d*d)
	for i := range g {
		g[i] = rng.NormFloat64()
	}
	r.step(g, 1)
	return r.R
}

// TestCayleyStepKeepsRotationOrthonormal takes many large steps with
// random gradients from FAISS-like starting points and checks that R
// stays orthonormal to float32 rounding, and that a step moves it.
func TestCayleyStepKeepsRotationOrthonormal(t *testing.T) {
	const d = 24
	rng := rand.New(rand.NewPCG(5, 6))
	r := newRotationLearner(randomRotation(d, 4), d, 0.05)
	before := slices.Clone(r.R)
	g := make([]float64, d*d)
	for range 300 {
		for i := range g {
			g[i] = rng.NormFloat64()
		}
		r.step(g, 1)
	}
	if e := faissio.OrthonormalityError(r.R, d); e > 1e-5 {
		t.Errorf("after 300 Cayley steps max |RRᵀ-I| = %.3g", e)
	}
	var moved float64
	for i := range before {
		moved = math.Max(moved, math.Abs(float64(r.R[i]-before[i])))
	}
	if moved < 0.05 {
		t.Errorf("300 steps moved R by at most %.3g", moved)
	}
}

// TestLossGradientsAreExact checks each loss's dL/ds alone, in float64
// terms, against finite differences.
func TestLossGradientsAreExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	n := 12
	tt, s := make([]float32, n), make([]float32, n)
	for i := range s {
		tt[i], s[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	for i, loss := range lossFuncs {
		name := lossNames[i]
		grad := make([]float64, n)
		loss(tt, s, 0.5, grad)
		for j := range s {
			old := s[j]
			const h = 1e-2
			s[j] = old + h
			up := loss(tt, s, 0.5, make([]float64, n))
			s[j] = old - h
			down := loss(tt, s, 0.5, make([]float64, n))
			s[j] = old
			num := (up - down) / (2 * h)
			if math.Abs(num-grad[j]) > 1e-4+1e-2*math.Abs(num) {
				t.Errorf("%s: dL/ds[%d] = %.6g, finite difference %.6g", name, j, grad[j], num)
			}
		}
	}
}

// TestDistillImprovesRecallOnGloVe is the small CI-time check on real data:
// distillation from k-means must not lower, and should raise, the held-out
// recall of an IVFPQ index on the embedded GloVe set.
func TestDistillImprovesRecallOnGloVe(t *testing.T) {
	docs, queries, eval := glove20k(t, "docs"), glove20k(t, "train-queries"), glove20k(t, "queries")
	cfg := Config{Metric: faissio.InnerProduct, Nlist: 64, M: 10, Nbits: 8, Seed: 1}
	if testing.Short() || os.Getenv("CI_FAST") != "" {
		cfg.Niter = 10
	}
	init, err := TrainKMeans(context.Background(), docs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists := assign(init, docs)
	learned, curve, err := Distill(context.Background(), docs, init, lists, DistillConfig{Queries: queries, Epochs: 4, Val: -1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(curve) != 4 {
		t.Fatalf("curve has %d epochs, want 4", len(curve))
	}
	truth := exactTopK(docs, eval, 10, faissio.InnerProduct, nil)
	before := searchRecall(init, docs, lists, eval, truth, 4)
	after := searchRecall(learned, docs, lists, eval, truth, 4)
	t.Logf("R10@10 at nprobe 4: k-means %.4f, distilled %.4f", before, after)
	if after < before+0.005 {
		t.Errorf("distillation did not raise recall: %.4f -> %.4f", before, after)
	}
}

// TestDistillLearnsRotation learns the rotation in front of an IVFPQ
// index on the embedded GloVe set, from the identity: the rotation must
// stay orthonormal (max |RRᵀ-I| < 1e-4), move, and not lose recall at
// nprobe 4 against the same distillation with the rotation frozen.
func TestDistillLearnsRotation(t *testing.T) {
	docs, queries, eval := glove20k(t, "docs"), glove20k(t, "train-queries"), glove20k(t, "queries")
	docs = docs.Slice(0, 10000)
	init, err := TrainKMeans(context.Background(), docs, Config{Metric: faissio.InnerProduct, Nlist: 32, M: 10, Nbits: 8, Seed: 1, Niter: 10})
	if err != nil {
		t.Fatal(err)
	}
	lists := assign(init, docs)
	cfg := DistillConfig{Queries: queries, Epochs: 2, Val: -1, PseudoQueries: 2000, TopK: 100, InBatch: 100, Seed: 1}
	frozen, _, err := Distill(context.Background(), docs, init, lists, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LearnRotation = true
	learned, _, err := Distill(context.Background(), docs, init, lists, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := docs.Cols
	R := learned.Rotation
	if len(R) != d*d {
		t.Fatalf("the model carries %d rotation values, want %d", len(R), d*d)
	}
	if e := faissio.OrthonormalityError(R, d); e > 1e-4 {
		t.Errorf("learned rotation: max |RRᵀ-I| = %.3g", e)
	}
	var moved float64
	for i := range d {
		for j := range d {
			v := float64(R[i*d+j])
			if i == j {
				v--
			}
			moved = math.Max(moved, math.Abs(v))
		}
	}
	if moved < 1e-3 {
		t.Errorf("the rotation moved by at most %.3g from the identity", moved)
	}
	rotate := func(x faissio.Matrix) faissio.Matrix {
		y := faissio.Matrix{Rows: x.Rows, Cols: d, Data: make([]float32, len(x.Data))}
		rotateRows(R, x.Data, x.Rows, d, y.Data)
		return y
	}
	truth := exactTopK(docs, eval, 10, faissio.InnerProduct, nil)
	plain := *learned
	plain.Rotation = nil
	before := searchRecall(frozen, docs, lists, eval, truth, 4)
	after := searchRecall(&plain, rotate(docs), lists, rotate(eval), truth, 4)
	t.Logf("R10@10 at nprobe 4: rotation frozen %.4f, learned %.4f (moved %.3g)", before, after, moved)
	if after < before-0.01 {
		t.Errorf("learning the rotation lost recall: %.4f -> %.4f", before, after)
	}
}

// searchRecall searches model as FAISS's IVFPQ would, with the documents in
// the given lists, and returns the 10-recall@10 against truth.
func searchRecall(m *Model, docs faissio.Matrix, lists []int64, q faissio.Matrix, truth *Teacher, nprobe int) float64 {
	t := newTrainer(DistillConfig{ValNprobe: nprobe}, docs, m, lists)
	must(0, t.refreshCodes(context.Background()))
	val := make([]int, q.Rows)
	for i := range val {
		val[i] = i
	}
	return t.valRecallNoCtx(q, val, truth, nil)
}

// TestDistillSiftsmallL2 checks the L2 path on siftsmall (skipped when
// ../shared is absent): documents drawn as pseudo-queries (with held-out
// ones choosing the epoch), evaluated on the real queries. Over nprobe 1, 4
// and 16 the distilled index must reach at least the k-means index's mean
// recall, and lose no more than 0.01 at any one of them (100 queries:
// one query's hit is 0.001).
func TestDistillSiftsmallL2(t *testing.T) {
	docs, err := faissio.ReadVectors("../../shared/data/siftsmall/siftsmall_base.fvecs")
	if err != nil {
		t.Skip("siftsmall not found beside the checkout: ", err)
	}
	eval, err := faissio.ReadVectors("../../shared/data/siftsmall/siftsmall_query.fvecs")
	if err != nil {
		t.Fatal(err)
	}
	init, err := TrainKMeans(context.Background(), docs, Config{Metric: faissio.L2, Nlist: 64, M: 16, Nbits: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	lists := assign(init, docs)
	learned, _, err := Distill(context.Background(), docs, init, lists, DistillConfig{PseudoQueries: 2000, Epochs: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	truth := exactTopK(docs, eval, 10, faissio.L2, nil)
	var sumBefore, sumAfter float64
	for _, nprobe := range []int{1, 4, 16} {
		before := searchRecall(init, docs, lists, eval, truth, nprobe)
		after := searchRecall(learned, docs, lists, eval, truth, nprobe)
		t.Logf("nprobe %d: R10@10 k-means %.4f, distilled %.4f", nprobe, before, after)
		if after < before-0.01 {
			t.Errorf("nprobe %d: distillation lowered recall %.4f -> %.4f", nprobe, before, after)
		}
		sumBefore += before
		sumAfter += after
	}
	if sumAfter < sumBefore {
		t.Errorf("mean recall over nprobe fell from %.4f to %.4f", sumBefore/3, sumAfter/3)
	}
}

// TestStalled checks the early stop's rule on training curves: it stops
// once the best held-out recall is patience epochs old, never with a
// negative patience.
func TestStalled(t *testing.T) {
	curve := func(r ...float64) []EpochStats {
		c := make([]EpochStats, len(r))
		for i, v := range r {
			c[i] = EpochStats{Epoch: i, ValRecall: v}
		}
		return c
	}
	for _, c := range []struct {
		r        []float64
		patience int
		want     bool
	}{
		{[]float64{.45, .48, .50}, 2, false},
		{[]float64{.45, .50, .49, .50}, 2, true}, // a tie does not beat the best
		{[]float64{.45, .50, .49}, 2, false},
		{[]float64{.45, .44, .43}, 2, true}, // never beat the starting point
		{[]float64{.45, .44, .43}, -1, false},
		{[]float64{.45, .50, .49}, 1, true},
	} {
		if got := stalled(curve(c.r...), c.patience); got != c.want {
			t.Errorf("stalled(%v, %d) = %v, want %v", c.r, c.patience, got, c.want)
		}
	}
}
