package faissio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Tests of FastScan packing and of the IPfs, IwPf and IHNf records, on
// indexes built here and on the FAISS-written fixtures of testdata.

// fsCodes is n random plain 4-bit codes of M sub-quantizers, as FAISS's PQ
// encoder lays them out: for odd M the last high nibble stays zero.
func fsCodes(r *rand.Rand, n, M int) []byte {
	stride := (M + 1) / 2
	b := make([]byte, n*stride)
	for i := range b {
		b[i] = byte(r.Uint32())
		if M%2 == 1 && i%stride == stride-1 {
			b[i] &= 15
		}
	}
	return b
}

func TestPackFastScanRoundTrip(t *testing.T) {
	r := ixRand(11)
	for _, bbs := range []int{32, 64, 96} {
		for _, M := range []int{1, 2, 3, 5, 8, 15, 16} {
			for _, n := range []int{0, 1, 17, 31, 32, 33, bbs - 1, bbs, bbs + 1, 3*bbs + 7} {
				codes := fsCodes(r, n, M)
				packed := make([]byte, FastScanPackedSize(n, M, bbs))
				if want := (n + bbs - 1) / bbs * bbs * ((M + 1) / 2); len(packed) != want {
					t.Fatalf("n %d M %d bbs %d: packed size %d, want %d", n, M, bbs, len(packed), want)
				}
				for i := range packed {
					packed[i] = 0xa5 // PackFastScan must overwrite it all
				}
				PackFastScan(packed, codes, n, M, bbs)
				back := make([]byte, len(codes))
				UnpackFastScan(back, packed, n, M, bbs)
				if !bytes.Equal(back, codes) {
					t.Fatalf("n %d M %d bbs %d: unpacking gives other codes", n, M, bbs)
				}
				// Padding past the n vectors is zero: unpacking the
				// whole blocks finds zero codes beyond n.
				n2 := (n + bbs - 1) / bbs * bbs
				all := make([]byte, n2*((M+1)/2))
				UnpackFastScan(all, packed, n2, M, bbs)
				if !bytes.Equal(all[:len(codes)], codes) || slices.ContainsFunc(all[len(codes):], func(b byte) bool { return b != 0 }) {
					t.Fatalf("n %d M %d bbs %d: padding not zero", n, M, bbs)
				}
			}
		}
	}
}

// TestPackFastScanLayout checks the layout against FAISS's description of
// it, element by element, independently of UnpackFastScan.
func TestPackFastScanLayout(t *testing.T) {
	r := ixRand(12)
	const n, M, bbs = 70, 5, 64
	codes := fsCodes(r, n, M)
	packed := make([]byte, FastScanPackedSize(n, M, bbs))
	PackFastScan(packed, codes, n, M, bbs)
	code := func(i, sq int) byte { return codes[i*3+sq/2] >> (4 * (sq % 2)) & 15 }
	// pq4_get_packed_element's arithmetic: block, pair of sub-quantizers,
	// run of 32, then the perm0 interleaving.
	for i := range n {
		for sq := range M {
			b := packed[i/bbs*bbs*3:]
			b = b[(sq/2)*bbs/32*32+(i%bbs)/32*32:]
			j := i % 32
			pos := []int{0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15}[j%16]
			v := b[pos+16*(sq%2)]
			if j >= 16 {
				v >>= 4
			}
			if v&15 != code(i, sq) {
				t.Fatalf("vector %d sub-quantizer %d: packed %d, code %d", i, sq, v&15, code(i, sq))
			}
		}
	}
}

func TestPackFastScanPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"bbs 48":      func() { PackFastScan(make([]byte, 48*2), make([]byte, 2), 1, 4, 48) },
		"bbs 0":       func() { UnpackFastScan(make([]byte, 2), nil, 1, 4, 0) },
		"short dst":   func() { PackFastScan(make([]byte, 63), make([]byte, 2), 1, 4, 32) },
		"long codes":  func() { PackFastScan(make([]byte, 64), make([]byte, 3), 1, 4, 32) },
		"short plain": func() { UnpackFastScan(make([]byte, 1), make([]byte, 64), 1, 4, 32) },
		"M 0":         func() { PackFastScan(nil, nil, 0, 0, 32) },
		"n negative":  func() { PackFastScan(nil, nil, -1, 2, 32) },
	} {
		func() {
			defer func() {
				if msg, ok := recover().(string); !ok || !strings.HasPrefix(msg, "faissio: ") {
					t.Errorf("%s: recovered %v, want a faissio panic", name, msg)
				}
			}()
			f()
		}()
	}
}

