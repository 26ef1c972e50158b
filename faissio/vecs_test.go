package faissio

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// vecsFile builds an .fvecs/.ivecs file: each row is its dimension, then
// its values, as 4-byte little-endian words.
func vecsFile(rows ...[]uint32) []byte {
	var b []byte
	for _, r := range rows {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		for _, v := range r {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	return b
}

func fbits(vs ...float32) []uint32 {
	u := make([]uint32, len(vs))
	for i, v := range vs {
		u[i] = math.Float32bits(v)
	}
	return u
}

func TestReadFvecs(t *testing.T) {
	dir := t.TempDir()
	path := writeTemp(t, dir, "x.fvecs", vecsFile(fbits(1, 2, 3), fbits(4, 5, 6)))
	m, err := ReadFvecs(path)
	if err != nil {
		t.Fatal(err)
	}
	equalMatrix(t, m, Matrix{Rows: 2, Cols: 3, Data: []float32{1, 2, 3, 4, 5, 6}})
	if v, err := ReadVectors(path); err != nil {
		t.Fatal(err)
	} else {
		equalMatrix(t, v, m)
	}

	bad := vecsFile(fbits(1, 2), fbits(3, 4), fbits(5, 6))
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"dims.fvecs", vecsFile(fbits(1, 2), fbits(3, 4), fbits(5, 6, 7), fbits(8, 9)),
			"row 2 has dimension 3, but row 0 has 2"},
		{"lastdim.fvecs", vecsFile(fbits(1, 2), fbits(3, 4), fbits(5)),
			"row 2 has dimension 1, but row 0 has 2"},
		{"truncated.fvecs", bad[:len(bad)-1],
			"truncated: row 2 has 11 of its 12 bytes"},
		{"truncateddim.fvecs", bad[:len(bad)-10],
			"truncated: row 2 has 2 of its 12 bytes"},
		{"empty.fvecs", nil,
			"empty file"},
		{"tiny.fvecs", []byte{2, 0},
			"row 0: file shrank while being read"},
		{"zero.fvecs", vecsFile([]uint32{}),
			"row 0: invalid dimension 0"},
		{"negative.fvecs", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
			"row 0: invalid dimension -1"},
		{"huge.fvecs", []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4},
			"truncated: row 0 of dimension 2147483647 needs 8589934592 bytes but the file has only 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, dir, tt.name, tt.file)
			_, err := ReadFvecs(path)
			wantErr(t, err, path, tt.want)
			_, _, _, err = ReadIvecs(path)
			wantErr(t, err, path, tt.want)
		})
	}
}

func TestReadIvecs(t *testing.T) {
	path := writeTemp(t, t.TempDir(), "gt.ivecs", vecsFile([]uint32{7, 1}, []uint32{0xffffffff, 2}))
	rows, cols, data, err := ReadIvecs(path)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2 || cols != 2 || !slices.Equal(data, []int32{7, 1, -1, 2}) {
		t.Fatalf("got %dx%d %v", rows, cols, data)
	}
}

// siftsmall is the TEXMEX ANN_SIFT10K set, in the shared data beside the
// checkout: outside the repository, so its absence skips TestSiftsmall.
const siftsmall = "../../shared/data/siftsmall"

func TestSiftsmall(t *testing.T) {
	if _, err := os.Stat(filepath.Join(siftsmall, "siftsmall_base.fvecs")); err != nil {
		t.Skip("siftsmall, outside the repository, not available:", err)
	}
	base, err := ReadVectors(filepath.Join(siftsmall, "siftsmall_base.fvecs"))
	if err != nil {
		t.Fatal(err)
	}
	query, err := ReadFvecs(filepath.Join(siftsmall, "siftsmall_query.fvecs"))
	if err != nil {
		t.Fatal(err)
	}
	rows, cols, gt, err := ReadIvecs(filepath.Join(siftsmall, "siftsmall_groundtruth.ivecs"))
	if err != nil {
		t.Fatal(err)
	}
	if base.Rows != 10000 || base.Cols != 128 || query.Rows != 100 || query.Cols != 128 || rows != 100 || cols != 100 {
		t.Fatalf("got base %dx%d, query %dx%d, ground truth %dx%d", base.Rows, base.Cols, query.Rows, query.Cols, rows, cols)
	}
	// SIFT descriptors are small non-negative integers.
	for i, v := range base.Data {
		if v < 0 || v > 255 || v != float32(int(v)) {
			t.Fatalf("base value %d is %v", i, v)
		}
	}
	// If the rows were misread, the ground truth would not hold: the
	// nearest base vector of a few queries, by brute force.
	for q := range 5 {
		best, bestDist := -1, math.Inf(1)
		for i := range base.Rows {
			var d float64
			for j, x := range query.Row(q) {
				diff := float64(x - base.Row(i)[j])
				d += diff * diff
			}
			if d < bestDist {
				best, bestDist = i, d
			}
		}
		if best != int(gt[q*cols]) {
			t.Errorf("query %d: nearest base vector %d, ground truth says %d", q, best, gt[q*cols])
		}
	}

	// The same data through .npy, read and mapped, is the same matrix.
	npyPath := filepath.Join(t.TempDir(), "base.npy")
	if err := WriteNpy(npyPath, base); err != nil {
		t.Fatal(err)
	}
	defer func(old int64) { mmapThreshold = old }(mmapThreshold)
	mmapThreshold = 1 << 20
	m, mapping, err := readNpy(npyPath)
	if err != nil || mapping == nil {
		t.Fatalf("err %v, mapped %v", err, mapping != nil)
	}
	equalMatrix(t, m, base)
}

