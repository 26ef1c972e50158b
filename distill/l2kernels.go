package distill

// The L2 student's kernels. Its per-candidate work on codewords is
// subtracting each sub-space's codeword from a residual and adding a
// multiple of each residual sub-vector to its codeword's gradient. Codes
// name codewords anywhere in a 786 KB codebook at d = 768, so these are
// gathers and scatters of dsub floats, which an SSE kernel does four at a
// time on amd64 when dsub is a multiple of 4 (the loops below otherwise,
// to the same bits).

// subCodewords subtracts codeword code[s] of sub-space s, from cb (M
// codebooks of ksub x dsub), from r[s*dsub : (s+1)*dsub], for every s.
func subCodewords(r, cb []float32, code []uint8, ksub, dsub int) {
	if subCodewordsVector(r, cb, code, ksub, dsub) {
		return
	}
	for s, cw := range code {
		rs := r[s*dsub : (s+1)*dsub]
		c := cb[(s*ksub+int(cw))*dsub:]
		c = c[:len(rs)]
		for k := range rs {
			rs[k] -= c[k]
		}
	}
}

// addCodewords adds alpha*r[s*dsub : (s+1)*dsub] to codeword code[s]'s
// entries of gc (laid out as the codebooks), for every s.
func addCodewords(gc, r []float32, alpha float32, code []uint8, ksub, dsub int) {
	if addCodewordsVector(gc, r, alpha, code, ksub, dsub) {
		return
	}
	for s, cw := range code {
		rs := r[s*dsub : (s+1)*dsub]
		g := gc[(s*ksub+int(cw))*dsub:]
		g = g[:len(rs)]
		for k, v := range rs {
			g[k] += alpha * v
		}
	}
}

// l2Sq is ||q - x||², in running sums that do not wait on each other (the
// L2 student scores its in-batch negatives with it): sixteen in SSE on
// amd64, four in Go elsewhere and for short vectors.
func l2Sq(q, x []float32) float32 {
	if s, ok := l2SqVector(q, x); ok {
		return s
	}
	x = x[:len(q)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(q); i += 4 {
		d0, d1, d2, d3 := q[i]-x[i], q[i+1]-x[i+1], q[i+2]-x[i+2], q[i+3]-x[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(q); i++ {
		d := q[i] - x[i]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}
