package distill

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/distillvq/distillvq/faissio"
)

// The students' per-query work, done a chunk of queries at a time so that
// the dense parts are BLAS products and the PQ scores are table look-ups:
//
//   - IVF student: Z = Q·Oᵀ, every query's score against every centroid, in
//     one sgemm per chunk (L2: -||q-o||² = 2q·o - ||o||² - ||q||²). Its
//     gradient, Σ_q dz_q,l ∂Score/∂o_l, is dZᵀ·Q in one more (L2: ∂/∂o of
//     -||q-o||² is 2(q-o), so 2dZᵀQ - 2(Σ_q dz_q,l) o_l).
//   - PQ student, inner product: q·(o_a + û) = Z[q,a] + Σ_s LUT_q[s][code_s]
//     with LUT_q[s][k] = q_s·c_s,k (M small sgemms per chunk). Its gradient
//     wrt o_a is Σ_j g_j q and wrt codeword c_s,k is Σ_j g_j q_s, so each
//     query's g_j are first summed per list and per codeword, and the sums
//     multiply Q in sgemms too.
//   - PQ student, L2: each candidate is decoded and scored, and 2(q - x)
//     scattered, as the formula reads.
//
// With a rotation being learned (rotation.go), the queries are rotated
// first, q' = R q, one sgemm per chunk, and the students score q'; the
// rotation's gradient is Pᵀ·Q for the chunk's rows p_q = ∂L/∂q', which the
// inner-product student forms from the same list and codeword sums times
// the centroids and codebooks (sgemms again) and the L2 student adds up as
// it decodes.
//
// A chunk's shape (gradChunk queries or fewer) depends only on the batch
// and the shard, never on GOMAXPROCS, and each product runs single-threaded
// (serialBLAS) on the shard's goroutine, so gradients do not depend on the
// number of threads.

// gradChunk is the most queries whose products are formed at once.
const gradChunk = 64

// workerGrad accumulates one shard's share of a batch's gradients, with its
// scratch buffers. The gradients of the centroids and codebooks are summed
// in float32, half the bytes of float64 for updates scattered over
// megabytes; the products add into them (beta 1) and applyStep reads them
// in float64. A shard's sums are over at most a batch (256 queries).
type workerGrad struct {
	// gO is the PQ student's gradient wrt the centroids, gOivf the IVF
	// student's (weighted later; for L2 without its -2(Σ_q dz_q,l) o_l
	// term, which dzSum keeps), gC the codebooks'. gOivf is written by
	// the batch's first product: ivfDone says whether it has been.
	gO, gOivf, gC []float32
	ivfDone       bool
	// dzSum is Σ_q dz_q,l over the batch (the L2 IVF gradient's o_l term).
	dzSum           []float64
	lossPQ, lossIVF float64
	// gR and gRivf are the rotation's gradient from the PQ and IVF
	// students (nil without a rotation to learn).
	gR, gRivf []float64

	qs   [][]float32
	cs   [][]candidate
	scr  chunkScratch
	tbuf []float32
	sbuf []float32
	grad []float64
	pt   []float64
	ps   []float64
	dz   []float64
	// resid holds the L2 PQ student's residuals q - o_a - û, a query's
	// candidates after each other.
	resid []float32
	// w holds, per query of a chunk, dL/dz over the lists and, for the
	// inner-product PQ student, the summed g_j per list beside it; wc the
	// summed g_j per codeword.
	w, wc []float32
	// p and pivf are a chunk's ∂L/∂q' rows (PQ and IVF student), rout
	// their product with the queries.
	p, pivf, rout []float32
}

// newWorkerGrad is a shard's accumulators for model m, with the rotation's
// when rot.
func newWorkerGrad(m *Model, rot bool) *workerGrad {
	g := &workerGrad{gO: make([]float32, len(m.Centroids)), gOivf: make([]float32, len(m.Centroids)),
		gC: make([]float32, len(m.Codebooks)), dzSum: make([]float64, m.Nlist)}
	if rot {
		g.gR, g.gRivf = make([]float64, m.D*m.D), make([]float64, m.D*m.D)
	}
	return g
}

