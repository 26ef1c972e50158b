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
	"slices"
)

// IVFFile is one IVF index file opened for merging (see Merge): its
// trained contents checked and its list sizes read, its lists' codes and
// ids left in the file and read on demand through an io.ReaderAt. It holds
// a few int64 per list and nothing per vector, not even the centroids
// (Trained reads them again), so that a merge of many large parts fits in
// the memory of one part's coarse quantizer.
//
// The file must be in the form NewIVFIndex gives and WriteIndex writes: an
// IndexIVFFlat, an IndexIVFPQ encoding residuals or an IndexIVFPQFastScan
// (block lists "ilbl", blocks of 32 vectors, zero padded), with a flat
// coarse quantizer of its metric or an IndexHNSWFlat over one, nprobe 1,
// no direct map, trained, bare or wrapped in an IndexPreTransform whose
// one transform is a D×D rotation. Those are the files a distributed
// build's workers write; a file FAISS wrote of such an index is the same
// bytes.
type IVFFile struct {
	name   string
	r      io.ReaderAt
	closer io.Closer // nil when the caller owns r
	size   int64     // the file's size in bytes

	// The trained shape, for comparing parts without reading them again.
	d, nlist, m, nbits   int
	metric               Metric
	rotation             bool
	fastScan, noResidual bool
	hnsw                 bool

	codeSize int // plain code bytes a vector, FastScan codes unpacked
	ntotal   int64
	headEnd  int64   // where the lists' contents start
	sizes    []int64 // vectors in each list
	// offs[l] is where list l starts: for "ilar" lists its codes, for
	// FastScan's "ilbl" lists its id count; offs[nlist] == size.
	offs []int64
}

// OpenIVFFile opens the IVF index file at path for merging: it reads and
// checks everything before the inverted lists' contents, as ReadIndexFile
// does, and checks that the file's size is exactly what the list sizes
// imply, so that a truncated or padded part fails here, before any merge
// writes a byte. Errors are one line starting with path. Close the file
// when done.
func OpenIVFFile(path string) (*IVFFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	x, err := NewIVFFile(f, fi.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	x.closer = f
	return x, nil
}

// NewIVFFile is OpenIVFFile for a file of size bytes read through r, such
// as an object in remote storage; name stands for it in errors. Close does
// not close r.
func NewIVFFile(r io.ReaderAt, size int64, name string) (*IVFFile, error) {
	x := &IVFFile{name: name, r: r, size: size}
	p, head, dataOff, err := x.readHead()
	if err != nil {
		return nil, err
	}
	x.d, x.nlist, x.m, x.nbits, x.metric, x.rotation = p.D, p.Nlist, p.M, p.Nbits, p.Metric, p.Rotation != nil
	x.fastScan, x.noResidual, x.hnsw = p.FastScan, p.NoResidual, p.HNSW != nil
	x.codeSize = p.CodeSize()
	x.ntotal = head.ivf.Ntotal
	x.headEnd = dataOff
	x.sizes = make([]int64, p.Nlist)
	x.offs = make([]int64, p.Nlist+1)
	if x.fastScan {
		if err := x.walkBlockLists(); err != nil {
			return nil, err
		}
		return x, nil
	}
	// Each list holds codeSize+8 bytes a vector; the sizes sum to ntotal,
	// so the total overflows only if some size does.
	per := uint64(x.codeSize) + 8
	at := uint64(x.headEnd)
	for l, s := range head.sizes {
		x.sizes[l] = int64(s)
		x.offs[l] = int64(at)
		hi, n := bits.Mul64(s, per)
		var carry uint64
		at, carry = bits.Add64(at, n, 0)
		if hi != 0 || carry != 0 || at > math.MaxInt64 {
			return nil, fmt.Errorf("%s: truncated: its %d vectors need more bytes than a file can hold", name, x.ntotal)
		}
	}
	end := int64(at)
	x.offs[len(head.sizes)] = end
	switch {
	case size < end:
		return nil, fmt.Errorf("%s: truncated: the file has %d bytes, its %d vectors need %d (it ends inside %s)", name, size, x.ntotal, end, x.missing(size))
	case size > end:
		return nil, fmt.Errorf("%s: %d bytes after the end of the index at byte %d", name, size-end, end)
	}
	return x, nil
}

// walkBlockLists locates the lists of a FastScan file, whose "ilbl"
// record gives each list's size just before its contents: list by list it
// reads the id count, skips the ids, checks the packed codes' byte count
// and the zero padding of the last block, and skips the codes. It reads
// through a window of 64 KiB, so that short lists cost no read of their
// own, and checks that the sizes sum to ntotal and that the file ends
// with the last list.
func (x *IVFFile) walkBlockLists() error {
	w := &windowReader{r: x.r, size: x.size, buf: make([]byte, 64<<10), off: -1}
	blocks := newFastScanBlocks(x.m, nil)
	at, left := x.headEnd, x.ntotal
	truncated := func(what string, l int) error {
		return fmt.Errorf("%s: truncated: the file has %d bytes, and ends inside the %s of list %d", x.name, x.size, what, l)
	}
	for l := range x.nlist {
		x.offs[l] = at
		n, err := w.u64(at)
		if err != nil {
			return x.walkError(err, truncated("id count", l))
		}
		if n > uint64(left) {
			return fmt.Errorf("%s: byte %d: list %d holds %d vectors, but only %d of the index's %d are left for it", x.name, at, l, n, left, x.ntotal)
		}
		x.sizes[l] = int64(n)
		left -= int64(n)
		at += 8
		if n > uint64(x.size-at)/8 {
			return truncated("ids", l)
		}
		at += int64(n) * 8
		want, ok := packedBytes(n, x.m)
		nb, err := w.u64(at)
		if err != nil {
			return x.walkError(err, truncated("code byte count", l))
		}
		if !ok || nb != want {
			return fmt.Errorf("%s: byte %d: list %d has %d bytes of codes, want %d for %d vectors in blocks of %d", x.name, at, l, nb, want, n, FastScanBlock)
		}
		at += 8
		if nb > uint64(x.size-at) {
			return truncated("codes", l)
		}
		at += int64(nb)
		if k := int(n % FastScanBlock); k != 0 {
			block, err := w.at(at-int64(blocks.size), blocks.size)
			if err != nil {
				return x.walkError(err, nil)
			}
			if !blocks.paddingZero(block, k) {
				return fmt.Errorf("%s: byte %d: the padding of the last block of list %d is not zero, as FAISS and WriteIVF leave it", x.name, at-int64(blocks.size), l)
			}
		}
	}
	x.offs[x.nlist] = at
	switch {
	case left != 0:
		return fmt.Errorf("%s: the lists hold %d vectors, ntotal is %d", x.name, x.ntotal-left, x.ntotal)
	case x.size > at:
		return fmt.Errorf("%s: %d bytes after the end of the index at byte %d", x.name, x.size-at, at)
	}
	return nil
}

// walkError is err, a windowReader's, as an error of x: short, the
// truncation given (or a generic one when nil), else a read error.
func (x *IVFFile) walkError(err, short error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		if short == nil {
			short = fmt.Errorf("%s: truncated: the file has %d bytes", x.name, x.size)
		}
		return short
	}
	return fmt.Errorf("%s: %w", x.name, unwrapPathError(err))
}

