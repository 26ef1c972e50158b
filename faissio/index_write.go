package faissio

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// WriteIndex writes ix in FAISS's index file format, exactly the bytes that
// FAISS 1.7.3's write_index (and every later release's, for these types)
// writes for the same index. It checks ix first, as ReadIndex checks a
// file, and writes nothing if that fails, so that it never produces a file
// FAISS or ReadIndex would refuse.
//
// One thing is beyond reproducing: FAISS writes a hash table direct map in
// its unordered_map's order, which depends on its insertion history. The
// entries are written in the order of DirectMap.Hashtable, which for an
// index read from a file is the file's order.
func WriteIndex(w io.Writer, ix Index) error {
	if err := checkIndex(ix, 0); err != nil {
		return fmt.Errorf("faiss index: %w", err)
	}
	if err := writeIndex(w, ix); err != nil {
		return fmt.Errorf("faiss index: write: %w", err)
	}
	return nil
}

// WriteIndexFile writes ix to path, as WriteIndex does, replacing any file
// there atomically: on any error the old file, or none, stays in place.
// Errors start with path.
func WriteIndexFile(path string, ix Index) error {
	if err := checkIndex(ix, 0); err != nil {
		return fmt.Errorf("%s: faiss index: %w", path, err)
	}
	return WriteFileAtomic(path, func(f *os.File) error {
		if err := writeIndex(f, ix); err != nil {
			return fmt.Errorf("%s: write: %w", path, unwrapPathError(err))
		}
		return nil
	})
}

// writeIndex writes a checked index.
func writeIndex(w io.Writer, ix Index) error {
	e := &encoder{w: bufio.NewWriterSize(w, 1<<16)}
	e.index(ix)
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// encoder writes little-endian fields, remembering the first error so that
// the writing code reads as the format does.
type encoder struct {
	w   *bufio.Writer
	err error
	buf [8]byte

	// ctx, if not nil, is checked every ctxCheckBytes written, so that
	// writing a large index (WriteIVF) stops soon after a cancellation;
	// its error then becomes the encoder's.
	ctx       context.Context
	unchecked int // bytes written since ctx was last checked
}

// ctxCheckBytes is how much an encoder with a context writes between checks
// of it.
const ctxCheckBytes = 4 << 20

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	if e.ctx != nil {
		if e.unchecked += len(b); e.unchecked >= ctxCheckBytes {
			e.unchecked = 0
			if e.err = e.ctx.Err(); e.err != nil {
				return
			}
		}
	}
	_, e.err = e.w.Write(b)
}

func (e *encoder) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(e.buf[:0], v)) }
func (e *encoder) i64(v int64)  { e.u64(uint64(v)) }
func (e *encoder) i32(v int32)  { e.raw(binary.LittleEndian.AppendUint32(e.buf[:0], uint32(v))) }
func (e *encoder) f32(v float32) {
	e.raw(binary.LittleEndian.AppendUint32(e.buf[:0], math.Float32bits(v)))
}
func (e *encoder) fourcc(s string) { e.raw([]byte(s)) }

func (e *encoder) boolean(b bool) {
	if b {
		e.raw([]byte{1})
	} else {
		e.raw([]byte{0})
	}
}

// each writes s through put, a chunk of the bufio buffer at a time.
func each[T any](e *encoder, s []T, size int, put func([]byte, T) []byte) {
	chunk := make([]byte, 0, min(len(s)*size, 1<<16))
	for _, v := range s {
		if len(chunk)+size > cap(chunk) {
			e.raw(chunk)
			chunk = chunk[:0]
		}
		chunk = put(chunk, v)
	}
	e.raw(chunk)
}

func (e *encoder) floats(s []float32) {
	each(e, s, 4, func(b []byte, v float32) []byte {
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	})
}

func (e *encoder) int64s(s []int64) {
	each(e, s, 8, func(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) })
}

// floatVector writes a vector<float>: its length, then its elements.
func (e *encoder) floatVector(s []float32) {
	e.u64(uint64(len(s)))
	e.floats(s)
}