// chunkScratch holds a chunk's queries (rotated when a rotation is
// learned, qraw as given) and their list scores and look-up tables.
type chunkScratch struct {
	q, qraw, z, lut, onorm []float32
}

func (g *workerGrad) reset() {
	clear(g.gO)
	clear(g.gC)
	clear(g.dzSum)
	g.ivfDone = false
	clear(g.gR)
	clear(g.gRivf)
	g.lossPQ, g.lossIVF = 0, 0
}

// centroidGrad is centroid entry i's gradient from the PQ student and from
// the IVF student, summed over the shards grads in their order.
func (t *trainer) centroidGrad(grads []*workerGrad, i int) (pq, ivf float64) {
	var dz float64
	l := i / t.d
	for _, g := range grads {
		pq += float64(g.gO[i])
		if g.ivfDone {
			ivf += float64(g.gOivf[i])
			dz += g.dzSum[l]
		}
	}
	if t.metric == faissio.L2 {
		ivf -= 2 * dz * float64(t.model.Centroids[i])
	}
	return pq, ivf
}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// shardGrad adds the losses and gradients of the batch queries
// shard, shard+shards, ... to g.
func (t *trainer) shardGrad(queries faissio.Matrix, batch []int, cands [][]candidate, shard, shards int, g *workerGrad) {
	g.qs, g.cs = g.qs[:0], g.cs[:0]
	for i := shard; i < len(batch); i += shards {
		q := queries.Row(batch[i])
		t.scoreCandidates(q, cands[i])
		g.qs = append(g.qs, q)
		g.cs = append(g.cs, cands[i])
	}
	t.batchGrad(g.qs, g.cs, g)
}

// scoreCandidates fills in the teacher scores candidates left NaN.
func (t *trainer) scoreCandidates(q []float32, cands []candidate) {
	for j := range cands {
		if c := &cands[j]; c.t != c.t {
			c.t = Score(t.metric, q, t.docs.Row(int(c.doc)))
		}
	}
}

// queryGrad adds one query's PQ and IVF losses and their gradients to g.
func (t *trainer) queryGrad(q []float32, cands []candidate, g *workerGrad) {
	t.batchGrad([][]float32{q}, [][]candidate{cands}, g)
}

// batchGrad adds the PQ and IVF losses of queries qs, each with its
// candidates, and their gradients to g, gradChunk queries at a time.
func (t *trainer) batchGrad(qs [][]float32, cands [][]candidate, g *workerGrad) {
	for c0 := 0; c0 < len(qs); c0 += gradChunk {
		c1 := min(c0+gradChunk, len(qs))
		t.chunkGrad(qs[c0:c1], cands[c0:c1], g)
	}
}

// prepare gathers the chunk's queries into s.q (rotated, with the
// originals in s.qraw, when a rotation is learned) and fills s.z with their
// scores against every centroid and, for the inner-product PQ student,
// s.lut with their look-up tables.
func (t *trainer) prepare(qs [][]float32, s *chunkScratch) {
	nq, d := len(qs), t.d
	s.q = growF32(s.q, nq*d)
	gather := s.q
	if t.rot != nil {
		s.qraw = growF32(s.qraw, nq*d)
		gather = s.qraw
	}
	for i, q := range qs {
		copy(gather[i*d:(i+1)*d], q)
	}
	if t.rot != nil {
		sgemm(false, true, nq, d, d, 1, s.qraw, d, t.rot.R, d, 0, s.q, d)
	}
	s.z = growF32(s.z, nq*t.nlist)
	s.onorm = growF32(s.onorm, t.nlist)
	t.listScores(s.q, nq, s.z, s.onorm)
	if t.M > 0 && t.metric != faissio.L2 {
		s.lut = growF32(s.lut, nq*t.M*t.ksub)
		t.lookupTables(s.q, nq, s.lut)
	}
}

