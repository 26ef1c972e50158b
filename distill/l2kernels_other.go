//go:build !amd64

package distill

func subCodewordsVector(r, cb []float32, code []uint8, ksub, dsub int) bool { return false }

func addCodewordsVector(gc, r []float32, alpha float32, code []uint8, ksub, dsub int) bool {
	return false
}

func l2SqVector(q, x []float32) (float32, bool) { return 0, false }
