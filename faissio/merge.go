package faissio

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

const (
	// mergeBuffer is the buffer each merge goroutine copies list contents
	// through: large enough that reads and writes are few, small beside
	// any index worth merging, and the same whatever the lists hold.
	mergeBuffer = 1 << 20

	// maxIDBitmap is the most ids (bits, 1 GiB) NewMerge tracks to find a
	// duplicate where the parts' id ranges overlap.
	maxIDBitmap = 8 << 30
)

// Merge merges IVF index files ("parts", see IVFFile) trained identically
// into one file: the file FAISS writes after merging the parts in order
// (index.merge_from(other, 0), or faiss.merge_into(a, b, shift_ids=False)),
// which is what WriteIndex writes of NewIVFIndex(p) for p the parts'
// contents concatenated part after part: each list holds part 0's entries,
// then part 1's, and so on. FAISS cannot merge IndexIVFPQFastScan parts
// (its block lists take no entries once filled); for them the merged file
// is what FAISS writes after merging the parts as IndexIVFPQ and converting
// the result (IndexIVFPQFastScan(ivfpq, 32)): each list's codes are
// unpacked from the parts' blocks and packed again. This is the last step
// of a distributed build, whose workers each encode a shard into a part.
//
// The merged file is laid out before anything is written, so it can be
// written in pieces: WriteFile writes ranges of lists in parallel into one
// file; WriteHeader and WriteRange write the pieces separately (one machine
// a range, say), and the file is the header followed by the ranges in order.
// Either way the memory used is a buffer of about 1 MiB a goroutine (and
// for FastScan 256 KiB more, and a few blocks), plus one part's trained
// contents and a few int64 per list and part, whatever the number of
// vectors.
type Merge struct {
	parts    []*IVFFile
	trained  IVFParams // parts[0]'s, which all share
	codeSize int
	ntotal   int64
	sizes    []int64 // the merged lists' sizes
	offs     []int64 // offs[l]: where list l starts in the merged file; offs[nlist] is its size
}

// NewMerge plans the merge of parts, in their order. It checks that the
// parts were trained identically (index type, dimension, metric, nlist,
// PQ shape, FastScan residual encoding, coarse quantizer type, and the
// bytes of the rotation, coarse centroids, HNSW graph and PQ codebooks; a
// part's other FastScan settings are those of NewIVFIndex, checked when
// opened), because FAISS's merge checks only the shapes and would give an
// index that searches wrongly; and that no id is in two parts, because
// two workers encoding one shard is the likeliest distributed-build
// mistake and FAISS would keep both copies.
//
// The id check reads every part's ids once for their range. Parts whose
// ranges are disjoint are done; where ranges overlap (or a part holds more
// ids than its range has values), the ids in the overlap are read again
// into a bitmap, which must fit in 1 GiB (2^33 ids of span), and the first
// id seen twice is an error naming the parts that hold it. A part's ids
// are thus checked against each other only where they meet another part's
// range. ctx is checked between reads; once it is done NewMerge returns
// ctx.Err() itself.
//
// NewMerge does not take ownership of the parts: close them after the
// merge.
func NewMerge(ctx context.Context, parts []*IVFFile) (*Merge, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge: no parts")
	}
	for i, x := range parts {
		if x == nil {
			return nil, fmt.Errorf("merge: part %d is nil", i)
		}
	}
	t0, err := parts[0].Trained()
	if err != nil {
		return nil, err
	}
	for _, x := range parts[1:] {
		if err := sameTraining(parts[0], &t0, x); err != nil {
			return nil, err
		}
	}
	m := &Merge{parts: parts, trained: t0, codeSize: parts[0].codeSize}
	nlist := t0.Nlist
	m.sizes = make([]int64, nlist)
	for _, x := range parts {
		n, carry := bits.Add64(uint64(m.ntotal), uint64(x.ntotal), 0)
		if carry != 0 || n > math.MaxInt64 {
			return nil, errors.New("merge: the parts hold more than 2^63 vectors")
		}
		m.ntotal = int64(n)
		for l, s := range x.sizes {
			m.sizes[l] += s // at most ntotal
		}
	}
	var head countWriter
	if err := m.writeHead(&head); err != nil {
		return nil, fmt.Errorf("merge: %v", err)
	}
	m.offs = make([]int64, nlist+1)
	at := uint64(head.n)
	for l, s := range m.sizes {
		m.offs[l] = int64(at)
		n, ok := m.listBytes(uint64(s))
		var carry uint64
		at, carry = bits.Add64(at, n, 0)
		if !ok || carry != 0 || at > math.MaxInt64 {
			return nil, errors.New("merge: the merged file would be larger than 2^63 bytes")
		}
	}
	m.offs[nlist] = int64(at)
	if err := checkIDs(ctx, parts); err != nil {
		return nil, err
	}
	return m, nil
}