// listScores writes Score(q_i, o_l) into z[i*nlist+l] for the nq queries in
// Q (row-major), with one sgemm; onorm (nlist) is scratch.
func (t *trainer) listScores(Q []float32, nq int, z, onorm []float32) {
	d, nlist := t.d, t.nlist
	O := t.model.Centroids
	sgemm(false, true, nq, nlist, d, 1, Q, d, O, d, 0, z, nlist)
	if t.metric != faissio.L2 {
		return
	}
	for l := range nlist {
		o := O[l*d : (l+1)*d]
		onorm[l] = dot(o, o)
	}
	for i := range nq {
		q := Q[i*d : (i+1)*d]
		qn := dot(q, q)
		row := z[i*nlist : (i+1)*nlist]
		for l, v := range row {
			row[l] = 2*v - onorm[l] - qn
		}
	}
}

// lookupTables writes q_i,s · c_s,k into lut[i*M*ksub + s*ksub + k] for the
// nq queries in Q: one sgemm per sub-space.
func (t *trainer) lookupTables(Q []float32, nq int, lut []float32) {
	M, ksub := t.M, t.ksub
	t.queryTables(Q, nq, lut)
	if t.cfg.QuantizeLUT {
		for i := range nq {
			quantizeLUT(lut[i*M*ksub:(i+1)*M*ksub], M, ksub)
		}
	}
}

// queryTables writes q_i,s · c_s,k into lut[i*M*ksub + s*ksub + k] for the
// nq queries in Q, unrounded: one sgemm per sub-space.
func (t *trainer) queryTables(Q []float32, nq int, lut []float32) {
	d, M, ksub, dsub := t.d, t.M, t.ksub, t.dsub
	cb := t.model.Codebooks
	for s := range M {
		sgemm(false, true, nq, ksub, dsub, 1, Q[s*dsub:], d, cb[s*ksub*dsub:], dsub, 0, lut[s*ksub:], M*ksub)
	}
}

// quantizeLUT rounds one query's look-up tables as FAISS's FastScan search
// does before its 8-bit SIMD scan (quantize_LUT_and_bias): each
// sub-space's table is shifted to start at 0 and all are scaled by one
// factor that maps the widest to 0..255, then rounded. The tables are
// replaced by what those bytes stand for, so the student's scores are the
// search's; the gradient passes the rounding straight through.
func quantizeLUT(lut []float32, M, ksub int) {
	var span float32
	for s := range M {
		t := lut[s*ksub : (s+1)*ksub]
		span = max(span, slices.Max(t)-slices.Min(t))
	}
	if span == 0 {
		return
	}
	a := 255 / span
	for s := range M {
		t := lut[s*ksub : (s+1)*ksub]
		lo := slices.Min(t)
		for k, v := range t {
			t[k] = lo + float32(math.Floor(float64((v-lo)*a)+0.5))/a
		}
	}
}

