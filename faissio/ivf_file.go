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
// IndexIVFFlat or an IndexIVFPQ encoding residuals, with a flat coarse
// quantizer of its metric, nprobe 1, no direct map, trained, bare or
// wrapped in an IndexPreTransform whose one transform is a D×D rotation.
// Those are the files a distributed build's workers write; a file FAISS
// wrote of such an index is the same bytes.
type IVFFile struct {
	name   string
	r      io.ReaderAt
	closer io.Closer // nil when the caller owns r
	size   int64     // the file's size in bytes

	// The trained shape, for comparing parts without reading them again.
	d, nlist, m, nbits int
	metric             Metric
	rotation           bool

	codeSize int
	ntotal   int64
	headEnd  int64   // where the lists' contents start
	sizes    []int64 // vectors in each list
	offs     []int64 // offs[l]: where list l's codes start; offs[nlist] == size
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
	p, head, err := x.readHead()
	if err != nil {
		return nil, err
	}
	x.d, x.nlist, x.m, x.nbits, x.metric, x.rotation = p.D, p.Nlist, p.M, p.Nbits, p.Metric, p.Rotation != nil
	x.codeSize = head.codeSize
	x.ntotal = head.ivf.Ntotal
	x.headEnd = head.dataOff
	x.sizes = make([]int64, len(head.sizes))
	x.offs = make([]int64, len(head.sizes)+1)
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
// reader's checks, and returns its trained contents (no vectors) and
// where the lists start. It checks that the bytes read are those WriteIndex
// writes for NewIVFIndex of those contents, so that the merged file, which
// is written from them, keeps every byte of the parts' headers but the
// sizes.
func (x *IVFFile) readHead() (IVFParams, *listsHead, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(x.r, 0, x.size), 1<<16), headOnly: true}
	ix, err := d.index()
	if err == nil && d.head == nil {
		err = &formatError{off: 0, msg: typeName(ix) + " has no inverted lists"}
	}
	if err != nil {
		return IVFParams{}, nil, fmt.Errorf("%s: %w", x.name, err)
	}
	head := d.head
	v := head.ivf
	switch {
	case v.DirectMap.Type != NoDirectMap:
		return IVFParams{}, nil, fmt.Errorf("%s: byte %d: the index has a direct map (type %d), which FAISS cannot merge", x.name, head.dmOff, v.DirectMap.Type)
	case v.Nprobe != 1:
		return IVFParams{}, nil, fmt.Errorf("%s: the index has nprobe %d, and a merge writes the nprobe 1 of NewIVFIndex", x.name, v.Nprobe)
	}
	// The contents without the vectors, as IVFParamsOf sees an empty index.
	ntotal := v.Ntotal
	v.Ntotal = 0
	if pt, ok := ix.(*PreTransform); ok {
		pt.Ntotal = 0
	}
	p, err := ivfParamsOf(ix)
	if err != nil {
		return IVFParams{}, nil, fmt.Errorf("%s: not a mergeable IVF index: %v", x.name, err)
	}
	p.Lists, p.IDs, p.Codes = nil, nil, nil
	v.Ntotal = ntotal

	sizes := make([]int64, len(head.sizes))
	for l, s := range head.sizes {
		sizes[l] = int64(s)
	}
	cmp := &sameWriter{r: x.r, diff: -1}
	if err := writeHead(cmp, &p, sizes); err != nil {
		return IVFParams{}, nil, fmt.Errorf("%s: %v", x.name, err)
	}
	if cmp.err != nil {
		return IVFParams{}, nil, fmt.Errorf("%s: %v", x.name, cmp.err)
	}
	if cmp.diff < 0 && cmp.off != head.dataOff {
		cmp.diff = min(cmp.off, head.dataOff)
	}
	if cmp.diff >= 0 {
		return IVFParams{}, nil, fmt.Errorf("%s: byte %d differs from what WriteIndex writes for NewIVFIndex of the same contents (an untrained index, or other settings)", x.name, cmp.diff)
	}
	return p, head, nil
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
	p, head, err := x.readHead()
	if err != nil {
		return IVFParams{}, err
	}
	same := head.dataOff == x.headEnd && len(head.sizes) == len(x.sizes)
	for l := 0; same && l < len(x.sizes); l++ {
		same = head.sizes[l] == uint64(x.sizes[l])
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
// code size for IVFPQ.
func (x *IVFFile) CodeSize() int { return x.codeSize }

// ListSizes returns the number of vectors in each list (a copy).
func (x *IVFFile) ListSizes() []int64 { return slices.Clone(x.sizes) }

// ReadList reads list l's ids and codes (CodeSize bytes a vector, in the
// ids' order); both are nil for an empty list.
func (x *IVFFile) ReadList(l int) (ids []int64, codes []byte, err error) {
	if l < 0 || l >= x.nlist {
		return nil, nil, fmt.Errorf("%s: list %d out of range [0, %d)", x.name, l, x.nlist)
	}
	n := x.sizes[l]
	if n == 0 {
		return nil, nil, nil
	}
	codes = make([]byte, n*int64(x.codeSize))
	if err := x.readAt(codes, x.offs[l], l, "codes"); err != nil {
		return nil, nil, err
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

// idsOff is where list l's ids start.
func (x *IVFFile) idsOff(l int) int64 { return x.offs[l] + x.sizes[l]*int64(x.codeSize) }

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
