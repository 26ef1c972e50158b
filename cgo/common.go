package faiss

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/distillvq/distillvq/faissio"
)

// This file holds what the cgo build (faiss.go) and the pure-Go build
// (nocgo.go) share.

// checkMatrix reports a matrix whose storage does not match its shape.
func checkMatrix(name string, m faissio.Matrix, d int) error {
	if m.Rows < 0 || m.Cols != d || len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("%s is %dx%d with %d values, want %d columns", name, m.Rows, m.Cols, len(m.Data), d)
	}
	return nil
}

func checkMetric(m faissio.Metric) error {
	if m != faissio.InnerProduct && m != faissio.L2 {
		return fmt.Errorf("unsupported metric %v", m)
	}
	return nil
}

// IVFParams describes an IVF index whose parameters were trained outside
// FAISS; it is faissio's type, so that faissio.NewIVFIndex builds in Go the
// index NewIVF builds here and both write the same file.
type IVFParams = faissio.IVFParams

// checkPQ checks a PQ shape; M == 0 means no PQ.
// checkIVFShape checks what every IVF index needs: a dimension FAISS
// accepts, a known metric and at least one list.
func checkIVFShape(d int, metric faissio.Metric, nlist int) error {
	if d < 1 || d > math.MaxInt32 {
		return fmt.Errorf("dimension %d out of range", d)
	}
	if err := checkMetric(metric); err != nil {
		return err
	}
	if nlist < 1 {
		return fmt.Errorf("nlist %d, want at least 1", nlist)
	}
	return nil
}

func checkPQ(d, m, nbits int) error {
	switch {
	case m == 0 && nbits != 0:
		return fmt.Errorf("nbits %d without PQ (M = 0)", nbits)
	case m < 0:
		return fmt.Errorf("M %d, want at least 0", m)
	case m > 0 && d%m != 0:
		return fmt.Errorf("dimension %d not a multiple of M %d", d, m)
	case m > 0 && (nbits < 1 || nbits > 8):
		return fmt.Errorf("nbits %d out of range [1, 8]", nbits)
	}
	return nil
}

// FAISSParams are FAISS's own training settings, for the comparison
// baseline. M == 0 means IVFFlat.
type FAISSParams struct {
	D      int
	Metric faissio.Metric
	Nlist  int
	M      int
	Nbits  int
	Seed   int // k-means seed of both the coarse quantizer and the PQ, and the OPQ seed (see TrainOPQ)
	Niter  int // k-means iterations; 0 keeps FAISS's default, 25

	// Factory, when set, is the index part of a FAISS factory string
	// ("IVF1024,PQ16x4fs", "IVF1024_HNSW32,PQ16", "PQ16", "PQ16x4fs"):
	// FAISS builds that index with index_factory and trains it, with Seed
	// and Niter, and Nlist, Nbits are not used (M is still OPQ's).
	Factory string

	// OPQ puts FAISS's OPQ rotation (OPQMatrix(D, M), FAISS's defaults)
	// before the IVFPQ index, as index_factory(d, "OPQ{M},IVF{nlist},PQ{M}x{nbits}")
	// does. It needs M > 0. Niter does not reach the OPQ training, which
	// uses 8-bit PQ whatever Nbits is, as FAISS's does.
	OPQ bool
}

// ApplyRotation returns y = A x for each row x of x, that is the matrix
// x Aᵀ, with A d×d row-major (IVFParams.Rotation), the product FAISS's
// LinearTransform::apply computes.
//
// It multiplies blocks of RotationBlock rows, each by one single-threaded
// sgemm, several blocks at once on goroutines: a product's last bits
// depend on the shape of the call and on where a row lies in it, so a
// row's result here depends on its position modulo RotationBlock alone,
// not on the other rows, the batch size or the number of threads. That is
// what lets a collection rotated shard by shard (shards starting at
// multiples of RotationBlock) give the bits of the collection rotated
// whole.
//
// Like Sgemm, it panics if A is not x.Cols×x.Cols or x's storage does not
// match its shape: those are programming errors.
func ApplyRotation(A []float32, x faissio.Matrix) faissio.Matrix {
	d := x.Cols
	if err := checkMatrix("matrix", x, d); err != nil {
		panic("faiss: ApplyRotation: " + err.Error())
	}
	if len(A) != d*d {
		panic(fmt.Sprintf("faiss: ApplyRotation: %d rotation values for dimension %d", len(A), d))
	}
	y := faissio.Matrix{Rows: x.Rows, Cols: d, Data: make([]float32, x.Rows*d)}
	if x.Rows == 0 || d == 0 {
		return y
	}
	defer SerialBLAS()()
	nb := (x.Rows + RotationBlock - 1) / RotationBlock
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(nb, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := int(next.Add(1) - 1); b < nb; b = int(next.Add(1) - 1) {
				i := b * RotationBlock
				m := min(RotationBlock, x.Rows-i)
				Sgemm(false, true, m, d, d, 1, x.Data[i*d:], d, A, d, 0, y.Data[i*d:], d)
			}
		}()
	}
	wg.Wait()
	return y
}

// RotationBlock is the rows ApplyRotation multiplies at once.
const RotationBlock = 4096

// Info describes an index, for inspection. For an IndexPreTransform the IVF
// fields (Nlist, M, Nbits, CodeSize, ByResidual, ListSizes) describe the
// index it wraps.
type Info struct {
	Type       string // FAISS class name: "IndexIVFPQ", "IndexIVFFlat", "IndexFlatIP", "IndexPreTransform", ...
	D          int
	Ntotal     int64
	Metric     faissio.Metric
	Nlist      int
	M, Nbits   int
	CodeSize   int
	ByResidual bool
	ListSizes  []int64 // vectors per list; nil if not an IVF index
	Quantizer  string  // an IVF index's coarse quantizer class, e.g. "IndexFlatIP", "IndexHNSWFlat"
	EfSearch   int     // the stored efSearch of an HNSW coarse quantizer
}

// HNSWParams are the settings of an HNSW graph FAISS builds: M neighbours
// per vector (2M on level 0), the beam widths of construction and of
// search (the efSearch stored with the index).
type HNSWParams struct {
	M, EfConstruction, EfSearch int
}

// SearchParams are per-search settings: the lists an IVF index probes and,
// when EfSearch > 0, the beam width of its HNSW coarse quantizer (0 keeps
// the efSearch stored with the index).
type SearchParams struct {
	Nprobe, EfSearch int
}

// BLASInfo describes the BLAS a build runs its products on: OpenBLAS in
// the cgo build, gonum's pure-Go BLAS (only Library and Threads) without
// cgo.
type BLASInfo struct {
	// Library is "OpenBLAS", or gonum's pure-Go BLAS without cgo.
	Library string `json:"library"`
	// Path is the shared object it was loaded from, symbolic links
	// resolved; empty when unknown.
	Path string `json:"path,omitempty"`
	// Version is OpenBLAS's version, from its configuration string.
	Version string `json:"version,omitempty"`
	// Config is openblas_get_config(): version, build options, the core.
	Config string `json:"config,omitempty"`
	// Core is openblas_get_corename(): the kernels OpenBLAS chose when it
	// was loaded, by CPU model or from OPENBLAS_CORETYPE.
	Core string `json:"core,omitempty"`
	// DynamicArch says OpenBLAS carries kernels for several cores and picks
	// one at load time, so that OPENBLAS_CORETYPE can change it.
	DynamicArch bool `json:"dynamic_arch"`
	// Threads is openblas_get_num_threads(): how many threads a product
	// runs on now.
	Threads int `json:"threads"`
}