// listBytes is the bytes a merged list of n vectors takes in the file,
// and whether that fits in a uint64: its codes and ids, and for FastScan
// their two counts, the codes packed in blocks.
func (m *Merge) listBytes(n uint64) (uint64, bool) {
	hi, ids := bits.Mul64(n, 8)
	if hi != 0 {
		return 0, false
	}
	var codes uint64
	ok := true
	if m.trained.FastScan {
		codes, ok = packedBytes(n, m.trained.M)
		ids += 16
	} else {
		hi, codes = bits.Mul64(n, uint64(m.codeSize))
		ok = hi == 0
	}
	sum, carry := bits.Add64(ids, codes, 0)
	return sum, ok && carry == 0
}

// writeHead writes the merged file's header to w.
func (m *Merge) writeHead(w io.Writer) error {
	return writeHead(w, &m.trained, m.ntotal, m.sizes)
}

// sameTraining checks that x was trained as p0 was, t0 being p0's trained
// contents, and says how not.
func sameTraining(p0 *IVFFile, t0 *IVFParams, x *IVFFile) error {
	kind := func(f *IVFFile) string {
		switch {
		case f.m == 0:
			return "an IndexIVFFlat"
		case f.fastScan:
			return "an IndexIVFPQFastScan"
		}
		return "an IndexIVFPQ"
	}
	quantizer := func(f *IVFFile) string {
		if f.hnsw {
			return "an IndexHNSWFlat"
		}
		return "a flat index"
	}
	residuals := func(f *IVFFile) string {
		if f.noResidual {
			return "does not encode residuals"
		}
		return "encodes residuals"
	}
	var what string
	switch {
	case (x.m == 0) != (p0.m == 0) || x.fastScan != p0.fastScan:
		what = fmt.Sprintf("it is %s, %s %s", kind(x), p0.name, kind(p0))
	case x.hnsw != p0.hnsw:
		what = fmt.Sprintf("its coarse quantizer is %s, %s's %s", quantizer(x), p0.name, quantizer(p0))
	case x.noResidual != p0.noResidual:
		what = fmt.Sprintf("it %s, %s %s", residuals(x), p0.name, residuals(p0))
	case x.d != p0.d:
		what = fmt.Sprintf("its dimension is %d, %s's %d", x.d, p0.name, p0.d)
	case x.metric != p0.metric:
		what = fmt.Sprintf("its metric is %v, %s's %v", x.metric, p0.name, p0.metric)
	case x.nlist != p0.nlist:
		what = fmt.Sprintf("it has %d lists, %s %d", x.nlist, p0.name, p0.nlist)
	case x.m != p0.m:
		what = fmt.Sprintf("its PQ has M %d, %s's %d", x.m, p0.name, p0.m)
	case x.nbits != p0.nbits:
		what = fmt.Sprintf("its PQ has nbits %d, %s's %d", x.nbits, p0.name, p0.nbits)
	case x.rotation && !p0.rotation:
		what = fmt.Sprintf("it has a rotation, %s none", p0.name)
	case !x.rotation && p0.rotation:
		what = fmt.Sprintf("it has no rotation, %s has one", p0.name)
	}
	if what == "" {
		t, err := x.Trained()
		if err != nil {
			return err
		}
		switch {
		case !sameBits(t.Rotation, t0.Rotation):
			what = "its rotation differs"
		case !sameBits(t.Centroids, t0.Centroids):
			what = "its coarse centroids differ"
		case !sameBits(t.Codebooks, t0.Codebooks):
			what = "its PQ codebooks differ"
		default:
			what = hnswDiff(t.HNSW, t0.HNSW)
		}
	}
	if what != "" {
		return fmt.Errorf("%s was trained differently from %s: %s", x.name, p0.name, what)
	}
	return nil
}

