package faissio

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzDir is where fuzz inputs are written, once per execution: tmpfs if
// there is one, because rewriting a file thousands of times a second on a
// disk filesystem (ext4 flushes a file truncated and rewritten) makes the
// disk, not the code, the thing being measured.
func fuzzDir(f *testing.F) string {
	dir, err := os.MkdirTemp("/dev/shm", "faissio-fuzz-")
	if err != nil {
		return f.TempDir()
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// checkOneLine fails unless err is nil or a single line about path.
func checkOneLine(t *testing.T, err error, path string) {
	t.Helper()
	if err == nil {
		return
	}
	if msg := err.Error(); !strings.HasPrefix(msg, path+": ") || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("error not one line starting with the path: %q", msg)
	}
}

func FuzzReadNpy(f *testing.F) {
	valid := npyFile("<f4", "(2, 3)", false, le32(1, 2, 3, 4, 5, 6))
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(valid[:70])
	f.Add(valid[:9])
	f.Add(append(valid, 0))
	f.Add(npyFile("<f2", "(2, 2)", false, []byte{0, 0x3c, 0, 0x7c, 0, 0xfc, 1, 0x7e}))
	f.Add(npyFile(">f8", "(1, 2)", false, make([]byte, 16)))
	f.Add(npyFile("<f8", "(1, 1)", false, binary.LittleEndian.AppendUint64(nil, math.Float64bits(1e300))))
	f.Add(npyFile("<i8", "(3,)", false, make([]byte, 24)))
	f.Add(npyFile("<u8", "(2, 1)", false, []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}))
	f.Add(npyFile("<i4", "(3,)", false, []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}))
	f.Add(npyFileDict(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", le32(7)))
	f.Add(npyFileDict(3, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }", le32(7)))
	f.Add(npyFileDict(1, "{'fortran_order': False, 'descr': '<f4', 'shape': (1, 1), }", le32(7)))

	path := filepath.Join(fuzzDir(f), "fuzz.npy")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o666); err != nil {
			t.Fatal(err)
		}
		// Both data paths must agree on every input.
		defer func(old int64) { mmapThreshold = old }(mmapThreshold)
		mmapThreshold = math.MaxInt64
		read, _, errRead := readNpy(path)
		checkOneLine(t, errRead, path)
		mmapThreshold = 0
		mapped, mapping, errMapped := readNpy(path)
		checkOneLine(t, errMapped, path)
		if mapping != nil {
			// Fuzzing maps far more files than a process should keep.
			defer unix.Munmap(mapping)
		}
		if (errRead == nil) != (errMapped == nil) {
			t.Fatalf("read path error %v, mmap path error %v", errRead, errMapped)
		}
		if errRead == nil {
			if read.Rows <= 0 || read.Cols <= 0 || len(read.Data) != read.Rows*read.Cols {
				t.Fatalf("bad matrix %dx%d with %d values", read.Rows, read.Cols, len(read.Data))
			}
			if read.Rows != mapped.Rows || read.Cols != mapped.Cols {
				t.Fatalf("read %dx%d, mapped %dx%d", read.Rows, read.Cols, mapped.Rows, mapped.Cols)
			}
			for i := range read.Data {
				if math.Float32bits(read.Data[i]) != math.Float32bits(mapped.Data[i]) {
					t.Fatalf("value %d: read %v, mapped %v", i, read.Data[i], mapped.Data[i])
				}
			}
		}
		for _, n := range []int{0, 1, 2, 3} {
			ids, err := ReadIDs(path, n)
			checkOneLine(t, err, path)
			if err == nil && len(ids) != n {
				t.Fatalf("ReadIDs(%d) returned %d ids", n, len(ids))
			}
		}
	})
}

func FuzzReadFvecs(f *testing.F) {
	valid := vecsFile(fbits(1, 2, 3), fbits(4, 5, 6))
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:len(valid)-14])
	f.Add(valid[:2])
	f.Add(vecsFile(fbits(1, 2), fbits(3)))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})

	path := filepath.Join(fuzzDir(f), "fuzz.fvecs")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o666); err != nil {
			t.Fatal(err)
		}
		m, err := ReadFvecs(path)
		checkOneLine(t, err, path)
		if err == nil {
			if m.Rows <= 0 || m.Cols <= 0 || len(m.Data) != m.Rows*m.Cols || len(b) != m.Rows*(m.Cols+1)*4 {
				t.Fatalf("%d-byte file gave %dx%d with %d values", len(b), m.Rows, m.Cols, len(m.Data))
			}
		}
		rows, cols, data, errI := ReadIvecs(path)
		checkOneLine(t, errI, path)
		if (err == nil) != (errI == nil) || rows != m.Rows || cols != m.Cols {
			t.Fatalf("fvecs %dx%d (%v), ivecs %dx%d (%v)", m.Rows, m.Cols, err, rows, cols, errI)
		}
		for i := range data {
			if uint32(data[i]) != math.Float32bits(m.Data[i]) {
				t.Fatalf("value %d differs between fvecs and ivecs", i)
			}
		}
	})
}

// FuzzReadQrels checks that any bytes give labels or a one-line error, and
// that labels only name queries in range and non-negative ids.
func FuzzReadQrels(f *testing.F) {
	f.Add([]byte("0\t17\n0\t4\n2 9 1\n# note\n\n"))
	f.Add([]byte("1\t-3\n"))
	f.Add([]byte("3\t1\n"))
	f.Add([]byte("0\t99999999999999999999\n"))
	f.Add([]byte(strings.Repeat("7", 2000) + "\t1\n"))
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "q.tsv")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		const nq = 3
		qrels, err := ReadQrels(path, nq)
		checkOneLine(t, err, path)
		if err != nil {
			return
		}
		if len(qrels) != nq {
			t.Fatalf("%d query rows for %d queries", len(qrels), nq)
		}
		for _, ids := range qrels {
			for _, id := range ids {
				if id < 0 {
					t.Fatalf("negative id %d accepted", id)
				}
			}
		}
	})
}
