package faissio

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestHugeShapes checks that headers claiming more than 2^31 rows, or more
// bytes than 2^63, in tiny files fail cleanly with the true expected size,
// and that writers refuse shapes whose value count overflows an int.
func TestHugeShapes(t *testing.T) {
	dir := t.TempDir()
	f16 := writeTemp(t, dir, "f16.npy", npyFile("<f2", "(3000000000, 768)", false, make([]byte, 10)))
	const f16Want = "truncated: header says 3000000000x768 float16 (4608000000000 bytes) but only 10 data bytes follow"
	_, err := ReadNpy(f16)
	wantErr(t, err, f16, f16Want)
	_, err = ReadVectors(f16)
	wantErr(t, err, f16, f16Want)
	_, err = OpenSource(f16)
	wantErr(t, err, f16, f16Want)

	huge := writeTemp(t, dir, "huge.npy", npyFile("<f4", "(1099511627776, 1099511627776)", false, nil))
	_, err = OpenSource(huge)
	wantErr(t, err, huge, "truncated: header says 1099511627776x1099511627776 float32 (more than 2^63 bytes) but only 0 data bytes follow")

	ids := writeTemp(t, dir, "ids.npy", npyFile("<i8", "(3000000000,)", false, nil))
	_, err = ReadIDs(ids, 3000000000)
	wantErr(t, err, ids, "truncated: header says 3000000000 int64 (24000000000 bytes) but only 0 data bytes follow")

	gt := writeTemp(t, dir, "gt.npy", npyFile("<i8", "(3000000000, 100)", false, nil))
	_, _, _, err = ReadNeighbors(gt)
	wantErr(t, err, gt, "truncated: header says 3000000000x100 int64 (2400000000000 bytes) but only 0 data bytes follow")

	// 2^62 x 4 values wrap to 0 in an int: an empty slice must not pass.
	out := filepath.Join(dir, "out.npy")
	err = WriteNpy(out, Matrix{Rows: 1 << 62, Cols: 4})
	wantErr(t, err, out, "matrix is 4611686018427387904x4 but has 0 values")
	err = WriteNpyInt64(out, 1<<62, 4, nil)
	wantErr(t, err, out, "matrix is 4611686018427387904x4 but has 0 values")
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused matrix left a file")
	}

	s := &Source{Rows: 1 << 62, Cols: 4}
	if err := s.Read(0, 1<<62, nil); err == nil {
		t.Error("Source.Read of 2^62 x 4 values into nothing: no error")
	}
	if err := s.Gather(make([]int, 1), nil); err == nil {
		t.Error("Source.Gather into nothing: no error")
	}
}

// TestSourceBeyond2to31Rows reads a sparse .npy of 2^31+5 rows of 768
// float16 (3.3 TB, almost none of it on disk): rows past 2^31 come from
// their true offsets, errors name their true row, and the fingerprint
// samples the whole file.
func TestSourceBeyond2to31Rows(t *testing.T) {
	const rows, cols = 1<<31 + 5, 768
	path := filepath.Join(t.TempDir(), "sparse.npy")
	hdr := npyFile("<f2", "(2147483653, 768)", false, nil)
	if err := os.WriteFile(path, hdr, 0o666); err != nil {
		t.Fatal(err)
	}
	size := int64(len(hdr)) + int64(rows)*cols*2
	if err := os.Truncate(path, size); err != nil {
		t.Skipf("no sparse file of %d bytes here: %v", size, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := func(row, col int64) int64 { return int64(len(hdr)) + (row*cols+col)*2 }
	one := binary.LittleEndian.AppendUint16(nil, 0x3c00)
	nan := binary.LittleEndian.AppendUint16(nil, 0x7e00)
	for _, w := range []struct {
		b   []byte
		off int64
	}{{one, at(rows-2, 5)}, {nan, at(rows-1, 7)}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rows != rows || s.Cols != cols {
		t.Fatalf("source %dx%d", s.Rows, s.Cols)
	}
	dst := make([]float32, 3*cols)
	if err := s.Read(rows-4, rows-1, dst); err != nil {
		t.Fatal(err)
	}
	for k, v := range dst {
		want := float32(0)
		if k == 2*cols+5 {
			want = 1
		}
		if v != want {
			t.Fatalf("value %d of rows [%d, %d): %v", k, rows-4, rows-1, v)
		}
	}
	err = s.Read(rows-1, rows, make([]float32, cols))
	wantErr(t, err, path, "row 2147483652, column 7 is NaN")

	var c countingWriter
	if err := s.Fingerprint(&c); err != nil {
		t.Fatal(err)
	}
	if c.n > 4<<20+1024 {
		t.Errorf("fingerprint of %d bytes reads %d", size, c.n)
	}
	base := sourceFingerprint(t, s)
	// The last sampled block ends at the end of the file: the NaN is in it.
	f, _ = os.OpenFile(path, os.O_WRONLY, 0)
	fi, _ := os.Stat(path)
	if _, err := f.WriteAt(one, at(rows-1, 7)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	if sourceFingerprint(t, s) == base {
		t.Error("a change in the last sampled block did not change the fingerprint")
	}
}
