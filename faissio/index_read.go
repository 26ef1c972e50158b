package faissio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
)

const (
	// maxIndexDim is the largest dimension FAISS's readers accept (1.14.0
	// and later), far above any real embedding.
	maxIndexDim = 1 << 20

	// maxNesting bounds how deep indexes may hold indexes, as FAISS 1.15
	// does: a crafted file could otherwise recurse without end.
	maxNesting = 50

	// maxUnbackedLists is the most lists an IVF index may claim without a
	// quantizer holding that many centroids (an untrained index). Every
	// list costs memory even when empty, and a sparse list encoding costs
	// no bytes per empty list, so beyond this a tiny file could demand
	// gigabytes.
	maxUnbackedLists = 1 << 16

	// A vector is read firstChunk bytes first, then in reads doubling up
	// to readChunk bytes: memory grows only as the file delivers, so a
	// length field claiming 2^60 elements fails at the end of the file,
	// not in the allocator.
	firstChunk = 4 << 10
	readChunk  = 1 << 20

	// faissDummy is what FAISS writes in the two unused fields of every
	// index header.
	faissDummy = 1 << 20
)

// ReadIndex reads a FAISS index file of the types described by Index
// (fourccs IxF2, IxFI, IxFl, IxPq, IPfs, IwFl, IwPQ, IwPf, IHNf, IxPT with
// LTra transforms, inverted lists ilar, and ilbl for IwPf), the whole of
// r: bytes after the index are an error, as FAISS never writes any.
// Everything is checked as strictly as the newest FAISS checks it, and
// more: sizes must agree with each other, and the encoding must be the one
// FAISS's writer would have chosen, so that WriteIndex gives back exactly
// the bytes read. Errors name the byte offset of what is wrong. Memory
// grows only with the bytes actually read.
func ReadIndex(r io.Reader) (Index, error) {
	ix, err := readIndex(r)
	if err != nil {
		return nil, fmt.Errorf("faiss index: %w", err)
	}
	return ix, nil
}

// ReadIndexFile reads the FAISS index file at path, as ReadIndex does.
// Errors start with path.
func ReadIndexFile(path string) (Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	ix, err := readIndex(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ix, nil
}

func readIndex(r io.Reader) (Index, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 1<<16)}
	ix, err := d.index()
	if err != nil {
		return nil, err
	}
	end := d.off
	if _, err := d.r.ReadByte(); err == nil {
		return nil, &formatError{off: end, msg: "data after the end of the index"}
	} else if err != io.EOF {
		return nil, &formatError{off: end, msg: fmt.Sprintf("reading after the index: %v", err), err: err}
	}
	return ix, nil
}

// formatError is a malformed or unreadable index file; off is where the
// faulty field starts.
type formatError struct {
	off int64
	msg string
	err error // io.ErrUnexpectedEOF for a truncated file, or the read error
}

func (e *formatError) Error() string { return fmt.Sprintf("byte %d: %s", e.off, e.msg) }
func (e *formatError) Unwrap() error { return e.err }

// decoder reads one index, tracking the byte offset for error messages.
type decoder struct {
	r       *bufio.Reader
	off     int64
	depth   int
	scratch [8]byte

	// headOnly makes the decoder stop at the contents of the inverted
	// lists, recording in head where they start and their sizes
	// (OpenIVFFile), instead of reading them.
	headOnly bool
	head     *listsHead
}

func (d *decoder) errorf(off int64, format string, args ...any) error {
	return &formatError{off: off, msg: fmt.Sprintf(format, args...)}
}

// ioError describes a failure to read the want bytes of what, starting at
// start, after got of them arrived.
func (d *decoder) ioError(start int64, what string, got, want uint64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if got == 0 {
			return &formatError{off: start, msg: "file ends before " + what, err: io.ErrUnexpectedEOF}
		}
		return &formatError{off: start, msg: fmt.Sprintf("file ends inside %s (%d of %d bytes)", what, got, want), err: io.ErrUnexpectedEOF}
	}
	return &formatError{off: start + int64(got), msg: fmt.Sprintf("reading %s: %v", what, err), err: err}
}

