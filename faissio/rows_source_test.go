package faissio

import (
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
