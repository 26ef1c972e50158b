//go:build !amd64

package distill

// argminVector has no vector kernel here: argmin's scalar loop runs.
func argminVector(row []float32) (int, float32, bool) { return 0, 0, false }

// haveVectorArgmin reports whether argmin runs the vector kernel.
func haveVectorArgmin() bool { return false }
