package distill

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// refQueryGrad is the students' gradient as the formulas read, one query at
// a time, in float64 accumulators: every candidate decoded and scored,
// every centroid scored, and each gradient scattered vector by vector. It
// is what batchGrad's look-up tables and products must reproduce.
func (t *trainer) refQueryGrad(q []float32, cands []candidate, g *refGrad) {
	n, d := len(cands), t.d
	O := t.model.Centroids
	tb, sb, grad := make([]float32, n), make([]float32, n), make([]float64, n)
	for j, c := range cands {
		tb[j] = c.t
	}
	scoreGrad := func(x []float32) []float64 {
		v := make([]float64, d)
		for k := range v {
			if t.metric == faissio.L2 {
				v[k] = 2 * (float64(q[k]) - float64(x[k]))
			} else {
				v[k] = float64(q[k])
			}
		}
		return v
	}
	if t.M > 0 {
		xhat := make([][]float32, n)
		for j, c := range cands {
			xhat[j] = make([]float32, d)
			t.reconstruct(c.doc, xhat[j])
			sb[j] = Score(t.metric, q, xhat[j])
		}
		g.lossPQ += t.loss(tb, sb, t.temp, grad)
		for j, c := range cands {
			v := scoreGrad(xhat[j])
			a := int(t.lists[c.doc])
			for k, x := range v {
				g.gO[a*d+k] += grad[j] * x
			}
			code := t.codes[int(c.doc)*t.M : int(c.doc+1)*t.M]
			for s, cw := range code {
				off := (s*t.ksub + int(cw)) * t.dsub
				for k := range t.dsub {
					g.gC[off+k] += grad[j] * v[s*t.dsub+k]
				}
			}
		}
	}
	z := make([]float32, t.nlist)
	for l := range z {
		z[l] = Score(t.metric, q, O[l*d:(l+1)*d])
	}
	dz := make([]float64, t.nlist)
	switch t.cfg.IVFLoss {
	case ListLevel:
		pt, ps := make([]float64, n), make([]float64, t.nlist)
		softmax(tb, t.temp, pt)
		for j, c := range cands {
			dz[t.lists[c.doc]] += pt[j]
		}
		lse := softmax(z, t.temp, ps)
		for l := range dz {
			if dz[l] > 0 {
				g.lossIVF -= dz[l] * (float64(z[l])/t.temp - lse)
			}
			dz[l] = (ps[l] - dz[l]) / t.temp
		}
	case DocLevel:
		for j, c := range cands {
			sb[j] = z[t.lists[c.doc]]
		}
		g.lossIVF += t.loss(tb, sb, t.temp, grad)
		for j, c := range cands {
			dz[t.lists[c.doc]] += grad[j]
		}
	}
	for l, gl := range dz {
		v := scoreGrad(O[l*d : (l+1)*d])
		for k, x := range v {
			g.gOivf[l*d+k] += gl * x
		}
	}
}

