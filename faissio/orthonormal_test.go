package faissio

import (
	"math"
	"testing"
)

func TestOrthonormalityError(t *testing.T) {
	eye := make([]float32, 5*5)
	for i := range 5 {
		eye[i*5+i] = 1
	}
	if got := OrthonormalityError(eye, 5); got != 0 {
		t.Errorf("identity: %g, want 0", got)
	}

	// Rotations by 0.3 and 1.1 rad in two planes, rounded to float32: rows
	// stay exactly orthogonal (c·s - s·c), and their squared norms miss 1
	// by the rounding alone.
	c1, s1 := float32(math.Cos(0.3)), float32(math.Sin(0.3))
	c2, s2 := float32(math.Cos(1.1)), float32(math.Sin(1.1))
	rot := []float32{
		c1, -s1, 0, 0,
		s1, c1, 0, 0,
		0, 0, c2, -s2,
		0, 0, s2, c2,
	}
	n := func(c, s float32) float64 { return math.Abs(float64(c)*float64(c) + float64(s)*float64(s) - 1) }
	want := max(n(c1, s1), n(c2, s2))
	if got := OrthonormalityError(rot, 4); got != want || got == 0 || got > 2e-7 {
		t.Errorf("rotation: %g, want %g (about 1e-7)", got, want)
	}

	// A Aᵀ - I = [[4 2] [2 0]] for A = [[1 2] [0 1]].
	if got := OrthonormalityError([]float32{1, 2, 0, 1}, 2); got != 4 {
		t.Errorf("shear: %g, want 4", got)
	}
	// Orthogonal rows of norm 2: 4 - 1.
	if got := OrthonormalityError([]float32{0, 2, 2, 0}, 2); got != 3 {
		t.Errorf("scaled swap: %g, want 3", got)
	}
	if got := OrthonormalityError(eye[:24], 5); !math.IsNaN(got) {
		t.Errorf("24 values for d 5: %g, want NaN", got)
	}
	if got := OrthonormalityError(nil, 0); got != 0 {
		t.Errorf("d 0: %g, want 0", got)
	}
}