// chunkGrad adds the losses and gradients of at most gradChunk queries.
func (t *trainer) chunkGrad(qs [][]float32, cands [][]candidate, g *workerGrad) {
	nq, d, nlist := len(qs), t.d, t.nlist
	s := &g.scr
	t.prepare(qs, s)
	l2 := t.metric == faissio.L2
	ipPQ := t.M > 0 && !l2
	wcols := nlist
	if ipPQ {
		wcols = 2 * nlist
	}
	g.w = growF32(g.w, nq*wcols)
	clear(g.w)
	nc := t.M * t.ksub
	if ipPQ {
		g.wc = growF32(g.wc, nq*nc)
		clear(g.wc)
	}
	l2Rot := t.rot != nil && l2 && t.M > 0
	if l2Rot {
		g.p = growF32(g.p, nq*d)
		clear(g.p)
	}
	for i := range qs {
		q := s.q[i*d : (i+1)*d]
		z := s.z[i*nlist : (i+1)*nlist]
		w := g.w[i*wcols : (i+1)*wcols]
		var lut, wc, p []float32
		if ipPQ {
			lut = s.lut[i*nc : (i+1)*nc]
			wc = g.wc[i*nc : (i+1)*nc]
		}
		if l2Rot {
			p = g.p[i*d : (i+1)*d]
		}
		t.queryLoss(q, z, lut, cands[i], w, wc, p, g)
	}
	if t.rot != nil {
		t.rotationGrad(nq, s, wcols, g)
	}

	// IVF gradient: dZᵀ·Q (then the inner-product PQ student's centroid
	// and codeword gradients, from the list sums beside dZ in w and the
	// codeword sums in wc).
	alpha := float32(1)
	if l2 {
		alpha = 2
	}
	var beta float32
	if g.ivfDone {
		beta = 1
	}
	sgemm(true, false, nlist, d, nq, alpha, g.w, wcols, s.q, d, beta, g.gOivf, d)
	g.ivfDone = true
	if !ipPQ {
		return
	}
	sgemm(true, false, nlist, d, nq, 1, g.w[nlist:], wcols, s.q, d, 1, g.gO, d)
	M, ksub, dsub := t.M, t.ksub, t.dsub
	for sub := range M {
		sgemm(true, false, ksub, dsub, nq, 1, g.wc[sub*ksub:], nc, s.q[sub*dsub:], d, 1, g.gC[sub*ksub*dsub:], dsub)
	}
}

// queryLoss adds one query's losses to g. z are its scores against every
// centroid and lut its look-up tables (inner-product PQ student). It writes
// dL/dz into w[:nlist] and, for the inner-product PQ student, the sum of
// dL/ds_j over each list's candidates into w[nlist:] and over each
// codeword's into wc; the L2 PQ student's gradients go straight into g,
// and its ∂L/∂q' into p when p is not nil (a rotation being learned).
func (t *trainer) queryLoss(q, z, lut []float32, cands []candidate, w, wc, p []float32, g *workerGrad) {
	n, nlist := len(cands), t.nlist
	g.tbuf, g.sbuf = growF32(g.tbuf, n), growF32(g.sbuf, n)
	g.grad = growF64(g.grad, n)
	for j, c := range cands {
		g.tbuf[j] = c.t
	}

	if t.M > 0 {
		M, ksub := t.M, t.ksub
		if lut != nil {
			// PQ student by look-up: z[a] + Σ_s q_s·c_s,code_s.
			for j, c := range cands {
				code := t.codes[int(c.doc)*M : int(c.doc+1)*M]
				g.sbuf[j] = z[t.lists[c.doc]] + lutScore(lut, code, ksub)
			}
			g.lossPQ += t.loss(g.tbuf, g.sbuf, t.temp, g.grad)
			wl := w[nlist:]
			for j, c := range cands {
				gj := float32(g.grad[j])
				if gj == 0 {
					continue
				}
				wl[t.lists[c.doc]] += gj
				code := t.codes[int(c.doc)*M : int(c.doc+1)*M]
				for sub, cw := range code {
					wc[sub*ksub+int(cw)] += gj
				}
			}
		} else {
			t.l2PQGrad(q, cands, p, g)
		}
	}

	// IVF student.
	dz := growF64(g.dz, nlist)
	g.dz = dz
	switch t.cfg.IVFLoss {
	case ListLevel:
		// Teacher mass of a list: the teacher softmax summed over the
		// query's candidates in it; student: softmax over all lists.
		g.pt = growF64(g.pt, n)
		softmax(g.tbuf, t.temp, g.pt)
		clear(dz)
		for j, c := range cands {
			dz[t.lists[c.doc]] += g.pt[j]
		}
		g.ps = growF64(g.ps, nlist)
		lse := softmax(z, t.temp, g.ps)
		for l := range dz {
			if dz[l] > 0 {
				g.lossIVF -= dz[l] * (float64(z[l])/t.temp - lse)
			}
			dz[l] = (g.ps[l] - dz[l]) / t.temp
		}
	case DocLevel:
		for j, c := range cands {
			g.sbuf[j] = z[t.lists[c.doc]]
		}
		g.lossIVF += t.loss(g.tbuf, g.sbuf, t.temp, g.grad)
		clear(dz)
		for j, c := range cands {
			dz[t.lists[c.doc]] += g.grad[j]
		}
	}
	for l, v := range dz {
		w[l] = float32(v)
	}
	if t.metric == faissio.L2 {
		for l := range dz {
			g.dzSum[l] += float64(w[l])
		}
	}
}

