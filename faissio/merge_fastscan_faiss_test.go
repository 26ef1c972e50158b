package faissio

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/internal/testutil"
)

// pyTrainedBases trains with FAISS the empty IndexIVFPQ (4-bit codes) that
// each of argv[2:] names and writes it as argv[1]/NAME.index. A name is
// METRIC-M[-hnsw][-opq]: hnsw gives it an IndexHNSWFlat(d, 32, metric)
// coarse quantizer, opq wraps it in an IndexPreTransform of an OPQMatrix.
const pyTrainedBases = `
import sys, faiss, numpy as np
faiss.omp_set_num_threads(1)
out = sys.argv[1]
d, nlist = 24, 8
rng = np.random.default_rng(11)
xt = rng.standard_normal((800, d)).astype('float32')
for name in sys.argv[2:]:
    metric, m, *opts = name.split('-')
    metric = faiss.METRIC_L2 if metric == 'l2' else faiss.METRIC_INNER_PRODUCT
    m = int(m)
    q = faiss.IndexHNSWFlat(d, 32, metric) if 'hnsw' in opts else faiss.IndexFlat(d, metric)
    ivf = faiss.IndexIVFPQ(q, d, nlist, m, 4, metric)
    ivf.cp.niter = 3
    ivf.pq.cp.niter = 3
    x = xt
    ix = ivf
    if 'opq' in opts:
        opq = faiss.OPQMatrix(d, m)
        opq.niter, opq.niter_pq = 2, 2
        opq.train(xt)
        x = opq.apply(xt)
        ix = faiss.IndexPreTransform(opq, ivf)
    ivf.train(x)
    faiss.write_index(ix, out + '/' + name + '.index')
`

// pyMergeFastScan runs the jobs of the file argv[1], one a line: the
// output, "nores" or "res", then the IndexIVFPQ parts in order. FAISS
// merges the parts (merge_into, which handles an IndexPreTransform),
// turns residuals off for nores, converts the merged IndexIVFPQ with
// IndexIVFPQFastScan(ivfpq, 32), wrapped as the parts were, and writes it.
// Then, for the jobs of argv[2] (two FastScan files each), it searches
// both with every list probed and prints "same" or "differ".
const pyMergeFastScan = `
import sys, faiss, numpy as np
faiss.omp_set_num_threads(1)
keep = []
for line in open(sys.argv[1]):
    out, res, *parts = line.split()
    a = faiss.read_index(parts[0])
    for p in parts[1:]:
        faiss.merge_into(a, faiss.read_index(p), False)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(a))
    ivf.by_residual = res == 'res'
    fs = faiss.IndexIVFPQFastScan(ivf, 32)
    ix = fs
    if isinstance(a, faiss.IndexPreTransform):
        ix = faiss.IndexPreTransform(a.chain.at(0), fs)
    faiss.write_index(ix, out)
    keep.append((a, fs, ix))
rng = np.random.default_rng(3)
for line in open(sys.argv[2]):
    x, y = line.split()
    a, b = faiss.read_index(x), faiss.read_index(y)
    faiss.extract_index_ivf(a).nprobe = faiss.extract_index_ivf(a).nlist
    faiss.extract_index_ivf(b).nprobe = faiss.extract_index_ivf(b).nlist
    q = rng.standard_normal((20, a.d)).astype('float32')
    da, ia = a.search(q, 10)
    db, ib = b.search(q, 10)
    print('same' if a.ntotal == b.ntotal and a.ntotal > 0 and (ia == ib).all() and (da == db).all() else 'differ')
`

