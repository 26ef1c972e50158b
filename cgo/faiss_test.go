//go:build cgo

package faiss

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// dataDir is the TEXMEX siftsmall set in the shared data beside the
// checkout: outside the repository, so its absence skips the tests that
// need it (a file in it that fails to load is still a failure).
const dataDir = "../../shared/data/siftsmall"

// readVecs reads an .fvecs or .ivecs file (each row an int32 dimension, then
// that many 4-byte values) into a matrix of the raw 4-byte values.
func readVecs(path string) (rows, cols int, words []uint32, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, nil, err
	}
	for len(b) > 0 {
		if len(b) < 4 {
			return 0, 0, nil, errors.New("truncated row header")
		}
		d := int(int32(binary.LittleEndian.Uint32(b)))
		if d <= 0 || (cols != 0 && d != cols) || len(b) < 4+4*d {
			return 0, 0, nil, fmt.Errorf("row %d: bad dimension %d", rows, d)
		}
		cols = d
		for i := range d {
			words = append(words, binary.LittleEndian.Uint32(b[4+4*i:]))
		}
		b = b[4+4*d:]
		rows++
	}
	return rows, cols, words, nil
}

func readFvecs(t *testing.T, name string) faissio.Matrix {
	t.Helper()
	if _, err := os.Stat(dataDir); err != nil {
		// Shared data beside the checkout, not a fixture of the repository.
		t.Skipf("siftsmall, outside the repository, not available: %v", err)
	}
	rows, cols, words, err := readVecs(filepath.Join(dataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	m := faissio.Matrix{Rows: rows, Cols: cols, Data: make([]float32, len(words))}
	for i, w := range words {
		m.Data[i] = math.Float32frombits(w)
	}
	return m
}

// ivfCase is one index shape trained by FAISS on siftsmall.
type ivfCase struct {
	name   string
	metric faissio.Metric
	m      int
	nbits  int
}

var ivfCases = []ivfCase{
	{"IVFPQ16x8-L2", faissio.L2, 16, 8},
	{"IVFPQ16x8-IP", faissio.InnerProduct, 16, 8},
	{"IVFPQ16x4-L2", faissio.L2, 16, 4},
	{"IVFPQ16x5-L2", faissio.L2, 16, 5},
	{"IVFPQ8x3-IP", faissio.InnerProduct, 8, 3},
	{"IVFFlat-L2", faissio.L2, 0, 0},
	{"IVFFlat-IP", faissio.InnerProduct, 0, 0},
}

const nlist = 32

// trainCase trains c with FAISS on the siftsmall base, with ids that are
// not simply 0..n-1 so that id handling shows. Training is deterministic,
// so each shape (metric, M, nbits) is trained once for all tests and
// cached; tests must not close the result.
func trainCase(t *testing.T, c ivfCase, base faissio.Matrix) *Index {
	t.Helper()
	key := ivfCase{metric: c.metric, m: c.m, nbits: c.nbits}
	trained.Lock()
	defer trained.Unlock()
	if ix := trained.m[key]; ix != nil {
		return ix
	}
	ids := make([]int64, base.Rows)
	for i := range ids {
		ids[i] = 1_000_000 + 7*int64(i)
	}
	p := FAISSParams{D: base.Cols, Metric: c.metric, Nlist: nlist, M: c.m, Nbits: c.nbits, Seed: 1234, Niter: 10}
	ix, err := TrainFAISS(p, base, base, ids)
	if err != nil {
		t.Fatal(err)
	}
	if trained.m == nil {
		trained.m = make(map[ivfCase]*Index)
	}
	trained.m[key] = ix
	return ix
}

// trained holds trainCase's indexes by shape (an ivfCase without its name).
var trained struct {
	sync.Mutex
	m map[ivfCase]*Index
}

// rebuild extracts p from ix and builds a new index from it.
func rebuild(t *testing.T, ix *Index) (*Index, IVFParams) {
	t.Helper()
	p, err := ix.IVFParams()
	if err != nil {
		t.Fatal(err)
	}
	re, err := NewIVF(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { re.Close() })
	return re, p
}

func writeBytes(t *testing.T, ix *Index, name string) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := ix.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestRebuildWritesIdenticalBytes(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	for _, c := range ivfCases {
		t.Run(c.name, func(t *testing.T) {
			orig := trainCase(t, c, base)
			re, p := rebuild(t, orig)

			info, err := orig.Info()
			if err != nil {
				t.Fatal(err)
			}
			wantType := "IndexIVFPQ"
			if c.m == 0 {
				wantType = "IndexIVFFlat"
			}
			wantCode := 4 * base.Cols
			if c.m > 0 {
				wantCode = (c.m*c.nbits + 7) / 8
			}
			if info.Type != wantType || info.D != base.Cols || info.Ntotal != int64(base.Rows) ||
				info.Metric != c.metric || info.Nlist != nlist || info.M != c.m || info.Nbits != c.nbits ||
				info.CodeSize != wantCode || info.ByResidual != (c.m > 0) || len(info.ListSizes) != nlist {
				t.Errorf("Info = %+v", info)
			}
			var sum int64
			for _, s := range info.ListSizes {
				sum += s
			}
			if sum != int64(base.Rows) || len(p.IDs) != base.Rows || p.CodeSize() != wantCode {
				t.Errorf("list sizes sum to %d, %d ids, code size %d", sum, len(p.IDs), p.CodeSize())
			}

			rePath := sameFile(t, orig, re)

			// Reading back gives the same parameters again.
			rd, err := ReadIndex(rePath)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			p2, err := rd.IVFParams()
			if err != nil {
				t.Fatal(err)
			}
			if !equalParams(p, p2) {
				t.Error("IVFParams of the file read back differ")
			}
		})
	}
}

// sameFile writes FAISS's index and our rebuild of it and fails the test
// unless the two files are byte-identical; it returns the rebuild's path.
func sameFile(t *testing.T, orig, re *Index) string {
	t.Helper()
	_, want := writeBytes(t, orig, "faiss.index")
	rePath, got := writeBytes(t, re, "rebuilt.index")
	if !bytes.Equal(got, want) {
		t.Fatalf("rebuilt index file differs from FAISS's: %d vs %d bytes, first difference at %d",
			len(got), len(want), firstDiff(got, want))
	}
	return rePath
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func equalParams(a, b IVFParams) bool {
	return a.D == b.D && a.Metric == b.Metric && a.Nlist == b.Nlist && a.M == b.M && a.Nbits == b.Nbits &&
		slices.Equal(a.Centroids, b.Centroids) && slices.Equal(a.Codebooks, b.Codebooks) &&
		slices.Equal(a.Lists, b.Lists) && slices.Equal(a.IDs, b.IDs) && bytes.Equal(a.Codes, b.Codes)
}

func closeDistances(d1, d2 []float32) bool {
	for i := range d1 {
		a, b := float64(d1[i]), float64(d2[i])
		if math.Abs(a-b) > 1e-4*max(math.Abs(a), math.Abs(b), 1e-6) {
			return false
		}
	}
	return len(d1) == len(d2)
}

// sameResults fails unless two searches found the same labels at
// distances equal to within 1e-4 relative.
func sameResults(t *testing.T, what string, d1 []float32, l1 []int64, d2 []float32, l2 []int64) {
	t.Helper()
	if !slices.Equal(l1, l2) {
		t.Fatalf("%s: labels differ", what)
	}
	if !closeDistances(d1, d2) {
		t.Fatalf("%s: distances differ", what)
	}
}

func TestRebuildSearchesIdentically(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	for _, c := range ivfCases {
		t.Run(c.name, func(t *testing.T) {
			orig := trainCase(t, c, base)
			re, _ := rebuild(t, orig)
			var prev []int64
			for _, nprobe := range []int{1, 4, nlist} {
				l1 := searchSame(t, orig, re, queries, nprobe)
				for _, l := range l1 {
					if l != -1 && (l < 1_000_000 || (l-1_000_000)%7 != 0) {
						t.Fatalf("label %d is not one of the added ids", l)
					}
				}
				// The per-call nprobe must take effect.
				if slices.Equal(prev, l1) {
					t.Errorf("nprobe %d gives the same labels as a smaller nprobe", nprobe)
				}
				prev = l1
			}
		})
	}
}

func TestExactSearch(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	_, gtCols, gt, err := readVecs(filepath.Join(dataDir, "siftsmall_groundtruth.ivecs"))
	if err != nil {
		t.Fatal(err)
	}

	for _, metric := range []faissio.Metric{faissio.L2, faissio.InnerProduct} {
		t.Run(metric.String(), func(t *testing.T) {
			flat, err := NewFlat(metric, base)
			if err != nil {
				t.Fatal(err)
			}
			defer flat.Close()
			if info, _ := flat.Info(); info.Type != map[faissio.Metric]string{faissio.L2: "IndexFlatL2", faissio.InnerProduct: "IndexFlatIP"}[metric] ||
				info.Ntotal != int64(base.Rows) || info.ListSizes != nil {
				t.Errorf("Info = %+v", info)
			}
			const k = 100
			fd, fl, err := flat.Search(queries, k, 0)
			if err != nil {
				t.Fatal(err)
			}
			if metric == faissio.L2 {
				// siftsmall's ground truth is exact L2: compare top-100 sets.
				for q := range queries.Rows {
					want := make([]int64, k)
					for j := range k {
						want[j] = int64(gt[q*gtCols+j])
					}
					got := slices.Clone(fl[q*k : (q+1)*k])
					slices.Sort(got)
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Fatalf("query %d: flat top-%d differs from the ground truth", q, k)
					}
				}
			}

			// IVFFlat probing every list is exhaustive.
			ivf := trainCase(t, ivfCase{"flat", metric, 0, 0}, base)
			_, il, err := ivf.Search(queries, k, nlist)
			if err != nil {
				t.Fatal(err)
			}
			for i := range il {
				il[i] = (il[i] - 1_000_000) / 7
			}
			if !equalUpToTies(fd, fl, il, k) {
				t.Error("IVFFlat at nprobe = nlist differs from exact search")
			}

			// IVFPQ probing every list has good recall.
			pq := trainCase(t, ivfCase{"pq", metric, 16, 8}, base)
			_, pl, err := pq.Search(queries, 10, nlist)
			if err != nil {
				t.Fatal(err)
			}
			hits := 0
			for q := range queries.Rows {
				for _, l := range pl[q*10 : (q+1)*10] {
					if slices.Contains(fl[q*k:q*k+10], (l-1_000_000)/7) {
						hits++
					}
				}
			}
			recall := float64(hits) / float64(10*queries.Rows)
			t.Logf("IVFPQ16x8 10-recall@10 at nprobe=nlist: %.3f", recall)
			if recall < 0.5 {
				t.Errorf("IVFPQ 10-recall@10 %.3f, want at least 0.5", recall)
			}
		})
	}
}

// equalUpToTies reports whether labels a and b, k per query, agree except
// for the order of results at equal distance (distances from da).
func equalUpToTies(da []float32, a, b []int64, k int) bool {
	for q := 0; q < len(a)/k; q++ {
		ra, rb := a[q*k:(q+1)*k], b[q*k:(q+1)*k]
		if slices.Equal(ra, rb) {
			continue
		}
		for i := range ra {
			if ra[i] == rb[i] {
				continue
			}
			// Within a run of equal distances the order is arbitrary, but
			// the last run may continue past k.
			j := i
			for j < k && da[q*k+j] == da[q*k+i] {
				j++
			}
			if j == k || !sameSet(ra[i:j], rb[i:j]) {
				return false
			}
		}
	}
	return true
}

func sameSet(a, b []int64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// runPython runs script in Python FAISS (skipping or failing, by
// testutil's rule, where there is none) and returns its standard output.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	return string(testutil.RunPython(t, script, args...))
}

// pyLoad prints the class of an index file (and for an IndexPreTransform
// those of its transforms and its index), its ntotal, d and nlist, then the
// labels of the first five queries at nprobe 8, k 5, after writing the
// index as it read it to argv[3].
const pyLoad = `
import sys, numpy as np, faiss
# read_index already returns the concrete class; its result must stay
# referenced, since it owns the index.
ix = faiss.read_index(sys.argv[1])
faiss.write_index(ix, sys.argv[3])
names = [type(ix).__name__]
if isinstance(ix, faiss.IndexPreTransform):
    names += [type(faiss.downcast_VectorTransform(ix.chain.at(i))).__name__ for i in range(ix.chain.size())]
    names.append(type(faiss.downcast_index(ix.index)).__name__)
print(' '.join(names))
ivf = faiss.downcast_index(faiss.extract_index_ivf(ix))
ivf.nprobe = 8
q = np.fromfile(sys.argv[2], dtype='int32').reshape(-1, 129)[:5, 1:].copy().view('float32')
D, I = ix.search(q, 5)
print(ix.ntotal, ix.d, ivf.nlist)
print(' '.join(str(x) for x in I.ravel()))
`

func TestPythonReadsOurFile(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	testutil.Python(t)
	for _, c := range []ivfCase{ivfCases[0], ivfCases[3], ivfCases[6]} {
		t.Run(c.name, func(t *testing.T) {
			re, _ := rebuild(t, trainCase(t, c, base))
			path, ours := writeBytes(t, re, "ours.index")
			back := filepath.Join(t.TempDir(), "python.index")
			out := strings.Split(strings.TrimSpace(runPython(t, pyLoad, path, filepath.Join(dataDir, "siftsmall_query.fvecs"), back)), "\n")
			if len(out) < 2 {
				t.Fatalf("python printed %q", out)
			}
			checkPythonView(t, out, re, queries, base, ours, back)
		})
	}
}

func joinInts(xs []int64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, " ")
}

// pyOPQ trains an OPQ-rotated IVFPQ (an IndexPreTransform) on the first
// argv[4] base vectors, adds them all and writes it, with the labels of all
// queries at nprobe 4, k 10. Two OPQ iterations and the smaller training
// set keep it quick; the rotation only has to be there.
const pyOPQ = `
import sys, numpy as np, faiss
def fvecs(p):
    return np.fromfile(p, dtype='int32').reshape(-1, 129)[:, 1:].copy().view('float32')
xb, xq = fvecs(sys.argv[1]), fvecs(sys.argv[2])
ix = faiss.index_factory(128, "OPQ16,IVF32,PQ16x4")
faiss.downcast_VectorTransform(ix.chain.at(0)).niter = 2
ix.train(xb[:int(sys.argv[4])])
ix.add(xb)
faiss.write_index(ix, sys.argv[3])
faiss.extract_index_ivf(ix).nprobe = 4
D, I = ix.search(xq, 10)
print(' '.join(str(x) for x in I.ravel()))
`

func TestPreTransformSearch(t *testing.T) {
	queries := readFvecs(t, "siftsmall_query.fvecs")
	testutil.Python(t)
	path := filepath.Join(t.TempDir(), "opq.index")
	out := strings.TrimSpace(runPython(t, pyOPQ, filepath.Join(dataDir, "siftsmall_base.fvecs"),
		filepath.Join(dataDir, "siftsmall_query.fvecs"), path, strconv.Itoa(opqTrainRows)))
	lines := strings.Split(out, "\n")

	ix, err := ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	info, err := ix.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != "IndexPreTransform" || info.D != 128 || info.Ntotal != 10000 || info.Nlist != nlist ||
		info.M != 16 || info.Nbits != 4 || info.CodeSize != 8 || len(info.ListSizes) != nlist {
		t.Errorf("Info = %+v", info)
	}
	// Python's OPQ index comes back from its parameters byte for byte.
	p, err := ix.IVFParams()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rotation) != 128*128 {
		t.Errorf("%d rotation values", len(p.Rotation))
	}
	re, err := NewIVF(p)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	theirs, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ours := writeBytes(t, re, "rebuilt.index"); !bytes.Equal(ours, theirs) {
		t.Errorf("rebuilt OPQ index differs from python's file (%d vs %d bytes, first difference at %d)",
			len(ours), len(theirs), firstDiff(ours, theirs))
	}
	_, labels, err := ix.Search(queries, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := joinInts(labels); got != lines[len(lines)-1] {
		t.Error("labels differ from python's at nprobe 4")
	}
	_, l1, err := ix.Search(queries, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(l1, labels) {
		t.Error("nprobe has no effect through IndexPreTransform")
	}
}

// checkErr fails unless err is a one-line error containing each of want.
func checkErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") || strings.Contains(msg, "Error in ") {
		t.Errorf("error not cleaned to one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.index")
	_, err := ReadIndex(missing)
	checkErr(t, err, "faiss: read index "+missing+": ", "could not open", "No such file or directory")
	t.Log(err)

	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	randomPath := filepath.Join(dir, "random.index")
	if err := os.WriteFile(randomPath, random, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadIndex(randomPath)
	checkErr(t, err, "faiss: read index "+randomPath+": ", "not recognized")
	t.Log(err)

	// A small valid IVFPQ file, cut at many points.
	p := tinyParams()
	ix, err := NewIVF(p)
	if err != nil {
		t.Fatal(err)
	}
	_, full := writeBytes(t, ix, "tiny.index")
	ix.Close()
	if len(full) != 319 {
		t.Errorf("tiny IVFPQ file has %d bytes, want 319 as in the format notes", len(full))
	}
	cut := filepath.Join(dir, "cut.index")
	for n := 0; n < len(full); n += 1 + n/8 {
		if err := os.WriteFile(cut, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if ix, err := ReadIndex(cut); err == nil {
			ix.Close()
			t.Fatalf("reading the first %d bytes succeeded", n)
		} else {
			checkErr(t, err, "faiss: read index "+cut+": ")
			if n > len(full)/2 && n < len(full)/2+len(full)/16 {
				t.Log(err)
			}
		}
	}

	bad := map[string]func(p *IVFParams){
		"list out of range":   func(p *IVFParams) { p.Lists[1] = 2 },
		"negative list":       func(p *IVFParams) { p.Lists[0] = -1 },
		"D not multiple of M": func(p *IVFParams) { p.M = 3 },
		"codes length":        func(p *IVFParams) { p.Codes = p.Codes[:2] },
		"ids length":          func(p *IVFParams) { p.IDs = p.IDs[:2] },
		"centroids length":    func(p *IVFParams) { p.Centroids = p.Centroids[:7] },
		"codebooks length":    func(p *IVFParams) { p.Codebooks = p.Codebooks[1:] },
		"nbits 9":             func(p *IVFParams) { p.Nbits = 9 },
		"nbits without M":     func(p *IVFParams) { p.M, p.Codebooks = 0, nil },
		"metric":              func(p *IVFParams) { p.Metric = 7 },
		"nlist 0":             func(p *IVFParams) { p.Nlist, p.Centroids = 0, nil },
	}
	for name, f := range bad {
		p := tinyParams()
		f(&p)
		if ix, err := NewIVF(p); err == nil {
			ix.Close()
			t.Errorf("%s: NewIVF succeeded", name)
		} else if !strings.HasPrefix(err.Error(), "faiss: new IVF index: ") {
			t.Errorf("%s: error %q", name, err)
		}
	}

	// FAISS's own complaint, from inside training.
	x := faissio.Matrix{Rows: 100, Cols: 8, Data: make([]float32, 800)}
	for i := range x.Data {
		x.Data[i] = float32(i % 17)
	}
	_, err = TrainFAISS(FAISSParams{D: 8, Metric: faissio.L2, Nlist: 2, M: 2, Nbits: 8}, x, x, nil)
	checkErr(t, err, "faiss: train: ", "Number of training points")
	t.Log(err)

	ix, err = NewIVF(tinyParams())
	if err != nil {
		t.Fatal(err)
	}
	q := faissio.Matrix{Rows: 1, Cols: 3, Data: make([]float32, 3)}
	_, _, err = ix.Search(q, 1, 1)
	checkErr(t, err, "faiss: search: ", "want 4 columns")
	q = faissio.Matrix{Rows: 1, Cols: 4, Data: make([]float32, 4)}
	_, _, err = ix.Search(q, 0, 1)
	checkErr(t, err, "k 0")
	_, _, err = ix.Search(q, 1, 0)
	checkErr(t, err, "faiss: search: ", "nprobe must be at least 1")
	if err := ix.WriteFile(filepath.Join(dir, "no", "such", "dir")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	} else {
		checkErr(t, err, "faiss: write index ")
	}
	ix.Close()
	if err := ix.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := ix.Search(q, 1, 1); err == nil {
		t.Error("Search after Close succeeded")
	}
}

// tinyParams is the worked example of the format notes: IVFPQ, d 4, nlist 2,
// M 2, nbits 2, L2, vectors 7 and 8 in list 0 and 9 in list 1.
func tinyParams() IVFParams {
	p := IVFParams{
		D: 4, Metric: faissio.L2, Nlist: 2,
		Centroids: []float32{0, 0, 0, 0, 1, 1, 1, 1},
		M:         2, Nbits: 2,
		Codebooks: make([]float32, 16),
		Lists:     []int64{0, 1, 0},
		IDs:       []int64{7, 9, 8},
		Codes:     []byte{0x0, 0x5, 0xf},
	}
	for i := range p.Codebooks {
		p.Codebooks[i] = float32(i) / 16
	}
	return p
}

func TestTinyIndex(t *testing.T) {
	ix, err := NewIVF(tinyParams())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	p, err := ix.IVFParams()
	if err != nil {
		t.Fatal(err)
	}
	// Grouped by list, keeping the given order within each list.
	if !slices.Equal(p.Lists, []int64{0, 0, 1}) || !slices.Equal(p.IDs, []int64{7, 8, 9}) ||
		!bytes.Equal(p.Codes, []byte{0x0, 0xf, 0x5}) {
		t.Errorf("lists %v ids %v codes %v", p.Lists, p.IDs, p.Codes)
	}
	// Asking for more neighbours than there are vectors leaves label -1.
	q := faissio.Matrix{Rows: 1, Cols: 4, Data: []float32{0, 0, 0, 0}}
	_, labels, err := ix.Search(q, 5, 2)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(labels[:3], -1) || !slices.Equal(labels[3:], []int64{-1, -1}) {
		t.Errorf("labels %v", labels)
	}
}

func TestSgemm(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 4, 33}, {64, 64, 64}, {2, 3, 0}} {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, beta := range []float32{0, 0.5} {
				m, n, k := s[0], s[1], s[2]
				ar, ac := m, k
				if tr[0] {
					ar, ac = k, m
				}
				br, bc := k, n
				if tr[1] {
					br, bc = n, k
				}
				lda, ldb, ldc := ac+2, bc+1, n+3
				a := randSlice(rng, ar*lda)
				b := randSlice(rng, br*ldb)
				c := randSlice(rng, m*ldc)
				want := slices.Clone(c)
				const alpha = 1.5
				for i := range m {
					for j := range n {
						var sum float64
						for l := range k {
							ai, bi := i*lda+l, l*ldb+j
							if tr[0] {
								ai = l*lda + i
							}
							if tr[1] {
								bi = j*ldb + l
							}
							av, bv := a[ai], b[bi]
							sum += float64(av) * float64(bv)
						}
						want[i*ldc+j] = float32(alpha*sum + float64(beta)*float64(c[i*ldc+j]))
					}
				}
				Sgemm(tr[0], tr[1], m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
				for i := range c {
					if math.Abs(float64(c[i]-want[i])) > 1e-4*max(1, math.Abs(float64(want[i]))) {
						t.Fatalf("m n k %v trans %v beta %v: C[%d] = %g, want %g", s, tr, beta, i, c[i], want[i])
					}
				}
			}
		}
	}

	defer func() {
		if recover() == nil {
			t.Error("Sgemm with a short A did not panic")
		}
	}()
	Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

func TestConcurrentSearch(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	ix, _ := rebuild(t, trainCase(t, ivfCases[2], base))
	flat, err := NewFlat(faissio.L2, base)
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Close()

	indexes := []*Index{ix, ix, ix, flat}
	nprobes := []int{1, 4, nlist, 1}
	type result struct {
		d []float32
		l []int64
	}
	serial := make([]result, len(indexes))
	for i, x := range indexes {
		d, l, err := x.Search(queries, 10, nprobes[i])
		if err != nil {
			t.Fatal(err)
		}
		serial[i] = result{d, l}
	}

	SetThreads(2)
	defer SetThreads(0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for r := range 5 {
				i := (g + r) % len(indexes)
				d, l, err := indexes[i].Search(queries, 10, nprobes[i])
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(l, serial[i].l) || !closeDistances(d, serial[i].d) {
					errs <- fmt.Errorf("goroutine %d, search %d (nprobe %d): results differ from serial", g, r, nprobes[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// pyTrain trains index_factory(128, argv[2]) on the siftsmall base (on its
// first argv[5] rows when given) as TrainFAISS does (seed 1234, 10 k-means
// iterations, no polysemous training), adds the whole base and writes the
// index to argv[3].
const pyTrain = `
import sys, numpy as np, faiss
xb = np.fromfile(sys.argv[1], dtype='int32').reshape(-1, 129)[:, 1:].copy().view('float32')
xt = xb[:int(sys.argv[5])] if len(sys.argv) > 5 else xb
metric = faiss.METRIC_L2 if sys.argv[4] == 'l2' else faiss.METRIC_INNER_PRODUCT
ix = faiss.index_factory(128, sys.argv[2], metric)
ivf = faiss.downcast_index(faiss.extract_index_ivf(ix))
ivf.cp.seed, ivf.cp.niter = 1234, 10
if isinstance(ivf, faiss.IndexIVFPQ):
    ivf.pq.cp.seed, ivf.pq.cp.niter = 1234, 10
    ivf.do_polysemous_training = False
ix.train(xt)
ix.add(xb)
faiss.write_index(ix, sys.argv[3])
`

func TestTrainFAISSMatchesPython(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	testutil.Python(t)
	for _, c := range []struct {
		desc string
		p    FAISSParams
	}{
		{"IVF32,PQ16x4", FAISSParams{D: 128, Metric: faissio.L2, Nlist: nlist, M: 16, Nbits: 4}},
		{"IVF32,PQ16", FAISSParams{D: 128, Metric: faissio.InnerProduct, Nlist: nlist, M: 16, Nbits: 8}},
		{"IVF32,Flat", FAISSParams{D: 128, Metric: faissio.InnerProduct, Nlist: nlist}},
	} {
		t.Run(c.desc, func(t *testing.T) {
			c.p.Seed, c.p.Niter = 1234, 10
			ix, err := TrainFAISS(c.p, base, base, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			_, ours := writeBytes(t, ix, "go.index")
			path := filepath.Join(t.TempDir(), "python.index")
			runPython(t, pyTrain, filepath.Join(dataDir, "siftsmall_base.fvecs"), c.desc, path, c.p.Metric.String())
			theirs, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("TrainFAISS and python's index_factory wrote different files (%d vs %d bytes, first difference at %d)",
					len(ours), len(theirs), firstDiff(ours, theirs))
			}
		})
	}
}

// opqTrainRows is how many siftsmall base vectors (the first ones) the OPQ
// tests train on: OPQ training (50 rounds of 8-bit PQ training) costs in
// proportion to them, about 4 s per 1,000 on two cores, and is done three
// times (TrainFAISS, TrainOPQ, Python's index_factory); 40 per centroid of
// IVF32 are enough (FAISS asks for 39), as the tests compare files and
// searches, not recall. FAISS warns on stderr that 256-centroid PQ k-means
// wants 9,984 points; a warning only.
const opqTrainRows = 1280

// opqTrain is the OPQ tests' training set: the first opqTrainRows of base.
func opqTrain(base faissio.Matrix) faissio.Matrix { return base.Slice(0, opqTrainRows) }

// opq is TrainFAISS's OPQ16,IVF32,PQ16 trained on opqTrain(base) with the
// whole siftsmall base added (seed 1234, 10 k-means iterations, ids
// 0..n-1), trained once for all tests because OPQ training takes seconds.
// Tests must not close it.
var opq struct {
	once sync.Once
	ix   *Index
	err  error
}

var opqParams = FAISSParams{D: 128, Metric: faissio.L2, Nlist: nlist, M: 16, Nbits: 8, Seed: 1234, Niter: 10, OPQ: true}

func trainedOPQ(t *testing.T, base faissio.Matrix) *Index {
	t.Helper()
	if testing.Short() {
		t.Skip("OPQ training on siftsmall takes seconds")
	}
	opq.once.Do(func() {
		opq.ix, opq.err = TrainFAISS(opqParams, opqTrain(base), base, nil)
	})
	if opq.err != nil {
		t.Fatal(opq.err)
	}
	return opq.ix
}

func TestOPQRebuild(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	orig := trainedOPQ(t, base)
	info, err := orig.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != "IndexPreTransform" || info.D != 128 || info.Ntotal != int64(base.Rows) || info.Nlist != nlist ||
		info.M != 16 || info.Nbits != 8 || info.CodeSize != 16 || !info.ByResidual {
		t.Errorf("Info = %+v", info)
	}
	re, p := rebuild(t, orig)
	if len(p.Rotation) != 128*128 {
		t.Fatalf("%d rotation values", len(p.Rotation))
	}
	if info, _ := re.Info(); info.Type != "IndexPreTransform" {
		t.Errorf("rebuilt index is an %s", info.Type)
	}

	rePath := sameFile(t, orig, re)
	rd, err := ReadIndex(rePath)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if p2, err := rd.IVFParams(); err != nil {
		t.Fatal(err)
	} else if !equalParams(p, p2) || !slices.Equal(p.Rotation, p2.Rotation) {
		t.Error("IVFParams of the OPQ file read back differ")
	}

	for _, nprobe := range []int{1, 4, nlist} {
		searchSame(t, orig, re, queries, nprobe)
	}
}

// searchSame searches both indexes for the top 10 at nprobe, fails the test
// unless they agree (sameResults), and returns the original's labels.
func searchSame(t *testing.T, orig, re *Index, queries faissio.Matrix, nprobe int) []int64 {
	t.Helper()
	d1, l1, err := orig.Search(queries, 10, nprobe)
	if err != nil {
		t.Fatal(err)
	}
	d2, l2, err := re.Search(queries, 10, nprobe)
	if err != nil {
		t.Fatal(err)
	}
	sameResults(t, fmt.Sprintf("nprobe %d", nprobe), d1, l1, d2, l2)
	return l1
}

func TestTrainOPQ(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	p, err := trainedOPQ(t, base).IVFParams()
	if err != nil {
		t.Fatal(err)
	}

	// Seed 1234 is FAISS's own training (which TestTrainFAISSOPQMatchesPython
	// checks against index_factory's), and the same run gives the same A.
	a, err := TrainOPQ(opqTrain(base), 16, 1234, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, p.Rotation) {
		t.Error("TrainOPQ with seed 1234 differs from the rotation of TrainFAISS's OPQ index")
	}
	const d = 128
	worst := faissio.OrthonormalityError(a, d)
	t.Logf("max |A Aᵀ - I| = %.2g", worst)
	if !(worst <= 1e-4) { // NaN too: A is not d×d
		t.Errorf("A is not orthonormal: max |A Aᵀ - I| = %g", worst)
	}

	// The seed reaches the training; a small problem keeps this quick.
	small := faissio.Matrix{Rows: 2500, Cols: 16, Data: randSlice(rand.New(rand.NewSource(5)), 2500*16)}
	var rots [3][]float32
	for i, c := range []struct{ seed, niter int }{{7, 0}, {8, 0}, {7, 2}} {
		if rots[i], err = TrainOPQ(small, 2, c.seed, c.niter); err != nil {
			t.Fatal(err)
		}
	}
	if slices.Equal(rots[0], rots[1]) {
		t.Error("another seed gives the same rotation")
	}
	// So do the iterations.
	if slices.Equal(rots[0], rots[2]) {
		t.Error("2 iterations give the rotation of 50")
	}
	// OpenMP's threads do not change it (nor does TrainFAISS's one thread
	// above, against TrainOPQ's GOMAXPROCS).
	for _, threads := range []int{1, 3} {
		r, err := trainOPQ(small, 2, 7, 0, threads)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r, rots[0]) {
			t.Errorf("the rotation trained on %d OpenMP threads differs from GOMAXPROCS's", threads)
		}
	}

	// ApplyRotation is the product FAISS's IndexPreTransform computes:
	// the inner IVF index searched with rotated queries finds what the
	// rotated index finds.
	rotated, err := NewIVF(p)
	if err != nil {
		t.Fatal(err)
	}
	defer rotated.Close()
	inner := p
	inner.Rotation = nil
	plain, err := NewIVF(inner)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	rq := ApplyRotation(p.Rotation, queries)
	for i := range 3 {
		for j := range d {
			var want float64
			for k := range d {
				want += float64(p.Rotation[j*d+k]) * float64(queries.Data[i*d+k])
			}
			if got := float64(rq.Data[i*d+j]); math.Abs(got-want) > 1e-4*max(1, math.Abs(want)) {
				t.Fatalf("ApplyRotation: query %d, coordinate %d: %g, want %g", i, j, got, want)
			}
		}
	}
	for _, nprobe := range []int{1, 8} {
		d1, l1, err := rotated.Search(queries, 10, nprobe)
		if err != nil {
			t.Fatal(err)
		}
		d2, l2, err := plain.Search(rq, 10, nprobe)
		if err != nil {
			t.Fatal(err)
		}
		sameResults(t, fmt.Sprintf("nprobe %d", nprobe), d1, l1, d2, l2)
		if !slices.Equal(d1, d2) {
			t.Logf("nprobe %d: distances equal within tolerance but not bit for bit", nprobe)
		}
	}
}

func TestTrainFAISSOPQMatchesPython(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	testutil.Python(t)
	_, ours := writeBytes(t, trainedOPQ(t, base), "go.index")
	path := filepath.Join(t.TempDir(), "python.index")
	// index_factory's OPQ is unseeded, that is seeded 1234 throughout.
	runPython(t, pyTrain, filepath.Join(dataDir, "siftsmall_base.fvecs"), "OPQ16,IVF32,PQ16", path, "l2",
		strconv.Itoa(opqTrainRows))
	theirs, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Errorf("TrainFAISS and python's index_factory wrote different OPQ files (%d vs %d bytes, first difference at %d)",
			len(ours), len(theirs), firstDiff(ours, theirs))
	}
}

func TestPythonReadsOPQ(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	testutil.Python(t)
	re, _ := rebuild(t, trainedOPQ(t, base))
	path, ours := writeBytes(t, re, "ours.index")
	back := filepath.Join(t.TempDir(), "python.index")
	out := strings.Split(strings.TrimSpace(runPython(t, pyLoad, path, filepath.Join(dataDir, "siftsmall_query.fvecs"), back)), "\n")
	if len(out) < 3 {
		t.Fatalf("python printed %q", out)
	}
	if got := out[len(out)-3]; got != "IndexPreTransform LinearTransform IndexIVFPQ" {
		t.Errorf("python reads %q, want an IndexPreTransform of one LinearTransform over an IndexIVFPQ", got)
	}
	checkPythonView(t, out, re, queries, base, ours, back)
}

// checkPythonView checks the last two lines pyLoad printed for our file —
// "ntotal d nlist" and the labels of the first 5 queries at nprobe 8 —
// against our index, and that Python's rewrite of the file is our bytes.
func checkPythonView(t *testing.T, out []string, re *Index, queries, base faissio.Matrix, ours []byte, back string) {
	t.Helper()
	if got, want := out[len(out)-2], fmt.Sprintf("%d %d %d", base.Rows, base.Cols, nlist); got != want {
		t.Errorf("python sees ntotal d nlist = %q, want %q", got, want)
	}
	_, labels, err := re.Search(queries.Slice(0, 5), 5, 8)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out[len(out)-1], joinInts(labels); got != want {
		t.Errorf("python labels %q, ours %q", got, want)
	}
	if pyBytes, err := os.ReadFile(back); err != nil || !bytes.Equal(pyBytes, ours) {
		t.Errorf("python's rewrite of our file differs (err %v)", err)
	}
}

// pyChains writes small IVFFlat indexes (d 8) behind transforms that
// IVFParams must refuse, one file per argument name into the directory
// argv[1].
const pyChains = `
import sys, os, numpy as np, faiss
x = np.random.RandomState(3).rand(1000, 8).astype('float32')
def save(name, ix):
    ix.train(x)
    ix.add(x[:50])
    faiss.write_index(ix, os.path.join(sys.argv[1], name))
for name, desc in [('two', 'OPQ2,RR8,IVF2,Flat'), ('rr', 'RR8,IVF2,Flat'), ('narrow', 'OPQ2_4,IVF2,Flat'), ('pca', 'PCA8,IVF2,Flat')]:
    save(name, faiss.index_factory(8, desc))
lt = faiss.LinearTransform(8, 8, True)
faiss.copy_array_to_vector(np.eye(8, dtype='float32').ravel(), lt.A)
faiss.copy_array_to_vector(np.ones(8, dtype='float32'), lt.b)
lt.is_trained = True
ivf = faiss.index_factory(8, 'IVF2,Flat')
ix = faiss.IndexPreTransform(lt, ivf)
ix.own_fields = True
ivf.this.disown()
lt.this.disown()
save('bias', ix)
`

func TestOPQErrors(t *testing.T) {
	x := faissio.Matrix{Rows: 300, Cols: 8, Data: randSlice(rand.New(rand.NewSource(4)), 2400)}
	_, err := TrainOPQ(x, 3, 1, 0)
	checkErr(t, err, "faiss: train OPQ: ", "M 3 does not divide dimension 8")
	_, err = TrainOPQ(x, 2, 1, -1)
	checkErr(t, err, "faiss: train OPQ: ", "-1 iterations")
	_, err = TrainOPQ(x.Slice(0, 100), 2, 1, 0)
	checkErr(t, err, "faiss: train OPQ: ", "Number of training points")
	t.Log(err)
	_, err = TrainFAISS(FAISSParams{D: 8, Metric: faissio.L2, Nlist: 2, OPQ: true}, x, x, nil)
	checkErr(t, err, "faiss: train: ", "OPQ needs PQ")

	p := tinyParams()
	p.Rotation = make([]float32, 15)
	_, err = NewIVF(p)
	checkErr(t, err, "faiss: new IVF index: ", "15 rotation values, want d*d = 16")

	func() {
		defer func() {
			if recover() == nil {
				t.Error("ApplyRotation with a wrong-sized A did not panic")
			}
		}()
		ApplyRotation(make([]float32, 15), x)
	}()

	testutil.Python(t)
	dir := t.TempDir()
	runPython(t, pyChains, dir)
	for name, want := range map[string]string{
		"two":    "IndexPreTransform has 2 transforms, want one rotation",
		"rr":     "transform RandomRotationMatrix is not a LinearTransform or OPQMatrix",
		"narrow": "transform maps 8 to 4 dimensions, want 8 to 8",
		"pca":    "transform PCAMatrix is not a LinearTransform or OPQMatrix",
		"bias":   "linear transform has a bias",
	} {
		ix, err := ReadIndex(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := ix.Search(faissio.Matrix{Rows: 1, Cols: 8, Data: make([]float32, 8)}, 1, 1); err != nil {
			t.Errorf("%s: search: %v", name, err)
		}
		_, err = ix.IVFParams()
		ix.Close()
		checkErr(t, err, "faiss: IVF parameters: ", want)
	}
}
