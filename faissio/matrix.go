// Package faissio reads and writes the files distillvq works with: dense
// vector inputs (.npy, .fvecs, .ivecs) and FAISS index files.
package faissio

import (
	"errors"
	"fmt"
)

// Metric is a FAISS metric type, numbered as FAISS numbers it in its files.
type Metric int32

const (
	// InnerProduct ranks by larger <q, x> (FAISS METRIC_INNER_PRODUCT).
	InnerProduct Metric = 0
	// L2 ranks by smaller squared Euclidean distance (FAISS METRIC_L2).
	L2 Metric = 1
)

// String returns the CLI spelling of m: "ip" or "l2".
func (m Metric) String() string {
	switch m {
	case InnerProduct:
		return "ip"
	case L2:
		return "l2"
	}
	return fmt.Sprintf("metric(%d)", int32(m))
}

// ParseMetric parses the CLI spelling of a metric ("ip" or "l2").
func ParseMetric(s string) (Metric, error) {
	switch s {
	case "ip", "IP", "inner_product", "dot":
		return InnerProduct, nil
	case "l2", "L2":
		return L2, nil
	}
	return 0, fmt.Errorf("unknown metric %q (want ip or l2)", s)
}

// Matrix is a dense row-major float32 matrix of Rows vectors of Cols dimensions.
type Matrix struct {
	Rows, Cols int
	Data       []float32 // len(Data) == Rows*Cols
}

// NewMatrix wraps data, without copying it, as a rows x cols matrix, after
// checking what the Matrix literal cannot: that the shape is one (at least
// one column, no negative rows) and that data holds exactly its values, so
// that Row and Slice never index out of range later.
func NewMatrix(rows, cols int, data []float32) (Matrix, error) {
	switch {
	case rows < 0:
		return Matrix{}, fmt.Errorf("matrix of %d rows; want at least 0", rows)
	case cols < 1:
		return Matrix{}, fmt.Errorf("matrix of %d columns; want at least 1", cols)
	}
	n, ok := mulInt(rows, cols)
	if !ok {
		return Matrix{}, fmt.Errorf("matrix of %d x %d has more values than an int counts", rows, cols)
	}
	if len(data) != n {
		return Matrix{}, fmt.Errorf("matrix of %d x %d needs %d values, got %d", rows, cols, n, len(data))
	}
	return Matrix{Rows: rows, Cols: cols, Data: data}, nil
}

// MatrixFromRows copies rows, which must all have the same non-zero length,
// into one row-major matrix: the layout every reader and trainer here
// takes, built from the [][]float32 that other libraries hand out.
func MatrixFromRows(rows [][]float32) (Matrix, error) {
	if len(rows) == 0 {
		return Matrix{}, errors.New("no rows")
	}
	cols := len(rows[0])
	if cols == 0 {
		return Matrix{}, errors.New("row 0 has no values")
	}
	for i, r := range rows {
		if len(r) != cols {
			return Matrix{}, fmt.Errorf("row %d has %d values, row 0 has %d", i, len(r), cols)
		}
	}
	n, ok := mulInt(len(rows), cols)
	if !ok {
		return Matrix{}, fmt.Errorf("matrix of %d x %d has more values than an int counts", len(rows), cols)
	}
	data := make([]float32, 0, n)
	for _, r := range rows {
		data = append(data, r...)
	}
	return Matrix{Rows: len(rows), Cols: cols, Data: data}, nil
}

// Row returns row i as a slice sharing m's storage.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.Cols : (i+1)*m.Cols : (i+1)*m.Cols] }

// Slice returns rows [i, j) as a matrix sharing m's storage.
func (m Matrix) Slice(i, j int) Matrix {
	return Matrix{Rows: j - i, Cols: m.Cols, Data: m.Data[i*m.Cols : j*m.Cols : j*m.Cols]}
}

// MarshalText writes m as "ip" or "l2", so reports read naturally.
func (m Metric) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads "ip" or "l2".
func (m *Metric) UnmarshalText(b []byte) error {
	v, err := ParseMetric(string(b))
	*m = v
	return err
}
