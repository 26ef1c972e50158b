package cli

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"

	"github.com/distillvq/distillvq/faissio"
)

// The large section's Parquet case (issue 16): the section's 1M x 768
// documents written as one float32 .npy and as one float32 Parquet file
// (list<float>, snappy as pyarrow writes by default, row groups of 65,536
// rows), each read whole through faissio.Source in the blocks a build's
// add reads (8,192 rows of 768), in a process of its own so that its peak
// RSS is the reader's. The Parquet reader must keep at least half the
// .npy reader's throughput, with a peak bounded by a row group.

// parquetBenchGroup is the row group of the benchmark's Parquet file.
const parquetBenchGroup = 65536

// parquetRead is what a reading process reports.
type parquetRead struct {
	Path   string        `json:"path"`
	Rows   int           `json:"rows"`
	Cols   int           `json:"cols"`
	Bytes  int64         `json:"bytes"` // float32 data read
	Wall   time.Duration `json:"wall_ns"`
	MaxRSS int64         `json:"max_rss_bytes"`
}

// MBps is the reader's throughput in MB/s of float32 data.
func (r parquetRead) MBps() float64 { return float64(r.Bytes) / 1e6 / r.Wall.Seconds() }

// TestParquetReadProcess is the reading process of runParquetBench: it
// reads DISTILLVQ_PARQUET_READ whole and prints what it measured.
func TestParquetReadProcess(t *testing.T) {
	path := os.Getenv("DISTILLVQ_PARQUET_READ")
	if path == "" {
		t.Skip("a process of the Parquet benchmark (make bench LARGE=1)")
	}
	t0 := time.Now()
	src, err := faissio.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	const block = 8192
	buf := make([]float32, block*src.Cols)
	for i := 0; i < src.Rows; i += block {
		j := min(i+block, src.Rows)
		if err := src.Read(i, j, buf[:(j-i)*src.Cols]); err != nil {
			t.Fatal(err)
		}
	}
	r := parquetRead{Path: path, Rows: src.Rows, Cols: src.Cols, Bytes: 4 * int64(src.Rows) * int64(src.Cols), Wall: time.Since(t0)}
	// The process's own peak: a child's rusage would carry the parent's,
	// as Linux does for a vfork+exec (watchPeakRSS).
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &r.MaxRSS)
			r.MaxRSS <<= 10
		}
	}
	b, _ := json.Marshal(r)
	fmt.Printf("parquet-read: %s\n", b)
}

// readInProcess reads path in a process of its own, best of rounds.
func readInProcess(t *testing.T, path string, rounds int) parquetRead {
	t.Helper()
	var best parquetRead
	for range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestParquetReadProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DISTILLVQ_PARQUET_READ="+path, "DISTILLVQ_BENCH=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("reading %s: %v\n%s", path, err, out)
		}
		var r parquetRead
		for _, line := range strings.Split(string(out), "\n") {
			if s, ok := strings.CutPrefix(line, "parquet-read: "); ok {
				if err := json.Unmarshal([]byte(s), &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if r.Rows == 0 {
			t.Fatalf("reading %s: no report in\n%s", path, out)
		}
		if best.Rows == 0 || r.Wall < best.Wall {
			best = r
		}
	}
	return best
}

// writeBenchCopies writes the documents at docs as one float32 .npy and
// one Parquet file in dir, a block at a time.
func writeBenchCopies(t *testing.T, docs, dir string) (npy, pq string) {
	t.Helper()
	src, err := faissio.OpenSource(docs)
	if err != nil {
		t.Fatal(err)
	}
	npy, pq = filepath.Join(dir, "docs-f32.npy"), filepath.Join(dir, "docs.parquet")
	nf, err := os.Create(npy)
	if err != nil {
		t.Fatal(err)
	}
	// The .npy header, as WriteNpy writes it, then the rows as they come.
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", src.Rows, src.Cols)
	pad := (64 - (10+len(dict)+1)%64) % 64
	hdr := append([]byte("\x93NUMPY\x01\x00"), byte(len(dict)+pad+1), byte((len(dict)+pad+1)>>8))
	hdr = append(append(hdr, dict+strings.Repeat(" ", pad)...), '\n')
	nw := bufio.NewWriterSize(nf, 1<<20)
	nw.Write(hdr)
	pf, err := os.Create(pq)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID  int64     `parquet:"id"`
		Emb []float32 `parquet:"emb,list"`
	}
	w := parquet.NewGenericWriter[row](pf, parquet.Compression(&snappy.Codec{}), parquet.MaxRowsPerRowGroup(parquetBenchGroup))
	const block = 8192
	buf := make([]float32, block*src.Cols)
	rows := make([]row, block)
	for i := 0; i < src.Rows; i += block {
		j := min(i+block, src.Rows)
		x := buf[:(j-i)*src.Cols]
		if err := src.Read(i, j, x); err != nil {
			t.Fatal(err)
		}
		for k := range j - i {
			rows[k] = row{ID: int64(i + k), Emb: x[k*src.Cols : (k+1)*src.Cols]}
		}
		if _, err := w.Write(rows[:j-i]); err != nil {
			t.Fatal(err)
		}
		if err := binary.Write(nw, binary.LittleEndian, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nf.Close(); err != nil {
		t.Fatal(err)
	}
	return npy, pq
}

// runParquetBench writes the large section's documents as float32 .npy
// and Parquet in dir, reads each in its own process (best of three, after
// a first read that warms the page cache) and returns the two
// targets. The copies (6 GB for 1M x 768) are removed afterwards.
func runParquetBench(t *testing.T, dir, large string) []benchTarget {
	t.Helper()
	work := filepath.Join(dir, "parquet-bench")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	t0 := time.Now()
	npy, pq := writeBenchCopies(t, large+"/docs", work)
	t.Logf("parquet bench: copies written in %v", time.Since(t0))
	readInProcess(t, npy, 1)
	readInProcess(t, pq, 1)
	n, p := readInProcess(t, npy, 3), readInProcess(t, pq, 3)
	st, _ := os.Stat(pq)
	t.Logf("parquet bench: .npy %.0f MB/s, peak RSS %d MiB; Parquet (%d bytes) %.0f MB/s, peak RSS %d MiB",
		n.MBps(), n.MaxRSS>>20, st.Size(), p.MBps(), p.MaxRSS>>20)
	ratio := p.MBps() / n.MBps()
	// A row group decoded, the reader's block, and the process's own
	// 100 MiB (the Go runtime, FAISS and OpenBLAS, as the memory plan's
	// base counts them).
	group := int64(parquetBenchGroup) * int64(p.Cols) * 4
	bound := group + 8192*int64(p.Cols)*4 + 100<<20
	fast, small := ratio >= 0.5, p.MaxRSS <= bound
	return []benchTarget{
		{Target: fmt.Sprintf("Parquet read of %d x %d float32 at least half the .npy reader's throughput", p.Rows, p.Cols),
			Value: fmt.Sprintf("%.0f MB/s against %.0f MB/s (%.2fx)", p.MBps(), n.MBps(), ratio), Met: &fast},
		{Target: "Parquet read's peak RSS bounded by a row group (65,536 rows) and the read block",
			Value: fmt.Sprintf("%d MiB (bound %d MiB: row group %d MiB, block %d MiB, base 100 MiB; .npy: %d MiB)",
				p.MaxRSS>>20, bound>>20, group>>20, (8192*int64(p.Cols)*4)>>20, n.MaxRSS>>20), Met: &small},
	}
}