func TestReadVectorsShards(t *testing.T) {
	dir := t.TempDir()
	all := randomMatrix(10, 4, 3)
	// Written out of order, read in name order.
	for _, s := range []struct {
		name string
		i, j int
	}{{"part-2.npy", 7, 10}, {"part-0.npy", 0, 2}, {"part-1.npy", 2, 7}} {
		if err := WriteNpy(filepath.Join(dir, s.name), all.Slice(s.i, s.j)); err != nil {
			t.Fatal(err)
		}
	}
	// Not shards: other files, hidden files, a directory.
	writeTemp(t, dir, "README", []byte("not vectors"))
	writeTemp(t, dir, ".part-9.npy.tmp-x", []byte("half-written"))
	writeTemp(t, dir, "._part-0.npy", []byte("macOS resource fork"))
	os.Mkdir(filepath.Join(dir, "sub.npy"), 0o777)

	for _, path := range []string{dir, filepath.Join(dir, "part-*.npy"), filepath.Join(dir, "part-[0-2].npy")} {
		m, err := ReadVectors(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		equalMatrix(t, m, all)
	}
	// A glob of one file is that file.
	m, err := ReadVectors(filepath.Join(dir, "part-1*"))
	if err != nil {
		t.Fatal(err)
	}
	equalMatrix(t, m, all.Slice(2, 7))

	// A shard of another width is named, with the first shard.
	odd := filepath.Join(dir, "part-3.npy")
	if err := WriteNpy(odd, randomMatrix(2, 5, 4)); err != nil {
		t.Fatal(err)
	}
	_, err = ReadVectors(dir)
	wantErr(t, err, odd, "5 columns, but "+filepath.Join(dir, "part-0.npy")+" has 4")
	_, err = ReadVectors(filepath.Join(dir, "*.npy"))
	wantErr(t, err, odd, "5 columns, but "+filepath.Join(dir, "part-0.npy")+" has 4")

	// A NaN is named by its file and its row there, not in the whole.
	nan := randomMatrix(3, 4, 5)
	nan.Row(1)[2] = float32(math.NaN())
	if err := WriteNpy(odd, nan); err != nil {
		t.Fatal(err)
	}
	_, err = ReadVectors(dir)
	wantErr(t, err, odd, "row 1, column 2 is NaN")

	// A bad shard is named.
	bad := writeTemp(t, dir, "part-3.npy", npyFile("|i1", "(2, 4)", false, make([]byte, 8)))
	_, err = ReadVectors(dir)
	wantErr(t, err, bad, "unsupported dtype int8 (want float32, float16 or float64)")

	empty := t.TempDir()
	_, err = ReadVectors(empty)
	wantErr(t, err, empty, "no .npy files in directory")
	pattern := filepath.Join(empty, "*.npy")
	_, err = ReadVectors(pattern)
	wantErr(t, err, pattern, "no files match")
	pattern = filepath.Join(empty, "[.npy")
	_, err = ReadVectors(pattern)
	wantErr(t, err, pattern, "bad glob pattern")
	other := writeTemp(t, empty, "x.bin", nil)
	_, err = ReadVectors(other)
	wantErr(t, err, other, `unknown vector file type ".bin" (want .npy, .fvecs, a directory of .npy files or a glob of them)`)
}

func TestReadVectorsShardsFromNumpy(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
x = np.arange(40, dtype=np.float32).reshape(10, 4)
np.save(dir + '/b.npy', x[3:].astype(np.float16))
np.save(dir + '/a.npy', x[:3].astype(np.float64))
`)
	m, err := ReadVectors(filepath.Join(dir, "*.npy"))
	if err != nil {
		t.Fatal(err)
	}
	want := Matrix{Rows: 10, Cols: 4, Data: make([]float32, 40)}
	for i := range want.Data {
		want.Data[i] = float32(i)
	}
	equalMatrix(t, m, want)
}