// refValRecall is valRecall as the formulas read: sort the lists, decode
// and score every document of the probed ones.
func (t *trainer) refValRecall(queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) float64 {
	const k = 10
	K, d := teacher.K, t.d
	var hits int
	z := make([]float32, t.nlist)
	xh := make([]float32, d)
	order := make([]int, t.nlist)
	for _, qi := range val {
		q := queries.Row(qi)
		for l := range z {
			z[l] = Score(t.metric, q, t.model.Centroids[l*d:(l+1)*d])
			order[l] = l
		}
		sort.SliceStable(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
		h := &topHeap{}
		for _, l := range order[:min(t.cfg.ValNprobe, t.nlist)] {
			for _, doc := range t.members[l] {
				if exclude != nil && doc == exclude[qi] {
					continue
				}
				t.reconstruct(doc, xh)
				if t.M == 0 {
					copy(xh, t.docs.Row(int(doc)))
				}
				e := entry{Score(t.metric, q, xh), doc}
				if len(h.s) < k {
					heap.Push(h, e)
				} else if e.s > h.s[0].s {
					h.s[0] = e
					heap.Fix(h, 0)
				}
			}
		}
		for _, e := range h.s {
			if slices.Contains(teacher.Rows[qi*K:qi*K+min(k, K)], e.id) {
				hits++
			}
		}
	}
	return float64(hits) / float64(len(val)*k)
}

// studentProblem is a small clustered data set with a k-means-like model
// (centroids and codewords near the data, as training leaves them) and a
// batch of queries, each with its teacher top 30 and 20 random candidates.
func studentProblem(metric faissio.Metric, M int, ivfLoss, lossName string) (*trainer, [][]float32, [][]candidate, faissio.Matrix, *Teacher) {
	rng := rand.New(rand.NewPCG(21, uint64(M)))
	const n, d, nlist, nq, nbits = 1200, 16, 24, 150, 5
	centers := randMatrix(rng, nlist, d)
	docs := clustered(rng, centers, n)
	m := &Model{D: d, Metric: metric, Nlist: nlist, Centroids: slices.Clone(centers.Data), M: M, Nbits: nbits}
	for i := range m.Centroids {
		m.Centroids[i] = 2*m.Centroids[i] + 0.2*float32(rng.NormFloat64())
	}
	if M > 0 {
		m.Codebooks = randMatrix(rng, 1<<nbits, d).Data
	}
	loss := lossFuncs[must(ParseLoss(lossName))]
	t := newTrainer(DistillConfig{IVFLoss: must(ParseIVFLoss(ivfLoss)), ValNprobe: 5}, docs, m, assign(m, docs))
	t.loss, t.temp, t.ivfW = loss, 0.5, 1
	must(0, t.refreshCodes(context.Background()))
	queries := faissio.Matrix{Rows: nq, Cols: d, Data: make([]float32, nq*d)}
	for i := range nq {
		c := centers.Row(rng.IntN(nlist))
		for k, v := range c {
			queries.Data[i*d+k] = 2*v + float32(rng.NormFloat64())
		}
	}
	teacher := exactTopK(docs, queries, 30, metric, nil)
	qs, cands := candidateLists(rng, docs, queries, teacher, metric, 20)
	return t, qs, cands, queries, teacher
}

// clustered is n points, each twice a random one of centers plus standard
// Gaussian noise.
func clustered(rng *rand.Rand, centers faissio.Matrix, n int) faissio.Matrix {
	d := centers.Cols
	x := faissio.Matrix{Rows: n, Cols: d, Data: make([]float32, n*d)}
	for i := range n {
		c := centers.Row(rng.IntN(centers.Rows))
		for k, v := range c {
			x.Data[i*d+k] = 2*v + float32(rng.NormFloat64())
		}
	}
	return x
}

// candidateLists gives each query its teacher's top K and nrand random
// documents, with their exact scores.
func candidateLists(rng *rand.Rand, docs, queries faissio.Matrix, teacher *Teacher, metric faissio.Metric, nrand int) ([][]float32, [][]candidate) {
	qs, cands := make([][]float32, queries.Rows), make([][]candidate, queries.Rows)
	for i := range qs {
		qs[i] = queries.Row(i)
		for r := range teacher.K {
			cands[i] = append(cands[i], candidate{teacher.Rows[i*teacher.K+r], teacher.Scores[i*teacher.K+r]})
		}
		for range nrand {
			doc := int32(rng.IntN(docs.Rows))
			cands[i] = append(cands[i], candidate{doc, Score(metric, qs[i], docs.Row(int(doc)))})
		}
	}
	return qs, cands
}

// refGrad is what refQueryGrad adds up, in float64.
type refGrad struct {
	gO, gOivf, gC   []float64
	lossPQ, lossIVF float64
}

// totals are g's gradients in float64 as applyStep reads them.
func (t *trainer) totals(g *workerGrad) *refGrad {
	r := &refGrad{gO: make([]float64, len(g.gO)), gOivf: make([]float64, len(g.gO)), gC: make([]float64, len(g.gC)),
		lossPQ: g.lossPQ, lossIVF: g.lossIVF}
	for i := range r.gO {
		r.gO[i], r.gOivf[i] = t.centroidGrad([]*workerGrad{g}, i)
	}
	for i, v := range g.gC {
		r.gC[i] = float64(v)
	}
	return r
}

// TestStudentGradientsMatchReference checks the look-up-table and sgemm
// students against refQueryGrad: losses and every gradient over a batch of
// 150 queries (three chunks), for both metrics, IVFPQ and IVFFlat, both IVF
// losses.
func TestStudentGradientsMatchReference(t *testing.T) {
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		for _, M := range []int{4, 8, 0} {
			for _, ivfLoss := range []string{"list", "doc"} {
				for _, lossName := range []string{"listnet", "mse"} {
					t.Run(fmt.Sprintf("%s/M%d/%s/%s", metric, M, ivfLoss, lossName), func(t *testing.T) {
						tr, qs, cands, _, _ := studentProblem(metric, M, ivfLoss, lossName)
						m := tr.model
						ref := &refGrad{gO: make([]float64, len(m.Centroids)), gOivf: make([]float64, len(m.Centroids)), gC: make([]float64, len(m.Codebooks))}
						for i, q := range qs {
							tr.refQueryGrad(q, cands[i], ref)
						}
						g := newWorkerGrad(m, false)
						g.reset()
						tr.batchGrad(qs, cands, g)
						fast := tr.totals(g)
						closeScalar := func(name string, got, want float64) {
							if math.Abs(got-want) > 1e-4*math.Abs(want)+1e-9 {
								t.Errorf("%s: fast %.8g, reference %.8g", name, got, want)
							}
						}
						closeScalar("PQ loss", fast.lossPQ, ref.lossPQ)
						closeScalar("IVF loss", fast.lossIVF, ref.lossIVF)
						closeVec := func(name string, got, want []float64) {
							var scale, worst float64
							for _, v := range want {
								scale = math.Max(scale, math.Abs(v))
							}
							if scale == 0 && M > 0 && name != "gO (IVF)" {
								t.Errorf("%s: reference gradient is zero", name)
							}
							for i := range want {
								if scale == 0 {
									worst = math.Max(worst, math.Abs(got[i]))
								} else {
									worst = math.Max(worst, math.Abs(got[i]-want[i])/scale)
								}
							}
							t.Logf("%s: largest difference %.3g of the largest entry %.3g", name, worst, scale)
							if worst > 1e-4 {
								t.Errorf("%s: largest difference %.3g of the largest entry %.3g", name, worst, scale)
							}
						}
						closeVec("gO (PQ)", fast.gO, ref.gO)
						closeVec("gO (IVF)", fast.gOivf, ref.gOivf)
						closeVec("gC", fast.gC, ref.gC)
					})
				}
			}
		}
	}
}

