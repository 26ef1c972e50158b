package faissio

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRowsSource checks that a program's rows become a Source equal to
// them, and that rows that cannot form a matrix give an empty Source whose
// Err, and reads, say why.
func TestRowsSource(t *testing.T) {
	s := RowsSource([][]float32{{1, 2}, {3, 4}, {5, 6}})
	if s.Err() != nil || s.Rows != 3 || s.Cols != 2 {
		t.Fatalf("RowsSource: %d x %d, %v", s.Rows, s.Cols, s.Err())
	}
	got := make([]float32, 4)
	if err := s.Read(1, 3, got); err != nil || got[0] != 3 || got[3] != 6 {
		t.Errorf("Read(1, 3) = %v, %v", got, err)
	}
	for _, rows := range [][][]float32{nil, {{1, 2}, {3}}} {
		s := RowsSource(rows)
		if s.Err() == nil || s.Rows != 0 {
			t.Errorf("RowsSource(%v): %d rows, err %v", rows, s.Rows, s.Err())
			continue
		}
		if err := s.Read(0, 0, nil); err != s.Err() {
			t.Errorf("Read gives %v, want %v", err, s.Err())
		}
		if err := s.CheckFinite(); err != s.Err() {
			t.Errorf("CheckFinite gives %v, want %v", err, s.Err())
		}
		var h strings.Builder
		if err := s.Fingerprint(&h); err != s.Err() {
			t.Errorf("Fingerprint gives %v, want %v", err, s.Err())
		}
	}
}

// TestSourceSlice checks that a Slice of a folder of shards reads the rows
// a whole read gives, across shard boundaries, and names the file's own
// row in errors.
func TestSourceSlice(t *testing.T) {
	dir := t.TempDir()
	m := testMatrixRows(t, 50, 3)
	for k, cut := range [][2]int{{0, 7}, {7, 30}, {30, 50}} {
		if err := WriteNpy(filepath.Join(dir, fmt.Sprintf("part-%d.npy", k)), m.Slice(cut[0], cut[1])); err != nil {
			t.Fatal(err)
		}
	}
	src, err := OpenSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, 50}, {5, 9}, {7, 30}, {29, 31}, {10, 10}, {49, 50}} {
		s, err := src.Slice(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, (r[1]-r[0])*3)
		if err := s.Read(0, s.Rows, got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, m.Data[r[0]*3:r[1]*3]) {
			t.Errorf("Slice(%d, %d) reads other rows", r[0], r[1])
		}
		mem, _ := MatrixSource(m).Slice(r[0], r[1])
		if err := mem.Read(0, mem.Rows, got); err != nil || !slices.Equal(got, m.Data[r[0]*3:r[1]*3]) {
			t.Errorf("in-memory Slice(%d, %d): %v", r[0], r[1], err)
		}
	}
	if _, err := src.Slice(3, 51); err == nil {
		t.Error("Slice past the end accepted")
	}
	// A NaN in row 12 of the file part-1.npy (row 19 of the whole).
	bad := m.Slice(7, 30)
	bad.Data = slices.Clone(bad.Data)
	bad.Data[12*3+1] = float32(math.NaN())
	if err := WriteNpy(filepath.Join(dir, "part-1.npy"), bad); err != nil {
		t.Fatal(err)
	}
	src, _ = OpenSource(dir)
	s, _ := src.Slice(15, 25)
	err = s.Read(0, s.Rows, make([]float32, 30))
	if err == nil || !strings.Contains(err.Error(), "part-1.npy: row 12, column 1 is NaN") {
		t.Errorf("NaN in a slice: %v", err)
	}
}

// testMatrixRows is a rows x cols matrix of distinct values.
func testMatrixRows(t *testing.T, rows, cols int) Matrix {
	t.Helper()
	m := Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = float32(i) * 0.5
	}
	return m
}