func (e *encoder) header(h *Header) {
	e.i32(int32(h.D))
	e.i64(h.Ntotal)
	e.i64(faissDummy)
	e.i64(faissDummy)
	e.boolean(h.IsTrained)
	e.i32(int32(h.Metric))
	if h.Metric > 1 {
		e.f32(h.MetricArg)
	}
}

func (e *encoder) index(ix Index) {
	v, codeSize := e.indexHead(ix)
	switch fs := innermost(ix).(type) {
	case *IVFPQFastScan:
		e.blockListsHead(fs)
		for _, l := range fs.Lists {
			e.blockList(l.IDs, l.Codes)
		}
	default:
		if v != nil {
			e.lists(v, codeSize)
		}
	}
}

// innermost is the index that PreTransform wrappers, if any, end in: the
// one whose lists, if it has any, end the file.
func innermost(ix Index) Index {
	for {
		pt, ok := ix.(*PreTransform)
		if !ok {
			return ix
		}
		ix = pt.Index
	}
}

// indexHead writes ix but for its inverted lists, which are the last part
// of an IVF index's record and of any index wrapping it, and returns the
// IVF part and its code size, or nil if ix has no lists: WriteIVF writes
// the lists from other memory than Lists. The lists of an IVFPQFastScan
// are block lists: blockListsHead and blockList write them, not
// listSizes.
func (e *encoder) indexHead(ix Index) (*IVF, int) {
	e.fourcc(ix.fourcc())
	switch x := ix.(type) {
	case *Flat:
		e.header(&x.Header)
		e.floatVector(x.Data)
	case *PQ:
		e.header(&x.Header)
		e.productQuantizer(&x.PQ)
		e.u64(uint64(len(x.Codes)))
		e.raw(x.Codes)
		e.i32(x.SearchType)
		e.boolean(x.EncodeSigns)
		e.i32(x.PolysemousHT)
	case *PQFastScan:
		e.header(&x.Header)
		e.productQuantizer(&x.PQ)
		e.i32(x.Implem)
		e.i32(x.Bbs)
		e.i32(x.Qbs)
		e.i64(x.Ntotal2)
		e.i64(x.M2)
		e.u64(uint64(len(x.Codes)))
		e.raw(x.Codes)
	case *IVFPQFastScan:
		e.ivf(&x.IVF)
		e.boolean(x.ByResidual)
		e.i64(x.CodeSize)
		e.i32(x.Bbs)
		e.i64(x.M2)
		e.i32(x.Implem)
		e.i64(x.Qbs2)
		e.productQuantizer(&x.PQ)
		return &x.IVF, int(x.CodeSize)
	case *HNSWFlat:
		e.header(&x.Header)
		e.hnsw(&x.HNSW)
		e.index(x.Storage)
	case *IVFFlat:
		e.ivf(&x.IVF)
		return &x.IVF, x.CodeSize()
	case *IVFPQ:
		e.ivf(&x.IVF)
		e.boolean(x.ByResidual)
		e.u64(uint64(x.CodeSize()))
		e.productQuantizer(&x.PQ)
		return &x.IVF, x.CodeSize()
	case *PreTransform:
		e.header(&x.Header)
		e.i32(int32(len(x.Chain)))
		for _, lt := range x.Chain {
			e.fourcc("LTra")
			e.boolean(lt.HaveBias)
			e.floatVector(lt.A)
			e.floatVector(lt.B)
			e.i32(int32(lt.DIn))
			e.i32(int32(lt.DOut))
			e.boolean(lt.IsTrained)
		}
		return e.indexHead(x.Index)
	}
	return nil, 0
}