func ixPQFastScan(r *rand.Rand, metric Metric, d, M, n, bbs int) *PQFastScan {
	pq := ixPQ(r, d, M, 4)
	n2 := (n + bbs - 1) / bbs * bbs
	ix := &PQFastScan{Header: Header{D: d, Ntotal: int64(n), IsTrained: true, Metric: metric}, PQ: pq,
		Bbs: int32(bbs), Ntotal2: int64(n2), M2: int64(roundUpEven(M)),
		Codes: make([]byte, FastScanPackedSize(n, M, bbs))}
	PackFastScan(ix.Codes, fsCodes(r, n, M), n, M, bbs)
	if len(ix.Codes) == 0 {
		ix.Codes = nil // as the reader leaves an empty vector
	}
	return ix
}

func ixIVFPQFastScan(r *rand.Rand, metric Metric, d, M, bbs int, sizes []int) *IVFPQFastScan {
	pq := ixPQ(r, d, M, 4)
	ix := &IVFPQFastScan{IVF: ixIVF(r, metric, d, sizes, 0), ByResidual: metric == InnerProduct,
		CodeSize: int64(pq.CodeSize()), Bbs: int32(bbs), M2: int64(roundUpEven(M)), Qbs2: 0, PQ: pq,
		ListsCodeSize: math.MaxUint64, NPerBlock: uint64(bbs), BlockSize: uint64(bbs * roundUpEven(M) / 2)}
	for l, s := range sizes {
		if s == 0 {
			continue
		}
		ix.Lists[l].Codes = make([]byte, FastScanPackedSize(s, M, bbs))
		PackFastScan(ix.Lists[l].Codes, fsCodes(r, s, M), s, M, bbs)
	}
	return ix
}

// ixHNSW builds a graph of n vectors as FAISS lays one out (levels from a
// geometric law, level 0 with 2*m slots, the others m), with random
// neighbours and -1 in the slots left over.
func ixHNSW(r *rand.Rand, n, m int) HNSW {
	h := HNSW{EntryPoint: -1, MaxLevel: -1, EfConstruction: 40, EfSearch: 16, UpperBeam: 1,
		CumNNeighborPerLevel: []int32{0, int32(2 * m)}, Offsets: []uint64{0}}
	for p := 1.0; p > 1e-9; p /= float64(m) {
		h.AssignProbas = append(h.AssignProbas, p*(1-1/float64(m)))
		if len(h.AssignProbas) > 1 {
			h.CumNNeighborPerLevel = append(h.CumNNeighborPerLevel, h.CumNNeighborPerLevel[len(h.CumNNeighborPerLevel)-1]+int32(m))
		}
	}
	// byLevel[L] lists the vectors that reach level L, the only ones a
	// vector may link to at that level.
	var byLevel [][]int32
	for i := range n {
		l := int32(1)
		for int(l) < len(h.AssignProbas) && r.IntN(m) == 0 {
			l++
		}
		h.Levels = append(h.Levels, l)
		if l-1 > h.MaxLevel {
			h.MaxLevel, h.EntryPoint = l-1, int32(i)
		}
		h.Offsets = append(h.Offsets, h.Offsets[i]+uint64(h.CumNNeighborPerLevel[l]))
		for len(byLevel) < int(l) {
			byLevel = append(byLevel, nil)
		}
		for level := range l {
			byLevel[level] = append(byLevel[level], int32(i))
		}
	}
	for i, l := range h.Levels {
		for level := range l {
			peers := byLevel[level]
			slots := int(h.CumNNeighborPerLevel[level+1] - h.CumNNeighborPerLevel[level])
			for k := range slots {
				v := int32(-1)
				if k < len(peers)-1 && k < slots-1-i%3 {
					v = peers[r.IntN(len(peers))]
				}
				h.Neighbors = append(h.Neighbors, v)
			}
		}
	}
	return h
}

func ixHNSWFlat(r *rand.Rand, metric Metric, d, n int) *HNSWFlat {
	f := ixFlat(r, metric, d, n)
	return &HNSWFlat{Header: f.Header, HNSW: ixHNSW(r, n, 8), Storage: f}
}

