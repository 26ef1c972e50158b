package faissio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/internal/testutil"
)

// Tests of the FastScan and HNSW records against Python FAISS: FAISS's
// packed codes are PackFastScan's of the codes FAISS's PQ computes,
// NewPQFastScan writes what FAISS writes, and FAISS reads, searches and
// rewrites unchanged the indexes built here.

// pyFastScan builds FastScan indexes on GloVe vectors (argv[1], rows 3000
// to 6000, 40 dimensions) and writes to argv[2], for each case, NAME.index
// and NAME.codes: the plain PQ codes FAISS computes of each added vector,
// of its residual for by_residual, in the order of addition; for IVF
// indexes also NAME.lists, each vector's list (int64). Added ids are
// 1000 + the row.
const pyFastScan = `
import sys, os, numpy as np, faiss
faiss.omp_set_num_threads(1)
x = np.load(sys.argv[1])[3000:6000, :40].astype('float32')
xt, xb = x[:2000], x[2000:]
out = sys.argv[2]
d = 40
def save(name, ix, n, ivf=None):
    faiss.write_index(ix, os.path.join(out, name + '.index'))
    v = xb[:n]
    if ivf is None:
        codes = ix.pq.compute_codes(v)
    else:
        _, lists = ivf.quantizer.search(v, 1)
        lists = lists[:, 0].astype('int64')
        lists.tofile(os.path.join(out, name + '.lists'))
        if ivf.by_residual:
            r = np.empty_like(v)
            ivf.quantizer.compute_residual_n(n, faiss.swig_ptr(v), faiss.swig_ptr(r), faiss.swig_ptr(lists))
            v = r
        codes = ivf.pq.compute_codes(v)
    codes.tofile(os.path.join(out, name + '.codes'))
for name, m, metric, bbs, n in [('pq8_l2', 8, faiss.METRIC_L2, 32, 700), ('pq5_ip', 5, faiss.METRIC_INNER_PRODUCT, 32, 77),
                                ('pq4_l2_bbs96', 4, faiss.METRIC_L2, 96, 250)]:
    ix = faiss.IndexPQFastScan(d, m, 4, metric, bbs)
    ix.pq.cp.niter = 6
    ix.train(xt)
    ix.add(xb[:n // 2])
    ix.add(xb[n // 2:n])  # two adds: the second fills the first's last block
    save(name, ix, n)
for name, spec, metric, n in [('ivf8_l2', 'IVF16,PQ8x4fs', faiss.METRIC_L2, 900),
                              ('ivf8r_ip', 'IVF16,PQ8x4fsr', faiss.METRIC_INNER_PRODUCT, 900),
                              ('ivf5r_l2', 'IVF8,PQ5x4fsr', faiss.METRIC_L2, 300),
                              ('ivf8r_hnsw_l2', 'IVF16_HNSW32,PQ8x4fsr', faiss.METRIC_L2, 500)]:
    ix = faiss.index_factory(d, spec, metric)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(ix))
    ivf.cp.niter = 6
    ivf.pq.cp.niter = 6
    ix.train(xt)
    ix.add_with_ids(xb[:n], 1000 + np.arange(n, dtype='int64'))
    save(name, ix, n, ivf)
`

// pyReload reads each index file of argv[1:], searches it for 5
// neighbours of 3 queries, rewrites it and prints, per file, "same" or
// "differs" and the labels found, or "unsearchable: " and FAISS's error
// (FAISS 1.7.3 has SIMD kernels for few block sizes besides 32).
const pyReload = `
import sys, numpy as np, faiss
for path in sys.argv[1:]:
    ix = faiss.read_index(path)
    q = np.linspace(-1, 1, 3 * ix.d, dtype='float32').reshape(3, ix.d)
    try:
        labels = ' '.join(str(i) for i in ix.search(q, 5)[1].ravel())
    except RuntimeError as e:
        labels = 'unsearchable: ' + str(e).replace('\n', ' ')
    same = faiss.serialize_index(ix).tobytes() == open(path, 'rb').read()
    print('same' if same else 'differs', labels)
`