func (e *encoder) hnsw(h *HNSW) {
	e.u64(uint64(len(h.AssignProbas)))
	each(e, h.AssignProbas, 8, func(b []byte, v float64) []byte {
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	})
	e.int32Vector(h.CumNNeighborPerLevel)
	e.int32Vector(h.Levels)
	e.u64(uint64(len(h.Offsets)))
	each(e, h.Offsets, 8, binary.LittleEndian.AppendUint64)
	e.int32Vector(h.Neighbors)
	e.i32(h.EntryPoint)
	e.i32(h.MaxLevel)
	e.i32(h.EfConstruction)
	e.i32(h.EfSearch)
	e.i32(h.UpperBeam)
}

// int32Vector writes a vector<int32>: its length, then its elements.
func (e *encoder) int32Vector(s []int32) {
	e.u64(uint64(len(s)))
	each(e, s, 4, func(b []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) })
}

// blockListsHead writes the head of the "ilbl" record (BlockInvertedLists)
// of ix; blockList then writes each of its lists, in order.
func (e *encoder) blockListsHead(ix *IVFPQFastScan) {
	e.fourcc("ilbl")
	e.u64(uint64(ix.Nlist))
	e.u64(ix.ListsCodeSize)
	e.u64(ix.NPerBlock)
	e.u64(ix.BlockSize)
}

// blockList writes one list of an "ilbl" record: its ids, then its codes
// packed in whole blocks (PackFastScan), each as a vector.
func (e *encoder) blockList(ids []int64, packed []byte) {
	e.u64(uint64(len(ids)))
	e.int64s(ids)
	e.u64(uint64(len(packed)))
	e.raw(packed)
}

func (e *encoder) productQuantizer(pq *ProductQuantizer) {
	e.u64(uint64(pq.D))
	e.u64(uint64(pq.M))
	e.u64(uint64(pq.Nbits))
	e.floatVector(pq.Centroids)
}

func (e *encoder) ivf(v *IVF) {
	e.header(&v.Header)
	e.u64(uint64(v.Nlist))
	e.u64(uint64(v.Nprobe))
	e.index(v.Quantizer)
	e.raw([]byte{byte(v.DirectMap.Type)})
	e.u64(uint64(len(v.DirectMap.Array)))
	e.int64s(v.DirectMap.Array)
	if v.DirectMap.Type == HashtableDirectMap {
		e.u64(uint64(len(v.DirectMap.Hashtable)))
		each(e, v.DirectMap.Hashtable, 16, func(b []byte, p DirectMapEntry) []byte {
			b = binary.LittleEndian.AppendUint64(b, uint64(p.ID))
			return binary.LittleEndian.AppendUint64(b, uint64(p.Loc))
		})
	}
}

func (e *encoder) lists(v *IVF, codeSize int) {
	sizes := make([]int, len(v.Lists))
	for i, l := range v.Lists {
		sizes[i] = len(l.IDs)
	}
	e.listSizes(sizes, codeSize)
	for _, l := range v.Lists {
		if len(l.IDs) > 0 {
			e.raw(l.Codes)
			e.int64s(l.IDs)
		}
	}
}

// listSizes writes an "ilar" record up to the lists' contents, which follow
// it list by list, the non-empty lists only, each its codes then its ids.
func (e *encoder) listSizes(sizes []int, codeSize int) {
	e.fourcc("ilar")
	e.u64(uint64(len(sizes)))
	e.u64(uint64(codeSize))
	nonEmpty := 0
	for _, s := range sizes {
		if s > 0 {
			nonEmpty++
		}
	}
	enc := listEncoding(nonEmpty, len(sizes))
	e.fourcc(enc)
	if enc == "full" {
		e.u64(uint64(len(sizes)))
		for _, s := range sizes {
			e.u64(uint64(s))
		}
		return
	}
	e.u64(uint64(2 * nonEmpty))
	for i, s := range sizes {
		if s > 0 {
			e.u64(uint64(i))
			e.u64(uint64(s))
		}
	}
}

