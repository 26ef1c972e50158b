package faissio

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestSourceEqualsReadVectors checks, for each kind of input, that every
// block and every gathered set of rows read through a Source equals the
// same rows of ReadVectors, and that errors name the same file and row.
func TestSourceEqualsReadVectors(t *testing.T) {
	dir := t.TempDir()
	m := randomMatrix(37, 6, 1)
	var le16, be32, le64 []byte
	for _, v := range m.Data {
		be32 = binary.BigEndian.AppendUint32(be32, math.Float32bits(v))
		le64 = binary.LittleEndian.AppendUint64(le64, math.Float64bits(float64(v)))
	}
	for k := range m.Data {
		le16 = binary.LittleEndian.AppendUint16(le16, uint16(0x3c00+k%512)) // 1 + small mantissas
	}
	shards := filepath.Join(dir, "shards")
	if err := WriteNpy(filepath.Join(shards+"-a.npy"), m.Slice(0, 20)); err != nil {
		t.Fatal(err)
	}
	if err := WriteNpy(filepath.Join(shards+"-b.npy"), m.Slice(20, 37)); err != nil {
		t.Fatal(err)
	}
	rows := make([][]uint32, m.Rows)
	for i := range rows {
		rows[i] = fbits(m.Row(i)...)
	}
	paths := []string{
		writeTemp(t, dir, "f2.npy", npyFile("<f2", "(37, 6)", false, le16)),
		writeTemp(t, dir, "f4be.npy", npyFile(">f4", "(37, 6)", false, be32)),
		writeTemp(t, dir, "f8.npy", npyFile("<f8", "(37, 6)", false, le64)),
		writeTemp(t, dir, "x.fvecs", vecsFile(rows...)),
		shards + "-*.npy",
	}
	r := rand.New(rand.NewPCG(2, 3))
	for _, path := range paths {
		want, err := ReadVectors(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		if s.Rows != want.Rows || s.Cols != want.Cols {
			t.Fatalf("%s: source %dx%d, ReadVectors %dx%d", path, s.Rows, s.Cols, want.Rows, want.Cols)
		}
		for range 50 {
			i := r.IntN(s.Rows + 1)
			j := i + r.IntN(s.Rows-i+1)
			got := Matrix{Rows: j - i, Cols: s.Cols, Data: make([]float32, (j-i)*s.Cols)}
			if err := s.Read(i, j, got.Data); err != nil {
				t.Fatal(err)
			}
			equalMatrix(t, got, want.Slice(i, j))

			var pick []int
			for k := range s.Rows {
				if r.IntN(3) == 0 {
					pick = append(pick, k)
				}
			}
			got = Matrix{Rows: len(pick), Cols: s.Cols, Data: make([]float32, len(pick)*s.Cols)}
			if err := s.Gather(pick, got.Data); err != nil {
				t.Fatal(err)
			}
			for k, row := range pick {
				if !slices.Equal(got.Row(k), want.Row(row)) {
					t.Fatalf("%s: gathered row %d differs", path, row)
				}
			}
		}
	}

	// A NaN in the second shard: the same message as ReadVectors'.
	bad := m.Slice(20, 37)
	bad.Data = slices.Clone(bad.Data)
	bad.Data[3*6+2] = float32(math.NaN())
	if err := WriteNpy(shards+"-b.npy", bad); err != nil {
		t.Fatal(err)
	}
	_, wantErr := ReadVectors(shards + "-*.npy")
	s, err := OpenSource(shards + "-*.npy")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Read(0, s.Rows, make([]float32, s.Rows*s.Cols))
	if err == nil || wantErr == nil || err.Error() != wantErr.Error() || !strings.Contains(err.Error(), "row 3, column 2 is NaN") {
		t.Errorf("NaN: source says %v, ReadVectors %v", err, wantErr)
	}
	if err := s.Read(0, 20, make([]float32, 20*6)); err != nil {
		t.Errorf("rows before the NaN: %v", err)
	}
}

// TestOpenSourceRefuses checks that the headers are checked as ReadVectors
// checks them, before any data is read.
func TestOpenSourceRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"int8.npy", npyFile("|i1", "(2, 3)", false, make([]byte, 6)), "unsupported dtype int8"},
		{"3d.npy", npyFile("<f4", "(2, 3, 1)", false, make([]byte, 24)), "3-D array"},
		{"fortran.npy", npyFile("<f4", "(2, 3)", true, make([]byte, 24)), "Fortran-order"},
		{"short.npy", npyFile("<f4", "(2, 3)", false, make([]byte, 20)), "truncated"},
		{"short.fvecs", vecsFile(fbits(1, 2, 3), fbits(1, 2))[:22], "truncated"},
	} {
		path := writeTemp(t, dir, c.name, c.file)
		_, err := OpenSource(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), path) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// withReadChunk runs the rest of a test with Read's chunks limited to
