package distill

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"

	"github.com/distillvq/distillvq/faissio"
)

// Model holds the trained parameters of an IVF index: the coarse centroids
// and, for IVFPQ, the PQ codebooks of the residuals. It is what any trainer
// (k-means, distillation) produces and what the FAISS structures are filled
// from.
type Model struct {
	D      int
	Metric faissio.Metric
	Nlist  int
	// Centroids are the Nlist coarse centroids, row-major (Nlist*D).
	Centroids []float32
	// M is the number of PQ sub-quantizers; 0 makes an IVFFlat model.
	M, Nbits int
	// Codebooks are FAISS's pq.centroids: [M][2^Nbits][D/M].
	Codebooks []float32
	// EncodeWeight, when set, is a D×D symmetric positive semi-definite
	// matrix W, and each residual u gets the codes that minimise the
	// weighted error (u-û)ᵀW(u-û) instead of ||u-û||². With W the second
	// moment of the queries, E[qqᵀ], that is the expected squared error of
	// the inner-product score q·û, the error that reorders results. It is
	// an encoding rule only: FAISS stores and searches the codes as usual.
	EncodeWeight []float32
	// Rotation, when set, is the D×D orthonormal rotation R (row-major)
	// that a distillation learned (DistillConfig.LearnRotation): the
	// centroids and codebooks quantize x' = R x, and FAISS's index puts R in
	// front of them (IndexPreTransform) so that queries are rotated too.
	// Assign and Encode take vectors already rotated.
	Rotation []float32
}

// Ksub is the number of codewords of each sub-quantizer.
func (m *Model) Ksub() int { return 1 << m.Nbits }

// Dsub is the dimension of each PQ sub-space.
func (m *Model) Dsub() int { return m.D / m.M }

// CodeSize is the bytes stored per vector: 4*D for IVFFlat, ceil(M*Nbits/8)
// bytes of bit-packed PQ codes for IVFPQ.
func (m *Model) CodeSize() int {
	if m.M == 0 {
		return 4 * m.D
	}
	return (m.M*m.Nbits + 7) / 8
}

// IVFParams is the part of an index's contents the model holds: shape,
// centroids and codebooks (shared, not copied). The caller adds the
// vectors' lists, ids and codes, and any rotation.
func (m *Model) IVFParams() faissio.IVFParams {
	return faissio.IVFParams{D: m.D, Metric: m.Metric, Nlist: m.Nlist, Centroids: m.Centroids,
		M: m.M, Nbits: m.Nbits, Codebooks: m.Codebooks}
}

// Validate checks the model's dimensions against each other.
func (m *Model) Validate() error {
	switch {
	case m.D < 1:
		return fmt.Errorf("dimension %d < 1", m.D)
	case m.Nlist < 1:
		return fmt.Errorf("nlist %d < 1", m.Nlist)
	case len(m.Centroids) != m.Nlist*m.D:
		return fmt.Errorf("%d centroid floats, want nlist*d = %d", len(m.Centroids), m.Nlist*m.D)
	case m.Rotation != nil && len(m.Rotation) != m.D*m.D:
		return fmt.Errorf("%d rotation floats, want d*d = %d", len(m.Rotation), m.D*m.D)
	case m.M < 0:
		return fmt.Errorf("M %d < 0", m.M)
	case m.M == 0:
		return nil
	case m.D%m.M != 0:
		return fmt.Errorf("M %d does not divide d %d", m.M, m.D)
	case m.Nbits < 1 || m.Nbits > 8:
		return fmt.Errorf("nbits %d outside 1..8", m.Nbits)
	case len(m.Codebooks) != m.D*m.Ksub():
		return fmt.Errorf("%d codebook floats, want d*2^nbits = %d", len(m.Codebooks), m.D*m.Ksub())
	}
	return nil
}

// Assign returns each row's inverted list: the nearest centroid by L2, or
// the largest inner product, as FAISS's IndexFlatL2 / IndexFlatIP quantizer
// assigns it. It stops between blocks of rows with ctx's error once ctx is
// cancelled.
func (m *Model) Assign(ctx context.Context, x faissio.Matrix) ([]int64, error) {
	defer serialBLAS()()
	labels := make([]int32, x.Rows)
	if err := newAssigner(m.D, m.Nlist).assign(ctx, view(x), m.Centroids, m.Metric, labels, nil); err != nil {
		return nil, err
	}
	out := make([]int64, x.Rows)
	for i, l := range labels {
		out[i] = int64(l)
	}
	return out, nil
}

