package faissio

import "math"

// OrthonormalityError returns max |A Aᵀ - I| over the entries, for A the
// d×d matrix a in row-major order (an OPQ rotation, a LinearTransform's A):
// 0 for an exactly orthonormal A, about 1e-7 for one rounded to float32.
// The products are summed in float64. It returns NaN when len(a) != d*d.
func OrthonormalityError(a []float32, d int) float64 {
	if d < 0 || len(a) != d*d {
		return math.NaN()
	}
	var worst float64
	for i := range d {
		ri := a[i*d : (i+1)*d]
		for j := range d {
			rj := a[j*d : (j+1)*d]
			var s float64
			for k, x := range ri {
				s += float64(x) * float64(rj[k])
			}
			if i == j {
				s--
			}
			worst = math.Max(worst, math.Abs(s))
		}
	}
	return worst
}