func readRaw(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFastScanMatchesFAISS(t *testing.T) {
	testutil.Python(t)
	dir := t.TempDir()
	glove, err := filepath.Abs(filepath.Join("..", "testdata", "glove20k", "docs.npy"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run{Script: pyFastScan, Args: []string{glove, dir}, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)

	for _, name := range []string{"pq8_l2", "pq5_ip", "pq4_l2_bbs96"} {
		t.Run(name, func(t *testing.T) {
			file := readRaw(t, filepath.Join(dir, name+".index"))
			codes := readRaw(t, filepath.Join(dir, name+".codes"))
			ix0, err := ReadIndex(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			ix := ix0.(*PQFastScan)
			n := int(ix.Ntotal)
			got := make([]byte, n*ix.PQ.CodeSize())
			UnpackFastScan(got, ix.Codes, n, ix.PQ.M, int(ix.Bbs))
			if !bytes.Equal(got, codes) {
				t.Fatalf("unpacked codes differ from FAISS's PQ codes at byte %d", firstDiff(got, codes))
			}
			packed := make([]byte, len(ix.Codes))
			PackFastScan(packed, codes, n, ix.PQ.M, int(ix.Bbs))
			if !bytes.Equal(packed, ix.Codes) {
				t.Fatalf("PackFastScan of FAISS's PQ codes differs from FAISS's packing at byte %d", firstDiff(packed, ix.Codes))
			}
			if ix.Bbs != FastScanBlock {
				return
			}
			// NewPQFastScan from the codebook and FAISS's own plain codes
			// writes FAISS's file.
			h := Header{D: ix.D, Ntotal: ix.Ntotal, IsTrained: true, Metric: ix.Metric}
			nix, err := NewPQFastScan(h, ProductQuantizer{D: ix.D, M: ix.PQ.M, Nbits: 4, Centroids: ix.PQ.Centroids}, codes)
			if err != nil {
				t.Fatal(err)
			}
			if b := writeBytes(t, nix); !bytes.Equal(b, file) {
				t.Errorf("NewPQFastScan writes %d bytes, FAISS %d, differing at byte %d", len(b), len(file), firstDiff(b, file))
			}
		})
	}
	for _, name := range []string{"ivf8_l2", "ivf8r_ip", "ivf5r_l2", "ivf8r_hnsw_l2"} {
		t.Run(name, func(t *testing.T) {
			file := readRaw(t, filepath.Join(dir, name+".index"))
			codes := readRaw(t, filepath.Join(dir, name+".codes"))
			listsRaw := readRaw(t, filepath.Join(dir, name+".lists"))
			ix0, err := ReadIndex(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			ix := ix0.(*IVFPQFastScan)
			if want := strings.Contains(name, "r_"); ix.ByResidual != want {
				t.Errorf("by_residual %v", ix.ByResidual)
			}
			if b := writeBytes(t, ix); !bytes.Equal(b, file) {
				t.Errorf("rewritten, differs at byte %d", firstDiff(b, file))
			}
			cs := ix.PQ.CodeSize()
			longest := 0
			for l, list := range ix.Lists {
				n := len(list.IDs)
				longest = max(longest, n)
				got := make([]byte, n*cs)
				UnpackFastScan(got, list.Codes, n, ix.PQ.M, int(ix.Bbs))
				for j, id := range list.IDs {
					row := int(id - 1000)
					if wantList := int64(binary.LittleEndian.Uint64(listsRaw[8*row:])); wantList != int64(l) {
						t.Fatalf("id %d in list %d, FAISS's quantizer says %d", id, l, wantList)
					}
					if want := codes[row*cs : (row+1)*cs]; !bytes.Equal(got[j*cs:(j+1)*cs], want) {
						t.Fatalf("list %d, vector %d (id %d): unpacked %x, FAISS's PQ code %x", l, j, id, got[j*cs:(j+1)*cs], want)
					}
				}
			}
			if longest <= int(ix.Bbs) {
				t.Errorf("no list longer than a block (longest %d)", longest)
			}
		})
	}
}

func TestFAISSReadsFastScanHNSW(t *testing.T) {
	testutil.Python(t)
	r := ixRand(18)
	dir := t.TempDir()
	hq := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{70, 0, 5, 33})
	hq.Quantizer = ixHNSWFlat(r, L2, 8, 4)
	pq := ixIVFPQ(r, InnerProduct, 8, 2, 8, []int{3, 9, 0})
	pq.Quantizer = ixHNSWFlat(r, InnerProduct, 8, 3)
	nix, err := NewPQFastScan(Header{D: 10, Ntotal: 45, IsTrained: true, Metric: InnerProduct}, ixPQ(r, 10, 5, 4), fsCodes(r, 45, 5))
	if err != nil {
		t.Fatal(err)
	}
	indexes := map[string]Index{
		"pqfs_m5_bbs64": ixPQFastScan(r, L2, 10, 5, 130, 64),
		"pqfs_new":      nix,
		"ivfpqfs":       ixIVFPQFastScan(r, InnerProduct, 12, 3, 64, []int{0, 65, 1, 128}),
		"ivfpqfs_hnsw":  hq,
		"ivfpq_hnsw":    pq,
		"hnsw":          ixHNSWFlat(r, L2, 6, 200),
		"hnsw_ip_empty": ixHNSWFlat(r, InnerProduct, 6, 0),
	}
	var names, paths []string
	for name, ix := range indexes {
		p := filepath.Join(dir, name+".index")
		if err := WriteIndexFile(p, ix); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		paths = append(paths, p)
	}
	out := strings.Split(strings.TrimSpace(string(testutil.Run{Script: pyReload, Args: paths, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t))), "\n")
	if len(out) != len(paths) {
		t.Fatalf("python printed %d lines for %d files:\n%s", len(out), len(paths), strings.Join(out, "\n"))
	}
	for i, line := range out {
		if !strings.HasPrefix(line, "same") {
			t.Errorf("%s: FAISS rewrites it differently", names[i])
		}
		labels := strings.Fields(line)[1:]
		if len(labels) > 0 && labels[0] == "unsearchable:" {
			if ix, ok := indexes[names[i]].(*PQFastScan); !ok || ix.Bbs == FastScanBlock {
				t.Errorf("%s: FAISS cannot search it: %s", names[i], line)
			}
			t.Logf("%s: %s", names[i], line)
			continue
		}
		found := 0
		for _, l := range labels {
			if l != "-1" {
				found++
			}
		}
		if ntotal := indexes[names[i]].IndexHeader().Ntotal; ntotal > 0 && found == 0 {
			t.Errorf("%s: FAISS finds nothing: %s", names[i], line)
		}
		t.Logf("%s: %s", names[i], fmt.Sprint(labels))
	}
}
