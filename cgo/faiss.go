// Package faiss is distillvq's only contact with FAISS. It builds IVF indexes
// from parameters trained elsewhere, trains FAISS's own indexes for
// comparison, and searches, reads and writes indexes, through a small C++
// shim over FAISS's C++ API (Debian's static libfaiss has no C API).
//
// Errors carry FAISS's own message on one line, prefixed by what was
// attempted. Nothing built here keeps a reference to Go memory.
package faiss

/*
#cgo CXXFLAGS: -std=c++17 -O2 -fopenmp
#cgo LDFLAGS: -lfaiss -lopenblas -lgomp -lstdc++ -lm
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/distillvq/distillvq/faissio"
)

// Index owns one FAISS index. Its methods may be called from several
// goroutines at once, except Close.
type Index struct {
	p       *C.dvq_index
	d       int
	cleanup runtime.Cleanup
}

var errClosed = errors.New("faiss: index is closed")

// location matches the "Error in <function> at <file>:<line>: " that FAISS
// puts before its messages; it names FAISS's build tree, not the problem.
var location = regexp.MustCompile(`^Error in .*? at \S+:\d+: `)

// cError converts a message from the shim into an error and frees it.
func cError(msg *C.char, format string, args ...any) error {
	if msg == nil {
		return nil
	}
	s := C.GoString(msg)
	C.free(unsafe.Pointer(msg))
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	s = location.ReplaceAllString(strings.Join(lines, " "), "")
	return fmt.Errorf("faiss: %s: %s", fmt.Sprintf(format, args...), s)
}

// newIndex takes ownership of p; the cleanup frees indexes the caller
// forgets to Close.
func newIndex(p *C.dvq_index) (*Index, error) {
	ix := &Index{p: p}
	ix.cleanup = runtime.AddCleanup(ix, func(p *C.dvq_index) { C.dvq_delete(p) }, p)
	info, err := ix.Info()
	if err != nil {
		ix.Close()
		return nil, err
	}
	ix.d = info.D
	return ix, nil
}

// Close deletes the index. Further calls do nothing. It must not run
// concurrently with any other method of ix, Search included.
func (ix *Index) Close() error {
	if ix.p != nil {
		ix.cleanup.Stop()
		C.dvq_delete(ix.p)
		ix.p = nil
	}
	return nil
}

func ptr[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

// NewIVF builds an IndexIVFFlat or IndexIVFPQ holding exactly p: FAISS
// trains nothing and encodes nothing. Within a list, vectors keep their
// order in p. The index has no direct map and its default nprobe is 1.
// With p.Rotation the IVF index is wrapped in an IndexPreTransform that
// rotates documents and queries first, as FAISS's "OPQ{M},IVF..." indexes
// do, and that owns it; FAISS writes the rotation as it writes a trained
// OPQMatrix. With p.FastScan FAISS converts the IndexIVFPQ to an
// IndexIVFPQFastScan (its IndexIVFPQFastScan(const IndexIVFPQ&, 32)
// constructor); with p.HNSW the coarse quantizer is an IndexHNSWFlat
// holding that graph over the centroids.
func NewIVF(p IVFParams) (*Index, error) {
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("faiss: new IVF index: %w", err)
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	g := cHNSW(p.HNSW, &pin)
	var out *C.dvq_index
	msg := C.dvq_new_ivf(C.int32_t(p.D), C.int32_t(p.Metric), C.int64_t(p.Nlist),
		(*C.float)(ptr(p.Centroids)), C.int32_t(p.M), C.int32_t(p.Nbits), (*C.float)(ptr(p.Codebooks)),
		C.int64_t(len(p.Lists)), (*C.int64_t)(ptr(p.Lists)), (*C.int64_t)(ptr(p.IDs)), (*C.uint8_t)(ptr(p.Codes)),
		(*C.float)(ptr(p.Rotation)), C.int32_t(cbool(p.FastScan)), C.int32_t(cbool(!p.NoResidual)), g, &out)
	if err := cError(msg, "new IVF index"); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// cHNSW describes g to C, borrowing its slices (pinned by pin), or is nil.
func cHNSW(g *faissio.HNSW, pin *runtime.Pinner) *C.dvq_hnsw {
	if g == nil {
		return nil
	}
	c := &C.dvq_hnsw{
		n_assign_probas:           C.int64_t(len(g.AssignProbas)),
		n_cum_nneighbor_per_level: C.int64_t(len(g.CumNNeighborPerLevel)),
		n_levels:                  C.int64_t(len(g.Levels)),
		n_offsets:                 C.int64_t(len(g.Offsets)),
		n_neighbors:               C.int64_t(len(g.Neighbors)),
		entry_point:               C.int32_t(g.EntryPoint),
		max_level:                 C.int32_t(g.MaxLevel),
		ef_construction:           C.int32_t(g.EfConstruction),
		ef_search:                 C.int32_t(g.EfSearch),
		upper_beam:                C.int32_t(g.UpperBeam),
	}
	pinned := func(p unsafe.Pointer) unsafe.Pointer {
		if p != nil {
			pin.Pin(p)
		}
		return p
	}
	c.assign_probas = (*C.double)(pinned(ptr(g.AssignProbas)))
	c.cum_nneighbor_per_level = (*C.int32_t)(pinned(ptr(g.CumNNeighborPerLevel)))
	c.levels = (*C.int32_t)(pinned(ptr(g.Levels)))
	c.offsets = (*C.uint64_t)(pinned(ptr(g.Offsets)))
	c.neighbors = (*C.int32_t)(pinned(ptr(g.Neighbors)))
	return c
}

// BuildHNSW lets FAISS build IndexHNSWFlat(d, M, metric) over the rows of
// x (an IVF's centroids) and returns its graph. It inserts on one thread,
// so the same rows and settings always give the same graph.
func BuildHNSW(metric faissio.Metric, x faissio.Matrix, p HNSWParams) (*faissio.HNSW, error) {
	err := func() error {
		if err := checkMetric(metric); err != nil {
			return err
		}
		if x.Rows < 1 || x.Cols < 1 {
			return fmt.Errorf("%d x %d vectors", x.Rows, x.Cols)
		}
		if err := checkMatrix("vectors", x, x.Cols); err != nil {
			return err
		}
		if p.M < 2 || p.M > 1<<16 || p.EfConstruction < 1 || p.EfSearch < 1 || p.EfConstruction > math.MaxInt32 || p.EfSearch > math.MaxInt32 {
			return fmt.Errorf("HNSW M %d, efConstruction %d, efSearch %d out of range", p.M, p.EfConstruction, p.EfSearch)
		}
		return nil
	}()
	if err != nil {
		return nil, fmt.Errorf("faiss: build HNSW: %w", err)
	}
	var c C.dvq_hnsw
	msg := C.dvq_build_hnsw(C.int32_t(x.Cols), C.int32_t(metric), C.int64_t(x.Rows), (*C.float)(ptr(x.Data)),
		C.int32_t(p.M), C.int32_t(p.EfConstruction), C.int32_t(p.EfSearch), &c)
	defer C.dvq_hnsw_free(&c)
	if err := cError(msg, "build HNSW"); err != nil {
		return nil, err
	}
	g := &faissio.HNSW{
		AssignProbas:         slices.Clone(unsafe.Slice((*float64)(unsafe.Pointer(c.assign_probas)), int(c.n_assign_probas))),
		CumNNeighborPerLevel: slices.Clone(unsafe.Slice((*int32)(unsafe.Pointer(c.cum_nneighbor_per_level)), int(c.n_cum_nneighbor_per_level))),
		Levels:               slices.Clone(unsafe.Slice((*int32)(unsafe.Pointer(c.levels)), int(c.n_levels))),
		Offsets:              slices.Clone(unsafe.Slice((*uint64)(unsafe.Pointer(c.offsets)), int(c.n_offsets))),
		Neighbors:            slices.Clone(unsafe.Slice((*int32)(unsafe.Pointer(c.neighbors)), int(c.n_neighbors))),
		EntryPoint:           int32(c.entry_point),
		MaxLevel:             int32(c.max_level),
		EfConstruction:       int32(c.ef_construction),
		EfSearch:             int32(c.ef_search),
		UpperBeam:            int32(c.upper_beam),
	}
	return g, nil
}

// NewFlat returns an exact IndexFlatIP or IndexFlatL2 holding the rows of x
// with ids 0..x.Rows-1, the ground truth that IVF results are measured
// against.
func NewFlat(metric faissio.Metric, x faissio.Matrix) (*Index, error) {
	if err := checkMetric(metric); err != nil {
		return nil, fmt.Errorf("faiss: new flat index: %w", err)
	}
	if x.Cols < 1 || x.Cols > math.MaxInt32 {
		return nil, fmt.Errorf("faiss: new flat index: dimension %d out of range", x.Cols)
	}
	if err := checkMatrix("vectors", x, x.Cols); err != nil {
		return nil, fmt.Errorf("faiss: new flat index: %w", err)
	}
	var out *C.dvq_index
	msg := C.dvq_new_flat(C.int32_t(x.Cols), C.int32_t(metric), C.int64_t(x.Rows), (*C.float)(ptr(x.Data)), &out)
	if err := cError(msg, "new flat index"); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// TrainFAISS trains an IndexIVFPQ or IndexIVFFlat the way FAISS trains it
// for a Python user of index_factory(d, "IVF{nlist},PQ{M}x{nbits}") (FAISS
// samples at most 256 training points per centroid and uses spherical
// k-means for inner product), except that polysemous training is off, and
// then adds docs with ids (nil ids number them 0..docs.Rows-1). With the
// same settings both write byte-identical files. With p.OPQ the result is
// an IndexPreTransform whose rotation is TrainOPQ(train, p.M, p.Seed); Seed
// 1234 reproduces index_factory's, whose OPQ always uses 1234.
func TrainFAISS(p FAISSParams, train, docs faissio.Matrix, ids []int64) (*Index, error) {
	err := func() error {
		if p.Factory != "" {
			p.Nlist = 1 // the factory string holds the shape, FAISS checks it
		}
		if err := checkIVFShape(p.D, p.Metric, p.Nlist); err != nil {
			return err
		}
		if err := checkPQ(p.D, p.M, p.Nbits); err != nil {
			return err
		}
		if p.OPQ && p.M == 0 {
			return errors.New("OPQ needs PQ (M > 0)")
		}
		if p.Seed < math.MinInt32 || p.Seed > math.MaxInt32 || p.Niter < 0 || p.Niter > math.MaxInt32 {
			return fmt.Errorf("seed %d or niter %d out of range", p.Seed, p.Niter)
		}
		if err := checkMatrix("training set", train, p.D); err != nil {
			return err
		}
		if train.Rows < p.Nlist {
			return fmt.Errorf("%d training vectors for %d lists", train.Rows, p.Nlist)
		}
		if err := checkMatrix("documents", docs, p.D); err != nil {
			return err
		}
		if ids != nil && len(ids) != docs.Rows {
			return fmt.Errorf("%d ids for %d documents", len(ids), docs.Rows)
		}
		return nil
	}()
	if err != nil {
		return nil, fmt.Errorf("faiss: train: %w", err)
	}
	if p.Factory != "" {
		return trainFactory(p, train, docs, ids)
	}
	var out *C.dvq_index
	msg := C.dvq_train(C.int32_t(p.D), C.int32_t(p.Metric), C.int64_t(p.Nlist), C.int32_t(p.M), C.int32_t(p.Nbits),
		C.int32_t(p.Seed), C.int32_t(p.Niter), C.int32_t(cbool(p.OPQ)),
		C.int64_t(train.Rows), (*C.float)(ptr(train.Data)),
		C.int64_t(docs.Rows), (*C.float)(ptr(docs.Data)), (*C.int64_t)(ptr(ids)),
		&out)
	if err := cError(msg, "train"); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// trainFactory trains index_factory(p.D, p.Factory, p.Metric) with p's
// seed and iterations (FAISS's defaults otherwise), behind p.OPQ's
// rotation, and adds docs.
func trainFactory(p FAISSParams, train, docs faissio.Matrix, ids []int64) (*Index, error) {
	key := C.CString(p.Factory)
	defer C.free(unsafe.Pointer(key))
	var out *C.dvq_index
	msg := C.dvq_train_factory(C.int32_t(p.D), C.int32_t(p.Metric), key,
		C.int32_t(p.Seed), C.int32_t(p.Niter), C.int32_t(cbool(p.OPQ)), C.int32_t(p.M),
		C.int64_t(train.Rows), (*C.float)(ptr(train.Data)),
		C.int64_t(docs.Rows), (*C.float)(ptr(docs.Data)), (*C.int64_t)(ptr(ids)),
		&out)
	if err := cError(msg, "train %s", p.Factory); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// Serialize returns the bytes FAISS's write_index writes for ix.
func (ix *Index) Serialize() ([]byte, error) {
	if ix.p == nil {
		return nil, errClosed
	}
	var data *C.uint8_t
	var n C.int64_t
	msg := C.dvq_serialize(ix.p, &data, &n)
	runtime.KeepAlive(ix)
	defer C.free(unsafe.Pointer(data))
	if err := cError(msg, "serialize"); err != nil {
		return nil, err
	}
	return slices.Clone(unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))), nil
}

// Deserialize reads an index from the bytes of a file, as read_index does.
func Deserialize(b []byte) (*Index, error) {
	var out *C.dvq_index
	if err := cError(C.dvq_deserialize((*C.uint8_t)(ptr(b)), C.int64_t(len(b)), &out), "deserialize"); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// TrainOPQ trains FAISS's OPQ rotation for M sub-quantizers on the rows of
// x with OPQMatrix(d, M)'s defaults but for niter, its iterations when
// above 0 (FAISS's default is 50 iterations alternating 8-bit PQ
// training, 40 k-means iterations the first time and 4 after, with a
// rotation fitted by SVD; at most 65536 training vectors) and returns the
// d×d matrix A of y = A x, row-major, exactly as FAISS stores it in
// LinearTransform::A. A is orthonormal.
//
// FAISS 1.7.3's OPQMatrix has no seed: its training sample, its initial
// random rotation and its PQ k-means all use the fixed seed 1234. Seed
// replaces that 1234 in all three, through the hooks OPQMatrix does offer
// (a preset initial A and a caller-supplied PQ), so Seed 1234 gives
// FAISS's default rotation exactly. What Seed cannot fix is LAPACK and
// BLAS's rounding, which may vary with the number of threads (SetThreads):
// FAISS's own notes find sgeqrf and sgesvd bit-exact only single-threaded.
//
// The OpenMP parts of the training (k-means assignment and centroid
// update, encoding) run on GOMAXPROCS threads: they split work whose
// results are per vector or per centroid, so the rotation is the same for
// any number (TestTrainOPQ); FAISS's products stay on the caller's BLAS
// setting.
func TrainOPQ(x faissio.Matrix, M, seed, niter int) ([]float32, error) {
	return trainOPQ(x, M, seed, niter, runtime.GOMAXPROCS(0))
}

func trainOPQ(x faissio.Matrix, M, seed, niter, threads int) ([]float32, error) {
	d := x.Cols
	err := func() error {
		if d < 1 || d > math.MaxInt32 {
			return fmt.Errorf("dimension %d out of range", d)
		}
		if err := checkMatrix("training set", x, d); err != nil {
			return err
		}
		if M < 1 || d%M != 0 {
			return fmt.Errorf("M %d does not divide dimension %d", M, d)
		}
		if seed < math.MinInt32 || seed > math.MaxInt32 {
			return fmt.Errorf("seed %d out of range", seed)
		}
		if niter < 0 || niter > math.MaxInt32 {
			return fmt.Errorf("%d iterations", niter)
		}
		if x.Rows < 1 {
			return errors.New("no training vectors")
		}
		return nil
	}()
	if err != nil {
		return nil, fmt.Errorf("faiss: train OPQ: %w", err)
	}
	a := make([]float32, d*d)
	msg := C.dvq_train_opq(C.int32_t(d), C.int32_t(M), C.int32_t(seed), C.int32_t(niter), C.int32_t(min(threads, 256)),
		C.int64_t(x.Rows), (*C.float)(ptr(x.Data)), (*C.float)(ptr(a)))
	if err := cError(msg, "train OPQ"); err != nil {
		return nil, err
	}
	return a, nil
}

// Search returns the k nearest neighbours of each row of q, as q.Rows*k
// distances and labels, row-major. Slots FAISS could not fill have label -1.
// An IVF index (also one wrapped in an IndexPreTransform) probes nprobe
// lists, given to FAISS per call so that concurrent searches do not
// interfere; other indexes ignore nprobe.
func (ix *Index) Search(q faissio.Matrix, k, nprobe int) (dist []float32, labels []int64, err error) {
	return ix.SearchWith(q, k, SearchParams{Nprobe: nprobe})
}

// SearchWith is Search with all of p. FAISS 1.7.3's FastScan IVF indexes
// take no per-call parameters, so their searches set nprobe and efSearch
// on the index for the call, one call at a time.
func (ix *Index) SearchWith(q faissio.Matrix, k int, p SearchParams) (dist []float32, labels []int64, err error) {
	if ix.p == nil {
		return nil, nil, errClosed
	}
	if err := checkMatrix("query matrix", q, ix.d); err != nil {
		return nil, nil, fmt.Errorf("faiss: search: %w (the index dimension)", err)
	}
	if k < 1 {
		return nil, nil, fmt.Errorf("faiss: search: k %d, want at least 1", k)
	}
	if p.EfSearch < 0 || p.EfSearch > math.MaxInt32 {
		return nil, nil, fmt.Errorf("faiss: search: efSearch %d out of range", p.EfSearch)
	}
	dist = make([]float32, q.Rows*k)
	labels = make([]int64, q.Rows*k)
	if q.Rows == 0 {
		return dist, labels, nil
	}
	msg := C.dvq_search(ix.p, C.int64_t(q.Rows), (*C.float)(ptr(q.Data)), C.int64_t(k), C.int64_t(p.Nprobe),
		C.int32_t(p.EfSearch), (*C.float)(ptr(dist)), (*C.int64_t)(ptr(labels)))
	runtime.KeepAlive(ix)
	if err := cError(msg, "search"); err != nil {
		return nil, nil, err
	}
	return dist, labels, nil
}

// ReadIndex reads an index file of any type FAISS knows.
func ReadIndex(path string) (*Index, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var out *C.dvq_index
	if err := cError(C.dvq_read(cpath, &out), "read index %s", path); err != nil {
		return nil, err
	}
	return newIndex(out)
}

// WriteFile writes the index to path with FAISS's own writer. It writes in
// place; callers wanting an atomic replacement write a temporary file and
// rename it.
func (ix *Index) WriteFile(path string) error {
	if ix.p == nil {
		return errClosed
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	msg := C.dvq_write(ix.p, cpath)
	runtime.KeepAlive(ix)
	return cError(msg, "write index %s", path)
}

// Info describes ix.
func (ix *Index) Info() (Info, error) {
	if ix.p == nil {
		return Info{}, errClosed
	}
	var ci C.dvq_info
	if err := cError(C.dvq_info_get(ix.p, &ci), "info"); err != nil {
		return Info{}, err
	}
	info := Info{
		Type:       C.GoString(&ci.type_name[0]),
		D:          int(ci.d),
		Ntotal:     int64(ci.ntotal),
		Metric:     faissio.Metric(ci.metric),
		Nlist:      int(ci.nlist),
		M:          int(ci.m),
		Nbits:      int(ci.nbits),
		CodeSize:   int(ci.code_size),
		ByResidual: ci.by_residual != 0,
		Quantizer:  C.GoString(&ci.quantizer_name[0]),
		EfSearch:   int(ci.ef_search),
	}
	if ci.is_ivf != 0 {
		info.ListSizes = make([]int64, info.Nlist)
		if info.Nlist > 0 {
			msg := C.dvq_list_sizes(ix.p, (*C.int64_t)(ptr(info.ListSizes)))
			if err := cError(msg, "info"); err != nil {
				return Info{}, err
			}
		}
	}
	runtime.KeepAlive(ix)
	return info, nil
}

// IVFParams extracts the contents of an IndexIVFFlat or IndexIVFPQ (with
// residual encoding and a flat coarse quantizer), bare or wrapped in an
// IndexPreTransform whose only transform is a d×d LinearTransform without
// bias (an OPQ rotation, which becomes Rotation): NewIVF of the result
// rebuilds an index that FAISS writes byte for byte the same. The vectors
// come list by list, in list order.
func (ix *Index) IVFParams() (IVFParams, error) {
	info, err := ix.Info()
	if err != nil {
		return IVFParams{}, err
	}
	if info.Type == "IndexIVFPQFastScan" || info.Quantizer != "" && info.Quantizer != "IndexFlatIP" && info.Quantizer != "IndexFlatL2" && info.Quantizer != "IndexFlat" {
		// Kinds the shim does not take apart: FAISS's bytes, read by faissio.
		b, err := ix.Serialize()
		if err != nil {
			return IVFParams{}, err
		}
		x, err := faissio.ReadIndex(bytes.NewReader(b))
		if err != nil {
			return IVFParams{}, fmt.Errorf("faiss: IVF parameters: %w", err)
		}
		return faissio.IVFParamsOf(x)
	}
	pre := info.Type == "IndexPreTransform"
	if info.ListSizes == nil || info.Type != "IndexIVFFlat" && info.Type != "IndexIVFPQ" && !pre {
		return IVFParams{}, fmt.Errorf("faiss: IVF parameters: %s is not an IndexIVFFlat or IndexIVFPQ, bare or rotated", info.Type)
	}
	var n int64
	for _, s := range info.ListSizes {
		n += s
	}
	p := IVFParams{
		D:         info.D,
		Metric:    info.Metric,
		Nlist:     info.Nlist,
		Centroids: make([]float32, info.Nlist*info.D),
		M:         info.M,
		Nbits:     info.Nbits,
		Lists:     make([]int64, n),
		IDs:       make([]int64, n),
		Codes:     make([]byte, int(n)*info.CodeSize),
	}
	if p.M > 0 {
		p.Codebooks = make([]float32, p.D<<p.Nbits)
	}
	if pre {
		// The shim checks that the transform is d×d, hence this size.
		p.Rotation = make([]float32, p.D*p.D)
	}
	msg := C.dvq_ivf_extract(ix.p, (*C.float)(ptr(p.Rotation)), (*C.float)(ptr(p.Centroids)), (*C.float)(ptr(p.Codebooks)),
		(*C.int64_t)(ptr(p.Lists)), (*C.int64_t)(ptr(p.IDs)), (*C.uint8_t)(ptr(p.Codes)))
	runtime.KeepAlive(ix)
	if err := cError(msg, "IVF parameters"); err != nil {
		return IVFParams{}, err
	}
	return p, nil
}

// SetThreads sets the number of threads OpenBLAS uses from now on; n <= 0
// restores its default (all cores). In FAISS's calls OpenBLAS owns the
// cores: FAISS's own OpenMP loops run on one thread unless OMP_NUM_THREADS
// is set, because the two pools together oversubscribe a small machine
// (see shim.cpp). While SerialBLAS is held, the new count takes effect when
// it is released.
func SetThreads(n int) {
	serial.Lock()
	defer serial.Unlock()
	if serial.holders > 0 {
		// Takes effect when the last SerialBLAS holder releases.
		serial.restore = int32(min(max(n, 0), math.MaxInt32))
		return
	}
	C.dvq_set_threads(C.int32_t(min(n, math.MaxInt32)))
}

// serial counts the holders of SerialBLAS.
var serial struct {
	sync.Mutex
	holders int
	restore int32 // OpenBLAS's thread count before the first holder
}

// SerialBLAS makes every OpenBLAS product (Sgemm's and FAISS's alike) run on
// its calling thread until the returned function is called; holders nest.
//
// distillvq's own kernels hold it while they run: goroutines own the cores
// and each runs its products single-threaded on blocks of a fixed shape.
// That keeps OpenBLAS's idle pool from spinning against the goroutines
// (about 17 CPU-s of sched_yield in a GloVe-341k k-means) and makes every
// result independent of the number of threads, since OpenBLAS's threaded
// products round differently for different thread counts. A FAISS call made
// while another goroutine holds it runs single-threaded too: correct, but
// slower.
func SerialBLAS() (release func()) {
	serial.Lock()
	if serial.holders == 0 {
		serial.restore = int32(C.dvq_get_threads())
		C.dvq_set_threads(1)
	}
	serial.holders++
	serial.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			serial.Lock()
			defer serial.Unlock()
			if serial.holders--; serial.holders == 0 {
				C.dvq_set_threads(C.int32_t(serial.restore))
			}
		})
	}
}
