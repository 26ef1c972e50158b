package faissio

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// A fingerprint reads at most fingerprintBlocks blocks of fingerprintBlock
// bytes of data, 4 MiB in all, however large the input: enough to catch a
// regenerated file of the same size and time stamp in all but contrived
// cases, at the cost of a few hundred milliseconds on a cold disk rather
// than minutes for 100M x 768 float16 documents.
const (
	fingerprintBlock  = 64 << 10
	fingerprintBlocks = 64
)

// Fingerprint writes to h (a hash, typically) a cheap identity of the
// Source's vectors, for the keys of caches and checkpoints: equal
// fingerprints stand for equal vectors, without hashing every byte.
//
// For a Source of files it writes, for each file in order, its path as
// given, its size, its modification time in nanoseconds and its header
// (the .npy header up to the data; the first 4 bytes, the dimension, of
// an .fvecs file; for a Parquet file, the vector column's name, the rows
// taken and the first 64 KiB), then a sample of the data (a Parquet file's
// data being all of its bytes): 64 blocks of 64 KiB evenly
// spaced over the data of all files taken as one run of bytes, the first
// at its start and the last ending at its end, or all of it when it is at
// most 4 MiB. So it reads at most 4 MiB of data however many files there
// are. The fingerprint changes when a file is added, removed, renamed or
// named by another path ("./x.npy" is not "x.npy"), when a file's size or
// modification time changes (as any write through the file system sets
// it, and as a copy without preserved times does), when its dtype, shape
// or byte order changes, and when any byte inside a sampled block changes.
// It does not change when a file is edited in place, or replaced, in a way
// that keeps its path, size and modification time (a tool that restores
// the time, such as touch -r, rsync -t or cp -p of another version of the
// same size; or a second write within the time stamp resolution of a file
// system with coarse times) and leaves the header and every sampled block
// as they were. Since a false match costs a wrong cached result, a caller
// that cannot rule such edits out should hash the data in full.
//
// For a Source in memory (MatrixSource) it writes the shape and all the
// data bytes, since they cost no I/O. Errors are one line and start with
// the file's path, except h's own, which are returned as they are.
func (s *Source) Fingerprint(h io.Writer) error {
	if s.err != nil {
		return s.err
	}
	w := &fingerprintWriter{w: h}
	if s.mem != nil {
		w.str("distillvq matrix fingerprint v1")
		w.u64(uint64(s.Rows))
		w.u64(uint64(s.Cols))
		w.bytes(asBytes(s.mem.Data))
		return w.err
	}
	w.str("distillvq source fingerprint v1")
	w.u64(uint64(s.Rows))
	w.u64(uint64(s.Cols))
	w.u64(uint64(len(s.parts)))
	segs := make([]segment, len(s.parts))
	for i, p := range s.parts {
		if p.pq != nil {
			// A Parquet file's data is not one block after a header: its
			// first 64 KiB and the whole file are sampled, with the column
			// and the rows taken of it.
			w.str(p.pq.column)
			w.u64(uint64(p.skip))
			w.u64(uint64(p.rows))
			size, err := w.file(p.path, func(size int64) int64 { return min(size, fingerprintBlock) })
			if err != nil {
				return err
			}
			segs[i] = segment{path: p.path, n: size}
			continue
		}
		head := p.offset
		if p.fvecs {
			head = 4
		}
		if _, err := w.file(p.path, func(int64) int64 { return head }); err != nil {
			return err
		}
		segs[i] = segment{path: p.path, off: p.offset, n: int64(p.rows) * p.rowBytes}
	}
	return w.sample(segs)
}

// FingerprintFiles writes to h a cheap identity of the files at paths, by
// the rule Source.Fingerprint follows, for inputs that are not vectors
// (ids, qrels, queries in any format): for each file in order its path as
// given, size, modification time in nanoseconds and first 64 KiB, then 64
// blocks of 64 KiB evenly spaced over the files' bytes taken as one run,
// or all of them when they are at most 4 MiB. What changes it, and the
// in-place edits it misses, are as for Source.Fingerprint.
func FingerprintFiles(h io.Writer, paths ...string) error {
	w := &fingerprintWriter{w: h}
	w.str("distillvq files fingerprint v1")
	w.u64(uint64(len(paths)))
	segs := make([]segment, len(paths))
	for i, path := range paths {
		size, err := w.file(path, func(size int64) int64 { return min(size, fingerprintBlock) })
		if err != nil {
			return err
		}
		segs[i] = segment{path: path, n: size}
	}
	return w.sample(segs)
}

