//go:build cgo

package faissio_test

// Tests of faissio's index reader and writer against FAISS itself: through
// the cgo package (FAISS's C++ library) and through Debian's Python FAISS.
// Data are siftsmall subsets, small enough to keep the file near 30 s.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

const siftDir = "../../shared/data/siftsmall"

// sift holds siftsmall subsets: train is the whole base set (siftsmall has
// no separate learn set here), docs its first 3000 vectors.
type sift struct {
	train, docs, queries faissio.Matrix
}

var (
	siftOnce sync.Once
	siftData sift
	siftErr  error
)

func loadSift(t *testing.T) sift {
	t.Helper()
	siftOnce.Do(func() {
		var base, query faissio.Matrix
		if base, siftErr = faissio.ReadFvecs(filepath.Join(siftDir, "siftsmall_base.fvecs")); siftErr != nil {
			return
		}
		if query, siftErr = faissio.ReadFvecs(filepath.Join(siftDir, "siftsmall_query.fvecs")); siftErr != nil {
			return
		}
		siftData = sift{train: base, docs: base.Slice(0, 3000), queries: query.Slice(0, 40)}
	})
	if errors.Is(siftErr, fs.ErrNotExist) {
		// Shared data beside the checkout, not a fixture of the repository.
		t.Skipf("siftsmall, outside the repository, not available: %v", siftErr)
	}
	if siftErr != nil {
		t.Fatalf("siftsmall is there but does not load: %v", siftErr)
	}
	return siftData
}

// faissCase is one index FAISS trains (or, for flat, fills).
type faissCase struct {
	name   string
	metric faissio.Metric
	m      int
	nbits  int
	opq    bool
	flat   bool
}

var faissCases = []faissCase{
	{name: "IVFPQ16x8-L2", metric: faissio.L2, m: 16, nbits: 8},
	{name: "IVFPQ16x8-IP", metric: faissio.InnerProduct, m: 16, nbits: 8},
	{name: "IVFPQ16x5-IP", metric: faissio.InnerProduct, m: 16, nbits: 5},
	{name: "IVFPQ16x5-L2", metric: faissio.L2, m: 16, nbits: 5},
	{name: "IVFPQ8x4-L2", metric: faissio.L2, m: 8, nbits: 4},
	{name: "IVFPQ8x4-IP", metric: faissio.InnerProduct, m: 8, nbits: 4},
	{name: "IVFFlat-L2", metric: faissio.L2},
	{name: "IVFFlat-IP", metric: faissio.InnerProduct},
	{name: "OPQ8-IVFPQ8x8-L2", metric: faissio.L2, m: 8, nbits: 8, opq: true},
	{name: "Flat-L2", metric: faissio.L2, flat: true},
	{name: "Flat-IP", metric: faissio.InnerProduct, flat: true},
}

const testNlist = 32

// docIDs are not 0..n-1, so that id handling shows.
func docIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 5_000_000 + 3*int64(i)
	}
	return ids
}