// packedBytes is FastScanPackedSize(n, m, FastScanBlock) for any n, and
// whether it fits in an int64.
func packedBytes(n uint64, m int) (uint64, bool) {
	blocks := n/FastScanBlock + min(n%FastScanBlock, 1)
	hi, b := bits.Mul64(blocks, uint64(FastScanPackedSize(1, m, FastScanBlock)))
	return b, hi == 0 && b <= math.MaxInt64
}

// windowReader reads small fields of a file through a window of it, so
// that fields close together cost one read.
type windowReader struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // where the window starts, -1 for none
	n    int   // bytes in the window
}

// at returns the n bytes at off, valid until the next call; an error
// wrapping io.ErrUnexpectedEOF if the file ends before them.
func (w *windowReader) at(off int64, n int) ([]byte, error) {
	if off < 0 || off > w.size || int64(n) > w.size-off {
		return nil, io.ErrUnexpectedEOF
	}
	if w.off < 0 || off < w.off || off+int64(n) > w.off+int64(w.n) {
		if n > len(w.buf) {
			w.buf = make([]byte, n)
		}
		k := int(min(int64(len(w.buf)), w.size-off))
		got, err := w.r.ReadAt(w.buf[:k], off)
		if got < n {
			w.off = -1
			if err == nil || errors.Is(err, io.EOF) {
				err = errors.New("the file is shorter than its size")
			}
			return nil, err
		}
		w.off, w.n = off, got
	}
	i := int(off - w.off)
	return w.buf[i : i+n], nil
}

