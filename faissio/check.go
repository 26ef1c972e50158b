package faissio

import (
	"fmt"
	"math"
)

// CheckFinite returns an error naming the first NaN or infinite value in m,
// as "NAME: row 17, column 3 is NaN", or nil if every value is finite.
// Rows and columns count from 0, as numpy indexes them, so the position can
// be pasted into x[17, 3]. A single non-finite value poisons k-means
// centroids and every distance computed against them, so inputs are checked
// before training rather than debugged after.
func CheckFinite(m Matrix, name string) error {
	for i, v := range m.Data {
		if what := nonFinite(v); what != "" {
			return fmt.Errorf("%s: row %d, column %d is %s", name, i/m.Cols, i%m.Cols, what)
		}
	}
	return nil
}

// nonFinite names v if it is NaN or infinite, and is "" otherwise.
func nonFinite(v float32) string {
	// An all-ones exponent is exactly the set of NaNs and infinities.
	if math.Float32bits(v)&0x7f800000 != 0x7f800000 {
		return ""
	}
	switch {
	case math.IsInf(float64(v), 1):
		return "+Inf"
	case math.IsInf(float64(v), -1):
		return "-Inf"
	}
	return "NaN"
}