// TestMergeFastScanMatchesPythonFAISS: FastScan parts (flat and HNSW
// quantizers trained by FAISS, residuals or not, OPQ or not) merged by
// Merge give the bytes of FAISS merging the same parts as IndexIVFPQ and
// converting the result to an IndexIVFPQFastScan; and FAISS searches the
// merged file as it searches WriteIVF's file of the unmerged contents.
func TestMergeFastScanMatchesPythonFAISS(t *testing.T) {
	testutil.Python(t)
	ctx := context.Background()
	dir := t.TempDir()
	bases := []string{"l2-4-hnsw", "ip-8-hnsw", "l2-3", "ip-4-hnsw-opq"}
	testutil.Run{Script: pyTrainedBases, Args: append([]string{dir}, bases...), Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)
	r := ixRand(67)
	var merges, searches strings.Builder
	type job struct{ name, ours, theirs string }
	var jobs []job
	for i, base := range bases {
		for _, noResidual := range []bool{false, true} {
			ix, err := ReadIndexFile(filepath.Join(dir, base+".index"))
			if err != nil {
				t.Fatal(err)
			}
			trained, err := IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			if (trained.HNSW != nil) != strings.Contains(base, "hnsw") || trained.Nbits != 4 {
				t.Fatalf("%s: %s", base, summary(&trained))
			}
			name := fmt.Sprintf("%s-nores%v", base, noResidual)
			sub := filepath.Join(dir, name)
			if err := os.Mkdir(sub, 0o777); err != nil {
				t.Fatal(err)
			}
			// Parts of 0 to 3 blocks and a bit per list, ids interleaved.
			var fsParts, pqParts []*IVFParams
			nparts := 2 + i%2
			id := 0
			for k := range nparts {
				p := trained
				n := []int{150, 37, 0, 96}[(i+k)%4]
				p.Lists, p.IDs = make([]int64, n), make([]int64, n)
				for j := range n {
					p.Lists[j] = int64(r.IntN(min(p.Nlist, 2+k*3)))
					p.IDs[j] = int64(id*nparts + k)
					id++
				}
				p.Codes = ixBytes(r, n*p.CodeSize())
				pq := p
				p.FastScan, p.NoResidual = true, noResidual
				fsParts = append(fsParts, &p)
				pqParts = append(pqParts, &pq)
			}
			// Written unsynced, as WriteIVFFile's syncs would make the
			// test slow; the merge writes with WriteFile.
			var fsPaths, pqPaths []string
			for k := range fsParts {
				fsPaths = append(fsPaths, writeUnsynced(t, filepath.Join(sub, fmt.Sprintf("fs-%d.faiss", k)), fsParts[k]))
				pqPaths = append(pqPaths, writeUnsynced(t, filepath.Join(sub, fmt.Sprintf("pq-%d.faiss", k)), pqParts[k]))
			}
			ours := filepath.Join(sub, "ours.faiss")
			if err := MergeIVFFiles(ctx, ours, fsPaths, 2, nil); err != nil {
				t.Fatal(err)
			}
			unmerged := writeUnsynced(t, filepath.Join(sub, "unmerged.faiss"), concatParts(fsParts))
			theirs := filepath.Join(sub, "faiss.faiss")
			res := "res"
			if noResidual {
				res = "nores"
			}
			fmt.Fprintf(&merges, "%s %s %s\n", theirs, res, strings.Join(pqPaths, " "))
			fmt.Fprintf(&searches, "%s %s\n", ours, unmerged)
			jobs = append(jobs, job{name, ours, theirs})
		}
	}
	mergeFile, searchFile := filepath.Join(dir, "merges"), filepath.Join(dir, "searches")
	if err := os.WriteFile(mergeFile, []byte(merges.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(searchFile, []byte(searches.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	out := testutil.Run{Script: pyMergeFastScan, Args: []string{mergeFile, searchFile}, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)
	verdicts := strings.Fields(string(out))
	if len(verdicts) != len(jobs) {
		t.Fatalf("Python printed %q for %d searches", out, len(jobs))
	}
	for k, j := range jobs {
		t.Run(j.name, func(t *testing.T) {
			ours, err := os.ReadFile(j.ours)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := os.ReadFile(j.theirs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("Merge writes %d bytes, FAISS %d, differing at byte %d", len(ours), len(theirs), firstDiff(ours, theirs))
			}
			if verdicts[k] != "same" {
				t.Errorf("FAISS searches the merged file and the unmerged one differently")
			}
		})
	}
}

// writeUnsynced writes p with WriteIVF to path, and returns path.
func writeUnsynced(t *testing.T, path string, p *IVFParams) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteIVF(context.Background(), &b, p, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}
