package faissio

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
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