// rotationGrad adds the chunk's ∂L/∂R to g, the PQ and IVF students'
// apart (the IVF one is weighted later): Pᵀ·Q for the rows p_q = ∂L/∂q'
// and the queries Q before rotation. The IVF student's scores z_l have
// ∂z_l/∂q' = o_l (inner product) or 2(o_l - q') (L2), so its rows are
// dZ·O (less 2(Σ_l dz_l) q' for L2); the inner-product PQ student's are
// Σ_c g_c (o_a(c) + û_c), which the list sums w[nlist:] times O and the
// codeword sums wc times each codebook make; the L2 PQ student's were
// summed in l2PQGrad. wcols is the row stride of g.w.
func (t *trainer) rotationGrad(nq int, s *chunkScratch, wcols int, g *workerGrad) {
	d, nlist := t.d, t.nlist
	O := t.model.Centroids
	l2 := t.metric == faissio.L2
	alpha := float32(1)
	if l2 {
		alpha = 2
	}
	g.pivf = growF32(g.pivf, nq*d)
	sgemm(false, false, nq, d, nlist, alpha, g.w, wcols, O, d, 0, g.pivf, d)
	if l2 {
		for i := range nq {
			var sum float32
			for _, v := range g.w[i*wcols : i*wcols+nlist] {
				sum += v
			}
			q, p := s.q[i*d:(i+1)*d], g.pivf[i*d:(i+1)*d]
			for k := range p {
				p[k] -= 2 * sum * q[k]
			}
		}
	}
	g.rout = growF32(g.rout, d*d)
	sgemm(true, false, d, d, nq, 1, g.pivf, d, s.qraw, d, 0, g.rout, d)
	for i, v := range g.rout {
		g.gRivf[i] += float64(v)
	}
	if t.M == 0 {
		return
	}
	if !l2 {
		M, ksub, dsub := t.M, t.ksub, t.dsub
		nc := M * ksub
		g.p = growF32(g.p, nq*d)
		sgemm(false, false, nq, d, nlist, 1, g.w[nlist:], wcols, O, d, 0, g.p, d)
		for sub := range M {
			sgemm(false, false, nq, dsub, ksub, 1, g.wc[sub*ksub:], nc, t.model.Codebooks[sub*ksub*dsub:], dsub, 1, g.p[sub*dsub:], d)
		}
	}
	sgemm(true, false, d, d, nq, 1, g.p, d, s.qraw, d, 0, g.rout, d)
	for i, v := range g.rout {
		g.gR[i] += float64(v)
	}
}

// lutScore is Σ_s lut[s*ksub + code[s]], q·û for the query whose look-up
// tables lut are (four running sums, to shorten the chain of additions).
func lutScore(lut []float32, code []uint8, ksub int) float32 {
	if ksub == 256 {
		return lutScore8(lut, code)
	}
	var s0, s1, s2, s3 float32
	s := 0
	for ; s+4 <= len(code); s += 4 {
		s0 += lut[s*ksub+int(code[s])]
		s1 += lut[(s+1)*ksub+int(code[s+1])]
		s2 += lut[(s+2)*ksub+int(code[s+2])]
		s3 += lut[(s+3)*ksub+int(code[s+3])]
	}
	for ; s < len(code); s++ {
		s0 += lut[s*ksub+int(code[s])]
	}
	return (s0 + s1) + (s2 + s3)
}

