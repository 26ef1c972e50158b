//go:build !cgo

package faiss

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/distillvq/distillvq/faissio"
)

// This file is the package in a build without cgo (CGO_ENABLED=0): no
// FAISS, so nothing searches or runs FAISS's own training, but indexes are
// still built, read, described and written, by faissio's pure-Go writer,
// which writes the bytes FAISS's write_index writes for the same index.

// ErrNoFAISS is returned by what needs FAISS itself in a build without cgo.
var ErrNoFAISS = errors.New("this distillvq was built without cgo (CGO_ENABLED=0): searching and FAISS's own training need the cgo build with libfaiss")

// Index holds one index in faissio's form. Its methods may be called from
// several goroutines at once, except Close.
type Index struct {
	ix faissio.Index
}

var errClosed = errors.New("faiss: index is closed")

// NewIVF builds, in Go, the index the cgo build's NewIVF builds in FAISS.
func NewIVF(p IVFParams) (*Index, error) {
	ix, err := faissio.NewIVFIndex(p)
	if err != nil {
		return nil, fmt.Errorf("faiss: new IVF index: %w", err)
	}
	return &Index{ix: ix}, nil
}

// NewFlat needs FAISS's search, so it fails without cgo.
func NewFlat(metric faissio.Metric, x faissio.Matrix) (*Index, error) {
	return nil, fmt.Errorf("faiss: exact search: %w", ErrNoFAISS)
}

// TrainFAISS needs FAISS, so it fails without cgo.
func TrainFAISS(p FAISSParams, train, docs faissio.Matrix, ids []int64) (*Index, error) {
	return nil, fmt.Errorf("faiss: FAISS's training: %w", ErrNoFAISS)
}

// TrainOPQ needs FAISS's OPQ, so it fails without cgo.
func TrainOPQ(x faissio.Matrix, M, seed, niter int) ([]float32, error) {
	return nil, fmt.Errorf("faiss: OPQ training: %w", ErrNoFAISS)
}

// Search needs FAISS, so it fails without cgo.
func (ix *Index) Search(q faissio.Matrix, k, nprobe int) (dist []float32, labels []int64, err error) {
	return nil, nil, fmt.Errorf("faiss: search: %w", ErrNoFAISS)
}

// SearchWith needs FAISS, so it fails without cgo.
func (ix *Index) SearchWith(q faissio.Matrix, k int, p SearchParams) (dist []float32, labels []int64, err error) {
	return nil, nil, fmt.Errorf("faiss: search: %w", ErrNoFAISS)
}

// BuildHNSW needs FAISS's HNSW, so it fails without cgo.
func BuildHNSW(metric faissio.Metric, x faissio.Matrix, p HNSWParams) (*faissio.HNSW, error) {
	return nil, fmt.Errorf("faiss: build HNSW: %w", ErrNoFAISS)
}

// Serialize writes the index with faissio's writer.
func (ix *Index) Serialize() ([]byte, error) {
	if ix.ix == nil {
		return nil, errClosed
	}
	var b bytes.Buffer
	if err := faissio.WriteIndex(&b, ix.ix); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Deserialize reads an index with faissio's reader.
func Deserialize(b []byte) (*Index, error) {
	ix, err := faissio.ReadIndex(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return &Index{ix: ix}, nil
}

// ReadIndex reads an index file with faissio's reader.
func ReadIndex(path string) (*Index, error) {
	ix, err := faissio.ReadIndexFile(path)
	if err != nil {
		return nil, err
	}
	return &Index{ix: ix}, nil
}

// WriteFile writes the index to path with faissio's writer, in place, as
// the cgo build's WriteFile does.
func (ix *Index) WriteFile(path string) error {
	if ix.ix == nil {
		return errClosed
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := faissio.WriteIndex(f, ix.ix); err != nil {
		f.Close()
		return fmt.Errorf("write index %s: %w", path, err)
	}
	return f.Close()
}

// Close drops the index.
func (ix *Index) Close() error {
	ix.ix = nil
	return nil
}

// Info describes ix as the cgo build's Info describes the same file.
func (ix *Index) Info() (Info, error) {
	if ix.ix == nil {
		return Info{}, errClosed
	}
	h := ix.ix.IndexHeader()
	info := Info{Type: faissio.ClassName(ix.ix), D: h.D, Ntotal: h.Ntotal, Metric: h.Metric}
	inner := ix.ix
	if pt, ok := inner.(*faissio.PreTransform); ok {
		inner = pt.Index
	}
	var ivf *faissio.IVF
	switch x := inner.(type) {
	case *faissio.Flat:
		info.CodeSize = 4 * x.D
	case *faissio.PQ:
		info.M, info.Nbits, info.CodeSize = x.PQ.M, x.PQ.Nbits, x.PQ.CodeSize()
	case *faissio.IVFFlat:
		ivf, info.CodeSize = &x.IVF, x.CodeSize()
	case *faissio.IVFPQ:
		ivf, info.CodeSize = &x.IVF, x.CodeSize()
		info.M, info.Nbits, info.ByResidual = x.PQ.M, x.PQ.Nbits, x.ByResidual
	}
	if ivf != nil {
		info.Nlist = ivf.Nlist
		info.ListSizes = make([]int64, len(ivf.Lists))
		for i, l := range ivf.Lists {
			info.ListSizes[i] = int64(len(l.IDs))
		}
	}
	return info, nil
}

// IVFParams extracts the contents of an IVF index, as the cgo build's does.
func (ix *Index) IVFParams() (IVFParams, error) {
	if ix.ix == nil {
		return IVFParams{}, errClosed
	}
	return faissio.IVFParamsOf(ix.ix)
}

// SetThreads does nothing without cgo: gonum's BLAS has no thread setting.
func SetThreads(n int) {}

// SerialBLAS does nothing without cgo: gonum's Sgemm splits a product into
// the same blocks whatever the number of threads.
func SerialBLAS() (release func()) { return func() {} }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices with
// gonum's pure-Go BLAS, the same contract as the cgo build's OpenBLAS call.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	blas32.Implementation().Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// OpenBLAS names gonum's BLAS: without cgo there is no OpenBLAS, and no
// core type to choose. Gonum splits a product over GOMAXPROCS goroutines.
func OpenBLAS() BLASInfo {
	return BLASInfo{Library: "gonum (pure Go, built without cgo)", Threads: runtime.GOMAXPROCS(0)}
}

// FAISSInfo describes the FAISS this build links: the cgo build's type.
type FAISSInfo struct {
	Version        string `json:"version,omitempty"`
	CompileOptions string `json:"compile_options,omitempty"`
}

// FAISS reports no FAISS: this build has none.
func FAISS() FAISSInfo { return FAISSInfo{} }
