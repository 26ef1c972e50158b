package faissio

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/internal/testutil"
)

// pyFastScanIndexes builds, trains and fills with FAISS the indexes named
// in argv[2:] and writes each as argv[1]/NAME.index. A name is
// KIND-METRIC-M[-hnsw][-nores][-opq]: KIND fs converts an IndexIVFPQ of
// 4-bit codes with IndexIVFPQFastScan(ivfpq, 32), pq keeps the IndexIVFPQ,
// flat is an IndexIVFFlat; hnsw makes the coarse quantizer an
// IndexHNSWFlat(d, 32, metric); nores turns by_residual off before
// training; opq wraps the index in an IndexPreTransform of a trained
// OPQMatrix. 16 lists, 700 vectors: lists shorter and longer than a
// block.
const pyFastScanIndexes = `
import sys, faiss, numpy as np
faiss.omp_set_num_threads(1)
out = sys.argv[1]
d, nlist = 20, 16
rng = np.random.default_rng(7)
xt = rng.standard_normal((1000, d)).astype('float32')
xb = rng.standard_normal((700, d)).astype('float32')
for name in sys.argv[2:]:
    kind, metric, m, *opts = name.split('-')
    metric = faiss.METRIC_L2 if metric == 'l2' else faiss.METRIC_INNER_PRODUCT
    m = int(m)
    if 'hnsw' in opts:
        q = faiss.IndexHNSWFlat(d, 32, metric)
    else:
        q = faiss.IndexFlat(d, metric)
    if kind == 'flat':
        ivf = faiss.IndexIVFFlat(q, d, nlist, metric)
    else:
        ivf = faiss.IndexIVFPQ(q, d, nlist, m, 4 if kind == 'fs' else 6, metric)
        ivf.by_residual = 'nores' not in opts
    ivf.cp.niter = 4
    if kind != 'flat':
        ivf.pq.cp.niter = 4
    x, y = xt, xb
    opq = None
    if 'opq' in opts:
        opq = faiss.OPQMatrix(d, m)
        opq.niter, opq.niter_pq = 2, 2
        opq.train(xt)
        x, y = opq.apply(xt), opq.apply(xb)
    ivf.train(x)
    ivf.add_with_ids(y, np.arange(700, dtype='int64') * 3 + 5)
    ix = ivf
    if kind == 'fs':
        ix = faiss.IndexIVFPQFastScan(ivf, 32)
    if opq is not None:
        ix = faiss.IndexPreTransform(opq, ix)
    faiss.write_index(ix, out + '/' + name + '.index')
`

// TestFastScanMatchesPythonFAISS: indexes FAISS builds, FastScan ones by
// its conversion constructor, with flat and HNSW quantizers, residuals or
// not, and an OPQ rotation, give IVFParams (IVFParamsOf of ReadIndex) from
// which WriteIVF and WriteIVFFile write FAISS's bytes.
func TestFastScanMatchesPythonFAISS(t *testing.T) {
	testutil.Python(t)
	names := []string{
		"fs-l2-4-hnsw", "fs-ip-5-hnsw-nores", "fs-l2-5", "fs-ip-4-nores", "fs-ip-10-hnsw-opq",
		"pq-l2-4-hnsw", "flat-ip-0-hnsw",
	}
	dir := t.TempDir()
	testutil.Run{Script: pyFastScanIndexes, Args: append([]string{dir}, names...), Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".index")
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := ReadIndex(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			p, err := IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			if p.FastScan != strings.HasPrefix(name, "fs-") || p.NoResidual != strings.Contains(name, "nores") ||
				(p.HNSW != nil) != strings.Contains(name, "hnsw") || (p.Rotation != nil) != strings.Contains(name, "opq") || len(p.IDs) != 700 {
				t.Fatalf("parameters %s", summary(&p))
			}
			var got bytes.Buffer
			if err := WriteIVF(context.Background(), &got, &p, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("WriteIVF writes %d bytes, FAISS %d, differing at byte %d", got.Len(), len(want), firstDiff(got.Bytes(), want))
			}
			// The parts a merge opens: FAISS's file is one.
			x, err := OpenIVFFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			checkIVFFile(t, x, &p)
		})
	}
}

// TestIVFParamsOfFastScanFixtures: the FAISS-written FastScan and HNSW IVF files of
// testdata give IVFParams from which WriteIVF writes them again, and open
// for merging.
func TestIVFParamsOfFastScanFixtures(t *testing.T) {
	for _, name := range []string{"ivfpqfs_l2", "ivfpqfsr_ip", "ivfpqfsr_m5_l2", "ivfpq_hnsw_l2", "ivfflat_hnsw_ip", "ivfpqfs_hnsw_l2"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name+".index")
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := ReadIndex(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			p, err := IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := WriteIVF(context.Background(), &got, &p, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("WriteIVF writes %d bytes, FAISS %d, differing at byte %d", got.Len(), len(want), firstDiff(got.Bytes(), want))
			}
			x := memFile(t, name, want)
			checkIVFFile(t, x, &p)
		})
	}
}