// lutScore8 is lutScore for 8-bit codes, the common case: each table is
// an array of 256, so that a byte indexes it without a bounds check (the
// sums are added in lutScore's order, to the same bits).
func lutScore8(lut []float32, code []uint8) float32 {
	var s0, s1, s2, s3 float32
	s := 0
	lut = lut[:len(code)*256]
	for ; s+4 <= len(code); s += 4 {
		c := code[s : s+4 : s+4]
		t := lut[s*256 : (s+4)*256 : (s+4)*256]
		s0 += (*[256]float32)(t[0:256])[c[0]]
		s1 += (*[256]float32)(t[256:512])[c[1]]
		s2 += (*[256]float32)(t[512:768])[c[2]]
		s3 += (*[256]float32)(t[768:1024])[c[3]]
	}
	for ; s < len(code); s++ {
		s0 += (*[256]float32)(lut[s*256 : (s+1)*256])[code[s]]
	}
	return (s0 + s1) + (s2 + s3)
}

// l2PQGrad is the L2 PQ student: for each candidate x = o_a + û it forms
// the residual r = q - x, scores -||r||², and adds the loss and g_j·2r to
// the centroid and codewords x came from, and -g_j·2r, the score's
// gradient wrt the query, to p when p is not nil. Keeping r rather than x
// makes the score one assembly dot product and the gradient one pass.
func (t *trainer) l2PQGrad(q []float32, cands []candidate, p []float32, g *workerGrad) {
	n, d, M, ksub, dsub := len(cands), t.d, t.M, t.ksub, t.dsub
	g.resid = growF32(g.resid, n*d)
	for j, c := range cands {
		r := g.resid[j*d : (j+1)*d]
		t.residual(q, c.doc, r)
		g.sbuf[j] = -dot(r, r)
	}
	g.lossPQ += t.loss(g.tbuf, g.sbuf, t.temp, g.grad)
	for j, c := range cands {
		gj := g.grad[j]
		if gj == 0 {
			continue
		}
		r := g.resid[j*d : (j+1)*d]
		if p != nil {
			sdot.Saxpy(d, float32(-2*gj), r, 1, p, 1)
		}
		a := int(t.lists[c.doc])
		// The centroid's gradient is all of g_j·2r, one assembly axpy;
		// each codeword's is its sub-vector of it.
		g2 := float32(2 * gj)
		sdot.Saxpy(d, g2, r, 1, g.gO[a*d:(a+1)*d], 1)
		addCodewords(g.gC, r, g2, t.codes[int(c.doc)*M:int(c.doc+1)*M], ksub, dsub)
	}
}

// residual writes q - o_a(doc) - û_doc into r: q - o_a by an assembly
// axpy, then each sub-vector's codeword.
func (t *trainer) residual(q []float32, doc int32, r []float32) {
	d, dsub := t.d, t.dsub
	a := int(t.lists[doc])
	copy(r, q)
	sdot.Saxpy(d, -1, t.model.Centroids[a*d:(a+1)*d], 1, r, 1)
	subCodewords(r, t.model.Codebooks, t.codes[int(doc)*t.M:int(doc+1)*t.M], t.ksub, dsub)
}

// reconstruct writes o_a(doc) + û_doc, the vector FAISS scores for doc.
func (t *trainer) reconstruct(doc int32, out []float32) {
	var code []uint8
	if t.M > 0 {
		code = t.codes[int(doc)*t.M : int(doc+1)*t.M]
	}
	t.decode(int(t.lists[doc]), code, out)
}

// decode writes o_a + û, û the PQ codewords named by code, into out.
func (t *trainer) decode(a int, code []uint8, out []float32) {
	d := t.d
	copy(out, t.model.Centroids[a*d:(a+1)*d])
	for s, cw := range code {
		cb := t.model.Codebooks[(s*t.ksub+int(cw))*t.dsub:]
		o := out[s*t.dsub : (s+1)*t.dsub]
		for k := range o {
			o[k] += cb[k]
		}
	}
}