// build makes c's index with FAISS.
func (c faissCase) build(t *testing.T, s sift) *faiss.Index {
	t.Helper()
	var ix *faiss.Index
	var err error
	if c.flat {
		ix, err = faiss.NewFlat(c.metric, s.docs.Slice(0, 500))
	} else {
		train := s.train
		if c.opq {
			// OPQ training is the slow part, in proportion to the points
			// (2000 took 3 s on a quiet machine, 10000 take 30; FAISS warns
			// that 256 centroids want more): 40 per list of IVF32 are
			// enough for a file to read and rewrite.
			train = train.Slice(0, 1280)
		}
		p := faiss.FAISSParams{D: 128, Metric: c.metric, Nlist: testNlist, M: c.m, Nbits: c.nbits,
			Seed: 1234, Niter: 8, OPQ: c.opq}
		ix, err = faiss.TrainFAISS(p, train, s.docs, docIDs(s.docs.Rows))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func faissBytes(t *testing.T, ix *faiss.Index) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faiss.index")
	if err := ix.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func goBytes(t *testing.T, ix faissio.Index) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faissio.index")
	if err := faissio.WriteIndexFile(path, ix); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// search runs k-NN of the queries at nprobe 4 on the index in path, read
// by FAISS.
func search(t *testing.T, path string, q faissio.Matrix) ([]float32, []int64) {
	t.Helper()
	ix, err := faiss.ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	d, l, err := ix.Search(q, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	return d, l
}

// TestFAISSFilesRoundTrip: FAISS writes, faissio reads and writes the
// same bytes; faissio's view equals cgo's; and an index that faissio
// rebuilds from the parameters searches in FAISS exactly as the original.
func TestFAISSFilesRoundTrip(t *testing.T) {
	s := loadSift(t)
	for _, c := range faissCases {
		t.Run(c.name, func(t *testing.T) {
			orig := c.build(t, s)
			path, want := faissBytes(t, orig)
			ix, err := faissio.ReadIndexFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := faissio.WriteIndex(&out, ix); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("faissio rewrites %d bytes as %d, differing at byte %d", len(want), out.Len(), diffAt(out.Bytes(), want))
			}
			d0, l0, err := orig.Search(s.queries, 10, 4)
			if err != nil {
				t.Fatal(err)
			}
			if c.flat {
				f := ix.(*faissio.Flat)
				if !slices.Equal(f.Data, s.docs.Slice(0, 500).Data) {
					t.Error("flat vectors differ from those added")
				}
				rebuilt := &faissio.Flat{Header: f.Header, Data: s.docs.Slice(0, 500).Data}
				p, b := goBytes(t, rebuilt)
				if !bytes.Equal(b, want) {
					t.Errorf("flat built in Go differs at byte %d", diffAt(b, want))
				}
				d1, l1 := search(t, p, s.queries)
				sameSearch(t, d0, l0, d1, l1)
				return
			}

			// faissio's parameters are cgo's.
			pGo, err := faissio.IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			pC, err := orig.IVFParams()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pGo, pC) {
				t.Fatal("IVFParamsOf differs from cgo's IVFParams")
			}
			if _, isPT := ix.(*faissio.PreTransform); isPT != c.opq {
				t.Errorf("read %T", ix)
			}

			// Rebuilt from the parameters in Go: the same bytes, and FAISS
			// searches it as the original.
			rebuilt, err := faissio.NewIVFIndex(pGo)
			if err != nil {
				t.Fatal(err)
			}
			p, b := goBytes(t, rebuilt)
			if !bytes.Equal(b, want) {
				t.Errorf("NewIVFIndex writes a file differing from FAISS's at byte %d", diffAt(b, want))
			}
			d1, l1 := search(t, p, s.queries)
			sameSearch(t, d0, l0, d1, l1)
		})
	}
}

func sameSearch(t *testing.T, d0 []float32, l0 []int64, d1 []float32, l1 []int64) {
	t.Helper()
	if !slices.Equal(l0, l1) {
		t.Errorf("labels differ")
	}
	for i := range d0 {
		if math.Float32bits(d0[i]) != math.Float32bits(d1[i]) {
			t.Errorf("distance %d: %v, want %v", i, d1[i], d0[i])
			return
		}
	}
}

// TestNewIVFMatchesCgo: the same IVFParams through cgo's NewIVF and
// faissio's NewIVFIndex give byte-identical files, for every nbits, both
// metrics, IVFFlat, and with a rotation. The contents are random: only the
// format is under test.
func TestNewIVFMatchesCgo(t *testing.T) {
	r := newRand(9)
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		for _, shape := range [][2]int{{0, 0}, {4, 1}, {4, 2}, {4, 3}, {4, 4}, {2, 5}, {4, 6}, {4, 7}, {4, 8}, {8, 8}} {
			for _, rot := range []bool{false, true} {
				name := fmt.Sprintf("%v-M%d-nbits%d-rot%v", metric, shape[0], shape[1], rot)
				t.Run(name, func(t *testing.T) {
					p := faissio.IVFParams{D: 16, Metric: metric, Nlist: 6, M: shape[0], Nbits: shape[1]}
					p.Centroids = r.floats(p.Nlist * p.D)
					if p.M > 0 {
						p.Codebooks = r.floats(p.D << p.Nbits)
					}
					if rot {
						p.Rotation = r.floats(p.D * p.D)
					}
					// Lists 0 and 5 empty, or all but one when few vectors.
					n := 25
					if shape[1]%2 == 1 {
						n = 2
					}
					for i := range n {
						p.Lists = append(p.Lists, int64(1+r.intn(4)))
						p.IDs = append(p.IDs, int64(100+7*i))
					}
					p.Codes = r.bytes(n * p.CodeSize())
					cix, err := faiss.NewIVF(p)
					if err != nil {
						t.Fatal(err)
					}
					defer cix.Close()
					_, want := faissBytes(t, cix)
					gix, err := faissio.NewIVFIndex(p)
					if err != nil {
						t.Fatal(err)
					}
					_, got := goBytes(t, gix)
					if !bytes.Equal(got, want) {
						t.Errorf("faissio writes %d bytes, FAISS %d, differing at byte %d", len(got), len(want), diffAt(got, want))
					}
				})
			}
		}
	}
}