// bytes, restoring the limit after.
func withReadChunk(t *testing.T, bytes int64) {
	old := readChunkBytes
	readChunkBytes = bytes
	t.Cleanup(func() { readChunkBytes = old })
}

// TestSourceReadChunks reads with chunks of a few rows, so that every read
// crosses chunk boundaries, and checks the rows and the errors against
// ReadVectors, and that the raw buffer stays within a chunk.
func TestSourceReadChunks(t *testing.T) {
	dir := t.TempDir()
	const rows, cols = 41, 6
	m := randomMatrix(rows, cols, 4)
	var le16, le32b, le64 []byte
	for k, v := range m.Data {
		le16 = binary.LittleEndian.AppendUint16(le16, uint16(0x3c00+k%977))
		le32b = binary.LittleEndian.AppendUint32(le32b, math.Float32bits(v))
		le64 = binary.LittleEndian.AppendUint64(le64, math.Float64bits(float64(v)))
	}
	vrows := make([][]uint32, rows)
	for i := range vrows {
		vrows[i] = fbits(m.Row(i)...)
	}
	files := map[string][]byte{
		"f2.npy":  npyFile("<f2", "(41, 6)", false, le16),
		"f4.npy":  npyFile("<f4", "(41, 6)", false, le32b),
		"f8.npy":  npyFile("<f8", "(41, 6)", false, le64),
		"x.fvecs": vecsFile(vrows...),
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, chunk := range []int64{1, 50, 100, 333} {
		withReadChunk(t, chunk)
		for name, b := range files {
			path := writeTemp(t, dir, name, b)
			want, err := ReadVectors(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := OpenSource(path)
			if err != nil {
				t.Fatal(err)
			}
			got := Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
			if err := s.Read(0, rows, got.Data); err != nil {
				t.Fatal(err)
			}
			equalMatrix(t, got, want)
			for range 20 {
				i := r.IntN(rows + 1)
				j := i + r.IntN(rows-i+1)
				got := Matrix{Rows: j - i, Cols: cols, Data: make([]float32, (j-i)*cols)}
				if err := s.Read(i, j, got.Data); err != nil {
					t.Fatal(err)
				}
				equalMatrix(t, got, want.Slice(i, j))
			}

			// The raw buffer holds one chunk, or one row, not the range.
			p := &s.parts[0]
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			buf, err := p.read(f, 0, rows, make([]float32, rows*cols), cols, nil)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if limit := max(chunk, p.rowBytes); int64(cap(buf)) > limit {
				t.Errorf("%s, chunk %d: raw buffer of %d bytes, want at most %d", name, chunk, cap(buf), limit)
			}
		}

		// A NaN in a later chunk: the same message, with the file's row.
		bad := slices.Clone(le32b)
		binary.LittleEndian.PutUint32(bad[4*(37*cols+4):], math.Float32bits(float32(math.NaN())))
		path := writeTemp(t, dir, "nan.npy", npyFile("<f4", "(41, 6)", false, bad))
		_, wantErr := ReadVectors(path)
		s, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Read(3, rows, make([]float32, (rows-3)*cols))
		if err == nil || wantErr == nil || err.Error() != wantErr.Error() || !strings.HasSuffix(err.Error(), "row 37, column 4 is NaN") {
			t.Errorf("chunk %d: source says %v, ReadVectors %v", chunk, err, wantErr)
		}
	}
}

// TestMatrixSource checks that a Source in memory reads, gathers and
// checks as a Source of files does, from many goroutines at once, and
// hands out its matrix without a copy.
func TestMatrixSource(t *testing.T) {
	m := randomMatrix(53, 5, 7)
	s := MatrixSource(m)
	if s.Rows != 53 || s.Cols != 5 {
		t.Fatalf("source %dx%d", s.Rows, s.Cols)
	}
	if got, ok := s.Matrix(); !ok || &got.Data[0] != &m.Data[0] || got.Rows != 53 || got.Cols != 5 {
		t.Errorf("Matrix() = %dx%d, %v, or a copy", got.Rows, got.Cols, ok)
	}
	if err := s.CheckFinite(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 200 {
				i := r.IntN(s.Rows + 1)
				j := i + r.IntN(s.Rows-i+1)
				dst := make([]float32, (j-i)*s.Cols)
				if err := s.Read(i, j, dst); err != nil {
					errs <- err
					return
				}
				if !slices.Equal(dst, m.Slice(i, j).Data) {
					errs <- fmt.Errorf("rows [%d, %d) differ", i, j)
					return
				}
				pick := []int{i / 2, i, i + 1, j + 3}
				pick = slices.DeleteFunc(pick, func(k int) bool { return k >= s.Rows })
				pick = slices.Compact(pick)
				dst = make([]float32, len(pick)*s.Cols)
				if err := s.Gather(pick, dst); err != nil {
					errs <- err
					return
				}
				for k, row := range pick {
					if !slices.Equal(dst[k*s.Cols:(k+1)*s.Cols], m.Row(row)) {
						errs <- fmt.Errorf("gathered row %d differs", row)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Read(0, 54, make([]float32, 54*5)); err == nil {
		t.Error("read past the end: no error")
	}

	// Reads copy: writing to what Read gave leaves the matrix alone.
	dst := make([]float32, 5)
	if err := s.Read(2, 3, dst); err != nil {
		t.Fatal(err)
	}
	dst[0] = 1e9
	if m.Data[10] == 1e9 {
		t.Error("Read shares the matrix")
	}

	m.Data[3*5+1] = float32(math.NaN())
	m.Data[40*5+2] = float32(math.Inf(1))
	const want = "matrix: row 3, column 1 is NaN"
	if err := s.CheckFinite(); err == nil || err.Error() != want {
		t.Errorf("CheckFinite: %v, want %s", err, want)
	}
	if err := s.Read(1, 10, make([]float32, 9*5)); err == nil || err.Error() != want {
		t.Errorf("Read: %v, want %s", err, want)
	}
	if err := s.Gather([]int{0, 3}, make([]float32, 2*5)); err == nil || err.Error() != want {
		t.Errorf("Gather: %v, want %s", err, want)
	}
	if err := s.Read(40, 41, make([]float32, 5)); err == nil || err.Error() != "matrix: row 40, column 2 is +Inf" {
		t.Errorf("Read: %v", err)
	}

	path := filepath.Join(t.TempDir(), "x.npy")
	if err := WriteNpy(path, randomMatrix(3, 2, 1)); err != nil {
		t.Fatal(err)
	}
	fs, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fs.Matrix(); ok {
		t.Error("a Source of files says it holds a matrix")
	}

	defer func() {
		if recover() == nil {
			t.Error("MatrixSource of a malformed matrix does not panic")
		}
	}()
	MatrixSource(Matrix{Rows: 2, Cols: 3, Data: make([]float32, 5)})
}
