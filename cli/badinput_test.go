package cli

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeRawNpy writes a version 1.0 .npy file with any header dict and data,
// to make files numpy would never write.
func writeRawNpy(t *testing.T, path, dict string, data []byte) {
	t.Helper()
	h := dict
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(b[8:], uint16(len(h)))
	b = append(b, h...)
	b = append(b, data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBadInputFailsCleanly checks that each bad input gives exit code 1,
// one line on stderr that names the problem, and no output file; an
// existing output file is left as it was.
func TestBadInputFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.npy")
	full, err := os.ReadFile(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(truncated, full[:len(full)/2], 0o644)
	int8s := filepath.Join(dir, "int8.npy")
	writeRawNpy(t, int8s, "{'descr': '|i1', 'fortran_order': False, 'shape': (4, 2), }", make([]byte, 8))
	oneD := filepath.Join(dir, "oned.npy")
	writeRawNpy(t, oneD, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", make([]byte, 16))
	wrongDim := filepath.Join(dir, "q3.npy")
	writeRawNpy(t, wrongDim, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", make([]byte, 12))
	threeD := filepath.Join(dir, "threed.npy")
	writeRawNpy(t, threeD, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", make([]byte, 32))
	fortran := filepath.Join(dir, "fortran.npy")
	writeRawNpy(t, fortran, "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 2), }", make([]byte, 32))
	object := filepath.Join(dir, "object.npy")
	writeRawNpy(t, object, "{'descr': '|O', 'fortran_order': False, 'shape': (4, 2), }", make([]byte, 64))
	zeroRows := filepath.Join(dir, "zero.npy")
	writeRawNpy(t, zeroRows, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", nil)
	nan := filepath.Join(dir, "nan.npy")
	nanData := make([]byte, 4*2*400)
	binary.LittleEndian.PutUint32(nanData[4*(2*321+1):], 0x7fc00000) // row 321, column 1
	writeRawNpy(t, nan, "{'descr': '<f4', 'fortran_order': False, 'shape': (400, 2), }", nanData)
	inf := filepath.Join(dir, "inf.npy")
	infData := make([]byte, 4*2*400)
	binary.LittleEndian.PutUint32(infData[4*(2*7):], 0xff800000) // row 7, column 0: -Inf
	writeRawNpy(t, inf, "{'descr': '<f4', 'fortran_order': False, 'shape': (400, 2), }", infData)
	text := filepath.Join(dir, "text.npy")
	os.WriteFile(text, []byte("id,x,y\n1,0.5,0.25\n"), 0o644)
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	writeRawNpy(t, filepath.Join(shards, "a.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", make([]byte, 32))
	writeRawNpy(t, filepath.Join(shards, "b.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", make([]byte, 48))
	idsShort := filepath.Join(dir, "ids-short.npy")
	writeRawNpy(t, idsShort, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", make([]byte, 24))
	idsDup := filepath.Join(dir, "ids-dup.npy")
	writeIDs(t, idsDup, 20000, func(i int) int64 { return int64(i % 19999) })
	idsNeg := filepath.Join(dir, "ids-neg.npy")
	writeIDs(t, idsNeg, 20000, func(i int) int64 { return int64(i) - 5 })
	garbage := filepath.Join(dir, "garbage.faiss")
	os.WriteFile(garbage, []byte("this is not a FAISS index at all, just text"), 0o644)

	good := filepath.Join(dir, "good.faiss")
	mustRun(t, "build", "--docs", gloveDocs, "--index", "ivfflat", "--nlist", "16", "--train", "kmeans", "-o", good)
	goodBytes, _ := os.ReadFile(good)
	cut := filepath.Join(dir, "cut.faiss")
	os.WriteFile(cut, goodBytes[:len(goodBytes)/3], 0o644)

	out := filepath.Join(dir, "out.faiss")
	build := func(docs string, extra ...string) []string {
		return append([]string{"build", "--docs", docs, "-o", out}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want string // a piece of the error line
	}{
		{"missing docs", build(filepath.Join(dir, "nope.npy")), "no such file"},
		{"truncated npy", build(truncated), "truncated"},
		{"int8 dtype", build(int8s), "dtype"},
		{"1-D array", build(oneD), "1-D"},
		{"M does not divide d", build(gloveDocs, "--m", "7"), "does not divide"},
		{"nlist above n", build(gloveDocs, "--nlist", "20001"), "nlist 20001"},
		{"3-D array", build(threeD), "3-D"},
		{"Fortran order", build(fortran), "Fortran"},
		{"object array", build(object), "object"},
		{"zero rows", build(zeroRows), "empty matrix"},
		{"NaN with its row (k-means sample)", build(nan, "--index", "ivfflat", "--nlist", "2", "--train", "kmeans", "--train-size", "100"), "row 321, column 1 is NaN"},
		{"NaN with its row (distill)", build(nan, "--index", "ivfflat", "--nlist", "2"), "row 321, column 1 is NaN"},
		{"shards with different dims", build(shards), "3 columns"},
		{"Inf with its row", build(inf, "--index", "ivfflat", "--nlist", "2"), "row 7, column 0 is -Inf"},
		{"not an npy", build(text), "text.npy"},
		{"ip index, queries of another dim (eval)", []string{"eval", "--docs", gloveDocs, "--queries", wrongDim, "--index", good}, "d=3"},
		{"ids of the wrong length", build(gloveDocs, "--ids", idsShort), "3 ids for 20000"},
		{"duplicate ids", build(gloveDocs, "--ids", idsDup), "duplicate id"},
		{"negative ids", build(gloveDocs, "--ids", idsNeg), "negative"},
		{"training sample below nlist", build(gloveDocs, "--nlist", "100", "--train-size", "50"), "smaller than nlist"},
		{"missing output folder", []string{"build", "--docs", gloveDocs, "-o", filepath.Join(dir, "no", "such", "x.faiss")}, "output folder"},
		{"query dim mismatch", []string{"search", "--index", good, "--queries", wrongDim}, "d=3"},
		{"not a FAISS file", []string{"search", "--index", garbage, "--queries", gloveQ}, "garbage.faiss"},
		{"truncated FAISS file", []string{"inspect", cut}, "cut.faiss"},
		{"missing index", []string{"inspect", filepath.Join(dir, "none.faiss")}, "none.faiss"},
	}
	cases = append(cases, parquetBadInputs(t, filepath.Join(dir, "parquet"))...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(out, []byte("keep me"), 0o644)
			code, _, stderr := run(t, c.args...)
			if code != 1 {
				t.Errorf("exit code %d, want 1 (stderr %q)", code, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "distillvq: ") {
				t.Errorf("stderr is not one error line: %q", stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", stderr, c.want)
			}
			if b, _ := os.ReadFile(out); string(b) != "keep me" {
				t.Errorf("the existing output file was changed")
			}
			if left := leftovers(t, dir); len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

// leftovers lists files in dir that no test case made on purpose.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	want := map[string]bool{"truncated.npy": true, "int8.npy": true, "oned.npy": true, "q3.npy": true,
		"garbage.faiss": true, "good.faiss": true, "cut.faiss": true, "out.faiss": true,
		"threed.npy": true, "fortran.npy": true, "object.npy": true, "zero.npy": true, "nan.npy": true, "shards": true,
		"ids-short.npy": true, "ids-dup.npy": true, "ids-neg.npy": true, "inf.npy": true, "text.npy": true, "parquet": true}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		if !want[e.Name()] {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestUsageErrorsExit2 checks that a malformed command line exits 2 with a
// one-line message, distinct from failures of the work itself.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"build", "-o", "x.faiss"},
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--index", "hnsw"},
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--metric", "cosine"},
		{"search", "--index", "x.faiss", "--queries", gloveQ, "-k", "0"},
		{"build", "--no-such-flag"},
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--nbits", "9"},
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--nlist", "-3"},
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--opq", "--lr-rotation", "1e-3"},
		// Stray words: urfave/cli would leave them unread.
		{"build", "--docs", gloveDocs, "-o", "x.faiss", "--opq", "bogus"},
		{"search", "--index", "x.faiss", "--queries", gloveQ, "extra"},
		{"eval", "--docs", gloveDocs, "--queries", gloveQ, "--index", "x.faiss", "extra"},
		{"inspect", "a.faiss", "b.faiss"},
	} {
		code, _, stderr := run(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if !strings.HasPrefix(stderr, "distillvq: ") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: no error line in %q", args, fmt.Sprint(stderr))
		}
	}
	if _, err := os.Stat("x.faiss"); err == nil {
		os.Remove("x.faiss")
		t.Error("a usage error wrote x.faiss")
	}
}

// writeIDs writes n int64 ids made by id as a 1-D .npy.
func writeIDs(t *testing.T, path string, n int, id func(int) int64) {
	t.Helper()
	data := make([]byte, 8*n)
	for i := range n {
		binary.LittleEndian.PutUint64(data[8*i:], uint64(id(i)))
	}
	writeRawNpy(t, path, fmt.Sprintf("{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }", n), data)
}

// TestFullDiskFailsCleanly writes an index to a 256 KiB tmpfs: the build
// fails with one line naming the lack of space, leaves no temporary file and
// keeps the file that was there. It needs root to mount, and skips without.
func TestFullDiskFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	out := filepath.Join(dir, "x.faiss")
	if err := os.WriteFile(out, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "build", "--docs", gloveDocs, "--index", "ivfflat", "--nlist", "16", "--train", "kmeans", "-o", out)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(strings.ToLower(stderr), "no space left") {
		t.Errorf("full disk: exit %d, %q", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Errorf("the existing output file was changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left on the full disk: %d", len(entries))
	}
}