// hnswDiff says how graph a differs from b, both of a coarse quantizer
// (both nil when it is flat), or is "" when they are the same: a different
// graph finds other lists for the same query, so parts must share it.
func hnswDiff(a, b *HNSW) string {
	if a == nil || b == nil {
		return ""
	}
	var field string
	switch {
	case !slices.EqualFunc(a.AssignProbas, b.AssignProbas, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) }):
		field = "level probabilities"
	case !slices.Equal(a.CumNNeighborPerLevel, b.CumNNeighborPerLevel):
		field = "neighbours per level"
	case !slices.Equal(a.Levels, b.Levels):
		field = "levels"
	case !slices.Equal(a.Offsets, b.Offsets):
		field = "offsets"
	case !slices.Equal(a.Neighbors, b.Neighbors):
		field = "neighbours"
	case a.EntryPoint != b.EntryPoint || a.MaxLevel != b.MaxLevel:
		field = "entry point"
	case a.EfConstruction != b.EfConstruction || a.EfSearch != b.EfSearch || a.UpperBeam != b.UpperBeam:
		field = "search settings (efConstruction, efSearch, upper_beam)"
	default:
		return ""
	}
	return "its HNSW graph differs (" + field + ")"
}

// sameBits reports whether a and b hold the same float32 bit patterns,
// which is what equal file bytes mean (a NaN is not unequal to itself, and
// -0 differs from 0).
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// idSpan is the range of one part's ids, and their number.
type idSpan struct {
	lo, hi int64
	n      int64
}

// contains reports whether id is in s's range.
func (s idSpan) contains(id int64) bool { return s.n > 0 && s.lo <= id && id <= s.hi }

// errStop ends a scan of ids early; it never leaves this file.
var errStop = errors.New("stop")

// checkIDs checks that no id is in two of the parts, as NewMerge says.
func checkIDs(ctx context.Context, parts []*IVFFile) error {
	spans, err := idSpans(ctx, parts)
	if err != nil {
		return err
	}
	// The span to check: the overlaps between ranges, and the ranges of
	// parts with more ids than values in their range. Taking the ranges
	// in order of their start, a range overlaps the earlier ones from its
	// start to the furthest end reached so far.
	order := make([]int, 0, len(parts))
	for i, s := range spans {
		if s.n > 0 {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(spans[i].lo, spans[j].lo) })
	var lo, hi int64
	have := false
	pair := [2]int{-1, -1} // the first two parts found to overlap, for the error
	add := func(a, b int64, i, j int) {
		if !have {
			lo, hi, have, pair = a, b, true, [2]int{i, j}
		}
		lo, hi = min(lo, a), max(hi, b)
	}
	reach, reacher := int64(math.MinInt64), -1
	for _, i := range order {
		s := spans[i]
		if reacher >= 0 && s.lo <= reach {
			add(s.lo, min(s.hi, reach), min(reacher, i), max(reacher, i))
		}
		if uint64(s.n-1) > uint64(s.hi)-uint64(s.lo) {
			add(s.lo, s.hi, i, i)
		}
		if reacher < 0 || s.hi > reach {
			reach, reacher = s.hi, i
		}
	}
	if !have {
		return nil
	}
	width := uint64(hi) - uint64(lo) // one less than the ids in [lo, hi]
	if width >= maxIDBitmap {
		a, b := parts[pair[0]], parts[pair[1]]
		sa, sb := spans[pair[0]], spans[pair[1]]
		if a == b {
			return fmt.Errorf("merge: %s holds %d ids in [%d, %d], so one is there twice, and the span is too wide to find it with a 1 GiB bitmap", a.name, sa.n, sa.lo, sa.hi)
		}
		return fmt.Errorf("merge: the ids of %s, in [%d, %d], and of %s, in [%d, %d], overlap: checking [%d, %d] for duplicates needs a bitmap of more than 1 GiB", a.name, sa.lo, sa.hi, b.name, sb.lo, sb.hi, lo, hi)
	}
	bitmap := make([]uint64, width/64+1)
	buf := make([]byte, mergeBuffer)
	for j, x := range parts {
		if s := spans[j]; s.n == 0 || s.hi < lo || s.lo > hi {
			continue
		}
		var dup int64
		err := x.eachIDChunk(0, x.nlist, buf, func(b []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := 0; i < len(b); i += 8 {
				id := int64(binary.LittleEndian.Uint64(b[i:]))
				if id < lo || id > hi {
					continue
				}
				k := uint64(id) - uint64(lo)
				w, bit := k/64, uint64(1)<<(k%64)
				if bitmap[w]&bit != 0 {
					dup = id
					return errStop
				}
				bitmap[w] |= bit
			}
			return nil
		})
		switch {
		case err == errStop:
			return duplicateError(ctx, parts[:j+1], spans, dup)
		case err != nil:
			return err
		}
	}
	return nil
}

