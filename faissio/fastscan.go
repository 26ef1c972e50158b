package faissio

import (
	"fmt"
	"slices"
)

// FAISS's FastScan indexes keep 4-bit PQ codes in the layout their SIMD scan
// consumes: vectors go in blocks of bbs (a multiple of 32), and within a
// block, for each pair of sub-quantizers (2p, 2p+1) and each run of 32
// vectors, 32 bytes. Bytes 0..15 of such a run hold sub-quantizer 2p, bytes
// 16..31 sub-quantizer 2p+1; byte j carries vector perm[j] of the run in its
// low nibble and vector perm[j]+16 in its high nibble. The interleaving
// perm lets one 16-byte shuffle look up 32 vectors at once.

// fastScanPerm is the order in which FAISS interleaves the first 16 vectors
// of a run of 32 (pq4_pack_codes's perm0).
var fastScanPerm = [16]int{0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15}

// FastScanPackedSize is the size in bytes of n vectors of M 4-bit codes
// packed in blocks of bbs vectors: ceil(n/bbs)*bbs*M2/2, M2 being M rounded
// up to even. It is the size PackFastScan fills and UnpackFastScan reads.
func FastScanPackedSize(n, M, bbs int) int {
	return (n + bbs - 1) / bbs * bbs * roundUpEven(M) / 2
}

func roundUpEven(m int) int { return (m + 1) &^ 1 }

// checkFastScanArgs panics on arguments PackFastScan and UnpackFastScan
// cannot honour: like copy with a bad slice, these are programming errors,
// not data errors, and a silent partial result would corrupt an index.
func checkFastScanArgs(fn string, plain, packed, n, M, bbs int) {
	switch {
	case n < 0 || M < 1:
		panic(fmt.Sprintf("faissio: %s: n=%d, M=%d", fn, n, M))
	case bbs <= 0 || bbs%32 != 0:
		panic(fmt.Sprintf("faissio: %s: block size %d is not a positive multiple of 32", fn, bbs))
	}
	if want := n * ((M + 1) / 2); plain != want {
		panic(fmt.Sprintf("faissio: %s: %d bytes of plain codes, want %d (n=%d, M=%d)", fn, plain, want, n, M))
	}
	if want := FastScanPackedSize(n, M, bbs); packed != want {
		panic(fmt.Sprintf("faissio: %s: %d bytes of packed codes, want %d (n=%d, M=%d, bbs=%d)", fn, packed, want, n, M, bbs))
	}
}

// PackFastScan packs the plain 4-bit PQ codes of n vectors into dst in the
// block layout of FAISS's FastScan indexes (IndexPQFastScan's codes, each
// list of an IndexIVFPQFastScan), giving the bytes FAISS 1.7.3's
// pq4_pack_codes does.
//
// codes holds n*ceil(M/2) bytes, the layout of ProductQuantizer codes with
// Nbits 4: sub-quantizer 2j of a vector in the low nibble of its byte j,
// sub-quantizer 2j+1 in the high nibble (for odd M, the last high nibble is
// packed as the code of a sub-quantizer M, which FAISS leaves zero). dst
// holds FastScanPackedSize(n, M, bbs) bytes; it is overwritten whole, the
// padding past the n vectors zero. bbs must be a positive multiple of 32.
// PackFastScan panics if the sizes do not match.
func PackFastScan(dst, codes []byte, n, M, bbs int) {
	checkFastScanArgs("PackFastScan", len(codes), len(dst), n, M, bbs)
	clear(dst)
	stride := (M + 1) / 2
	pairs := roundUpEven(M) / 2
	runs := bbs / 32
	out := 0
	for b0 := 0; b0 < n; b0 += bbs {
		for p := 0; p < pairs; p++ {
			for r := 0; r < runs; r++ {
				base := b0 + 32*r
				for j, v := range fastScanPerm {
					var lo, hi byte // vectors v and v+16 of the run
					if i := base + v; i < n {
						lo = codes[i*stride+p]
					}
					if i := base + v + 16; i < n {
						hi = codes[i*stride+p]
					}
					dst[out+j] = lo&15 | hi<<4
					dst[out+j+16] = lo>>4 | hi&0xf0
				}
				out += 32
			}
		}
	}
}