// valRecall is the 10-recall@10 of the held-out queries when searching the
// current model as FAISS would (probe ValNprobe lists, score the
// reconstructions), against the teacher's top 10.
//
// A pseudo-query's own document (exclude[qi]) is skipped, as it is absent
// from the teacher's results.
//
// As FAISS does, it keeps the codes in list order (here a copy made for the
// call) and scores inner-product PQ codes by look-up. Chunks of gradChunk
// queries run on up to GOMAXPROCS goroutines; the result, a count of hits,
// does not depend on their number.
//
// It stops between chunks with ctx's error once ctx is cancelled.
func (t *trainer) valRecall(ctx context.Context, queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) (float64, error) {
	rs, err := t.valRecalls(ctx, []int{t.cfg.ValNprobe}, queries, val, teacher, exclude)
	if err != nil {
		return 0, err
	}
	return rs[0], nil
}

// valRecalls is valRecall at each of nprobes (ascending) from one scan of
// the lists: they are visited in the order of the query's scores, so that
// the best k after the first p lists are what a search at nprobe p finds.
func (t *trainer) valRecalls(ctx context.Context, nprobes []int, queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) (rs []float64, err error) {
	phase(ctx, "validation", func() { rs, err = t.valRecallsIn(ctx, nprobes, queries, val, teacher, exclude) })
	return rs, err
}

func (t *trainer) valRecallsIn(ctx context.Context, nprobes []int, queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) ([]float64, error) {
	const k = 10
	if len(nprobes) == 0 || nprobes[0] < 1 || !slices.IsSorted(nprobes) {
		return nil, fmt.Errorf("validation nprobes %v: want ascending values of at least 1", nprobes)
	}
	var lc listCodes
	if t.M > 0 {
		lc = t.listCodes()
	}
	nchunks := (len(val) + gradChunk - 1) / gradChunk
	hits := make([][]int, nchunks)
	err := eachJob(ctx, nchunks, runtime.GOMAXPROCS(0), func(int) func(int) {
		var s chunkScratch
		return func(c int) {
			hits[c] = make([]int, len(nprobes))
			t.valChunk(queries, val[c*gradChunk:min((c+1)*gradChunk, len(val))], teacher, exclude, k, nprobes, lc, &s, hits[c])
		}
	})
	if err != nil {
		return nil, err
	}
	rs := make([]float64, len(nprobes))
	for j := range rs {
		var sum int
		for _, h := range hits {
			sum += h[j]
		}
		rs[j] = float64(sum) / float64(len(val)*k)
	}
	return rs, nil
}

// listCodes are the documents' PQ codes in list order: list l's members'
// codes are codes[start[l]*M : start[l+1]*M], in the order of members[l].
// For L2, bias holds each one's 2 o_l·û + ||û||² in the same order, so that
// -||q - o_l - û||² = -||q - o_l||² + 2 q·û - bias reads the query's
// look-up tables as FAISS's precomputed-table search does, instead of
// decoding d values per document.
type listCodes struct {
	codes []uint8
	start []int
	bias  []float32
}

func (t *trainer) listCodes() listCodes {
	M := t.M
	lc := listCodes{codes: make([]uint8, len(t.codes)), start: make([]int, t.nlist+1)}
	l2 := t.metric == faissio.L2
	if l2 {
		lc.bias = make([]float32, len(t.codes)/M)
	}
	p := 0
	for l, mem := range t.members {
		lc.start[l] = p
		for _, doc := range mem {
			code := t.codes[int(doc)*M : int(doc+1)*M]
			copy(lc.codes[p*M:(p+1)*M], code)
			if l2 {
				lc.bias[p] = t.l2Bias(l, code)
			}
			p++
		}
	}
	lc.start[t.nlist] = p
	return lc
}