// Encode returns the FAISS codes of the rows of x stored in the given lists,
// CodeSize bytes per row: the raw little-endian floats for IVFFlat, the
// bit-packed PQ codes of the residual x - centroid[list] for IVFPQ. It
// stops between blocks of rows with ctx's error once ctx is cancelled.
func (m *Model) Encode(ctx context.Context, x faissio.Matrix, lists []int64) ([]byte, error) {
	defer serialBLAS()()
	if len(lists) != x.Rows {
		return nil, fmt.Errorf("encode: %d lists for %d rows", len(lists), x.Rows)
	}
	if m.M == 0 {
		codes := make([]byte, x.Rows*m.CodeSize())
		for i, v := range x.Data {
			binary.LittleEndian.PutUint32(codes[4*i:], math.Float32bits(v))
		}
		return codes, ctx.Err()
	}
	idx := make([]uint8, x.Rows*m.M) // with 8 bits the indices are the codes
	var err error
	phase(ctx, "encode", func() { err = m.encodeIndices(ctx, x, lists, idx, weightedPasses) })
	if err != nil {
		return nil, err
	}
	return m.pack(idx), nil
}

// pack returns the FAISS codes of codeword indices idx, M per row.
func (m *Model) pack(idx []uint8) []byte {
	if m.Nbits == 8 {
		return idx
	}
	cs, n := m.CodeSize(), len(idx)/m.M
	codes := make([]byte, n*cs)
	for i := range n {
		packCode(codes[i*cs:(i+1)*cs], idx[i*m.M:(i+1)*m.M], m.Nbits)
	}
	return codes
}

// encodeIndices writes the M codeword indices of each row's residual into
// idx (x.Rows*M), a block of rows at a time, checking ctx between blocks;
// under EncodeWeight, passes sweeps refine them.
//
// Goroutines own the cores (callers hold SerialBLAS): each encodes whole
// blocks, residuals, every sub-space and the weighted refinement, with its
// own encoder and single-threaded products, so they meet only at the end.
// A row's codes depend on its block alone and blocks have a fixed size, so
// the result is the same for any number of threads.
func (m *Model) encodeIndices(ctx context.Context, x faissio.Matrix, lists []int64, idx []uint8, passes int) error {
	return m.encodeRotated(ctx, x, nil, lists, idx, passes)
}

// encodeRotated is encodeIndices of the rows of x rotated by rot (D×D,
// y = rot·x; nil: x itself), each block rotated as it is encoded, so that
// no rotated copy of x is ever held whole.
func (m *Model) encodeRotated(ctx context.Context, x faissio.Matrix, rot []float32, lists []int64, idx []uint8, passes int) error {
	const block = rotationBlock
	nblocks := (x.Rows + block - 1) / block
	return eachJob(ctx, nblocks, runtime.GOMAXPROCS(0), func(int) func(int) {
		res := make([]float32, min(block, x.Rows)*m.D)
		var rx []float32
		if rot != nil {
			rx = make([]float32, min(block, x.Rows)*m.D)
		}
		enc := newPQEncoder(m, 1)
		return func(b int) {
			i0 := b * block
			n := min(block, x.Rows-i0)
			xb := x.Slice(i0, i0+n)
			if rot != nil {
				rotateRows(rot, xb.Data, n, m.D, rx[:n*m.D])
				xb.Data = rx[:n*m.D]
			}
			m.residuals(xb, lists[i0:i0+n], res[:n*m.D])
			enc.encode(res[:n*m.D], n, idx[i0*m.M:(i0+n)*m.M])
			if m.EncodeWeight != nil && passes > 0 {
				enc.refineWeighted(res[:n*m.D], n, idx[i0*m.M:(i0+n)*m.M], passes)
			}
		}
	})
}

// weightedPasses is the number of sweeps over the sub-spaces when encoding
// under EncodeWeight; on GloVe 100k a third sweep changed under 1% of codes.
const weightedPasses = 2

// residuals writes x - centroid[list] for each row into out.
func (m *Model) residuals(x faissio.Matrix, lists []int64, out []float32) {
	d := m.D
	for i := 0; i < x.Rows; i++ {
		c := m.Centroids[int(lists[i])*d : int(lists[i]+1)*d]
		r := out[i*d : (i+1)*d]
		for j, v := range x.Row(i) {
			r[j] = v - c[j]
		}
	}
}

// pqEncoder finds, in every sub-space, each vector's nearest codeword (PQ
// codes are always assigned by L2, whatever the index metric).
type pqEncoder struct {
	m   *Model
	sub *assigner
	lab []int32
}

// newPQEncoder makes an encoder whose scans use at most workers goroutines.
func newPQEncoder(m *Model, workers int) *pqEncoder {
	return &pqEncoder{m: m, sub: newAssignerThreads(m.Dsub(), m.Ksub(), workers)}
}

// encode writes the M codeword indices of each of the n vectors in v
// (row-major, D floats each) into idx (n*M).
func (e *pqEncoder) encode(v []float32, n int, idx []uint8) {
	M, dsub, ksub := e.m.M, e.m.Dsub(), e.m.Ksub()
	if cap(e.lab) < n {
		e.lab = make([]int32, n)
	}
	lab := e.lab[:n]
	for s := 0; s < M; s++ {
		sv := strided{data: v[s*dsub:], n: n, dim: dsub, stride: e.m.D}
		// One block of one caller: the caller checks its context per block.
		_ = e.sub.assign(context.Background(), sv, e.m.Codebooks[s*ksub*dsub:(s+1)*ksub*dsub], faissio.L2, lab, nil)
		for i, l := range lab {
			idx[i*M+s] = uint8(l)
		}
	}
}