// newRand is a small deterministic generator, enough for format tests.
type rng struct{ s uint64 }

func newRand(seed uint64) *rng { return &rng{seed*0x9e3779b97f4a7c15 + 1} }

func (r *rng) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) floats(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(int64(r.next()%2001)-1000) / 1000
	}
	return s
}

func (r *rng) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.next())
	}
	return b
}

// runPy runs script in Python FAISS (skipping or failing, by testutil's
// rule, where there is none) and returns its standard output. One OpenMP
// thread: FAISS's pool and OpenBLAS's oversubscribe the cores otherwise.
func runPy(t *testing.T, script string, args ...string) string {
	t.Helper()
	return string(testutil.Run{Script: script, Args: args, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t))
}

// pySearch reads each index file argv[3:] and prints, per file, one line
// of labels and one of distances (as float32 bit patterns) for the first
// argv[2] queries of argv[1], k 10, nprobe 4 for IVF indexes.
const pySearch = `
import sys, numpy as np, faiss
q = np.fromfile(sys.argv[1], dtype='int32').reshape(-1, 129)[:int(sys.argv[2]), 1:].copy().view('float32')
for path in sys.argv[3:]:
    ix = faiss.read_index(path)
    try:
        faiss.extract_index_ivf(ix).nprobe = 4
    except Exception:
        pass
    D, I = ix.search(q, 10)
    print(' '.join(str(x) for x in I.ravel()))
    print(' '.join(str(x) for x in D.ravel().view('uint32')))
`

// pyWrite writes, from siftsmall subsets, the index files FAISS's Python
// users make: an IndexPQ, an IVFPQ with an array and with a hash table
// direct map, and IVF indexes with few non-empty lists (stored "sprs").
const pyWrite = `
import sys, os, numpy as np, faiss
def fvecs(p):
    return np.fromfile(p, dtype='int32').reshape(-1, 129)[:, 1:].copy().view('float32')
xt = fvecs(os.path.join(sys.argv[1], 'siftsmall_base.fvecs'))
xb = xt[:2000]
out = sys.argv[2]
pq = faiss.IndexPQ(128, 16, 8)
pq.pq.cp.niter = 8
pq.train(xt)
pq.add(xb)
faiss.write_index(pq, os.path.join(out, 'pq.index'))
ix = faiss.index_factory(128, "IVF32,PQ16x8")
ivf = faiss.downcast_index(faiss.extract_index_ivf(ix))
ivf.cp.niter = 8
ivf.pq.cp.niter = 8
ivf.do_polysemous_training = False  # minutes of training otherwise
ix.train(xt)
ix.add(xb)
ix.make_direct_map()
faiss.write_index(ix, os.path.join(out, 'ivfpq_array.index'))
ix.set_direct_map_type(faiss.DirectMap.Hashtable)
faiss.write_index(ix, os.path.join(out, 'ivfpq_hashtable.index'))
ix2 = faiss.index_factory(128, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
faiss.extract_index_ivf(ix2).cp.niter = 8
ix2.train(xt)
ix2.add_with_ids(xb[:10], np.arange(10, dtype='int64') * 11 + 3)
faiss.write_index(ix2, os.path.join(out, 'ivfflat_sprs.index'))
ix3 = faiss.index_factory(128, "IVF64,PQ8x4")
ivf3 = faiss.downcast_index(faiss.extract_index_ivf(ix3))
ivf3.cp.niter = 8
ivf3.do_polysemous_training = False
ix3.train(xt)
ix3.add(xb[:20])
faiss.write_index(ix3, os.path.join(out, 'ivfpq_sprs.index'))
`

