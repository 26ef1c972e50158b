package distill

import (
	"math"

	"golang.org/x/sys/cpu"
)

// haveAVX2 chooses argmin's vector kernel.
var haveAVX2 = cpu.X86.HasAVX2

//go:noescape
func minAVX2(x []float32) float32

//go:noescape
func firstEqAVX2(x []float32, v float32) int

// argminVector is argmin by two vector passes, the smallest value (NaNs
// skipped) and then its first position, when the row is long enough to
// pay for them; ok is false otherwise.
func argminVector(row []float32) (i int, s float32, ok bool) {
	if !haveAVX2 || len(row) < 32 {
		return 0, 0, false
	}
	n := len(row) &^ 15
	s = minAVX2(row[:n])
	for _, v := range row[n:] {
		if v < s {
			s = v
		}
	}
	if math.IsInf(float64(s), 1) {
		return 0, s, true // nothing below +Inf: all +Inf or NaN
	}
	if i = firstEqAVX2(row[:n], s); i >= 0 {
		return i, row[i], true
	}
	for i = n; row[i] != s; i++ { // only in the tail
	}
	return i, row[i], true
}

// haveVectorArgmin reports whether argmin runs the vector kernel.
func haveVectorArgmin() bool { return haveAVX2 }
