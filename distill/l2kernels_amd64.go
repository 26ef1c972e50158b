package distill

//go:noescape
func subCodewordsSSE(r, cb []float32, code []uint8, ksub, dsub int)

//go:noescape
func addCodewordsSSE(gc, r []float32, alpha float32, code []uint8, ksub, dsub int)

// codewordKernel reports whether the SSE kernels take M sub-vectors of
// dsub from r and codebooks of ksub*dsub from cb (or gc).
func codewordKernel(r, cb []float32, M, ksub, dsub int) bool {
	return M > 0 && dsub > 0 && dsub%4 == 0 && len(r) >= M*dsub && len(cb) >= M*ksub*dsub
}

func subCodewordsVector(r, cb []float32, code []uint8, ksub, dsub int) bool {
	if !codewordKernel(r, cb, len(code), ksub, dsub) {
		return false
	}
	subCodewordsSSE(r, cb, code, ksub, dsub)
	return true
}

func addCodewordsVector(gc, r []float32, alpha float32, code []uint8, ksub, dsub int) bool {
	if !codewordKernel(r, gc, len(code), ksub, dsub) {
		return false
	}
	addCodewordsSSE(gc, r, alpha, code, ksub, dsub)
	return true
}

//go:noescape
func l2SqSSE(q, x []float32) float32

// l2SqVector is ||q - x||² by the SSE kernel for the first len(q) &^ 15
// entries, when there are at least 16 and x is as long as q.
func l2SqVector(q, x []float32) (float32, bool) {
	if len(q) < 16 || len(x) < len(q) {
		return 0, false
	}
	n := len(q) &^ 15
	s := l2SqSSE(q, x)
	for i := n; i < len(q); i++ {
		d := q[i] - x[i]
		s += d * d
	}
	return s, true
}
