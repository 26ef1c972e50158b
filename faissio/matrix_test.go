package faissio

import (
	"math"
	"slices"
	"testing"
)

func TestNewMatrix(t *testing.T) {
	data := []float32{1, 2, 3, 4, 5, 6}
	m, err := NewMatrix(2, 3, data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 2 || m.Cols != 3 || &m.Data[0] != &data[0] || !slices.Equal(m.Row(1), []float32{4, 5, 6}) {
		t.Errorf("got %+v", m)
	}
	if m, err := NewMatrix(0, 4, nil); err != nil || m.Rows != 0 || m.Cols != 4 {
		t.Errorf("empty matrix: %+v, %v", m, err)
	}
	for _, c := range []struct {
		rows, cols, n int
		want          string
	}{
		{3, 4, 11, "matrix of 3 x 4 needs 12 values, got 11"},
		{3, 4, 13, "matrix of 3 x 4 needs 12 values, got 13"},
		{-1, 4, 0, "matrix of -1 rows; want at least 0"},
		{2, 0, 0, "matrix of 0 columns; want at least 1"},
		{2, -3, 0, "matrix of -3 columns; want at least 1"},
		{math.MaxInt/2 + 1, 2, 0, "matrix of 4611686018427387904 x 2 has more values than an int counts"},
		{1 << 62, 4, 0, "matrix of 4611686018427387904 x 4 has more values than an int counts"},
	} {
		if _, err := NewMatrix(c.rows, c.cols, make([]float32, c.n)); err == nil || err.Error() != c.want {
			t.Errorf("NewMatrix(%d, %d, %d values): %v, want %s", c.rows, c.cols, c.n, err, c.want)
		}
	}
}

func TestMatrixFromRows(t *testing.T) {
	rows := [][]float32{{1, 2}, {3, 4}, {5, 6}}
	m, err := MatrixFromRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 3 || m.Cols != 2 || !slices.Equal(m.Data, []float32{1, 2, 3, 4, 5, 6}) {
		t.Errorf("got %+v", m)
	}
	rows[0][0] = 9
	if m.Data[0] != 1 {
		t.Error("the matrix shares the rows")
	}
	long := make([][]float32, 5)
	for i := range long {
		long[i] = make([]float32, 100)
	}
	long[3] = make([]float32, 99)
	for _, c := range []struct {
		rows [][]float32
		want string
	}{
		{nil, "no rows"},
		{[][]float32{}, "no rows"},
		{[][]float32{{}, {}}, "row 0 has no values"},
		{long, "row 3 has 99 values, row 0 has 100"},
		{[][]float32{{1}, {1, 2}}, "row 1 has 2 values, row 0 has 1"},
	} {
		if _, err := MatrixFromRows(c.rows); err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}
