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
