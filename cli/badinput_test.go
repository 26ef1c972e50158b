package cli

import (
	"encoding/binary"
	"fmt"
	"os"
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
		{"missing output folder", []string{"build", "--docs", gloveDocs, "-o", filepath.Join(dir, "no", "such", "x.faiss")}, "output folder"},
		{"query dim mismatch", []string{"search", "--index", good, "--queries", wrongDim}, "d=3"},
		{"not a FAISS file", []string{"search", "--index", garbage, "--queries", gloveQ}, "garbage.faiss"},
		{"truncated FAISS file", []string{"inspect", cut}, "cut.faiss"},
		{"missing index", []string{"inspect", filepath.Join(dir, "none.faiss")}, "none.faiss"},
	}
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
		"garbage.faiss": true, "good.faiss": true, "cut.faiss": true, "out.faiss": true}
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
	} {
		code, _, stderr := run(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if !strings.Contains(stderr, "distillvq: ") {
			t.Errorf("%v: no error line in %q", args, fmt.Sprint(stderr))
		}
	}
	if _, err := os.Stat("x.faiss"); err == nil {
		os.Remove("x.faiss")
		t.Error("a usage error wrote x.faiss")
	}
}