func TestFastScanHNSWRoundTrip(t *testing.T) {
	r := ixRand(13)
	for _, m := range []Metric{InnerProduct, L2} {
		for _, c := range []struct{ M, n, bbs int }{{4, 0, 32}, {4, 1, 32}, {3, 33, 32}, {8, 100, 64}, {1, 5, 96}} {
			t.Run(fmt.Sprintf("pqfs-%v-M%d-n%d-bbs%d", m, c.M, c.n, c.bbs), func(t *testing.T) {
				ix := ixPQFastScan(r, m, 2*c.M, c.M, c.n, c.bbs)
				ix.Implem, ix.Qbs = 12, 3
				b := roundTrip(t, ix)
				if string(b[:4]) != "IPfs" {
					t.Errorf("fourcc %q", b[:4])
				}
			})
		}
		for name, sizes := range map[string][]int{
			"empty": {0, 0, 0}, "one-block": {3, 0, 31}, "blocks": {33, 64, 65, 0, 1}, "single": {100},
		} {
			for _, bbs := range []int{32, 64} {
				t.Run(fmt.Sprintf("ivfpqfs-%v-%s-bbs%d", m, name, bbs), func(t *testing.T) {
					ix := ixIVFPQFastScan(r, m, 10, 5, bbs, sizes)
					b := roundTrip(t, ix)
					if !bytes.Contains(b, []byte("ilbl")) {
						t.Error("no ilbl record")
					}
					ix.ListsCodeSize = uint64(ix.CodeSize) // FAISS reads this too
					roundTrip(t, ix)
					if ix.Ntotal > 0 {
						withArrayMap(&ix.IVF)
						roundTrip(t, ix)
					}
				})
			}
		}
		t.Run("hnsw-"+m.String(), func(t *testing.T) {
			roundTrip(t, ixHNSWFlat(r, m, 6, 0))
			roundTrip(t, ixHNSWFlat(r, m, 6, 1))
			roundTrip(t, ixHNSWFlat(r, m, 6, 300))
		})
		t.Run("hnsw-quantizer-"+m.String(), func(t *testing.T) {
			pq := ixIVFPQ(r, m, 8, 4, 8, []int{2, 0, 5, 1})
			pq.Quantizer = ixHNSWFlat(r, m, 8, 4)
			roundTrip(t, pq)
			flat := ixIVFFlat(r, m, 8, []int{2, 3})
			flat.Quantizer = ixHNSWFlat(r, m, 8, 2)
			roundTrip(t, flat)
			fs := ixIVFPQFastScan(r, m, 8, 4, 32, []int{40, 0, 3})
			fs.Quantizer = ixHNSWFlat(r, m, 8, 3)
			roundTrip(t, fs)
			untrained := ixIVFPQFastScan(r, m, 8, 4, 32, []int{0, 0, 0})
			untrained.IsTrained = false
			untrained.Quantizer = ixHNSWFlat(r, m, 8, 0)
			roundTrip(t, untrained)
			roundTrip(t, &PreTransform{Header: fs.Header, Index: fs,
				Chain: []*LinearTransform{{DIn: 8, DOut: 8, IsTrained: true, A: ixFloats(r, 64)}}})
		})
	}
}