// segment is the n bytes at off in the file at path: one file's share of
// the run of bytes that a fingerprint samples.
type segment struct {
	path   string
	off, n int64
}

// span is the n bytes at off of a run of bytes.
type span struct{ off, n int64 }

// sampleSpans returns the parts of a run of total bytes that a fingerprint
// reads: the whole run when it is at most fingerprintBlocks blocks long,
// and otherwise fingerprintBlocks blocks of fingerprintBlock bytes, in
// ascending order, the first at 0, the last ending at total, the others at
// k*(total-block)/(blocks-1) rounded down, which never overlap since the
// spacing is then more than a block.
func sampleSpans(total int64) []span {
	const b, k = fingerprintBlock, fingerprintBlocks
	if total <= 0 {
		return nil
	}
	if total <= b*k {
		return []span{{0, total}}
	}
	// k*(total-b) can overflow; split total-b as q*(k-1) + r instead.
	q, r := (total-b)/(k-1), (total-b)%(k-1)
	spans := make([]span, k)
	for i := range int64(k) {
		spans[i] = span{i*q + i*r/(k-1), b}
	}
	return spans
}

// fingerprintWriter writes the fields of a fingerprint to w, little-endian
// and length-prefixed so that no two inputs write the same bytes,
// remembering the first error.
type fingerprintWriter struct {
	w   io.Writer
	err error
	buf [8]byte
}

func (w *fingerprintWriter) bytes(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
	}
}

func (w *fingerprintWriter) u64(v uint64) { w.bytes(binary.LittleEndian.AppendUint64(w.buf[:0], v)) }

func (w *fingerprintWriter) str(s string) {
	w.u64(uint64(len(s)))
	w.bytes([]byte(s))
}

// file writes path, the size and modification time of the file there, and
// its first head(size) bytes, and returns the size.
func (w *fingerprintWriter) file(path string, head func(size int64) int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, pathError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, pathError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file", path)
	}
	b := make([]byte, head(fi.Size()))
	if _, err := f.ReadAt(b, 0); err != nil {
		return 0, sampleError(path, err)
	}
	w.str(path)
	w.u64(uint64(fi.Size()))
	w.u64(uint64(fi.ModTime().UnixNano()))
	w.u64(uint64(len(b)))
	w.bytes(b)
	return fi.Size(), w.err
}

// sample writes the sampled spans of the run of bytes that segs make up,
// opening each file at most once and one at a time.
func (w *fingerprintWriter) sample(segs []segment) error {
	var total int64
	for _, s := range segs {
		if s.n > math.MaxInt64-total {
			return fmt.Errorf("%s: the files hold more than 2^63 bytes in all", s.path)
		}
		total += s.n
	}
	buf := make([]byte, min(total, fingerprintBlock))
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open, k := -1, 0 // the open segment; the segment at base
	var base int64   // where segment k starts in the run
	for _, sp := range sampleSpans(total) {
		for off, end := sp.off, sp.off+sp.n; off < end; {
			for off >= base+segs[k].n {
				base += segs[k].n
				k++
			}
			if open != k {
				if f != nil {
					f.Close()
				}
				var err error
				if f, err = os.Open(segs[k].path); err != nil {
					return pathError(segs[k].path, err)
				}
				open = k
			}
			b := buf[:min(end, base+segs[k].n, off+int64(len(buf)))-off]
			if _, err := f.ReadAt(b, segs[k].off+off-base); err != nil {
				return sampleError(segs[k].path, err)
			}
			if w.bytes(b); w.err != nil {
				return w.err
			}
			off += int64(len(b))
		}
	}
	return w.err
}

// sampleError describes a failed read of bytes the file's size promised.
func sampleError(path string, err error) error {
	if err == io.EOF {
		return fmt.Errorf("%s: file shrank while being read", path)
	}
	return pathError(path, err)
}