// u64 reads the little-endian uint64 at off.
func (w *windowReader) u64(off int64) (uint64, error) {
	b, err := w.at(off, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// missing names what the file's end at size cuts: the codes or ids of
// which list.
func (x *IVFFile) missing(size int64) string {
	l, _ := slices.BinarySearch(x.offs, size+1)
	l-- // the last list starting at or before size, which is not empty
	if size < x.offs[l]+x.sizes[l]*int64(x.codeSize) {
		return fmt.Sprintf("the codes of list %d", l)
	}
	return fmt.Sprintf("the ids of list %d", l)
}

// readHead reads the file up to its lists' contents, with the full
// reader's checks, and returns its trained contents (no vectors), what the
// reader found, and where the lists' contents start. It checks that the
// bytes read are those WriteIndex writes for NewIVFIndex of those contents,
// so that the merged file, which is written from them, keeps every byte of
// the parts' headers but the sizes.
func (x *IVFFile) readHead() (IVFParams, *listsHead, int64, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(x.r, 0, x.size), 1<<16), headOnly: true}
	ix, err := d.index()
	if err == nil && d.head == nil {
		err = &formatError{off: 0, msg: typeName(ix) + " has no inverted lists"}
	}
	if err != nil {
		return IVFParams{}, nil, 0, fmt.Errorf("%s: %w", x.name, err)
	}
	head := d.head
	v := head.ivf
	switch {
	case v.DirectMap.Type != NoDirectMap:
		return IVFParams{}, nil, 0, fmt.Errorf("%s: byte %d: the index has a direct map (type %d), which FAISS cannot merge", x.name, head.dmOff, v.DirectMap.Type)
	case v.Nprobe != 1:
		return IVFParams{}, nil, 0, fmt.Errorf("%s: the index has nprobe %d, and a merge writes the nprobe 1 of NewIVFIndex", x.name, v.Nprobe)
	}
	// The contents without the vectors, as IVFParamsOf sees an empty index.
	ntotal := v.Ntotal
	v.Ntotal = 0
	if pt, ok := ix.(*PreTransform); ok {
		pt.Ntotal = 0
	}
	p, err := ivfParamsOf(ix)
	if err != nil {
		return IVFParams{}, nil, 0, fmt.Errorf("%s: not a mergeable IVF index: %v", x.name, err)
	}
	p.Lists, p.IDs, p.Codes = nil, nil, nil
	v.Ntotal = ntotal

	// FastScan's block lists give their sizes with their contents, so
	// that their header holds none.
	var sizes []int64
	if !p.FastScan {
		sizes = make([]int64, len(head.sizes))
		for l, s := range head.sizes {
			sizes[l] = int64(s)
		}
	}
	cmp := &sameWriter{r: x.r, diff: -1}
	if err := writeHead(cmp, &p, ntotal, sizes); err != nil {
		return IVFParams{}, nil, 0, fmt.Errorf("%s: %v", x.name, err)
	}
	if cmp.err != nil {
		return IVFParams{}, nil, 0, fmt.Errorf("%s: %v", x.name, cmp.err)
	}
	if cmp.diff < 0 && cmp.off != head.dataOff {
		cmp.diff = min(cmp.off, head.dataOff)
	}
	if cmp.diff >= 0 {
		return IVFParams{}, nil, 0, fmt.Errorf("%s: byte %d differs from what WriteIndex writes for NewIVFIndex of the same contents (an untrained index, or other settings)", x.name, cmp.diff)
	}
	return p, head, cmp.off, nil
}

// sameWriter compares what is written to it with r's bytes from offset 0,
// recording where they first differ.
type sameWriter struct {
	r    io.ReaderAt
	off  int64 // bytes compared so far
	diff int64 // the first differing byte, or -1
	err  error // a read error other than the end of the file
	buf  []byte
}

func (c *sameWriter) Write(b []byte) (int, error) {
	if c.diff >= 0 || c.err != nil {
		return len(b), nil
	}
	if cap(c.buf) < len(b) {
		c.buf = make([]byte, len(b))
	}
	got := c.buf[:len(b)]
	n, err := c.r.ReadAt(got, c.off)
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	for i := range n {
		if got[i] != b[i] {
			c.diff = c.off + int64(i)
			return len(b), nil
		}
	}
	if n < len(b) {
		c.diff = c.off + int64(n)
	}
	c.off += int64(len(b))
	return len(b), nil
}

// Name is the path OpenIVFFile opened, or NewIVFFile's name.
func (x *IVFFile) Name() string { return x.name }

// Close closes the file OpenIVFFile opened; for NewIVFFile it does nothing.
func (x *IVFFile) Close() error {
	if x.closer == nil {
		return nil
	}
	err := x.closer.Close()
	x.closer = nil
	return err
}