// refineWeighted improves the codes idx of the n residuals in u (n×D) for
// the weighted error eᵀWe by iterated conditional modes: each sub-space in
// turn takes the codeword that minimises the error with the others fixed.
// With e the current error and g = We, moving sub-space s from codeword k
// to k' changes the error by const - 2 c_k'·(g_s + W_ss c_k) + c_k'ᵀW_ss c_k',
// so one sgemm per sub-space scores every codeword of every residual.
func (e *pqEncoder) refineWeighted(u []float32, n int, idx []uint8, passes int) {
	m := e.m
	D, M, dsub, ksub := m.D, m.M, m.Dsub(), m.Ksub()
	W := m.EncodeWeight
	err := make([]float32, n*D)
	for i := 0; i < n; i++ {
		for s := 0; s < M; s++ {
			c := m.Codebooks[(s*ksub+int(idx[i*M+s]))*dsub:]
			for k := 0; k < dsub; k++ {
				err[i*D+s*dsub+k] = u[i*D+s*dsub+k] - c[k]
			}
		}
	}
	h := make([]float32, n*dsub)
	scores := make([]float32, n*ksub)
	norms := make([]float32, ksub)
	wss := make([]float32, dsub*dsub)
	P := make([]float32, ksub*dsub)
	for p := 0; p < passes; p++ {
		for s := 0; s < M; s++ {
			book := m.Codebooks[s*ksub*dsub : (s+1)*ksub*dsub]
			for a := 0; a < dsub; a++ {
				copy(wss[a*dsub:(a+1)*dsub], W[(s*dsub+a)*D+s*dsub:])
			}
			// P = C W_ss, whose row k is W_ss c_k (W is symmetric): the
			// codewords' quadratic terms and each residual's h come from
			// it without a product per residual.
			sgemm(false, false, ksub, dsub, dsub, 1, book, dsub, wss, dsub, 0, P, dsub)
			for k := 0; k < ksub; k++ {
				norms[k] = dot(P[k*dsub:(k+1)*dsub], book[k*dsub:(k+1)*dsub])
			}
			// h = g_s + W_ss c_k for each residual's current codeword k,
			// with g_s = e W[:, s] from the current errors: one product
			// per sub-space, cheaper than keeping all of g = eW up to date
			// (its first product alone is n·D² and its updates scatter).
			sgemm(false, false, n, dsub, D, 1, err, D, W[s*dsub:], D, 0, h, dsub)
			for i := 0; i < n; i++ {
				pk := P[int(idx[i*M+s])*dsub:]
				hi := h[i*dsub : (i+1)*dsub]
				for a := range hi {
					hi[a] += pk[a]
				}
			}
			sgemm(false, true, n, ksub, dsub, 1, h, dsub, book, dsub, 0, scores, ksub)
			for i := 0; i < n; i++ {
				row := scores[i*ksub : (i+1)*ksub]
				old := int(idx[i*M+s])
				best, bv := old, norms[old]-2*row[old]
				for k, sc := range row {
					if v := norms[k] - 2*sc; v < bv {
						best, bv = k, v
					}
				}
				if best == old {
					continue
				}
				// The error's slice moves by c_old - c_best.
				co, cb := book[old*dsub:], book[best*dsub:]
				e := err[i*D+s*dsub : i*D+(s+1)*dsub]
				for a := range e {
					e[a] += co[a] - cb[a]
				}
				idx[i*M+s] = uint8(best)
			}
		}
	}
}

// SecondMoment returns E[qqᵀ] over the rows of q, a D×D matrix, the
// EncodeWeight that makes codes minimise the expected inner-product error.
// It is one product of d²·rows multiply-adds (under a second for 20,000
// queries of 768 dimensions), kept whole because splitting it would change
// its rounding and so the codes; ctx is checked before and after.
func SecondMoment(ctx context.Context, q faissio.Matrix) ([]float32, error) {
	defer serialBLAS()()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := q.Cols
	w := make([]float32, d*d)
	sgemm(true, false, d, d, q.Rows, 1/float32(q.Rows), q.Data, d, q.Data, d, 0, w, d)
	return w, ctx.Err()
}

// packCode packs the codeword indices into code, nbits each, least
// significant bit first, as FAISS's PQEncoderGeneric does.
func packCode(code []byte, idx []uint8, nbits int) {
	if nbits == 8 {
		copy(code, idx)
		return
	}
	clear(code)
	bit := 0
	for _, v := range idx {
		for b := 0; b < nbits; b++ {
			if v>>b&1 != 0 {
				code[bit>>3] |= 1 << (bit & 7)
			}
			bit++
		}
	}
}

// unpackCode is the inverse of packCode.
func unpackCode(code []byte, idx []uint8, nbits int) {
	bit := 0
	for i := range idx {
		var v uint8
		for b := 0; b < nbits; b++ {
			if code[bit>>3]>>(bit&7)&1 != 0 {
				v |= 1 << b
			}
			bit++
		}
		idx[i] = v
	}
}