// UnpackFastScan is the inverse of PackFastScan: it writes to dst, which
// holds n*ceil(M/2) bytes, the plain 4-bit PQ codes of the n vectors whose
// codes packed holds in FastScan blocks of bbs vectors
// (FastScanPackedSize(n, M, bbs) bytes). Padding in packed is ignored.
// UnpackFastScan panics if the sizes do not match.
func UnpackFastScan(dst, packed []byte, n, M, bbs int) {
	checkFastScanArgs("UnpackFastScan", len(dst), len(packed), n, M, bbs)
	stride := (M + 1) / 2
	pairs := roundUpEven(M) / 2
	runs := bbs / 32
	in := 0
	for b0 := 0; b0 < n; b0 += bbs {
		for p := 0; p < pairs; p++ {
			for r := 0; r < runs; r++ {
				base := b0 + 32*r
				for j, v := range fastScanPerm {
					even, odd := packed[in+j], packed[in+j+16]
					if i := base + v; i < n {
						dst[i*stride+p] = even&15 | odd<<4
					}
					if i := base + v + 16; i < n {
						dst[i*stride+p] = even>>4 | odd&0xf0
					}
				}
				in += 32
			}
		}
	}
}

// NewPQFastScan builds the IndexPQFastScan that FAISS's constructor
// IndexPQFastScan(d, M, 4, metric, 32) followed by train and add of
// h.Ntotal vectors builds, from pq (trained, Nbits 4) and the vectors' plain
// codes (h.Ntotal × pq.CodeSize() bytes, the layout of PQ.Codes): blocks of
// FastScanBlock vectors, default search settings (implem and qbs 0), so
// that WriteIndex of it writes what FAISS's write_index writes of that
// index. h must have an inner product or L2 metric, the only ones FAISS's
// FastScan search computes. Nothing is shared with pq or codes.
func NewPQFastScan(h Header, pq ProductQuantizer, codes []byte) (*PQFastScan, error) {
	ix, err := newPQFastScan(h, pq, codes)
	if err != nil {
		return nil, fmt.Errorf("new PQ FastScan index: %w", err)
	}
	return ix, nil
}

func newPQFastScan(h Header, pq ProductQuantizer, codes []byte) (*PQFastScan, error) {
	if err := checkHeader(&h); err != nil {
		return nil, err
	}
	if h.Metric != InnerProduct && h.Metric != L2 {
		return nil, fmt.Errorf("metric %d: FastScan searches by inner product or L2 only", int32(h.Metric))
	}
	if err := checkFastScan(&pq, h.D, FastScanBlock, int64(roundUpEven(pq.M))); err != nil {
		return nil, err
	}
	n := h.Ntotal
	if want, ok := mulInt(int(n), pq.CodeSize()); !ok || int64(int(n)) != n || len(codes) != want {
		return nil, fmt.Errorf("%d code bytes for %d vectors of %d bytes", len(codes), n, pq.CodeSize())
	}
	ix := &PQFastScan{
		Header: h,
		PQ:     pq,
		Bbs:    FastScanBlock,
		// FAISS's add sets ntotal2 to ntotal rounded up, and M2 is set at
		// construction.
		Ntotal2: (n + FastScanBlock - 1) / FastScanBlock * FastScanBlock,
		M2:      int64(roundUpEven(pq.M)),
	}
	ix.PQ.Centroids = slices.Clone(pq.Centroids)
	if size := FastScanPackedSize(int(n), pq.M, FastScanBlock); size > 0 {
		ix.Codes = make([]byte, size)
		PackFastScan(ix.Codes, codes, int(n), pq.M, FastScanBlock)
	}
	return ix, nil
}