// TestValRecallMatchesReference checks the look-up-table validation search
// against decoding every document.
func TestValRecallMatchesReference(t *testing.T) {
	varied := false
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		for _, M := range []int{4, 0} {
			tr, _, _, queries, teacher := studentProblem(metric, M, "list", "listnet")
			val := make([]int, queries.Rows)
			exclude := make([]int32, queries.Rows)
			for i := range val {
				val[i] = i
				exclude[i] = -1
				if i%3 == 0 {
					exclude[i] = teacher.Rows[i*teacher.K+1]
				}
			}
			got, want := tr.valRecallNoCtx(queries, val, teacher, exclude), tr.refValRecall(queries, val, teacher, exclude)
			// A tie broken the other way, from rounding, can move a hit.
			if math.Abs(got-want) > 2.5/float64(len(val)*10) {
				t.Errorf("%s M=%d: recall %.4f, reference %.4f", metric, M, got, want)
			}
			// One scan for every nprobe finds what a search at each finds.
			var nprobes []int
			for p := 1; p <= tr.nlist+1; p++ {
				nprobes = append(nprobes, p)
			}
			all := must(tr.valRecalls(context.Background(), nprobes, queries, val, teacher, exclude))
			for i, p := range nprobes {
				tr.cfg.ValNprobe = p
				if one := tr.valRecallNoCtx(queries, val, teacher, exclude); all[i] != one {
					t.Errorf("%s M=%d nprobe %d: %.4f in one scan of nprobes %v, %.4f alone", metric, M, p, all[i], nprobes, one)
				}
			}
			varied = varied || all[0] != all[len(all)-1]
		}
	}
	if !varied {
		t.Error("recall is the same at every nprobe in every case: the nprobes are not tested")
	}
}

// TestDistillSameForAnyThreadCount checks that distillation returns the
// same model with one core as with several: the shards' products have
// shapes that do not depend on GOMAXPROCS.
func TestDistillSameForAnyThreadCount(t *testing.T) {
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		tr, _, _, queries, _ := studentProblem(metric, 4, "list", "listnet")
		init := &Model{D: tr.d, Metric: metric, Nlist: tr.nlist, Centroids: slices.Clone(tr.model.Centroids),
			M: tr.M, Nbits: tr.model.Nbits, Codebooks: slices.Clone(tr.model.Codebooks)}
		lists := assign(init, tr.docs)
		run := func(procs int) (*Model, []EpochStats) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			m, curve, err := Distill(context.Background(), tr.docs, init, lists,
				DistillConfig{Queries: queries, Epochs: 2, Batch: 260, PseudoQueries: 200, Val: 50, TopK: 20, InBatch: 20, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			return m, curve
		}
		m1, c1 := run(1)
		m3, c3 := run(3)
		if !slices.Equal(m1.Centroids, m3.Centroids) || !slices.Equal(m1.Codebooks, m3.Codebooks) {
			t.Errorf("%s: the model differs between 1 and 3 threads", metric)
		}
		for i := range c1 {
			if c1[i].LossPQ != c3[i].LossPQ || c1[i].LossIVF != c3[i].LossIVF || c1[i].ValRecall != c3[i].ValRecall {
				t.Errorf("%s: epoch %d differs between 1 and 3 threads: %+v, %+v", metric, i, c1[i], c3[i])
			}
		}
	}
}