func TestNewPQFastScan(t *testing.T) {
	r := ixRand(14)
	for _, c := range []struct{ M, n int }{{4, 0}, {4, 70}, {5, 32}, {1, 1}} {
		pq := ixPQ(r, 3*c.M, c.M, 4)
		h := Header{D: 3 * c.M, Ntotal: int64(c.n), IsTrained: true, Metric: L2}
		codes := fsCodes(r, c.n, c.M)
		ix, err := NewPQFastScan(h, pq, codes)
		if err != nil {
			t.Fatal(err)
		}
		n2 := (c.n + 31) / 32 * 32
		if ix.Bbs != FastScanBlock || ix.Implem != 0 || ix.Qbs != 0 || ix.Ntotal2 != int64(n2) || ix.M2 != int64(roundUpEven(c.M)) {
			t.Errorf("M %d n %d: bbs %d implem %d qbs %d ntotal2 %d M2 %d", c.M, c.n, ix.Bbs, ix.Implem, ix.Qbs, ix.Ntotal2, ix.M2)
		}
		back := make([]byte, len(codes))
		UnpackFastScan(back, ix.Codes, c.n, c.M, 32)
		if !bytes.Equal(back, codes) {
			t.Errorf("M %d n %d: codes do not unpack", c.M, c.n)
		}
		roundTrip(t, ix)
		ix.PQ.Centroids[0] = 42
		if pq.Centroids[0] == 42 {
			t.Error("NewPQFastScan shares the centroids")
		}
	}
	pq := ixPQ(r, 8, 4, 4)
	h := Header{D: 8, Ntotal: 3, IsTrained: true, Metric: InnerProduct}
	bad := map[string]struct {
		h     Header
		pq    ProductQuantizer
		codes []byte
		want  string
	}{
		"codes":  {h, pq, make([]byte, 5), "5 code bytes for 3 vectors of 2 bytes"},
		"nbits":  {h, ixPQ(r, 8, 4, 5), make([]byte, 9), "PQ nbits 5: FastScan codes have 4 bits"},
		"pq d":   {h, ixPQ(r, 4, 4, 4), make([]byte, 6), "PQ dimension 4, want the index's 8"},
		"metric": {Header{D: 8, Ntotal: 3, Metric: 2}, pq, make([]byte, 6), "metric 2: FastScan searches by inner product or L2 only"},
		"header": {Header{D: 8, Ntotal: -1, Metric: L2}, pq, nil, "ntotal -1 is negative"},
	}
	for name, c := range bad {
		_, err := NewPQFastScan(c.h, c.pq, c.codes)
		if err == nil || !strings.HasPrefix(err.Error(), "new PQ FastScan index: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestFastScanFixtures checks what the FAISS-written FastScan and HNSW
// fixtures were made to hold (TestIndexFixtures checks that they rewrite
// byte for byte).
func TestFastScanFixtures(t *testing.T) {
	files := fixtures(t)
	for _, name := range []string{"pqfs_l2", "pqfs_ip", "pqfs_m5_bbs64"} {
		ix := readFixture(t, files, name+".index").(*PQFastScan)
		wantBbs, wantM := int32(32), 8
		if name == "pqfs_m5_bbs64" {
			wantBbs, wantM = 64, 5
		}
		if ix.Bbs != wantBbs || ix.PQ.M != wantM || ix.PQ.Nbits != 4 || ix.Ntotal%int64(ix.Bbs) == 0 {
			t.Errorf("%s: bbs %d M %d nbits %d ntotal %d", name, ix.Bbs, ix.PQ.M, ix.PQ.Nbits, ix.Ntotal)
		}
		// FAISS pads with zeros.
		n := int(ix.Ntotal)
		packed := make([]byte, len(ix.Codes))
		plain := make([]byte, n*ix.PQ.CodeSize())
		UnpackFastScan(plain, ix.Codes, n, ix.PQ.M, int(ix.Bbs))
		PackFastScan(packed, plain, n, ix.PQ.M, int(ix.Bbs))
		if !bytes.Equal(packed, ix.Codes) {
			t.Errorf("%s: FAISS's codes are not PackFastScan's with zero padding", name)
		}
	}
	longest, empty := 0, false
	for _, name := range []string{"ivfpqfs_l2", "ivfpqfsr_ip", "ivfpqfsr_m5_l2", "ivfpqfs_hnsw_l2"} {
		ix := readFixture(t, files, name+".index").(*IVFPQFastScan)
		if ix.ListsCodeSize != math.MaxUint64 {
			t.Errorf("%s: block lists code size %d", name, ix.ListsCodeSize)
		}
		if want := strings.Contains(name, "fsr"); ix.ByResidual != want {
			t.Errorf("%s: by_residual %v", name, ix.ByResidual)
		}
		_, hnsw := ix.Quantizer.(*HNSWFlat)
		if want := strings.Contains(name, "hnsw"); hnsw != want {
			t.Errorf("%s: quantizer %T", name, ix.Quantizer)
		}
		for _, l := range ix.Lists {
			longest = max(longest, len(l.IDs))
			empty = empty || len(l.IDs) == 0
			plain := make([]byte, len(l.IDs)*ix.PQ.CodeSize())
			UnpackFastScan(plain, l.Codes, len(l.IDs), ix.PQ.M, int(ix.Bbs))
			packed := make([]byte, len(l.Codes))
			PackFastScan(packed, plain, len(l.IDs), ix.PQ.M, int(ix.Bbs))
			if !bytes.Equal(packed, l.Codes) {
				t.Errorf("%s: FAISS's list codes are not PackFastScan's with zero padding", name)
			}
		}
	}
	if longest <= 32 || !empty {
		t.Errorf("IVF FastScan fixtures: longest list %d, an empty list %v; want one longer than a block and one empty", longest, empty)
	}
	for name, want := range map[string]string{"ivfpq_hnsw_l2": "*faissio.IVFPQ", "ivfflat_hnsw_ip": "*faissio.IVFFlat"} {
		ix := readFixture(t, files, name+".index")
		var q Index
		switch x := ix.(type) {
		case *IVFPQ:
			q = x.Quantizer
		case *IVFFlat:
			q = x.Quantizer
		}
		if h, ok := q.(*HNSWFlat); !ok || fmt.Sprintf("%T", ix) != want || h.Ntotal != 16 || len(h.HNSW.Levels) != 16 {
			t.Errorf("%s: %T with quantizer %T", name, ix, q)
		}
	}
	h := readFixture(t, files, "hnsw_l2.index").(*HNSWFlat)
	if h.Ntotal != 150 || h.HNSW.MaxLevel < 1 || h.HNSW.EfConstruction != 40 || len(h.HNSW.CumNNeighborPerLevel) != len(h.HNSW.AssignProbas)+1 {
		t.Errorf("hnsw_l2: ntotal %d max level %d efConstruction %d", h.Ntotal, h.HNSW.MaxLevel, h.HNSW.EfConstruction)
	}
	e := readFixture(t, files, "hnsw_empty_ip.index").(*HNSWFlat)
	if e.Ntotal != 0 || e.HNSW.EntryPoint != -1 || e.Metric != InnerProduct || e.Storage.(*Flat).Metric != InnerProduct {
		t.Errorf("hnsw_empty_ip: %+v", e.HNSW)
	}
}

// fieldOff finds where in b the field after the fixed-size prefix of
// needle starts, for patching.
func fieldOff(t *testing.T, b, needle []byte) int {
	t.Helper()
	i := bytes.Index(b, needle)
	if i < 0 {
		t.Fatalf("%q not in the file", needle)
	}
	return i + len(needle)
}

func TestFastScanReadErrors(t *testing.T) {
	r := ixRand(15)
	pqfs := writeBytes(t, ixPQFastScan(r, L2, 8, 4, 40, 32))
	// IPfs: fourcc 4, header 33, PQ 32 + 4*128, then implem, bbs, qbs,
	// ntotal2, M2, codes.
	const fsOff = 4 + 33 + 32 + 4*128
	ivffs := writeBytes(t, ixIVFPQFastScan(r, L2, 8, 4, 32, []int{33, 0, 2}))
	il := fieldOff(t, ivffs, []byte("ilbl"))
	hn := writeBytes(t, ixHNSWFlat(r, L2, 4, 20))
	hnIx, _ := ReadIndex(bytes.NewReader(hn))
	hh := hnIx.(*HNSWFlat).HNSW
	cumOff := 4 + 33 + 8 + 8*len(hh.AssignProbas) + 8
	levelsOff := cumOff + 4*len(hh.CumNNeighborPerLevel) + 8
	offsetsOff := levelsOff + 4*20 + 8
	neighOff := offsetsOff + 8*21 + 8
	epOff := neighOff + 4*len(hh.Neighbors)
	// The first level-1 slot of a vector of level 1 or more, and a vector
	// of level 0 only.
	highSlot, low := -1, int32(-1)
	for i, l := range hh.Levels {
		if l >= 2 && highSlot < 0 {
			highSlot = int(hh.Offsets[i]) + int(hh.CumNNeighborPerLevel[1])
		}
		if l == 1 && low < 0 {
			low = int32(i)
		}
	}
	if highSlot < 0 || low < 0 {
		t.Fatalf("graph without two levels: %v", hh.Levels)
	}
	hnswQ := ixIVFFlat(r, L2, 4, []int{1, 1})
	hnswQ.Quantizer = ixHNSWFlat(r, L2, 4, 2)
	hq := writeBytes(t, hnswQ)
	i32 := func(v int32) []byte { return binary32(uint32(v)) }
	// A 5-bit PQ block where the 4-bit one was, and a PQ index as storage.
	pq5 := (&craft{}).u64(8).u64(4).u64(5).u64(8 << 5).b
	pq5 = append(pq5, make([]byte, 4*8<<5)...)
	pqStorage := &PQ{Header: Header{D: 4, Ntotal: 20, IsTrained: true, Metric: L2}, PQ: ixPQ(r, 4, 2, 4), Codes: make([]byte, 20)}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"pqfs nbits", slices.Concat(pqfs[:37], pq5, pqfs[37+32+4*128:]), "byte 53: PQ nbits 5: FastScan codes have 4 bits"},
		{"pqfs bbs", patch(pqfs, fsOff+4, 48), fmt.Sprintf("byte %d: FastScan block size 48 is not a positive multiple of 32", fsOff+4)},
		{"pqfs bbs negative", patch(pqfs, fsOff+4, i32(-32)...), "FastScan block size -32"},
		{"pqfs ntotal2", patch(pqfs, fsOff+12, 40), fmt.Sprintf("byte %d: ntotal2 40, want ntotal 40 rounded up to a multiple of bbs 32", fsOff+12)},
		{"pqfs M2", patch(pqfs, fsOff+20, 3), fmt.Sprintf("byte %d: FastScan M2 3, want PQ M 4 rounded up to even", fsOff+20)},
		{"pqfs codes", patch(pqfs, fsOff+28, 129), fmt.Sprintf("byte %d: FastScan codes has 129 elements, want 128", fsOff+28)},
		{"ilbl fourcc", patch(ivffs, il-4, 'i', 'l', 'a', 'r'), `inverted lists fourcc "ilar": an IndexIVFPQFastScan has block lists (ilbl)`},
		{"ilbl nlist", patch(ivffs, il, 4), fmt.Sprintf("byte %d: inverted lists have nlist 4, the index 3", il)},
		{"ilbl code size", patch(ivffs, il+8, le64(3)...), "inverted lists have code size 3, want 2 or 2^64-1"},
		{"ilbl n_per_block", patch(ivffs, il+16, 64), "inverted lists have 64 vectors per block, the index's bbs is 32"},
		{"ilbl block_size", patch(ivffs, il+24, 32), "inverted lists have 32 bytes per block, want bbs*M2/2 = 64"},
		{"ilbl list too long", patch(ivffs, il+32, 36), fmt.Sprintf("byte %d: list 0 has 36 vectors, more than the 35 of ntotal 35 left", il+32)},
		{"ilbl list codes", patch(ivffs, il+40+33*8, 64), "codes of list 0 has 64 elements, want 128"},
		{"ilbl sum", patch(ivffs, 8, 36), "lists hold 35 vectors, want ntotal 36"},
		{"ivffs code size", patch(ivffs, il-4-(32+4*128)-32, 3), "code size 3, want 2 for M 4 of 4 bits"},
		{"hnsw cum", patch(hn, cumOff+4, i32(-1)...), fmt.Sprintf("byte %d: HNSW cum_nneighbor_per_level[1] is -1", cumOff+4)},
		{"hnsw cum start", patch(hn, cumOff, 1), fmt.Sprintf("byte %d: HNSW cum_nneighbor_per_level[0] is 1", cumOff)},
		{"hnsw level", patch(hn, levelsOff+8, 0), fmt.Sprintf("byte %d: HNSW vector 2 has level 0, out of range", levelsOff+8)},
		{"hnsw level high", patch(hn, levelsOff+8, 99), "HNSW vector 2 has level 99"},
		{"hnsw levels count", patch(hn, levelsOff-8, 21), "levels has 21 elements, want 20"},
		{"hnsw offsets count", patch(hn, offsetsOff-8, 20), "offsets has 20 elements, want 21"},
		{"hnsw offsets start", patch(hn, offsetsOff, 1), fmt.Sprintf("byte %d: HNSW offsets start at 1, not 0", offsetsOff)},
		{"hnsw offset", patch(hn, offsetsOff+8*3, 1), fmt.Sprintf("byte %d: HNSW offset 3 is ", offsetsOff+8*3)},
		{"hnsw neighbors count", patch(hn, neighOff-8, le64(1)...), "neighbors has 1 elements, want"},
		{"hnsw neighbor", patch(hn, neighOff+4*5, 20), fmt.Sprintf("byte %d: HNSW neighbour slot 5 holds 20, out of range [-1, 20)", neighOff+20)},
		{"hnsw neighbor negative", patch(hn, neighOff, i32(-2)...), "HNSW neighbour slot 0 holds -2"},
		{"hnsw neighbor level", patch(hn, neighOff+4*highSlot, i32(low)...),
			fmt.Sprintf("byte %d: HNSW neighbour slot %d links vector ", neighOff+4*highSlot, highSlot)},
		{"hnsw entry point", patch(hn, epOff, i32(20)...), fmt.Sprintf("byte %d: HNSW entry point 20 out of range [0, 20)", epOff)},
		{"hnsw max level", patch(hn, epOff+4, i32(hh.MaxLevel+1)...), fmt.Sprintf("byte %d: HNSW max level %d", epOff+4, hh.MaxLevel+1)},
		{"hnsw storage metric", patch(hn, epOff+20, 'I', 'x', 'F', 'I'), `fourcc "IxFI" with metric 1`},
		{"hnsw storage ntotal", slices.Concat(hn[:epOff+20], writeBytes(t, ixFlat(r, L2, 4, 19))), fmt.Sprintf("byte %d: HNSW storage has dimension 4, metric 1 and 19 vectors, the index 4, 1 and 20", epOff+20)},
		{"hnsw storage pq", slices.Concat(hn[:epOff+20], writeBytes(t, pqStorage)), "HNSW storage is an IndexPQ"},
		{"hnsw quantizer ntotal", patch(hq, 37, 3), "coarse quantizer holds 2 centroids for 3 lists"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readErr(t, c.b)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
	t.Run("empty graph entry point", func(t *testing.T) {
		b := writeBytes(t, ixHNSWFlat(r, L2, 4, 0))
		off := len(b) - (4 + 33 + 8) - 20
		err := readErr(t, patch(b, off, 0, 0, 0, 0))
		if want := fmt.Sprintf("byte %d: HNSW empty graph with entry point 0 and max level -1", off); !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want %q", err, want)
		}
	})
}

func binary32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// TestFastScanTruncated cuts the new kinds' smaller fixtures at every byte
// (the larger ones at some 1500 places): each prefix must fail with a
// truncation error, never a panic.
func TestFastScanTruncated(t *testing.T) {
	files := fixtures(t)
	for _, name := range []string{"pqfs_m5_bbs64", "ivfpqfsr_m5_l2", "hnsw_empty_ip", "ivfpqfs_hnsw_l2", "hnsw_l2"} {
		b := files[name+".index"]
		step := max(1, len(b)/1500)
		for n := 0; n < len(b); n += step {
			_, err := ReadIndex(bytes.NewReader(b[:n]))
			if err == nil {
				t.Fatalf("%s: the first %d of %d bytes read without error", name, n, len(b))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d: %v is not a truncation error", name, n, err)
			}
		}
	}
}

func TestFastScanWriteErrors(t *testing.T) {
	r := ixRand(16)
	mutate := map[string]func() Index{
		"pqfs nbits":   func() Index { ix := ixPQFastScan(r, L2, 8, 4, 3, 32); ix.PQ = ixPQ(r, 8, 4, 5); return ix },
		"pqfs bbs":     func() Index { ix := ixPQFastScan(r, L2, 8, 4, 3, 32); ix.Bbs = 16; return ix },
		"pqfs ntotal2": func() Index { ix := ixPQFastScan(r, L2, 8, 4, 3, 32); ix.Ntotal2 = 3; return ix },
		"pqfs M2":      func() Index { ix := ixPQFastScan(r, L2, 8, 4, 3, 32); ix.M2 = 5; return ix },
		"pqfs codes":   func() Index { ix := ixPQFastScan(r, L2, 8, 4, 3, 32); ix.Codes = ix.Codes[1:]; return ix },
		"pqfs ntotal":  func() Index { ix := ixPQFastScan(r, L2, 8, 4, 32, 32); ix.Ntotal = 33; return ix },
		"pqfs nil":     func() Index { return (*PQFastScan)(nil) },
		"ivffs list codes": func() Index {
			ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{33, 1})
			ix.Lists[0].Codes = ix.Lists[0].Codes[:64]
			return ix
		},
		"ivffs code size":  func() Index { ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{1}); ix.CodeSize = 4; return ix },
		"ivffs lists cs":   func() Index { ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{1}); ix.ListsCodeSize = 0; return ix },
		"ivffs per block":  func() Index { ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{1}); ix.NPerBlock = 64; return ix },
		"ivffs block size": func() Index { ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{1}); ix.BlockSize = 32; return ix },
		"ivffs bbs":        func() Index { ix := ixIVFPQFastScan(r, L2, 8, 4, 32, []int{1}); ix.Bbs = 0; return ix },
		"ivffs nil":        func() Index { return (*IVFPQFastScan)(nil) },
		"hnsw levels":      func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.HNSW.Levels = ix.HNSW.Levels[1:]; return ix },
		"hnsw offsets":     func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.HNSW.Offsets[2]++; return ix },
		"hnsw neighbors":   func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.HNSW.Neighbors = ix.HNSW.Neighbors[1:]; return ix },
		"hnsw neighbor":    func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.HNSW.Neighbors[0] = 5; return ix },
		"hnsw entry":       func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.HNSW.EntryPoint = -1; return ix },
		"hnsw no offsets":  func() Index { ix := ixHNSWFlat(r, L2, 4, 0); ix.HNSW.Offsets = nil; return ix },
		"hnsw storage nil": func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.Storage = nil; return ix },
		"hnsw storage typed nil": func() Index {
			ix := ixHNSWFlat(r, L2, 4, 5)
			ix.Storage = (*Flat)(nil)
			return ix
		},
		"hnsw storage d": func() Index { ix := ixHNSWFlat(r, L2, 4, 5); ix.Storage = ixFlat(r, L2, 3, 5); return ix },
		"hnsw storage pq": func() Index {
			ix := ixHNSWFlat(r, L2, 4, 0)
			ix.Storage = &PQ{Header: ix.Header, PQ: ixPQ(r, 4, 2, 4)}
			return ix
		},
		"hnsw nil": func() Index { return (*HNSWFlat)(nil) },
	}
	for name, f := range mutate {
		var b bytes.Buffer
		err := WriteIndex(&b, f())
		if err == nil {
			t.Errorf("%s: WriteIndex succeeded", name)
			continue
		}
		if b.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", name, b.Len())
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestFastScanHugeLengths: length fields of the new records that claim far
// more than the file holds cost about the file's size to read.
func TestFastScanHugeLengths(t *testing.T) {
	const n40 = 1 << 40
	c := func() *craft { return &craft{} }
	pq := func(c *craft, d int) *craft {
		c.u64(uint64(d)).u64(uint64(d)).u64(4).u64(uint64(d) << 4)
		for range d << 4 {
			c.i32(0)
		}
		return c
	}
	cases := map[string][]byte{
		"IPfs 2^40 codes": pq(c().s("IPfs").header(1, n40*32, 1), 1).i32(0).i32(32).i32(0).
			u64(n40 * 32).u64(2).u64(n40 * 32).u64(0).b,
		"IHNf 2^40 probas":    c().s("IHNf").header(4, 0, 1).u64(n40).u64(0).b,
		"IHNf 2^40 levels":    c().s("IHNf").header(4, n40, 1).u64(0).u64(2).i32(0).i32(8).u64(n40).i32(1).b,
		"IHNf 2^30 neighbors": c().s("IHNf").header(4, 1, 1).u64(0).u64(2).i32(0).i32(1 << 30).u64(1).i32(1).u64(2).u64(0).u64(1 << 30).u64(1 << 30).i32(0).b,
		"ilbl 2^40 ids": pq(c().s("IwPf").header(1, n40, 1).u64(1).u64(1).s("IxF2").header(1, 1, 1).u64(1).i32(0).
			u8(0).u64(0).u8(0).u64(1).i32(32).u64(2).i32(0).u64(0), 1).
			s("ilbl").u64(1).u64(math.MaxUint64).u64(32).u64(32).u64(n40).u64(0).b,
	}
	for name, b := range cases {
		if len(b) > 400 {
			t.Fatalf("%s: %d bytes, want a small file", name, len(b))
		}
		allocated(t, name, b)
	}
}

// allocated reads b, which must fail, and fails the test if that
// allocates more than 1 MiB.
func allocated(t *testing.T, name string, b []byte) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ReadIndex(bytes.NewReader(b))
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Errorf("%s: read succeeded", name)
		return
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 1<<20 {
		t.Errorf("%s: %d bytes allocated reading %d bytes", name, alloc, len(b))
	}
	t.Logf("%s: %d bytes allocated: %v", name, alloc, err)
}
