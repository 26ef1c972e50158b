//go:build cgo

package faiss

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// pyFactory trains index_factory(128, key, metric) on the first argv[5]
// siftsmall vectors with the seeds and iterations TrainFAISS's factory path
// sets, adds them all, and writes it.
const pyFactory = `
import sys, numpy as np, faiss
xb = np.fromfile(sys.argv[1], dtype='int32').reshape(-1, 129)[:, 1:].copy().view('float32')
metric = faiss.METRIC_L2 if sys.argv[4] == 'l2' else faiss.METRIC_INNER_PRODUCT
ix = faiss.index_factory(128, sys.argv[2], metric)
try:
    ivf = faiss.downcast_index(faiss.extract_index_ivf(ix))
    ivf.cp.seed, ivf.cp.niter = 1234, 10
except RuntimeError:
    ivf = faiss.downcast_index(ix)
if hasattr(ivf, 'pq'):
    ivf.pq.cp.seed, ivf.pq.cp.niter = 1234, 10
if hasattr(ivf, 'do_polysemous_training'):
    ivf.do_polysemous_training = False
ix.train(xb[:int(sys.argv[5])])
ix.add(xb)
faiss.write_index(ix, sys.argv[3])
`

// factoryTrainRows is how many siftsmall vectors (the first ones) the
// factory kinds train on, in Go and in Python: the files are compared, not
// their recall, and the flat PQ16's training costs in proportion to them
// (FAISS warns that 256 centroids want 9,984; a warning only). IVF32 has
// its 39 per list.
const factoryTrainRows = 2500

// factoryTrained holds factoryIndex's indexes by factory string and metric.
var factoryTrained struct {
	sync.Mutex
	m map[string]*Index
}

// factoryIndex is TrainFAISS's index_factory(key) trained on the first
// factoryTrainRows of the siftsmall base (seed 1234, 10 iterations) and
// filled with all of it, once for TestFactoryMatchesPython and
// TestNewKindsRebuild, which share three kinds. Tests must not close it.
func factoryIndex(t *testing.T, key string, metric faissio.Metric, base faissio.Matrix) *Index {
	t.Helper()
	factoryTrained.Lock()
	defer factoryTrained.Unlock()
	k := key + "/" + metric.String()
	if ix := factoryTrained.m[k]; ix != nil {
		return ix
	}
	ix, err := TrainFAISS(FAISSParams{D: 128, Metric: metric, Factory: key, Seed: 1234, Niter: 10}, base.Slice(0, factoryTrainRows), base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if factoryTrained.m == nil {
		factoryTrained.m = map[string]*Index{}
	}
	factoryTrained.m[k] = ix
	return ix
}

// TestFactoryMatchesPython trains the new kinds through TrainFAISS's
// factory path and checks that Python FAISS, given the same factory string
// and settings, writes the same file.
func TestFactoryMatchesPython(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	testutil.Python(t)
	for _, c := range []struct {
		key    string
		metric faissio.Metric
	}{
		{"IVF32,PQ16x4fs", faissio.L2},
		{"IVF32,PQ16x4fsr", faissio.InnerProduct},
		{"PQ16", faissio.L2},
		{"PQ16x4fs", faissio.InnerProduct},
		{"IVF32_HNSW32,PQ16", faissio.L2},
	} {
		t.Run(c.key, func(t *testing.T) {
			_, ours := writeBytes(t, factoryIndex(t, c.key, c.metric, base), "go.index")
			path := filepath.Join(t.TempDir(), "python.index")
			runPython(t, pyFactory, filepath.Join(dataDir, "siftsmall_base.fvecs"), c.key, path, c.metric.String(), fmt.Sprint(factoryTrainRows))
			theirs, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("TrainFAISS and Python's index_factory wrote different files (%d vs %d bytes, first difference at %d)",
					len(ours), len(theirs), firstDiff(ours, theirs))
			}
		})
	}
}

// TestNewKindsRebuild takes FAISS-trained FastScan and HNSW-quantizer IVF
// indexes apart (IVFParams) and builds them again (NewIVF): FAISS writes
// the same bytes and searches the same.
func TestNewKindsRebuild(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	for _, c := range []struct {
		key    string
		metric faissio.Metric
	}{
		{"IVF32,PQ16x4fs", faissio.L2},
		{"IVF32,PQ16x4fsr", faissio.InnerProduct},
		{"IVF32_HNSW32,PQ16", faissio.L2},
		{"IVF32_HNSW32,PQ16x4fsr", faissio.L2},
		{"IVF32_HNSW32,Flat", faissio.InnerProduct},
	} {
		t.Run(c.key, func(t *testing.T) {
			ix := factoryIndex(t, c.key, c.metric, base)
			re, p := rebuild(t, ix)
			if p.FastScan != (c.key[len(c.key)-1] == 's' || c.key[len(c.key)-1] == 'r') || (p.HNSW != nil) != (c.key[5] == '_') {
				t.Errorf("IVFParams: FastScan %v, HNSW %v", p.FastScan, p.HNSW != nil)
			}
			sameFile(t, ix, re)
			for _, ef := range []int{0, 64} {
				d1, l1, err := ix.SearchWith(queries, 10, SearchParams{Nprobe: 4, EfSearch: ef})
				if err != nil {
					t.Fatal(err)
				}
				d2, l2, err := re.SearchWith(queries, 10, SearchParams{Nprobe: 4, EfSearch: ef})
				if err != nil {
					t.Fatal(err)
				}
				sameResults(t, c.key, d1, l1, d2, l2)
			}
		})
	}
}