// Trained returns the file's trained contents, as IVFParams with no
// vectors: what every part of a merge must share. It reads them from the
// file again, each time (IVFFile keeps no centroids), and fails if the
// file changed since it was opened.
func (x *IVFFile) Trained() (IVFParams, error) {
	p, head, dataOff, err := x.readHead()
	if err != nil {
		return IVFParams{}, err
	}
	// FastScan lists are sized with their contents, which are not read
	// again: their header and ntotal are what is compared.
	same := dataOff == x.headEnd && head.ivf.Ntotal == x.ntotal && p.FastScan == x.fastScan
	if !x.fastScan {
		same = same && len(head.sizes) == len(x.sizes)
		for l := 0; same && l < len(x.sizes); l++ {
			same = head.sizes[l] == uint64(x.sizes[l])
		}
	}
	if !same {
		return IVFParams{}, fmt.Errorf("%s: the file changed since it was opened", x.name)
	}
	return p, nil
}

// Nlist is the number of inverted lists.
func (x *IVFFile) Nlist() int { return x.nlist }

// Ntotal is the number of vectors the file holds.
func (x *IVFFile) Ntotal() int64 { return x.ntotal }

// CodeSize is the bytes of each vector's code: 4*D for IVFFlat, the PQ
// code size for IVFPQ and, FastScan codes unpacked, IVFPQFastScan.
func (x *IVFFile) CodeSize() int { return x.codeSize }

// ListSizes returns the number of vectors in each list (a copy).
func (x *IVFFile) ListSizes() []int64 { return slices.Clone(x.sizes) }

// ReadList reads list l's ids and codes (CodeSize bytes a vector, in the
// ids' order, FastScan codes unpacked); both are nil for an empty list.
func (x *IVFFile) ReadList(l int) (ids []int64, codes []byte, err error) {
	if l < 0 || l >= x.nlist {
		return nil, nil, fmt.Errorf("%s: list %d out of range [0, %d)", x.name, l, x.nlist)
	}
	n := x.sizes[l]
	if n == 0 {
		return nil, nil, nil
	}
	if x.fastScan {
		packed := make([]byte, FastScanPackedSize(int(n), x.m, FastScanBlock))
		if err := x.readAt(packed, x.codesOff(l), l, "codes"); err != nil {
			return nil, nil, err
		}
		codes = make([]byte, n*int64(x.codeSize))
		UnpackFastScan(codes, packed, int(n), x.m, FastScanBlock)
	} else {
		codes = make([]byte, n*int64(x.codeSize))
		if err := x.readAt(codes, x.codesOff(l), l, "codes"); err != nil {
			return nil, nil, err
		}
	}
	ids = make([]int64, 0, n)
	err = x.eachIDChunk(l, l+1, make([]byte, min(n*8, 64<<10)), func(b []byte) error {
		for i := 0; i < len(b); i += 8 {
			ids = append(ids, int64(binary.LittleEndian.Uint64(b[i:])))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return ids, codes, nil
}

// idsOff is where list l's ids start: after its codes in "ilar" lists,
// after its id count in "ilbl" ones.
func (x *IVFFile) idsOff(l int) int64 {
	if x.fastScan {
		return x.offs[l] + 8
	}
	return x.offs[l] + x.sizes[l]*int64(x.codeSize)
}

// codesOff is where list l's codes (packed, for FastScan) start.
func (x *IVFFile) codesOff(l int) int64 {
	if x.fastScan {
		return x.offs[l] + 16 + 8*x.sizes[l]
	}
	return x.offs[l]
}

// readAt fills b from offset off, the what ("codes" or "ids") of list l.
// Its errors are readErrors: they name the file, which is not the one a
// merge writes.
func (x *IVFFile) readAt(b []byte, off int64, l int, what string) error {
	n, err := x.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the file is shorter than when it was opened")
	}
	return readError{fmt.Errorf("%s: reading the %s of list %d: %w", x.name, what, l, unwrapPathError(err))}
}

// eachIDChunk passes the ids of lists [lo, hi) to fn, in file order, as
// little-endian bytes, through buf (whose length, at least 8, bounds each
// read).
func (x *IVFFile) eachIDChunk(lo, hi int, buf []byte, fn func(b []byte) error) error {
	per := len(buf) / 8 * 8
	for l := lo; l < hi; l++ {
		off, left := x.idsOff(l), x.sizes[l]*8
		for left > 0 {
			k := min(left, int64(per))
			if err := x.readAt(buf[:k], off, l, "ids"); err != nil {
				return err
			}
			if err := fn(buf[:k]); err != nil {
				return err
			}
			off += k
			left -= k
		}
	}
	return nil
}

// readError is a failure to read a part; its message names the part.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }
