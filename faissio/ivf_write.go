package faissio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// ivfWriteBuffer is the size of the buffer WriteIVF gathers list contents
// in: large enough that writes are few, small beside the index.
const ivfWriteBuffer = 1 << 20

// narrowOrderLimit is the vector count from which WriteIVF orders vectors
// by int64 instead of uint32 indices; a variable so that tests can take
// the wide path without 2^32 vectors.
var narrowOrderLimit uint64 = 1 << 32

// WriteIVF writes the index NewIVFIndex(*p) describes, exactly the bytes
// WriteIndex writes of it, without building it: NewIVFIndex copies every
// code and id into per-list slices, a second copy of the largest thing a
// build holds, where WriteIVF needs only an ordering of the vectors by list
// (4 bytes a vector below 2^32 vectors, 8 above) and a buffer of about
// 1 MiB through which each list's codes, then its ids, are gathered (for
// FastScan, each list's ids, then its codes, packed a block of
// FastScanBlock vectors at a time). Within a list the vectors keep their
// order in p, as in NewIVFIndex.
//
// p is checked first, and nothing is written if the check fails. ctx is
// checked before writing, between lists and every 4 MiB written; once it
// is done, WriteIVF returns ctx.Err() itself, unwrapped, having written a
// prefix of the file. progress, if not nil, is called with the lists written so
// far and Nlist, after each list or each hundredth of them, whichever is
// less often, and last with Nlist, Nlist.
func WriteIVF(ctx context.Context, w io.Writer, p *IVFParams, progress func(done, total int)) error {
	ix, _, err := ivfShell(p)
	if err != nil {
		return fmt.Errorf("faiss index: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeIVF(ctx, w, p, ix, progress); err != nil {
		if err == ctx.Err() {
			return err
		}
		return fmt.Errorf("faiss index: write: %w", err)
	}
	return nil
}

// WriteIVFFile writes the index NewIVFIndex(*p) describes to path, as
// WriteIVF does, replacing any file there atomically: on any error,
// cancellation included, the old file, or none, stays in place. Errors
// start with path.
func WriteIVFFile(ctx context.Context, path string, p *IVFParams, progress func(done, total int)) error {
	ix, _, err := ivfShell(p)
	if err != nil {
		return fmt.Errorf("%s: faiss index: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFileAtomic(path, func(f *os.File) error {
		err := writeIVF(ctx, f, p, ix, progress)
		switch {
		case err == nil:
			return nil
		case err == ctx.Err():
			return fmt.Errorf("%s: %w", path, err)
		}
		return fmt.Errorf("%s: write: %w", path, unwrapPathError(err))
	})
}

// writeIVF writes ix, the shell of p's index from ivfShell, then p's lists.
func writeIVF(ctx context.Context, w io.Writer, p *IVFParams, ix Index, progress func(done, total int)) error {
	e := &encoder{w: bufio.NewWriterSize(w, 1<<16), ctx: ctx}
	sizes := listSizes(p)
	writeListsHead(e, ix, p, sizes)
	if uint64(len(p.Lists)) < narrowOrderLimit {
		streamLists(e, p, sizes, byList[uint32](p, sizes), progress)
	} else {
		streamLists(e, p, sizes, byList[int64](p, sizes), progress)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// writeListsHead writes ix, the shell of p's index from ivfShell, up to
// its lists' contents, the lists having the given sizes: for "ilar" lists
// their record up to the first list's codes, for FastScan's "ilbl" lists
// their header, since each of their lists records its own size.
func writeListsHead(e *encoder, ix Index, p *IVFParams, sizes []int) {
	_, codeSize := e.indexHead(ix)
	if !p.FastScan {
		e.listSizes(sizes, codeSize)
		return
	}
	e.blockListsHead(fastScanOf(ix))
}

// fastScanOf is the IVFPQFastScan that ix is or wraps.
func fastScanOf(ix Index) *IVFPQFastScan {
	if pt, ok := ix.(*PreTransform); ok {
		ix = pt.Index
	}
	fs, _ := ix.(*IVFPQFastScan)
	return fs
}

// byList returns the indices of p's vectors ordered by list, and in p's
// order within a list: a counting sort on the list sizes.
func byList[T uint32 | int64](p *IVFParams, sizes []int) []T {
	next := make([]int, len(sizes)) // where list l's next vector goes
	at := 0
	for l, s := range sizes {
		next[l] = at
		at += s
	}
	order := make([]T, len(p.Lists))
	for i, l := range p.Lists {
		order[next[l]] = T(i)
		next[l]++
	}
	return order
}

// streamLists writes the contents of p's lists, of the given sizes, the
// vectors of each in the order given, as the lists' record holds them:
// for "ilar", each non-empty list's codes, then its ids; for FastScan's
// "ilbl", every list's id count and ids, then its packed codes' byte count
// and codes, packed a block at a time. It stops at the encoder's first
// error, a cancellation of its context included.
func streamLists[T uint32 | int64](e *encoder, p *IVFParams, sizes []int, order []T, progress func(done, total int)) {
	cs := p.CodeSize()
	buf := make([]byte, 0, max(ivfWriteBuffer, cs, FastScanPackedSize(1, max(p.M, 1), FastScanBlock)))
	// put gathers b, and says whether writing may go on.
	put := func(b []byte) bool {
		if len(buf)+len(b) > cap(buf) {
			e.raw(buf)
			buf = buf[:0]
		}
		buf = append(buf, b...)
		return e.err == nil
	}
	var blocks *fastScanBlocks
	if p.FastScan {
		blocks = newFastScanBlocks(p.M, put)
	}
	step := max(1, len(sizes)/100)
	for l, s := range sizes {
		if e.err == nil {
			e.err = e.ctx.Err()
		}
		if e.err != nil {
			return
		}
		list := order[:s]
		order = order[s:]
		if blocks != nil {
			if !put(binary.LittleEndian.AppendUint64(e.buf[:0], uint64(s))) {
				return
			}
		} else {
			for _, i := range list {
				if !put(p.Codes[int(i)*cs : (int(i)+1)*cs]) {
					return
				}
			}
		}
		for _, i := range list {
			if !put(binary.LittleEndian.AppendUint64(e.buf[:0], uint64(p.IDs[i]))) {
				return
			}
		}
		if blocks != nil {
			if !put(binary.LittleEndian.AppendUint64(e.buf[:0], uint64(FastScanPackedSize(s, p.M, FastScanBlock)))) {
				return
			}
			for _, i := range list {
				if !blocks.add(p.Codes[int(i)*cs : (int(i)+1)*cs]) {
					return
				}
			}
			if !blocks.flush() {
				return
			}
		}
		if done := l + 1; progress != nil && (done%step == 0 || done == len(sizes)) {
			progress(done, len(sizes))
		}
	}
	e.raw(buf)
}

// fastScanBlocks packs a stream of plain 4-bit PQ codes into FastScan
// blocks of FastScanBlock vectors, one block at a time, so that packing a
// list needs a block's worth of memory rather than a copy of the list.
type fastScanBlocks struct {
	m, stride int // PQ M, and plain code bytes a vector
	size      int // bytes of a packed block
	plain     []byte
	n         int // vectors pending in plain
	unpacked  []byte
	packed    []byte
	emit      func([]byte) bool // takes a packed block; false stops
}

func newFastScanBlocks(m int, emit func([]byte) bool) *fastScanBlocks {
	stride := (m + 1) / 2
	return &fastScanBlocks{
		m: m, stride: stride, size: FastScanPackedSize(1, m, FastScanBlock),
		plain:    make([]byte, FastScanBlock*stride),
		unpacked: make([]byte, FastScanBlock*stride),
		packed:   make([]byte, FastScanPackedSize(1, m, FastScanBlock)),
		emit:     emit,
	}
}

// add appends the plain code of one vector, emitting the block it
// completes; it returns what emit returned, or true.
func (b *fastScanBlocks) add(code []byte) bool {
	copy(b.plain[b.n*b.stride:], code)
	b.n++
	if b.n < FastScanBlock {
		return true
	}
	return b.flush()
}

// addPacked appends the first k vectors of block, a packed block: as it
// is when no vector is pending and the block is full, unpacked and added
// a vector at a time otherwise.
func (b *fastScanBlocks) addPacked(block []byte, k int) bool {
	if b.n == 0 && k == FastScanBlock {
		return b.emit(block)
	}
	u := b.unpacked[:k*b.stride]
	UnpackFastScan(u, block, k, b.m, FastScanBlock)
	for i := range k {
		if !b.add(u[i*b.stride : (i+1)*b.stride]) {
			return false
		}
	}
	return true
}

// flush emits the pending vectors as a block, zero padded, if there are
// any.
func (b *fastScanBlocks) flush() bool {
	if b.n == 0 {
		return true
	}
	PackFastScan(b.packed, b.plain[:b.n*b.stride], b.n, b.m, FastScanBlock)
	b.n = 0
	return b.emit(b.packed)
}

// paddingZero reports whether block, a packed block of k vectors, has the
// zero padding PackFastScan leaves past them.
func (b *fastScanBlocks) paddingZero(block []byte, k int) bool {
	if k == FastScanBlock {
		return true
	}
	u := b.unpacked[:k*b.stride]
	UnpackFastScan(u, block, k, b.m, FastScanBlock)
	PackFastScan(b.packed, u, k, b.m, FastScanBlock)
	return bytes.Equal(b.packed, block)
}

// listPaddingZero reports whether packed, the codes of a list of n
// vectors in FastScan blocks, has zero padding: only a partial last block
// has any.
func (b *fastScanBlocks) listPaddingZero(packed []byte, n int) bool {
	k := n % FastScanBlock
	return k == 0 || b.paddingZero(packed[len(packed)-b.size:], k)
}