// TestBuildHNSW builds the graph of an IVF's centroids twice (the same
// graph: one thread) and checks that an IVF index with it as quantizer,
// searched with efSearch at nlist, finds what the flat quantizer finds.
func TestBuildHNSW(t *testing.T) {
	base := readFvecs(t, "siftsmall_base.fvecs")
	queries := readFvecs(t, "siftsmall_query.fvecs")
	ix := trainCase(t, ivfCases[0], base)
	p, err := ix.IVFParams()
	if err != nil {
		t.Fatal(err)
	}
	cent := faissio.Matrix{Rows: p.Nlist, Cols: p.D, Data: p.Centroids}
	hp := HNSWParams{M: 8, EfConstruction: 40, EfSearch: 16}
	g1, err := BuildHNSW(p.Metric, cent, hp)
	if err != nil {
		t.Fatal(err)
	}
	SetThreads(3)
	g2, err := BuildHNSW(p.Metric, cent, hp)
	SetThreads(0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g1, g2) {
		t.Error("two builds of the same graph differ")
	}
	if len(g1.Levels) != p.Nlist || len(g1.Offsets) != p.Nlist+1 || g1.EfSearch != 16 {
		t.Errorf("graph of %d levels, %d offsets, efSearch %d", len(g1.Levels), len(g1.Offsets), g1.EfSearch)
	}
	q := p
	q.HNSW = g1
	hx, err := NewIVF(q)
	if err != nil {
		t.Fatal(err)
	}
	defer hx.Close()
	info, err := hx.Info()
	if err != nil || info.Quantizer != "IndexHNSWFlat" || info.EfSearch != 16 {
		t.Fatalf("info %+v, %v", info, err)
	}
	d1, l1, err := ix.Search(queries, 10, 8)
	if err != nil {
		t.Fatal(err)
	}
	d2, l2, err := hx.SearchWith(queries, 10, SearchParams{Nprobe: 8, EfSearch: p.Nlist})
	if err != nil {
		t.Fatal(err)
	}
	sameResults(t, "HNSW quantizer at efSearch nlist", d1, l1, d2, l2)
	// A search-time efSearch must act as the stored one does: FAISS
	// 1.7.3's SearchParametersHNSW leaves the beam at max(stored, k). A
	// sparse graph over many lists makes the beam matter.
	fx, err := TrainFAISS(FAISSParams{D: base.Cols, Metric: faissio.L2, Nlist: 1024, Seed: 1, Niter: 4}, base, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fx.Close()
	fp, err := fx.IVFParams()
	if err != nil {
		t.Fatal(err)
	}
	sparse, err := BuildHNSW(fp.Metric, faissio.Matrix{Rows: fp.Nlist, Cols: fp.D, Data: fp.Centroids}, HNSWParams{M: 4, EfConstruction: 8, EfSearch: 8})
	if err != nil {
		t.Fatal(err)
	}
	fp.HNSW = sparse
	low, err := NewIVF(fp)
	if err != nil {
		t.Fatal(err)
	}
	defer low.Close()
	for _, ef := range []int{32, 96} {
		r := fp
		g := *sparse
		g.EfSearch = int32(ef)
		r.HNSW = &g
		sx, err := NewIVF(r)
		if err != nil {
			t.Fatal(err)
		}
		d3, l3, err := sx.Search(queries, 10, 4)
		sx.Close()
		if err != nil {
			t.Fatal(err)
		}
		d4, l4, err := low.SearchWith(queries, 10, SearchParams{Nprobe: 4, EfSearch: ef})
		if err != nil {
			t.Fatal(err)
		}
		sameResults(t, fmt.Sprintf("efSearch %d given at search time and stored", ef), d3, l3, d4, l4)
	}
	if _, err := BuildHNSW(p.Metric, cent, HNSWParams{M: 1, EfConstruction: 40, EfSearch: 16}); err == nil {
		t.Error("HNSW M 1 accepted")
	}
}