// checkIndex checks what ReadIndex checks of a file, so that what
// WriteIndex writes always reads back. depth counts the enclosing indexes.
func checkIndex(ix Index, depth int) error {
	if depth >= maxNesting {
		return fmt.Errorf("indexes nested more than %d deep", maxNesting)
	}
	var h *Header
	switch x := ix.(type) {
	case nil:
		return errors.New("nil index")
	case *Flat:
		if x == nil {
			return errors.New("nil *Flat")
		}
		h = &x.Header
	case *PQ:
		if x == nil {
			return errors.New("nil *PQ")
		}
		h = &x.Header
	case *IVFFlat:
		if x == nil {
			return errors.New("nil *IVFFlat")
		}
		h = &x.Header
	case *IVFPQ:
		if x == nil {
			return errors.New("nil *IVFPQ")
		}
		h = &x.Header
	case *PreTransform:
		if x == nil {
			return errors.New("nil *PreTransform")
		}
		h = &x.Header
	case *PQFastScan:
		if x == nil {
			return errors.New("nil *PQFastScan")
		}
		h = &x.Header
	case *IVFPQFastScan:
		if x == nil {
			return errors.New("nil *IVFPQFastScan")
		}
		h = &x.Header
	case *HNSWFlat:
		if x == nil {
			return errors.New("nil *HNSWFlat")
		}
		h = &x.Header
	default:
		return fmt.Errorf("unsupported index type %T", ix)
	}
	name := typeName(ix)
	if err := checkHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var err error
	switch x := ix.(type) {
	case *Flat:
		if want, ok := mulInt(int(h.Ntotal), h.D); !ok || len(x.Data) != want {
			err = fmt.Errorf("%d values for %d vectors of dimension %d", len(x.Data), h.Ntotal, h.D)
		}
	case *PQ:
		if err = checkProductQuantizer(&x.PQ, h.D); err == nil {
			if want, ok := mulInt(int(h.Ntotal), x.PQ.CodeSize()); !ok || len(x.Codes) != want {
				err = fmt.Errorf("%d code bytes for %d vectors of %d bytes", len(x.Codes), h.Ntotal, x.PQ.CodeSize())
			}
		}
	case *IVFFlat:
		err = checkIVF(&x.IVF, fixedCodes(x.CodeSize()), depth)
	case *IVFPQ:
		if err = checkProductQuantizer(&x.PQ, h.D); err == nil {
			err = checkIVF(&x.IVF, fixedCodes(x.CodeSize()), depth)
		}
	case *PreTransform:
		err = checkPreTransform(x, depth)
	case *PQFastScan:
		err = checkPQFastScan(x)
	case *IVFPQFastScan:
		err = checkIVFPQFastScan(x, depth)
	case *HNSWFlat:
		if err = x.HNSW.check(h.Ntotal); err != nil {
			err = fmt.Errorf("HNSW %w", err)
		} else if err = checkIndex(x.Storage, depth+1); err != nil {
			err = fmt.Errorf("storage: %w", err)
		} else {
			err = checkHNSWStorage(h, x.Storage)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// typeName is FAISS's class name for ix, for messages.
func typeName(ix Index) string {
	if name := ClassName(ix); name != "" {
		return name
	}
	return fmt.Sprintf("%T", ix)
}

// mulInt is a*b for non-negative a and b, and whether it fits in an int.
func mulInt(a, b int) (int, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > math.MaxInt/b {
		return 0, false
	}
	return a * b, true
}

func checkHeader(h *Header) error {
	switch {
	case h.D < 1 || h.D > maxIndexDim:
		return fmt.Errorf("dimension %d out of range [1, %d]", h.D, maxIndexDim)
	case h.Ntotal < 0:
		return fmt.Errorf("ntotal %d is negative", h.Ntotal)
	case !validMetric(h.Metric):
		return fmt.Errorf("metric type %d is not one FAISS defines", int32(h.Metric))
	}
	return nil
}

func checkProductQuantizer(pq *ProductQuantizer, d int) error {
	switch {
	case pq.D != d:
		return fmt.Errorf("PQ dimension %d, want the index's %d", pq.D, d)
	case pq.M < 1 || d%pq.M != 0:
		return fmt.Errorf("PQ M %d does not divide dimension %d", pq.M, d)
	case pq.Nbits < 1 || pq.Nbits > 24:
		return fmt.Errorf("PQ nbits %d out of range [1, 24]", pq.Nbits)
	case len(pq.Centroids) != d<<pq.Nbits:
		return fmt.Errorf("PQ has %d centroid values, want d*2^nbits = %d", len(pq.Centroids), d<<pq.Nbits)
	}
	return nil
}

// fixedCodes is the list code size function of codeSize bytes a vector.
func fixedCodes(codeSize int) func(n int) (int, bool) {
	return func(n int) (int, bool) { return mulInt(n, codeSize) }
}

// blockCodes is the list code size function of FastScan block lists:
// whole blocks of bbs vectors, blockSize bytes each.
func blockCodes(bbs, blockSize int) func(n int) (int, bool) {
	return func(n int) (int, bool) { return mulInt((n+bbs-1)/bbs, blockSize) }
}

// checkFastScan checks the FastScan fields that must agree with pq, as the
// reader does: 4-bit codes, a block size that is a positive multiple of
// 32, and m2 the PQ's M rounded up to even.
func checkFastScan(pq *ProductQuantizer, d int, bbs int32, m2 int64) error {
	if err := checkProductQuantizer(pq, d); err != nil {
		return err
	}
	switch {
	case pq.Nbits != 4:
		return fmt.Errorf("PQ nbits %d: FastScan codes have 4 bits", pq.Nbits)
	case bbs <= 0 || bbs%32 != 0:
		return fmt.Errorf("FastScan block size %d is not a positive multiple of 32", bbs)
	case m2 != int64(roundUpEven(pq.M)):
		return fmt.Errorf("FastScan M2 %d, want PQ M %d rounded up to even", m2, pq.M)
	}
	return nil
}

func checkPQFastScan(x *PQFastScan) error {
	if err := checkFastScan(&x.PQ, x.D, x.Bbs, x.M2); err != nil {
		return err
	}
	bbs := int64(x.Bbs)
	if want := (x.Ntotal + bbs - 1) / bbs * bbs; x.Ntotal2 != want || want < 0 {
		return fmt.Errorf("ntotal2 %d, want ntotal %d rounded up to a multiple of bbs %d", x.Ntotal2, x.Ntotal, bbs)
	}
	if want, ok := mulInt(int(x.Ntotal2), int(x.M2/2)); !ok || len(x.Codes) != want {
		return fmt.Errorf("%d code bytes for ntotal2 %d vectors of M2 %d codes", len(x.Codes), x.Ntotal2, x.M2)
	}
	return nil
}

func checkIVFPQFastScan(x *IVFPQFastScan, depth int) error {
	if err := checkFastScan(&x.PQ, x.D, x.Bbs, x.M2); err != nil {
		return err
	}
	blockSize := uint64(x.Bbs) * uint64(x.M2) / 2
	switch {
	case x.CodeSize != int64(x.PQ.CodeSize()):
		return fmt.Errorf("code size %d, want %d for M %d of 4 bits", x.CodeSize, x.PQ.CodeSize(), x.PQ.M)
	case x.ListsCodeSize != invalidCodeSize && x.ListsCodeSize != uint64(x.CodeSize):
		return fmt.Errorf("inverted lists have code size %d, want %d or 2^64-1", x.ListsCodeSize, x.CodeSize)
	case x.NPerBlock != uint64(x.Bbs):
		return fmt.Errorf("inverted lists have %d vectors per block, the index's bbs is %d", x.NPerBlock, x.Bbs)
	case x.BlockSize != blockSize:
		return fmt.Errorf("inverted lists have %d bytes per block, want bbs*M2/2 = %d", x.BlockSize, blockSize)
	}
	return checkIVF(&x.IVF, blockCodes(int(x.Bbs), int(blockSize)), depth)
}

// checkIVF checks v, whose lists of n vectors hold listBytes(n) bytes of
// codes.
func checkIVF(v *IVF, listBytes func(n int) (int, bool), depth int) error {
	switch {
	case v.Nlist < 1:
		return fmt.Errorf("nlist %d, want at least 1", v.Nlist)
	case v.Nprobe < 0:
		return fmt.Errorf("nprobe %d is negative", v.Nprobe)
	case len(v.Lists) != v.Nlist:
		return fmt.Errorf("%d inverted lists for nlist %d", len(v.Lists), v.Nlist)
	}
	if err := checkIndex(v.Quantizer, depth+1); err != nil {
		return fmt.Errorf("quantizer: %w", err)
	}
	qh := v.Quantizer.IndexHeader()
	switch {
	case qh.D != v.D:
		return fmt.Errorf("coarse quantizer has dimension %d, want the index's %d", qh.D, v.D)
	case qh.Ntotal != int64(v.Nlist) && (v.IsTrained || qh.Ntotal != 0):
		return fmt.Errorf("coarse quantizer holds %d centroids for %d lists", qh.Ntotal, v.Nlist)
	}
	var n int64
	for i, l := range v.Lists {
		if want, ok := listBytes(len(l.IDs)); !ok || len(l.Codes) != want {
			return fmt.Errorf("list %d: %d code bytes for %d ids, want %d", i, len(l.Codes), len(l.IDs), want)
		}
		n += int64(len(l.IDs))
	}
	if n != v.Ntotal {
		return fmt.Errorf("lists hold %d vectors, ntotal is %d", n, v.Ntotal)
	}
	dm := &v.DirectMap
	switch {
	case dm.Type < NoDirectMap || dm.Type > HashtableDirectMap:
		return fmt.Errorf("direct map type %d, want 0 (none), 1 (array) or 2 (hashtable)", dm.Type)
	case dm.Type == ArrayDirectMap && int64(len(dm.Array)) != v.Ntotal:
		return fmt.Errorf("direct map array has %d entries, want ntotal %d", len(dm.Array), v.Ntotal)
	case dm.Type != ArrayDirectMap && len(dm.Array) != 0:
		return fmt.Errorf("direct map of type %d has array entries", dm.Type)
	case dm.Type != HashtableDirectMap && len(dm.Hashtable) != 0:
		return fmt.Errorf("direct map of type %d has hash table entries", dm.Type)
	}
	return checkDirectMap(dm, v.Lists)
}

func checkPreTransform(x *PreTransform, depth int) error {
	dim := x.D
	for i, lt := range x.Chain {
		if lt == nil {
			return fmt.Errorf("transform %d is nil", i)
		}
		switch {
		case lt.DIn < 1 || lt.DIn > maxIndexDim || lt.DOut < 1 || lt.DOut > maxIndexDim:
			return fmt.Errorf("transform %d maps %d to %d dimensions, out of range [1, %d]", i, lt.DIn, lt.DOut, maxIndexDim)
		case lt.DIn != dim:
			return fmt.Errorf("transform %d takes %d dimensions, the previous step gives %d", i, lt.DIn, dim)
		case len(lt.A) != lt.DIn*lt.DOut:
			return fmt.Errorf("transform %d matrix has %d values, want %d×%d", i, len(lt.A), lt.DOut, lt.DIn)
		case len(lt.B) != biasLen(lt):
			return fmt.Errorf("transform %d bias has %d values, want %d", i, len(lt.B), biasLen(lt))
		}
		dim = lt.DOut
	}
	if len(x.Chain) > math.MaxInt32 {
		return fmt.Errorf("%d transforms", len(x.Chain))
	}
	if err := checkIndex(x.Index, depth+1); err != nil {
		return fmt.Errorf("wrapped index: %w", err)
	}
	if sub := x.Index.IndexHeader().D; sub != dim {
		return fmt.Errorf("wrapped index has dimension %d, the transforms give %d", sub, dim)
	}
	return nil
}