// fixed reads n <= 8 bytes.
func (d *decoder) fixed(what string, n int) ([]byte, error) {
	b := d.scratch[:n]
	start := d.off
	k, err := io.ReadFull(d.r, b)
	d.off += int64(k)
	if err != nil {
		return nil, d.ioError(start, what, uint64(k), uint64(n), err)
	}
	return b, nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.fixed(what, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (d *decoder) i64(what string) (int64, error) {
	v, err := d.u64(what)
	return int64(v), err
}

func (d *decoder) i32(what string) (int32, error) {
	b, err := d.fixed(what, 4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

func (d *decoder) f32(what string) (float32, error) {
	v, err := d.i32(what)
	return math.Float32frombits(uint32(v)), err
}

func (d *decoder) fourcc(what string) (string, error) {
	b, err := d.fixed(what, 4)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// boolean reads a C++ bool, which FAISS writes as one byte 0 or 1 (and,
// from 1.14.3, refuses to read as anything else).
func (d *decoder) boolean(what string) (bool, error) {
	start := d.off
	b, err := d.fixed(what, 1)
	if err != nil {
		return false, err
	}
	if b[0] > 1 {
		return false, d.errorf(start, "%s is %d, want a bool (0 or 1)", what, b[0])
	}
	return b[0] == 1, nil
}

// count reads a vector's element count and checks it against want.
func (d *decoder) count(what string, want uint64) error {
	start := d.off
	n, err := d.u64(what + " size")
	if err != nil {
		return err
	}
	if n != want {
		return d.errorf(start, "%s has %d elements, want %d", what, n, want)
	}
	return nil
}

// readVec reads n elements of size bytes each, decoding each chunk with
// dec. Memory grows in step with the bytes that actually arrive: each read
// asks for as many elements as are already in hand (from a few KB up to
// readChunk), so a length field claiming far more than the file holds costs
// a few KB, and a genuine vector costs at most twice its size on the way.
func readVec[T any](d *decoder, what string, n uint64, size int, dec func(dst []T, b []byte)) ([]T, error) {
	start := d.off
	hi, total := bits.Mul64(n, uint64(size))
	if hi != 0 || total > math.MaxInt {
		return nil, d.errorf(start, "%s: %d elements do not fit in a file", what, n)
	}
	if n == 0 {
		return nil, nil // as a Go literal would leave it, so that DeepEqual works
	}
	var out []T
	var buf []byte
	for uint64(len(out)) < n {
		k := int(min(n-uint64(len(out)), uint64(max(len(out), firstChunk/size)), uint64(readChunk/size)))
		if cap(buf) < k*size {
			buf = make([]byte, k*size)
		}
		b := buf[:k*size]
		got, err := io.ReadFull(d.r, b)
		d.off += int64(got)
		if err != nil {
			return nil, d.ioError(start, what, uint64(len(out))*uint64(size)+uint64(got), total, err)
		}
		out = grow(out, k, n)
		l := len(out)
		out = out[:l+k]
		dec(out[l:], b)
	}
	return out, nil
}

// grow makes room for k more elements in s, doubling its capacity but
// never beyond the n elements expected in all: append's gentler growth of
// large slices would copy a large vector several times over.
func grow[T any](s []T, k int, n uint64) []T {
	if len(s)+k <= cap(s) {
		return s
	}
	c := int(min(n, uint64(max(len(s)+k, 2*cap(s)))))
	g := make([]T, len(s), c)
	copy(g, s)
	return g
}

func (d *decoder) bytes(what string, n uint64) ([]byte, error) {
	return readVec(d, what, n, 1, func(dst, b []byte) { copy(dst, b) })
}

func (d *decoder) floats(what string, n uint64) ([]float32, error) {
	return readVec(d, what, n, 4, func(dst []float32, b []byte) {
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	})
}

func (d *decoder) int64s(what string, n uint64) ([]int64, error) {
	return readVec(d, what, n, 8, func(dst []int64, b []byte) {
		for i := range dst {
			dst[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	})
}

func (d *decoder) float64s(what string, n uint64) ([]float64, error) {
	return readVec(d, what, n, 8, func(dst []float64, b []byte) {
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	})
}

func (d *decoder) uint64s(what string, n uint64) ([]uint64, error) {
	return readVec(d, what, n, 8, func(dst []uint64, b []byte) {
		for i := range dst {
			dst[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
	})
}

func (d *decoder) int32s(what string, n uint64) ([]int32, error) {
	return readVec(d, what, n, 4, func(dst []int32, b []byte) {
		for i := range dst {
			dst[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
	})
}

// floatVector reads a FAISS vector<float> of any length.
func (d *decoder) floatVector(what string) ([]float32, error) {
	n, err := d.u64(what + " size")
	if err != nil {
		return nil, err
	}
	return d.floats(what, n)
}

// product is a*b, or an error at off if it overflows an int.
func (d *decoder) product(off int64, what string, a, b uint64) (uint64, error) {
	hi, p := bits.Mul64(a, b)
	if hi != 0 || p > math.MaxInt {
		return 0, d.errorf(off, "%s: %d × %d overflows", what, a, b)
	}
	return p, nil
}

// validMetric reports whether FAISS defines metric m (1.15's list).
func validMetric(m Metric) bool {
	return m >= 0 && m <= 4 || m >= 20 && m <= 25
}

func (d *decoder) header(h *Header) error {
	start := d.off
	dim, err := d.i32("d")
	if err != nil {
		return err
	}
	if dim < 1 || dim > maxIndexDim {
		return d.errorf(start, "dimension %d out of range [1, %d]", dim, maxIndexDim)
	}
	h.D = int(dim)
	off := d.off
	if h.Ntotal, err = d.i64("ntotal"); err != nil {
		return err
	}
	if h.Ntotal < 0 {
		return d.errorf(off, "ntotal %d is negative", h.Ntotal)
	}
	for range 2 {
		off = d.off
		v, err := d.i64("unused header field")
		if err != nil {
			return err
		}
		if v != faissDummy {
			return d.errorf(off, "unused header field is %d, FAISS always writes %d", v, faissDummy)
		}
	}
	if h.IsTrained, err = d.boolean("is_trained"); err != nil {
		return err
	}
	off = d.off
	m, err := d.i32("metric_type")
	if err != nil {
		return err
	}
	h.Metric = Metric(m)
	if !validMetric(h.Metric) {
		return d.errorf(off, "metric type %d is not one FAISS defines", m)
	}
	h.MetricArg = 0
	if h.Metric > 1 {
		if h.MetricArg, err = d.f32("metric_arg"); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) index() (Index, error) {
	start := d.off
	if d.depth >= maxNesting {
		return nil, d.errorf(start, "indexes nested more than %d deep", maxNesting)
	}
	d.depth++
	defer func() { d.depth-- }()
	fc, err := d.fourcc("index fourcc")
	if err != nil {
		return nil, err
	}
	switch fc {
	case "IxF2", "IxFI", "IxFl":
		return d.flat(start, fc)
	case "IxPq":
		return d.pqIndex()
	case "IwFl":
		ix := &IVFFlat{}
		dmOff, err := d.ivf(&ix.IVF)
		if err != nil {
			return nil, err
		}
		return ix, d.lists(&ix.IVF, ix.CodeSize(), dmOff)
	case "IwPQ":
		return d.ivfpq()
	case "IxPT":
		return d.preTransform()
	case "IPfs":
		return d.pqFastScan()
	case "IwPf":
		return d.ivfpqFastScan()
	case "IHNf":
		return d.hnswFlat()
	}
	return nil, d.errorf(start, "unknown index fourcc %q (supported: IxF2 IxFI IxFl IxPq IPfs IwFl IwPQ IwPf IHNf IxPT)", fc)
}

func (d *decoder) flat(start int64, fc string) (*Flat, error) {
	ix := &Flat{}
	if err := d.header(&ix.Header); err != nil {
		return nil, err
	}
	if want := flatFourcc(ix.Metric); fc != want {
		return nil, d.errorf(start, "fourcc %q with metric %d: FAISS writes %q for that metric", fc, ix.Metric, want)
	}
	off := d.off
	n, err := d.product(off, "flat vectors", uint64(ix.Ntotal), uint64(ix.D))
	if err != nil {
		return nil, err
	}
	if err := d.count("flat vectors", n); err != nil {
		return nil, err
	}
	ix.Data, err = d.floats("flat vectors", n)
	return ix, err
}

// productQuantizer reads a PQ block for vectors of dimension dim.
func (d *decoder) productQuantizer(dim int) (ProductQuantizer, error) {
	var pq ProductQuantizer
	off := d.off
	v, err := d.u64("PQ d")
	if err != nil {
		return pq, err
	}
	if v != uint64(dim) {
		return pq, d.errorf(off, "PQ dimension %d, want the index's %d", v, dim)
	}
	pq.D = dim
	off = d.off
	if v, err = d.u64("PQ M"); err != nil {
		return pq, err
	}
	if v < 1 || v > uint64(dim) || uint64(dim)%v != 0 {
		return pq, d.errorf(off, "PQ M %d does not divide dimension %d", v, dim)
	}
	pq.M = int(v)
	off = d.off
	if v, err = d.u64("PQ nbits"); err != nil {
		return pq, err
	}
	if v < 1 || v > 24 {
		return pq, d.errorf(off, "PQ nbits %d out of range [1, 24]", v)
	}
	pq.Nbits = int(v)
	n := uint64(dim) << pq.Nbits
	if err := d.count("PQ centroids", n); err != nil {
		return pq, err
	}
	pq.Centroids, err = d.floats("PQ centroids", n)
	return pq, err
}

func (d *decoder) pqIndex() (*PQ, error) {
	ix := &PQ{}
	if err := d.header(&ix.Header); err != nil {
		return nil, err
	}
	var err error
	if ix.PQ, err = d.productQuantizer(ix.D); err != nil {
		return nil, err
	}
	n, err := d.product(d.off, "PQ codes", uint64(ix.Ntotal), uint64(ix.PQ.CodeSize()))
	if err != nil {
		return nil, err
	}
	if err := d.count("PQ codes", n); err != nil {
		return nil, err
	}
	if ix.Codes, err = d.bytes("PQ codes", n); err != nil {
		return nil, err
	}
	if ix.SearchType, err = d.i32("search_type"); err != nil {
		return nil, err
	}
	if ix.EncodeSigns, err = d.boolean("encode_signs"); err != nil {
		return nil, err
	}
	ix.PolysemousHT, err = d.i32("polysemous_ht")
	return ix, err
}

// backed is how many vectors an index's data in the file accounts for,
// for bounding what a quantizer's ntotal can justify allocating.
func backed(ix Index) int64 {
	switch x := ix.(type) {
	case *PreTransform:
		return backed(x.Index)
	case nil:
		return 0
	}
	return ix.IndexHeader().Ntotal
}

// ivf reads the IVF header, up to and including the direct map, and
// returns where the direct map starts, for errors found once the lists it
// points into are read.
func (d *decoder) ivf(v *IVF) (dmOff int64, err error) {
	if err := d.header(&v.Header); err != nil {
		return 0, err
	}
	nlistOff := d.off
	nlist, err := d.u64("nlist")
	if err != nil {
		return 0, err
	}
	if nlist < 1 || nlist > math.MaxInt {
		return 0, d.errorf(nlistOff, "nlist %d out of range", nlist)
	}
	off := d.off
	nprobe, err := d.u64("nprobe")
	if err != nil {
		return 0, err
	}
	if nprobe > math.MaxInt {
		return 0, d.errorf(off, "nprobe %d out of range", nprobe)
	}
	v.Nprobe = int(nprobe)
	off = d.off
	q, err := d.index()
	if err != nil {
		return 0, err
	}
	qh := q.IndexHeader()
	switch {
	case qh.D != v.D:
		return 0, d.errorf(off, "coarse quantizer has dimension %d, want the index's %d", qh.D, v.D)
	case qh.Ntotal != int64(nlist) && (v.IsTrained || qh.Ntotal != 0):
		return 0, d.errorf(off, "coarse quantizer holds %d centroids for %d lists", qh.Ntotal, nlist)
	case nlist > maxUnbackedLists && nlist > uint64(backed(q)):
		return 0, d.errorf(nlistOff, "nlist %d without as many centroids in the quantizer", nlist)
	}
	v.Nlist = int(nlist)
	v.Quantizer = q
	dmOff = d.off
	return dmOff, d.directMap(&v.DirectMap, v.Ntotal)
}

func (d *decoder) directMap(dm *DirectMap, ntotal int64) error {
	off := d.off
	b, err := d.fixed("direct map type", 1)
	if err != nil {
		return err
	}
	// Checked as a byte: DirectMapType is signed, as FAISS's char is.
	if b[0] > byte(HashtableDirectMap) {
		return d.errorf(off, "direct map type %d, want 0 (none), 1 (array) or 2 (hashtable)", int8(b[0]))
	}
	dm.Type = DirectMapType(b[0])
	want := uint64(0)
	if dm.Type == ArrayDirectMap {
		want = uint64(ntotal)
	}
	if err := d.count("direct map array", want); err != nil {
		return err
	}
	if dm.Array, err = d.int64s("direct map array", want); err != nil {
		return err
	}
	if dm.Type != HashtableDirectMap {
		return nil
	}
	n, err := d.u64("direct map hashtable size")
	if err != nil {
		return err
	}
	dm.Hashtable, err = readVec(d, "direct map hashtable", n, 16, func(dst []DirectMapEntry, b []byte) {
		for i := range dst {
			dst[i] = DirectMapEntry{int64(binary.LittleEndian.Uint64(b[16*i:])), int64(binary.LittleEndian.Uint64(b[16*i+8:]))}
		}
	})
	return err
}

// lists reads the inverted lists of v, whose codes are codeSize bytes,
// then checks v's direct map, read at dmOff, against them. A head-only
// decoder (see listsHead) stops after the list sizes instead.
func (d *decoder) lists(v *IVF, codeSize int, dmOff int64) error {
	sizes, err := d.listSizes(v, codeSize)
	if err != nil {
		return err
	}
	v.Lists = make([]InvertedList, v.Nlist)
	if d.headOnly {
		if d.head != nil {
			return d.errorf(d.off, "a second set of inverted lists (an IVF index inside an IVF index)")
		}
		d.head = &listsHead{ivf: v, codeSize: codeSize, sizes: sizes, dataOff: d.off, dmOff: dmOff}
		return nil
	}
	for l, s := range sizes {
		if s == 0 {
			continue
		}
		nb, err := d.product(d.off, "list codes", s, uint64(codeSize))
		if err != nil {
			return err
		}
		what := fmt.Sprintf("codes of list %d", l)
		if v.Lists[l].Codes, err = d.bytes(what, nb); err != nil {
			return err
		}
		what = fmt.Sprintf("ids of list %d", l)
		if v.Lists[l].IDs, err = d.int64s(what, s); err != nil {
			return err
		}
	}
	if err := checkDirectMap(&v.DirectMap, v.Lists); err != nil {
		return d.errorf(dmOff, "%v", err)
	}
	return nil
}

// listsHead is where a head-only decoder stopped: at the contents of the
// inverted lists of ivf, whose sizes it has read and checked, so that
// OpenIVFFile shares every check of the full reader up to there.
type listsHead struct {
	ivf      *IVF
	codeSize int
	sizes    []uint64 // the vectors in each list; they sum to ivf.Ntotal
	dataOff  int64    // where the first non-empty list's codes start
	dmOff    int64    // where the direct map starts
}

// listSizes reads an "ilar" record up to the lists' contents and checks
// it against v: its nlist, its code size, the list sizes summing to
// ntotal, and the full or sparse encoding FAISS's writer would pick.
func (d *decoder) listSizes(v *IVF, codeSize int) ([]uint64, error) {
	start := d.off
	fc, err := d.fourcc("inverted lists fourcc")
	if err != nil {
		return nil, err
	}
	switch fc {
	case "ilar":
	case "il00":
		return nil, d.errorf(start, "inverted lists not stored (il00) are not supported")
	default:
		return nil, d.errorf(start, "unknown inverted lists fourcc %q (supported: ilar)", fc)
	}
	off := d.off
	n, err := d.u64("inverted lists nlist")
	if err != nil {
		return nil, err
	}
	if n != uint64(v.Nlist) {
		return nil, d.errorf(off, "inverted lists have nlist %d, the index %d", n, v.Nlist)
	}
	off = d.off
	if n, err = d.u64("inverted lists code_size"); err != nil {
		return nil, err
	}
	if n != uint64(codeSize) {
		return nil, d.errorf(off, "inverted lists have code size %d, want %d", n, codeSize)
	}
	typeOff := d.off
	lt, err := d.fourcc("inverted lists type")
	if err != nil {
		return nil, err
	}
	sizes := make([]uint64, v.Nlist)
	nonEmpty := 0
	switch lt {
	case "full":
		if err := d.count("list sizes", uint64(v.Nlist)); err != nil {
			return nil, err
		}
		s, err := d.int64s("list sizes", uint64(v.Nlist))
		if err != nil {
			return nil, err
		}
		for i, x := range s {
			sizes[i] = uint64(x)
			if x != 0 {
				nonEmpty++
			}
		}
	case "sprs":
		off := d.off
		m, err := d.u64("sparse list sizes size")
		if err != nil {
			return nil, err
		}
		if m%2 != 0 || m/2 > uint64(v.Nlist) {
			return nil, d.errorf(off, "sparse list sizes have %d elements, want an even number up to 2*nlist", m)
		}
		off = d.off
		s, err := d.int64s("sparse list sizes", m)
		if err != nil {
			return nil, err
		}
		prev := int64(-1)
		for j := 0; j < len(s); j += 2 {
			l, size := s[j], s[j+1]
			if l <= prev || l >= int64(v.Nlist) {
				return nil, d.errorf(off+int64(j)*8, "sparse list number %d out of order or range [0, %d)", l, v.Nlist)
			}
			if size == 0 {
				return nil, d.errorf(off+int64(j+1)*8, "sparse list %d stored with size 0", l)
			}
			prev = l
			sizes[l] = uint64(size)
		}
		nonEmpty = len(s) / 2
	default:
		return nil, d.errorf(typeOff, "unknown inverted lists type %q (want \"full\" or \"sprs\")", lt)
	}
	if want := listEncoding(nonEmpty, v.Nlist); lt != want {
		return nil, d.errorf(typeOff, "inverted lists stored %q with %d of %d lists non-empty: FAISS writes %q", lt, nonEmpty, v.Nlist, want)
	}
	var sum uint64
	for _, s := range sizes {
		var carry uint64
		sum, carry = bits.Add64(sum, s, 0)
		if carry != 0 || sum > math.MaxInt64 {
			return nil, d.errorf(typeOff, "list sizes overflow")
		}
	}
	if sum != uint64(v.Ntotal) {
		return nil, d.errorf(typeOff, "list sizes sum to %d, want ntotal %d", sum, v.Ntotal)
	}
	return sizes, nil
}

// listEncoding is the list type FAISS's writer picks: "full" when more
// than half the lists are non-empty.
func listEncoding(nonEmpty, nlist int) string {
	if nonEmpty > nlist/2 {
		return "full"
	}
	return "sprs"
}

// checkDirectMap checks that every entry of dm points into lists, and that
// the hash table has no id twice (FAISS writes it from a map).
func checkDirectMap(dm *DirectMap, lists []InvertedList) error {
	valid := func(loc int64) bool {
		l, o := uint64(loc)>>32, uint64(loc)&0xffffffff
		return loc >= 0 && l < uint64(len(lists)) && o < uint64(len(lists[l].IDs))
	}
	for i, loc := range dm.Array {
		if loc != -1 && !valid(loc) {
			return fmt.Errorf("direct map entry %d (%#x) points outside the lists", i, loc)
		}
	}
	if len(dm.Hashtable) == 0 {
		return nil
	}
	seen := make(map[int64]struct{}, len(dm.Hashtable))
	for _, e := range dm.Hashtable {
		if !valid(e.Loc) {
			return fmt.Errorf("direct map entry for id %d (%#x) points outside the lists", e.ID, e.Loc)
		}
		if _, ok := seen[e.ID]; ok {
			return fmt.Errorf("direct map has id %d twice", e.ID)
		}
		seen[e.ID] = struct{}{}
	}
	return nil
}

func (d *decoder) ivfpq() (*IVFPQ, error) {
	ix := &IVFPQ{}
	dmOff, err := d.ivf(&ix.IVF)
	if err != nil {
		return nil, err
	}
	if ix.ByResidual, err = d.boolean("by_residual"); err != nil {
		return nil, err
	}
	csOff := d.off
	cs, err := d.u64("code_size")
	if err != nil {
		return nil, err
	}
	if ix.PQ, err = d.productQuantizer(ix.D); err != nil {
		return nil, err
	}
	if cs != uint64(ix.PQ.CodeSize()) {
		return nil, d.errorf(csOff, "code size %d, want %d for M %d of %d bits", cs, ix.PQ.CodeSize(), ix.PQ.M, ix.PQ.Nbits)
	}
	return ix, d.lists(&ix.IVF, ix.CodeSize(), dmOff)
}

func (d *decoder) preTransform() (*PreTransform, error) {
	ix := &PreTransform{}
	if err := d.header(&ix.Header); err != nil {
		return nil, err
	}
	off := d.off
	nt, err := d.i32("transform count")
	if err != nil {
		return nil, err
	}
	if nt < 0 {
		return nil, d.errorf(off, "transform count %d is negative", nt)
	}
	dim := ix.D
	for i := range int(nt) {
		off := d.off
		lt, err := d.linearTransform()
		if err != nil {
			return nil, err
		}
		if lt.DIn != dim {
			return nil, d.errorf(off, "transform %d takes %d dimensions, the previous step gives %d", i, lt.DIn, dim)
		}
		dim = lt.DOut
		ix.Chain = append(ix.Chain, lt)
	}
	off = d.off
	if ix.Index, err = d.index(); err != nil {
		return nil, err
	}
	if sub := ix.Index.IndexHeader().D; sub != dim {
		return nil, d.errorf(off, "wrapped index has dimension %d, the transforms give %d", sub, dim)
	}
	return ix, nil
}

func (d *decoder) linearTransform() (*LinearTransform, error) {
	start := d.off
	fc, err := d.fourcc("transform fourcc")
	if err != nil {
		return nil, err
	}
	if fc != "LTra" {
		return nil, d.errorf(start, "unknown transform fourcc %q (supported: LTra)", fc)
	}
	lt := &LinearTransform{}
	if lt.HaveBias, err = d.boolean("have_bias"); err != nil {
		return nil, err
	}
	aOff := d.off
	if lt.A, err = d.floatVector("transform matrix"); err != nil {
		return nil, err
	}
	bOff := d.off
	if lt.B, err = d.floatVector("transform bias"); err != nil {
		return nil, err
	}
	for _, p := range []*int{&lt.DIn, &lt.DOut} {
		off := d.off
		v, err := d.i32("transform dimension")
		if err != nil {
			return nil, err
		}
		if v < 1 || v > maxIndexDim {
			return nil, d.errorf(off, "transform dimension %d out of range [1, %d]", v, maxIndexDim)
		}
		*p = int(v)
	}
	if lt.IsTrained, err = d.boolean("transform is_trained"); err != nil {
		return nil, err
	}
	if len(lt.A) != lt.DIn*lt.DOut {
		return nil, d.errorf(aOff, "transform matrix has %d values, want %d×%d", len(lt.A), lt.DOut, lt.DIn)
	}
	if want := biasLen(lt); len(lt.B) != want {
		return nil, d.errorf(bOff, "transform bias has %d values, want %d", len(lt.B), want)
	}
	return lt, nil
}

// biasLen is how many bias values a transform stores: DOut with a bias,
// none without.
func biasLen(lt *LinearTransform) int {
	if lt.HaveBias {
		return lt.DOut
	}
	return 0
}

// fastScanShape checks the FastScan fields that must agree with the PQ,
// read at pqOff: 4-bit codes, a block size bbs (read at bbsOff) that is a
// positive multiple of 32, and M2 (read at m2Off) the PQ's M rounded up to
// even.
func (d *decoder) fastScanShape(pq *ProductQuantizer, pqOff int64, bbs int32, bbsOff int64, m2 int64, m2Off int64) error {
	switch {
	case pq.Nbits != 4:
		return d.errorf(pqOff+16, "PQ nbits %d: FastScan codes have 4 bits", pq.Nbits)
	case bbs <= 0 || bbs%32 != 0:
		return d.errorf(bbsOff, "FastScan block size %d is not a positive multiple of 32", bbs)
	case m2 != int64(roundUpEven(pq.M)):
		return d.errorf(m2Off, "FastScan M2 %d, want PQ M %d rounded up to even", m2, pq.M)
	}
	return nil
}

func (d *decoder) pqFastScan() (*PQFastScan, error) {
	ix := &PQFastScan{}
	if err := d.header(&ix.Header); err != nil {
		return nil, err
	}
	pqOff := d.off
	var err error
	if ix.PQ, err = d.productQuantizer(ix.D); err != nil {
		return nil, err
	}
	if ix.Implem, err = d.i32("implem"); err != nil {
		return nil, err
	}
	bbsOff := d.off
	if ix.Bbs, err = d.i32("bbs"); err != nil {
		return nil, err
	}
	if ix.Qbs, err = d.i32("qbs"); err != nil {
		return nil, err
	}
	n2Off := d.off
	if ix.Ntotal2, err = d.i64("ntotal2"); err != nil {
		return nil, err
	}
	m2Off := d.off
	if ix.M2, err = d.i64("M2"); err != nil {
		return nil, err
	}
	if err := d.fastScanShape(&ix.PQ, pqOff, ix.Bbs, bbsOff, ix.M2, m2Off); err != nil {
		return nil, err
	}
	bbs := int64(ix.Bbs)
	if want := (ix.Ntotal + bbs - 1) / bbs * bbs; ix.Ntotal2 != want || want < 0 {
		return nil, d.errorf(n2Off, "ntotal2 %d, want ntotal %d rounded up to a multiple of bbs %d", ix.Ntotal2, ix.Ntotal, bbs)
	}
	n, err := d.product(d.off, "FastScan codes", uint64(ix.Ntotal2), uint64(ix.M2/2))
	if err != nil {
		return nil, err
	}
	if err := d.count("FastScan codes", n); err != nil {
		return nil, err
	}
	ix.Codes, err = d.bytes("FastScan codes", n)
	return ix, err
}

func (d *decoder) ivfpqFastScan() (*IVFPQFastScan, error) {
	ix := &IVFPQFastScan{}
	dmOff, err := d.ivf(&ix.IVF)
	if err != nil {
		return nil, err
	}
	if ix.ByResidual, err = d.boolean("by_residual"); err != nil {
		return nil, err
	}
	csOff := d.off
	if ix.CodeSize, err = d.i64("code_size"); err != nil {
		return nil, err
	}
	bbsOff := d.off
	if ix.Bbs, err = d.i32("bbs"); err != nil {
		return nil, err
	}
	m2Off := d.off
	if ix.M2, err = d.i64("M2"); err != nil {
		return nil, err
	}
	if ix.Implem, err = d.i32("implem"); err != nil {
		return nil, err
	}
	if ix.Qbs2, err = d.i64("qbs2"); err != nil {
		return nil, err
	}
	pqOff := d.off
	if ix.PQ, err = d.productQuantizer(ix.D); err != nil {
		return nil, err
	}
	if err := d.fastScanShape(&ix.PQ, pqOff, ix.Bbs, bbsOff, ix.M2, m2Off); err != nil {
		return nil, err
	}
	if ix.CodeSize != int64(ix.PQ.CodeSize()) {
		return nil, d.errorf(csOff, "code size %d, want %d for M %d of 4 bits", ix.CodeSize, ix.PQ.CodeSize(), ix.PQ.M)
	}
	return ix, d.blockLists(ix, dmOff)
}

// invalidCodeSize is InvertedLists::INVALID_CODE_SIZE, the code size
// FAISS's block inverted lists record: their codes are not a whole number
// of bytes per vector.
const invalidCodeSize = math.MaxUint64

// blockLists reads the "ilbl" record of ix (BlockInvertedLists): nlist,
// code size, vectors and bytes per block, then for each list its ids and
// its packed codes, whole blocks of them. It then checks ix's direct map,
// read at dmOff, against the lists.
func (d *decoder) blockLists(ix *IVFPQFastScan, dmOff int64) error {
	start := d.off
	fc, err := d.fourcc("inverted lists fourcc")
	if err != nil {
		return err
	}
	if fc != "ilbl" {
		return d.errorf(start, "inverted lists fourcc %q: an IndexIVFPQFastScan has block lists (ilbl)", fc)
	}
	off := d.off
	n, err := d.u64("inverted lists nlist")
	if err != nil {
		return err
	}
	if n != uint64(ix.Nlist) {
		return d.errorf(off, "inverted lists have nlist %d, the index %d", n, ix.Nlist)
	}
	off = d.off
	if ix.ListsCodeSize, err = d.u64("inverted lists code_size"); err != nil {
		return err
	}
	// FAISS's reader accepts either; its writer always records the first.
	if ix.ListsCodeSize != invalidCodeSize && ix.ListsCodeSize != uint64(ix.CodeSize) {
		return d.errorf(off, "inverted lists have code size %d, want %d or 2^64-1", ix.ListsCodeSize, ix.CodeSize)
	}
	off = d.off
	if ix.NPerBlock, err = d.u64("inverted lists n_per_block"); err != nil {
		return err
	}
	if ix.NPerBlock != uint64(ix.Bbs) {
		return d.errorf(off, "inverted lists have %d vectors per block, the index's bbs is %d", ix.NPerBlock, ix.Bbs)
	}
	off = d.off
	if ix.BlockSize, err = d.u64("inverted lists block_size"); err != nil {
		return err
	}
	blockSize := uint64(ix.Bbs) * uint64(ix.M2) / 2
	if ix.BlockSize != blockSize {
		return d.errorf(off, "inverted lists have %d bytes per block, want bbs*M2/2 = %d", ix.BlockSize, blockSize)
	}
	ix.Lists = make([]InvertedList, ix.Nlist)
	if d.headOnly {
		// The ids and codes of block lists alternate, list by list, and
		// each list gives its size with its contents: the head holds no
		// sizes, and the lists start here.
		if d.head != nil {
			return d.errorf(d.off, "a second set of inverted lists (an IVF index inside an IVF index)")
		}
		d.head = &listsHead{ivf: &ix.IVF, codeSize: int(ix.CodeSize), dataOff: d.off, dmOff: dmOff}
		return nil
	}
	left := uint64(ix.Ntotal)
	for l := range ix.Lists {
		what := fmt.Sprintf("ids of list %d", l)
		off := d.off
		s, err := d.u64(what + " size")
		if err != nil {
			return err
		}
		if s > left {
			return d.errorf(off, "list %d has %d vectors, more than the %d of ntotal %d left", l, s, left, ix.Ntotal)
		}
		left -= s
		if ix.Lists[l].IDs, err = d.int64s(what, s); err != nil {
			return err
		}
		what = fmt.Sprintf("codes of list %d", l)
		nb, err := d.product(d.off, what, (s+uint64(ix.Bbs)-1)/uint64(ix.Bbs), blockSize)
		if err != nil {
			return err
		}
		if err := d.count(what, nb); err != nil {
			return err
		}
		if ix.Lists[l].Codes, err = d.bytes(what, nb); err != nil {
			return err
		}
	}
	if left != 0 {
		return d.errorf(start, "lists hold %d vectors, want ntotal %d", uint64(ix.Ntotal)-left, ix.Ntotal)
	}
	if err := checkDirectMap(&ix.DirectMap, ix.Lists); err != nil {
		return d.errorf(dmOff, "%v", err)
	}
	return nil
}

func (d *decoder) hnswFlat() (*HNSWFlat, error) {
	ix := &HNSWFlat{}
	if err := d.header(&ix.Header); err != nil {
		return nil, err
	}
	h := &ix.HNSW
	var offs [hnswFields]int64 // where each field's data starts
	n, err := d.u64("assign_probas size")
	if err != nil {
		return nil, err
	}
	if h.AssignProbas, err = d.float64s("assign_probas", n); err != nil {
		return nil, err
	}
	if n, err = d.u64("cum_nneighbor_per_level size"); err != nil {
		return nil, err
	}
	offs[hnswCum] = d.off
	if h.CumNNeighborPerLevel, err = d.int32s("cum_nneighbor_per_level", n); err != nil {
		return nil, err
	}
	ntotal := uint64(ix.Ntotal)
	if err := d.count("levels", ntotal); err != nil {
		return nil, err
	}
	offs[hnswLevels] = d.off
	if h.Levels, err = d.int32s("levels", ntotal); err != nil {
		return nil, err
	}
	if err := d.count("offsets", ntotal+1); err != nil {
		return nil, err
	}
	offs[hnswOffsets] = d.off
	if h.Offsets, err = d.uint64s("offsets", ntotal+1); err != nil {
		return nil, err
	}
	if f, i, err := h.checkShape(ix.Ntotal); err != nil {
		return nil, d.errorf(offs[f]+int64(i)*hnswFieldSize[f], "HNSW %v", err)
	}
	if err := d.count("neighbors", h.Offsets[ntotal]); err != nil {
		return nil, err
	}
	offs[hnswNeighbors] = d.off
	if h.Neighbors, err = d.int32s("neighbors", h.Offsets[ntotal]); err != nil {
		return nil, err
	}
	offs[hnswEntryPoint] = d.off
	offs[hnswMaxLevel] = d.off + 4
	for _, f := range []struct {
		p    *int32
		what string
	}{{&h.EntryPoint, "entry_point"}, {&h.MaxLevel, "max_level"}, {&h.EfConstruction, "efConstruction"},
		{&h.EfSearch, "efSearch"}, {&h.UpperBeam, "upper_beam"}} {
		if *f.p, err = d.i32(f.what); err != nil {
			return nil, err
		}
	}
	if f, i, err := h.checkLinks(ix.Ntotal); err != nil {
		return nil, d.errorf(offs[f]+int64(i)*hnswFieldSize[f], "HNSW %v", err)
	}
	off := d.off
	if ix.Storage, err = d.index(); err != nil {
		return nil, err
	}
	if err := checkHNSWStorage(&ix.Header, ix.Storage); err != nil {
		return nil, d.errorf(off, "%v", err)
	}
	return ix, nil
}
