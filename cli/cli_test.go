package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/distillvq/distillvq/internal/testutil"
)

const (
	gloveDir  = "../testdata/glove20k"
	gloveDocs = gloveDir + "/docs.npy"
	gloveQ    = gloveDir + "/queries.npy"
	siftDir   = "../../shared/data/siftsmall"
)

// run runs the command line in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"distillvq"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs the command line and fails the test unless it succeeds.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := runOK(t, args...)
	return out
}

// runOK runs the command line, fails the test unless it succeeds, and
// returns its standard output and error.
func runOK(t *testing.T, args ...string) (string, string) {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 0 {
		t.Fatalf("distillvq %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out, errs
}

// built is the distillvq command built once for the tests that run it as
// a process (signals, thread counts, crashes), in a folder TestMain removes.
var built = struct {
	once      sync.Once
	dir, path string
	err       error
}{}

// distillvqBinary builds the command, once per test process, and returns
// its path.
func distillvqBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "distillvq-bin"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "distillvq")
		if out, err := exec.Command("go", "build", "-o", built.path, "./distillvq").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	// On a machine whose OpenBLAS falls back to old kernels every
	// computing command would print the warning first; the tests that
	// count stderr lines are about other things (TestSlowBLASWarning
	// clears this for its own runs).
	os.Setenv(quietBLASEnv, "1")
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// haveSift reports whether the siftsmall set lies beside the checkout.
func haveSift() bool {
	_, err := os.Stat(filepath.Join(siftDir, "siftsmall_base.fvecs"))
	return err == nil
}

// pythonFAISS returns Debian's python3 when it can import faiss and numpy;
// otherwise the test skips, or fails under `make test`
// (DISTILLVQ_REQUIRE_PYTHON=1): testutil.Python's one rule.
func pythonFAISS(t *testing.T) string { return testutil.Python(t) }

// TestPythonFAISSLoadsOurIndexes builds every index type and metric we write
// and checks that Python FAISS loads each file, describes it as we built it,
// and returns the same results as our search command.
func TestPythonFAISSLoadsOurIndexes(t *testing.T) {
	py := pythonFAISS(t)
	dir := t.TempDir()
	cases := []struct {
		index, metric string
		m, nbits      int
	}{
		{"ivfpqfs", "ip", 50, 4},
		{"distill-ivfpqfs", "l2", 20, 4},
		{"pq", "ip", 20, 8},
		{"distill-pq", "ip", 20, 8},
		{"pqfs", "l2", 50, 4},
		{"hnsw-ivfpq", "ip", 20, 8},
		{"hnsw-ivfpqfs", "l2", 50, 4},
		{"hnsw-ivfflat", "ip", 0, 0},
		{"opq-pqfs", "ip", 20, 4},
		{"ivfpq", "ip", 20, 8},
		{"ivfpq", "l2", 20, 8},
		// A distilled IVFPQ writes the structure of {"ivfpq", "ip", 20, 8};
		// distillation's files are covered by the FastScan, PQ and learned
		// rotation cases.
		{"ivfpq", "l2", 25, 5},
		{"ivfpq", "ip", 10, 4},
		{"ivfflat", "ip", 0, 0},
		{"ivfflat", "l2", 0, 0},
		{"opq-ivfpq", "ip", 20, 8},
		{"opqlearn-distill-ivfpq", "ip", 10, 8},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s-%s-m%d-b%d", c.index, c.metric, c.m, c.nbits)
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, name+".faiss")
			index, train := c.index, "kmeans"
			opq, learn, hnsw := false, false, false
			if rest, ok := strings.CutPrefix(index, "opq-"); ok {
				index, opq = rest, true
			}
			if rest, ok := strings.CutPrefix(index, "opqlearn-"); ok {
				index, opq, learn = rest, true, true
			}
			if rest, ok := strings.CutPrefix(index, "hnsw-"); ok {
				index, hnsw = rest, true
			}
			if rest, ok := strings.CutPrefix(index, "distill-"); ok {
				index, train = rest, "distill"
			}
			flat := index == "pq" || index == "pqfs"
			// Ten k-means iterations: the file's structure is what is tested.
			args := []string{"build", "--docs", gloveDocs, "--index", index, "--metric", c.metric, "--train", train, "--niter", "10", "-o", out}
			if !flat {
				args = append(args, "--nlist", "64")
			}
			if hnsw {
				args = append(args, "--quantizer", "hnsw", "--ef-search", "24")
			}
			if opq {
				// FAISS's OPQ training on all 20,000 documents takes a
				// minute and a half here; the file's structure is the
				// same from 2,560.
				args = append(args, "--opq")
				if learn {
					// The rotation learned by distillation, in front of
					// the index as FAISS's own.
					args = append(args, "learn", "--pseudo-queries", "-1")
				}
				args = append(args, "--train-size", "2560")
			} else {
				args = append(args, "--train-size", "5000")
			}
			if train == "distill" {
				args = append(args, "--queries", gloveDir+"/train-queries.npy", "--epochs", "1")
				if !learn {
					args = append(args, "--pseudo-queries", "300")
				}
			}
			if c.m > 0 {
				args = append(args, "--m", fmt.Sprint(c.m), "--nbits", fmt.Sprint(c.nbits))
			}
			mustRun(t, args...)
			ids, scores := filepath.Join(dir, name+".ids.npy"), filepath.Join(dir, name+".scores.npy")
			const k, nprobe = 10, 8
			mustRun(t, "search", "--index", out, "--queries", gloveQ, "-k", fmt.Sprint(k), "--nprobe", fmt.Sprint(nprobe),
				"--ids-out", ids, "--scores-out", scores)
			cmd := exec.Command(py, "testdata/interop.py", out, gloveQ, fmt.Sprint(k), fmt.Sprint(nprobe), ids, scores)
			res, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("python: %v: %s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			var got struct {
				D, Ntotal, Metric, Nlist, M, Nbits int
				Type, Outer, Quantizer             string
				EfSearch                           int     `json:"ef_search"`
				IDsEqual                           bool    `json:"ids_equal"`
				RowsDiff                           int     `json:"rows_with_different_ids"`
				MaxScoreDiff                       float64 `json:"max_score_diff"`
			}
			if err := json.Unmarshal(res, &got); err != nil {
				t.Fatalf("python output %q: %v", res, err)
			}
			wantMetric := map[string]int{"ip": 0, "l2": 1}[c.metric]
			wantOuter := map[bool]string{false: got.Type, true: "IndexPreTransform"}[opq]
			wantType := map[string]string{"ivfpq": "IndexIVFPQ", "ivfflat": "IndexIVFFlat", "ivfpqfs": "IndexIVFPQFastScan",
				"pq": "IndexPQ", "pqfs": "IndexPQFastScan"}[index]
			wantQuantizer := map[bool]string{false: "IndexFlat", true: "IndexHNSWFlat"}[hnsw]
			if flat {
				wantQuantizer = ""
			}
			wantNlist := map[bool]int{false: 64, true: 0}[flat]
			if got.D != 100 || got.Ntotal != 20000 || got.Nlist != wantNlist || got.Metric != wantMetric || got.M != c.m || got.Nbits != c.nbits ||
				got.Outer != wantOuter || got.Type != wantType || got.Quantizer != wantQuantizer || hnsw && got.EfSearch != 24 {
				t.Errorf("Python FAISS sees %+v", got)
			}
			// FastScan scores come from 8-bit tables, rounded alike but
			// summed by other SIMD code in Python's generic build.
			tol := 1e-5
			if strings.HasSuffix(index, "fs") {
				tol = 2e-3
			}
			if !got.IDsEqual || got.MaxScoreDiff > tol {
				t.Errorf("Python FAISS results differ from ours: %d query rows with other ids, max relative score diff %g", got.RowsDiff, got.MaxScoreDiff)
			}
		})
	}
}