// l2Bias is 2 o_a·û + ||û||² for the codes code of a document in list a.
func (t *trainer) l2Bias(a int, code []uint8) float32 {
	d, dsub := t.d, t.dsub
	o := t.model.Centroids[a*d : (a+1)*d]
	var b0, b1 float32
	for s, cw := range code {
		os := o[s*dsub : (s+1)*dsub]
		cb := t.model.Codebooks[(s*t.ksub+int(cw))*dsub:]
		cb = cb[:len(os)]
		k := 0
		for ; k+2 <= len(os); k += 2 {
			b0 += cb[k] * (2*os[k] + cb[k])
			b1 += cb[k+1] * (2*os[k+1] + cb[k+1])
		}
		for ; k < len(os); k++ {
			b0 += cb[k] * (2*os[k] + cb[k])
		}
	}
	return b0 + b1
}

// valChunk adds to hits[j] the number of the teacher's top k found in the
// top k of the model's search at nprobe nprobes[j] (ascending), summed
// over the queries val.
func (t *trainer) valChunk(queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32, k int, nprobes []int, lc listCodes, s *chunkScratch, hits []int) {
	K, d, nlist, M := teacher.K, t.d, t.nlist, t.M
	qs := make([][]float32, len(val))
	for i, qi := range val {
		qs[i] = queries.Row(qi)
	}
	t.prepare(qs, s)
	if M > 0 && t.metric == faissio.L2 {
		s.lut = growF32(s.lut, len(qs)*M*t.ksub)
		t.queryTables(s.q, len(qs), s.lut)
	}
	maxProbe := min(nprobes[len(nprobes)-1], nlist)
	nc := M * t.ksub
	probe, h := &topHeap{}, &topHeap{}
	count := func(truth []int32) int {
		n := 0
		for _, e := range h.s {
			if slices.Contains(truth, e.id) {
				n++
			}
		}
		return n
	}
	for i, qi := range val {
		q := s.q[i*d : (i+1)*d]
		z := s.z[i*nlist : (i+1)*nlist]
		probe.s = probe.s[:0]
		for l, v := range z {
			pushTop(probe, maxProbe, entry{v, int32(l)})
		}
		// Best list first (the order pushTop ranks by), so that the
		// first p lists are the ones nprobe p probes.
		slices.SortFunc(probe.s, func(a, b entry) int {
			switch {
			case a.beats(b):
				return -1
			case b.beats(a):
				return 1
			}
			return 0
		})
		var lut []float32
		if M > 0 {
			lut = s.lut[i*nc : (i+1)*nc]
		}
		ex := int32(-1)
		if exclude != nil {
			ex = exclude[qi]
		}
		truth := teacher.Rows[qi*K : qi*K+min(k, K)]
		h.s = h.s[:0]
		j := 0
		for r, pl := range probe.s {
			l := int(pl.id)
			var codes []uint8
			if M > 0 {
				codes = lc.codes[lc.start[l]*M : lc.start[l+1]*M]
			}
			for p, doc := range t.members[l] {
				if doc == ex {
					continue
				}
				var sc float32
				switch {
				case M == 0:
					sc = Score(t.metric, q, t.docs.Row(int(doc)))
				case lc.bias != nil:
					sc = z[l] + 2*lutScore(lut, codes[p*M:(p+1)*M], t.ksub) - lc.bias[lc.start[l]+p]
				default:
					sc = z[l] + lutScore(lut, codes[p*M:(p+1)*M], t.ksub)
				}
				pushTop(h, k, entry{sc, doc})
			}
			for ; j < len(nprobes) && min(nprobes[j], nlist) <= r+1; j++ {
				hits[j] += count(truth)
			}
		}
	}
}

// pushTop keeps in h the best k entries seen: higher score, then lower id,
// whatever the order they come in.
func pushTop(h *topHeap, k int, e entry) {
	if k <= 0 {
		return
	}
	if len(h.s) < k {
		heap.Push(h, e)
		return
	}
	if e.beats(h.s[0]) {
		h.s[0] = e
		heap.Fix(h, 0)
	}
}