func TestPythonInterop(t *testing.T) {
	s := loadSift(t)
	testutil.Python(t)
	dir := t.TempDir()

	// Python's files, read and rewritten by faissio byte for byte.
	runPy(t, pyWrite, siftDir, dir)
	pyFiles := map[string]func(faissio.Index) error{
		"pq.index": func(ix faissio.Index) error {
			pq, ok := ix.(*faissio.PQ)
			if !ok || pq.Ntotal != 2000 || pq.PQ.M != 16 || pq.PolysemousHT != 16*8+1 {
				return fmt.Errorf("read %T %+v", ix, ix.IndexHeader())
			}
			return nil
		},
		"ivfpq_array.index": func(ix faissio.Index) error {
			dm := ix.(*faissio.IVFPQ).DirectMap
			if dm.Type != faissio.ArrayDirectMap || len(dm.Array) != 2000 {
				return fmt.Errorf("direct map type %d with %d entries", dm.Type, len(dm.Array))
			}
			return nil
		},
		"ivfpq_hashtable.index": func(ix faissio.Index) error {
			dm := ix.(*faissio.IVFPQ).DirectMap
			if dm.Type != faissio.HashtableDirectMap || len(dm.Hashtable) != 2000 {
				return fmt.Errorf("direct map type %d with %d entries", dm.Type, len(dm.Hashtable))
			}
			return nil
		},
		"ivfflat_sprs.index": func(faissio.Index) error { return nil },
		"ivfpq_sprs.index":   func(faissio.Index) error { return nil },
	}
	var goFiles, names []string
	for name, check := range pyFiles {
		path := filepath.Join(dir, name)
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "sprs") && !bytes.Contains(want, []byte("sprs")) {
			t.Errorf("%s: FAISS did not store sparse lists", name)
		}
		ix, err := faissio.ReadIndexFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := check(ix); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		p, got := goBytes(t, ix)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: rewritten by faissio, differs at byte %d", name, diffAt(got, want))
		}
		goFiles = append(goFiles, p)
		names = append(names, "python "+name)
	}

	// faissio's files of every type, read by Python and by cgo: the same
	// search results.
	for _, c := range faissCases {
		if c.name != "IVFPQ16x5-IP" && c.name != "IVFFlat-L2" && c.name != "Flat-IP" && c.name != "Flat-L2" {
			continue
		}
		ix := c.build(t, s)
		var gix faissio.Index
		if c.flat {
			gix = &faissio.Flat{Header: faissio.Header{D: 128, Ntotal: 500, IsTrained: true, Metric: c.metric},
				Data: s.docs.Slice(0, 500).Data}
		} else {
			p, err := ix.IVFParams()
			if err != nil {
				t.Fatal(err)
			}
			if gix, err = faissio.NewIVFIndex(p); err != nil {
				t.Fatal(err)
			}
		}
		p, _ := goBytes(t, gix)
		goFiles = append(goFiles, p)
		names = append(names, c.name)
	}
	// A rotated index built in Go from random parameters (its search need
	// not be good, only the same in both readers).
	r := newRand(3)
	p := faissio.IVFParams{D: 128, Metric: faissio.L2, Nlist: 8, M: 16, Nbits: 6,
		Rotation: r.floats(128 * 128), Centroids: r.floats(8 * 128), Codebooks: r.floats(128 << 6)}
	for i := range 300 {
		p.Lists = append(p.Lists, int64(r.intn(8)))
		p.IDs = append(p.IDs, int64(i))
	}
	p.Codes = r.bytes(300 * p.CodeSize())
	rot, err := faissio.NewIVFIndex(p)
	if err != nil {
		t.Fatal(err)
	}
	rp, _ := goBytes(t, rot)
	goFiles = append(goFiles, rp)
	names = append(names, "rotated IVFPQ16x6")

	const nq = 20
	out := strings.Split(strings.TrimSpace(runPy(t, pySearch, append([]string{filepath.Join(siftDir, "siftsmall_query.fvecs"),
		strconv.Itoa(nq)}, goFiles...)...)), "\n")
	if len(out) != 2*len(goFiles) {
		t.Fatalf("python printed %d lines for %d files", len(out), len(goFiles))
	}
	q := s.queries.Slice(0, nq)
	for i, path := range goFiles {
		d, l := search(t, path, q)
		if got := joinInts(l); got != out[2*i] {
			t.Errorf("%s: labels differ between Python and cgo", names[i])
		}
		// Python prints float32 bit patterns, so that equality is exact;
		// the rotation alone may differ by an ulp or two, because BLAS
		// splits the product differently with other thread counts.
		want := strings.Fields(out[2*i+1])
		if len(want) != len(d) {
			t.Fatalf("%s: python printed %d distances, want %d", names[i], len(want), len(d))
		}
		ulps := uint32(0)
		if names[i] == "rotated IVFPQ16x6" {
			ulps = 4
		}
		for j, w := range want {
			b, err := strconv.ParseUint(w, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			got := math.Float32bits(d[j])
			if max(got, uint32(b))-min(got, uint32(b)) > ulps {
				t.Errorf("%s: distance %d is %v in cgo, %v in Python", names[i], j, d[j], math.Float32frombits(uint32(b)))
				break
			}
		}
	}
}

func joinInts(xs []int64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, " ")
}