// idSpans reads each part's ids for their range, the parts in parallel.
func idSpans(ctx context.Context, parts []*IVFFile) ([]idSpan, error) {
	spans := make([]idSpan, len(parts))
	errs := make([]error, len(parts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(parts), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			buf := make([]byte, mergeBuffer)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(parts) {
					return
				}
				x := parts[i]
				s := idSpan{lo: math.MaxInt64, hi: math.MinInt64, n: x.ntotal}
				errs[i] = x.eachIDChunk(0, x.nlist, buf, func(b []byte) error {
					if err := ctx.Err(); err != nil {
						return err
					}
					for k := 0; k < len(b); k += 8 {
						id := int64(binary.LittleEndian.Uint64(b[k:]))
						s.lo, s.hi = min(s.lo, id), max(s.hi, id)
					}
					return nil
				})
				spans[i] = s
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return spans, nil
}

// duplicateError says where id, found twice by the time the last of parts
// was read, is: in an earlier part and the last, or twice in the last.
func duplicateError(ctx context.Context, parts []*IVFFile, spans []idSpan, id int64) error {
	last := parts[len(parts)-1]
	buf := make([]byte, mergeBuffer)
	for i, x := range parts[:len(parts)-1] {
		if !spans[i].contains(id) {
			continue
		}
		err := x.eachIDChunk(0, x.nlist, buf, func(b []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for k := 0; k < len(b); k += 8 {
				if int64(binary.LittleEndian.Uint64(b[k:])) == id {
					return errStop
				}
			}
			return nil
		})
		switch {
		case err == errStop:
			return fmt.Errorf("merge: id %d is in both %s and %s", id, x.name, last.name)
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("merge: id %d is in %s twice", id, last.name)
}

// Nlist is the number of inverted lists, the parts' and the merged file's.
func (m *Merge) Nlist() int { return len(m.sizes) }

// Ntotal is the number of vectors of the merged file, the parts' sum.
func (m *Merge) Ntotal() int64 { return m.ntotal }

// CodeSize is the bytes of each vector's code.
func (m *Merge) CodeSize() int { return m.codeSize }

// ListSizes returns the merged lists' sizes, each the parts' sum (a copy).
func (m *Merge) ListSizes() []int64 { return slices.Clone(m.sizes) }

// Trained returns the trained contents the parts share, as IVFParams with
// no vectors (a copy).
func (m *Merge) Trained() IVFParams {
	p := m.trained
	p.Rotation, p.Centroids, p.Codebooks = slices.Clone(p.Rotation), slices.Clone(p.Centroids), slices.Clone(p.Codebooks)
	p.HNSW = cloneHNSW(p.HNSW)
	return p
}

// Size is the merged file's size in bytes.
func (m *Merge) Size() int64 { return m.offs[len(m.sizes)] }

// HeaderBytes is the size of what WriteHeader writes: everything before
// the first list's contents.
func (m *Merge) HeaderBytes() int64 { return m.offs[0] }

// RangeBytes is the size of what WriteRange writes for lists [lo, hi),
// 0 <= lo <= hi <= Nlist: where their contents end in the merged file
// less where they start.
func (m *Merge) RangeBytes(lo, hi int) int64 { return m.offs[hi] - m.offs[lo] }

// Split cuts the lists into n ranges of about equal bytes (as equal as
// whole lists allow), for dividing WriteRange among n workers: it returns
// n+1 ascending boundaries from 0 to Nlist, range k being lists
// [b[k], b[k+1]), some perhaps empty. n below 1 counts as 1.
func (m *Merge) Split(n int) []int {
	n = max(n, 1)
	nlist := len(m.sizes)
	start, total := uint64(m.offs[0]), uint64(m.offs[nlist]-m.offs[0])
	b := make([]int, n+1)
	for k := 1; k < n; k++ {
		// total*k/n without overflow; the quotient is below total.
		hi, lo := bits.Mul64(total, uint64(k))
		q, _ := bits.Div64(hi, lo, uint64(n))
		target := int64(start + q)
		b[k] = sort.Search(nlist, func(l int) bool { return m.offs[l] >= target })
	}
	b[n] = nlist
	return b
}

// WriteHeader writes the merged file's first HeaderBytes bytes: the
// parts' shared index header with the summed ntotal and list sizes, in
// the full or sparse encoding FAISS picks for the merged sizes.
func (m *Merge) WriteHeader(w io.Writer) error {
	if err := m.writeHead(w); err != nil {
		return fmt.Errorf("faiss index: write: %w", err)
	}
	return nil
}

// WriteRange writes the contents of lists [lo, hi) as they are in the
// merged file, RangeBytes(lo, hi) bytes: for each list, the parts' codes
// in order, then their ids; for FastScan, the list's size and the parts'
// ids, then the byte count and the parts' codes repacked, a block at a
// time. It reads the parts in chunks through one buffer of about 1 MiB
// (FastScan codes through one of 256 KiB), and checks ctx between chunks;
// once ctx is done it returns ctx.Err() itself, unwrapped, having written
// a prefix. A failure to read a part names the part.
func (m *Merge) WriteRange(ctx context.Context, w io.Writer, lo, hi int) error {
	if lo < 0 || lo > hi || hi > len(m.sizes) {
		return fmt.Errorf("merge: range [%d, %d) outside the %d lists", lo, hi, len(m.sizes))
	}
	err := m.writeRange(ctx, w, lo, hi, m.newScratch(), nil)
	var re readError
	switch {
	case err == nil, err == ctx.Err(), errors.As(err, &re):
		return err
	}
	return fmt.Errorf("faiss index: write: %w", err)
}

// mergeScratch is the memory one goroutine writes lists through.
type mergeScratch struct {
	buf  []byte // the output, gathered up to its capacity
	read []byte // FastScan: packed blocks read from a part, a whole number of blocks
}

// newScratch allocates the buffers writeRange needs for m.
func (m *Merge) newScratch() *mergeScratch {
	s := &mergeScratch{buf: make([]byte, 0, mergeBuffer)}
	if m.trained.FastScan {
		bs := FastScanPackedSize(1, m.trained.M, FastScanBlock)
		s.read = make([]byte, max(1, mergeBuffer/4/bs)*bs)
	}
	return s
}

// writeRange is WriteRange through s, calling listDone, if not nil, after
// each list. Write errors come back as they are.
func (m *Merge) writeRange(ctx context.Context, w io.Writer, lo, hi int, s *mergeScratch, listDone func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf := s.buf[:0]
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	// add appends n bytes of x's from off, the what of list l, flushing
	// as the buffer fills.
	add := func(x *IVFFile, off, n int64, l int, what string) error {
		for n > 0 {
			if len(buf) == cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
			k := int(min(n, int64(cap(buf)-len(buf))))
			if err := x.readAt(buf[len(buf):len(buf)+k], off, l, what); err != nil {
				return err
			}
			buf = buf[:len(buf)+k]
			off += int64(k)
			n -= int64(k)
		}
		return nil
	}
	// put appends b, flushing first if it does not fit; a b larger than
	// the buffer (a block of a huge M) is written as it is.
	put := func(b []byte) error {
		if len(buf)+len(b) > cap(buf) {
			if err := flush(); err != nil {
				return err
			}
			if len(b) > cap(buf) {
				_, err := w.Write(b)
				return err
			}
		}
		buf = append(buf, b...)
		return nil
	}
	var blocks *fastScanBlocks
	var putErr error
	if m.trained.FastScan {
		blocks = newFastScanBlocks(m.trained.M, func(b []byte) bool {
			putErr = put(b)
			return putErr == nil
		})
	}
	cs := int64(m.codeSize)
	var count [8]byte
	for l := lo; l < hi; l++ {
		if blocks != nil {
			if err := m.writeBlockList(l, blocks, s.read, add, func(v uint64) error {
				return put(binary.LittleEndian.AppendUint64(count[:0], v))
			}); err != nil {
				if putErr != nil {
					return putErr
				}
				return err
			}
		} else {
			for _, x := range m.parts {
				if err := add(x, x.offs[l], x.sizes[l]*cs, l, "codes"); err != nil {
					return err
				}
			}
			for _, x := range m.parts {
				if err := add(x, x.idsOff(l), x.sizes[l]*8, l, "ids"); err != nil {
					return err
				}
			}
		}
		if listDone != nil {
			listDone()
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return flush()
}

// errEmit stops writeBlockList when blocks' emit failed; the caller has
// the error.
var errEmit = errors.New("emit failed")

// writeBlockList writes merged list l as a FastScan "ilbl" record holds
// it: its id count, the parts' ids in order, its packed codes' byte count
// and the codes. The parts' lists were packed each in blocks of their own,
// which do not concatenate: each part's blocks are read a chunk (read) at
// a time and fed to blocks, which repacks them, copying whole blocks as
// they are while the vectors before them fill whole blocks. add copies
// raw bytes of a part, u64 writes a count.
func (m *Merge) writeBlockList(l int, blocks *fastScanBlocks, read []byte,
	add func(x *IVFFile, off, n int64, l int, what string) error, u64 func(uint64) error) error {
	n := uint64(m.sizes[l])
	if err := u64(n); err != nil {
		return err
	}
	for _, x := range m.parts {
		if err := add(x, x.idsOff(l), x.sizes[l]*8, l, "ids"); err != nil {
			return err
		}
	}
	nb, _ := packedBytes(n, m.trained.M) // NewMerge checked the file's size
	if err := u64(nb); err != nil {
		return err
	}
	bs := int64(blocks.size)
	for _, x := range m.parts {
		left := x.sizes[l] // vectors of x's list still to read
		off := x.codesOff(l)
		for left > 0 {
			nblocks := (left + FastScanBlock - 1) / FastScanBlock
			chunk := read[:min(int64(len(read)), nblocks*bs)]
			if err := x.readAt(chunk, off, l, "codes"); err != nil {
				return err
			}
			off += int64(len(chunk))
			for b := 0; b < len(chunk); b += int(bs) {
				k := int(min(left, FastScanBlock))
				if !blocks.addPacked(chunk[b:b+int(bs)], k) {
					return errEmit
				}
				left -= int64(k)
			}
		}
	}
	if !blocks.flush() {
		return errEmit
	}
	return nil
}

// WriteFile writes the merged file to path, replacing any file there
// atomically (WriteFileAtomic): on any error, cancellation included, the
// old file, or none, stays in place. The header is written first, then
// workers goroutines (GOMAXPROCS when workers < 1) write ranges of lists,
// of about equal bytes, at their offsets in the file, each through its own
// buffer of about 1 MiB; the bytes are those of WriteHeader followed by
// WriteRange of every list.
//
// progress, if not nil, is called with the lists written so far and
// Nlist, about every hundredth of them (calls never overlap, and done
// ascends), and last with Nlist, Nlist. Errors are one line starting with
// path, or with the part that could not be read.
func (m *Merge) WriteFile(ctx context.Context, path string, workers int, progress func(done, total int)) error {
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFileAtomic(path, func(f *os.File) error {
		err := m.writeFile(ctx, f, workers, progress)
		var re readError
		switch {
		case err == nil, errors.As(err, &re):
			return err
		case err == ctx.Err():
			return fmt.Errorf("%s: %w", path, err)
		}
		return fmt.Errorf("%s: write: %w", path, unwrapPathError(err))
	})
}

// writeFile writes the merged file into f, as WriteFile says.
func (m *Merge) writeFile(ctx context.Context, f *os.File, workers int, progress func(done, total int)) error {
	if err := m.writeHead(io.NewOffsetWriter(f, 0)); err != nil {
		return err
	}
	nlist := len(m.sizes)
	var done atomic.Int64
	var mu sync.Mutex
	step, reported := max(1, nlist/100), 0
	listDone := func() {
		c := int(done.Add(1))
		if progress == nil || c >= nlist || c%step != 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if c = int(done.Load()); c < nlist && c/step > reported/step {
			progress(c, nlist)
			reported = c
		}
	}

	// More ranges than workers, taken in turn, so that a worker with
	// large lists does not hold up the others.
	ranges := m.Split(min(max(nlist, 1), 4*workers))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(workers, len(ranges)-1) {
		wg.Go(func() {
			s := m.newScratch()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(ranges)-1 {
					return
				}
				lo, hi := ranges[k], ranges[k+1]
				if err := m.writeRange(wctx, io.NewOffsetWriter(f, m.offs[lo]), lo, hi, s, listDone); err != nil {
					once.Do(func() {
						first = err
						cancel()
					})
					return
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if first != nil {
		return first
	}
	if progress != nil {
		progress(nlist, nlist)
	}
	return nil
}

// MergeIVFFiles merges the IVF index files at parts, in order, into path:
// OpenIVFFile of each, NewMerge, then WriteFile with workers and progress.
func MergeIVFFiles(ctx context.Context, path string, parts []string, workers int, progress func(done, total int)) error {
	files := make([]*IVFFile, 0, len(parts))
	defer func() {
		for _, x := range files {
			x.Close()
		}
	}()
	for _, p := range parts {
		x, err := OpenIVFFile(p)
		if err != nil {
			return err
		}
		files = append(files, x)
	}
	m, err := NewMerge(ctx, files)
	if err != nil {
		if err == ctx.Err() {
			return fmt.Errorf("%s: %w", path, err)
		}
		return err
	}
	return m.WriteFile(ctx, path, workers, progress)
}

// writeHead writes the start of the file WriteIndex writes for
// NewIVFIndex(p) once it holds ntotal vectors, its lists having the given
// sizes, p holding no vectors: everything before the lists' contents. For
// FastScan, whose block lists record each list's size with its contents,
// that is up to the end of the lists' header, and sizes are not used. It
// is the merged file's header, and what a part's own header is checked
// against.
func writeHead(w io.Writer, p *IVFParams, ntotal int64, sizes []int64) error {
	ix, v, err := ivfShell(p)
	if err != nil {
		return err
	}
	v.Ntotal = ntotal
	if pt, ok := ix.(*PreTransform); ok {
		pt.Ntotal = ntotal
	}
	ints := make([]int, len(sizes))
	for l, s := range sizes {
		ints[l] = int(s)
	}
	if p.FastScan {
		ints = nil
	}
	e := &encoder{w: bufio.NewWriterSize(w, 1<<16)}
	writeListsHead(e, ix, p, ints)
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}