// The 8-bit look-up scorer adds what the general one adds, in its order,
// to the same bits, for any number of sub-quantizers.
func TestLutScore8IsLutScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, M := range []int{1, 3, 4, 7, 8, 20, 25, 64} {
		lut := make([]float32, M*256)
		for i := range lut {
			lut[i] = float32(rng.NormFloat64())
		}
		code := make([]uint8, M)
		for trial := 0; trial < 50; trial++ {
			for s := range code {
				code[s] = uint8(rng.IntN(256))
			}
			// The general loop, as lutScore runs it for other ksub.
			var s0, s1, s2, s3 float32
			s := 0
			for ; s+4 <= M; s += 4 {
				s0 += lut[s*256+int(code[s])]
				s1 += lut[(s+1)*256+int(code[s+1])]
				s2 += lut[(s+2)*256+int(code[s+2])]
				s3 += lut[(s+3)*256+int(code[s+3])]
			}
			for ; s < M; s++ {
				s0 += lut[s*256+int(code[s])]
			}
			want := (s0 + s1) + (s2 + s3)
			if got := lutScore(lut, code, 256); math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("M=%d: %v, want %v", M, got, want)
			}
		}
	}
}

// wideL2Problem is the large bench's shape on a smaller scale (d 768, M 64,
// 8 bits, l2) for timing the L2 student and validation: clustered Gaussian
// documents, a model near them, and nq queries with 250 candidates each.
func wideL2Problem(b *testing.B, nq int) (*trainer, [][]float32, [][]candidate, faissio.Matrix, *Teacher) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, d, nlist, M = 20000, 768, 512, 64
	centers := randMatrix(rng, nlist, d)
	docs := clustered(rng, centers, n)
	m := &Model{D: d, Metric: faissio.L2, Nlist: nlist, Centroids: slices.Clone(centers.Data), M: M, Nbits: 8}
	for i := range m.Centroids {
		m.Centroids[i] *= 2
	}
	m.Codebooks = randMatrix(rng, 256, d).Data
	t := newTrainer(DistillConfig{IVFLoss: ListLevel, ValNprobe: 16}, docs, m, assign(m, docs))
	t.loss, t.temp, t.ivfW = lossFuncs[must(ParseLoss("listnet"))], 0.5, 1
	must(0, t.refreshCodes(context.Background()))
	queries := faissio.Matrix{Rows: nq, Cols: d, Data: slices.Clone(docs.Data[:nq*d])}
	teacher := exactTopK(docs, queries, 200, faissio.L2, nil)
	// The temperature as Distill sets it: the median spread of the top K.
	spreads := make([]float64, nq)
	for i := range spreads {
		spreads[i] = float64(teacher.Scores[i*teacher.K] - teacher.Scores[i*teacher.K+teacher.K-1])
	}
	slices.Sort(spreads)
	t.temp = spreads[nq/2]
	qs, cands := candidateLists(rng, docs, queries, teacher, faissio.L2, 50)
	return t, qs, cands, queries, teacher
}

// BenchmarkL2Student times the L2 PQ student's losses and gradients for 64
// queries of 250 candidates at d 768, M 64, on one goroutine.
func BenchmarkL2Student(b *testing.B) {
	tr, qs, cands, _, _ := wideL2Problem(b, 64)
	g := newWorkerGrad(tr.model, false)
	b.ResetTimer()
	for range b.N {
		tr.batchGrad(qs, cands, g)
	}
}

// BenchmarkL2Validation times the L2 validation of 256 queries at nprobe
// 1, 2, 4, ..., nlist (as the export choice runs it), on one goroutine.
func BenchmarkL2Validation(b *testing.B) {
	tr, _, _, queries, teacher := wideL2Problem(b, 256)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	val := make([]int, queries.Rows)
	for i := range val {
		val[i] = i
	}
	var nprobes []int
	for p := 1; p <= tr.nlist; p *= 2 {
		nprobes = append(nprobes, p)
	}
	b.ResetTimer()
	for range b.N {
		must(tr.valRecalls(context.Background(), nprobes, queries, val, teacher, nil))
	}
}
