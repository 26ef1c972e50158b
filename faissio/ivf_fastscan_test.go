package faissio

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testHNSW is a valid HNSW graph over n vectors, built by hand as FAISS
// lays one out: M neighbours a level (2M at level 0), levels drawn as
// FAISS draws them, each slot a random vector of that level or -1, the
// entry point a vector of the top level.
func testHNSW(r *rand.Rand, n, m int) *HNSW {
	g := &HNSW{EfConstruction: 40, EfSearch: 16, UpperBeam: 1, EntryPoint: -1, MaxLevel: -1}
	mult := 1 / math.Log(float64(m))
	g.CumNNeighborPerLevel = []int32{0}
	for level := 0; ; level++ {
		p := math.Exp(-float64(level)/mult) * (1 - math.Exp(-1/mult))
		if p < 1e-9 {
			break
		}
		g.AssignProbas = append(g.AssignProbas, p)
		per := int32(m)
		if level == 0 {
			per = int32(2 * m)
		}
		g.CumNNeighborPerLevel = append(g.CumNNeighborPerLevel, g.CumNNeighborPerLevel[level]+per)
	}
	g.Offsets = []uint64{0}
	for i := range n {
		level := 1
		for level < len(g.AssignProbas) && r.Float64() < 1/float64(m) {
			level++
		}
		g.Levels = append(g.Levels, int32(level))
		g.Offsets = append(g.Offsets, g.Offsets[i]+uint64(g.CumNNeighborPerLevel[level]))
		if int32(level-1) > g.MaxLevel {
			g.MaxLevel, g.EntryPoint = int32(level-1), int32(i)
		}
	}
	for i := range n {
		for lv := range int(g.Levels[i]) {
			slots := int(g.CumNNeighborPerLevel[lv+1] - g.CumNNeighborPerLevel[lv])
			var at []int32 // the other vectors of level lv and above
			for j := range n {
				if j != i && int(g.Levels[j]) > lv {
					at = append(at, int32(j))
				}
			}
			r.Shuffle(len(at), func(a, b int) { at[a], at[b] = at[b], at[a] })
			for k := range slots {
				if k < len(at) {
					g.Neighbors = append(g.Neighbors, at[k])
				} else {
					g.Neighbors = append(g.Neighbors, -1)
				}
			}
		}
	}
	return g
}

// fastScanShape is the parameters of one FastScan test index.
type fastScanShape struct {
	d, m, nlist int
	sizes       []int // vectors of each list
	metric      Metric
	noResidual  bool
	hnsw        bool
	rotation    bool
}

func (s fastScanShape) String() string {
	return fmt.Sprintf("d%d-M%d-nlist%d-sizes%v-%v-nores%v-hnsw%v-rot%v", s.d, s.m, s.nlist, s.sizes, s.metric, s.noResidual, s.hnsw, s.rotation)
}

// params draws an index of the shape: the vectors of each list come in a
// random interleaving, so that packing must gather them.
func (s fastScanShape) params(r *rand.Rand) *IVFParams {
	p := &IVFParams{D: s.d, Metric: s.metric, Nlist: s.nlist, M: s.m, Nbits: 4, FastScan: true, NoResidual: s.noResidual}
	p.Centroids = ixFloats(r, s.nlist*s.d)
	p.Codebooks = ixFloats(r, s.d<<4)
	if s.rotation {
		p.Rotation = ixFloats(r, s.d*s.d)
	}
	if s.hnsw {
		p.HNSW = testHNSW(r, s.nlist, 4)
	}
	for l, n := range s.sizes {
		for range n {
			p.Lists = append(p.Lists, int64(l))
		}
	}
	r.Shuffle(len(p.Lists), func(i, j int) { p.Lists[i], p.Lists[j] = p.Lists[j], p.Lists[i] })
	p.IDs = make([]int64, len(p.Lists))
	for i := range p.IDs {
		p.IDs[i] = int64(r.Uint32())<<8 | int64(i&0xff)
	}
	p.Codes = ixBytes(r, len(p.Lists)*p.CodeSize())
	return p
}

// fastScanShapes is a series of shapes covering what packing and the
// block lists must get right: lists empty, shorter than a block, longer,
// exact multiples of it; M even, odd, 1; residuals or not; flat or HNSW
// quantizer; rotation or not; both metrics.
func fastScanShapes() []fastScanShape {
	sizes := [][]int{
		{0}, {1}, {31}, {32}, {33}, {64}, {95},
		{0, 5, 32}, {40, 0, 0}, {96, 1, 63, 0, 2},
		{0, 0, 0, 0, 0, 0, 7}, {32, 64, 96, 128, 0, 31, 33},
	}
	dims := []struct{ d, m int }{{8, 8}, {12, 3}, {10, 5}, {4, 1}, {16, 2}, {14, 7}, {24, 6}}
	var out []fastScanShape
	for i, sz := range sizes {
		dm := dims[i%len(dims)]
		out = append(out, fastScanShape{
			d: dm.d, m: dm.m, nlist: len(sz), sizes: sz,
			metric: Metric(i % 2), noResidual: i%3 == 1, hnsw: i%4 < 2, rotation: i%5 == 2,
		})
	}
	// Sparse lists of 40, and full ones, with every option.
	for i := range 4 {
		sz := make([]int, 40)
		for l := range sz {
			if i < 2 && l%3 != 0 {
				continue
			}
			sz[l] = (l * 7) % 70
		}
		out = append(out, fastScanShape{d: 12, m: 12 / (1 + i%2*3), nlist: 40, sizes: sz, metric: L2,
			noResidual: i%2 == 0, hnsw: i >= 1, rotation: i == 3})
	}
	return out
}

// inListOrder is p with its vectors ordered by list, stably: what
// IVFParamsOf gives back.
func inListOrder(p *IVFParams) *IVFParams {
	q := *p
	order := make([]int, len(p.Lists))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(p.Lists[a] - p.Lists[b]) })
	cs := p.CodeSize()
	q.Lists, q.IDs, q.Codes = make([]int64, 0, len(order)), make([]int64, 0, len(order)), make([]byte, 0, len(p.Codes))
	for _, i := range order {
		q.Lists = append(q.Lists, p.Lists[i])
		q.IDs = append(q.IDs, p.IDs[i])
		q.Codes = append(q.Codes, p.Codes[i*cs:(i+1)*cs]...)
	}
	return &q
}

// sameParams fails the test unless got is want, field for field (nil and
// empty slices alike).
func sameParams(t *testing.T, got, want *IVFParams) {
	t.Helper()
	norm := func(p IVFParams) IVFParams {
		if len(p.Lists) == 0 {
			p.Lists, p.IDs, p.Codes = nil, nil, nil
		}
		if len(p.Codebooks) == 0 {
			p.Codebooks = nil
		}
		return p
	}
	if g, w := norm(*got), norm(*want); !reflect.DeepEqual(g, w) {
		t.Fatalf("IVFParamsOf gives %+v\nwant %+v", summary(&g), summary(&w))
	}
}

// summary describes p briefly, for messages.
func summary(p *IVFParams) string {
	return fmt.Sprintf("{D %d %v nlist %d M %d nbits %d fastscan %v nores %v hnsw %v rot %d: %d vectors, lists %v, ids %v}",
		p.D, p.Metric, p.Nlist, p.M, p.Nbits, p.FastScan, p.NoResidual, p.HNSW != nil, len(p.Rotation), len(p.IDs), p.Lists, p.IDs)
}

// TestNewIVFIndexFastScan checks the index NewIVFIndex builds for FastScan
// and HNSW parameters against what FAISS's conversion constructor and
// IndexHNSWFlat hold, and its lists against PackFastScan of their codes.
func TestNewIVFIndexFastScan(t *testing.T) {
	r := ixRand(51)
	s := fastScanShape{d: 10, m: 5, nlist: 3, sizes: []int{33, 0, 7}, metric: InnerProduct, hnsw: true, rotation: true}
	p := s.params(r)
	ix, err := NewIVFIndex(*p)
	if err != nil {
		t.Fatal(err)
	}
	pt, ok := ix.(*PreTransform)
	if !ok || pt.Ntotal != 40 {
		t.Fatalf("%T, want a PreTransform of 40 vectors", ix)
	}
	fs, ok := pt.Index.(*IVFPQFastScan)
	if !ok {
		t.Fatalf("%T, want *IVFPQFastScan", pt.Index)
	}
	type fields struct {
		byResidual                          bool
		codeSize, m2, qbs2                  int64
		bbs, implem                         int32
		listsCodeSize, nPerBlock, blockSize uint64
	}
	got := fields{fs.ByResidual, fs.CodeSize, fs.M2, fs.Qbs2, fs.Bbs, fs.Implem, fs.ListsCodeSize, fs.NPerBlock, fs.BlockSize}
	if want := (fields{true, 3, 6, 0, 32, 0, math.MaxUint64, 32, 96}); got != want {
		t.Errorf("FastScan fields %+v, want %+v", got, want)
	}
	if fs.PQ.M != 5 || fs.PQ.Nbits != 4 || fs.PQ.D != 10 || fs.Nprobe != 1 || fs.Ntotal != 40 || !fs.IsTrained || fs.Metric != InnerProduct {
		t.Errorf("IVF %+v, PQ M %d nbits %d", fs.Header, fs.PQ.M, fs.PQ.Nbits)
	}
	q, ok := fs.Quantizer.(*HNSWFlat)
	if !ok {
		t.Fatalf("quantizer %T, want *HNSWFlat", fs.Quantizer)
	}
	if q.Header != (Header{D: 10, Ntotal: 3, IsTrained: true, Metric: InnerProduct}) || !reflect.DeepEqual(q.HNSW, *p.HNSW) {
		t.Errorf("HNSW quantizer header %+v", q.Header)
	}
	if st, ok := q.Storage.(*Flat); !ok || st.Header != (Header{D: 10, Ntotal: 3, IsTrained: true, Metric: InnerProduct}) || !slices.Equal(st.Data, p.Centroids) {
		t.Errorf("HNSW storage %+v", q.Storage)
	}
	// Nothing is shared with p.
	p.HNSW.Neighbors[0] = 99
	p.Centroids[0] = 99
	if q.HNSW.Neighbors[0] == 99 || q.Storage.(*Flat).Data[0] == 99 {
		t.Error("the index shares p's graph or centroids")
	}
	cs := p.CodeSize()
	for l, il := range fs.Lists {
		var ids []int64
		var plain []byte
		for i, pl := range p.Lists {
			if pl == int64(l) {
				ids = append(ids, p.IDs[i])
				plain = append(plain, p.Codes[i*cs:(i+1)*cs]...)
			}
		}
		packed := make([]byte, FastScanPackedSize(len(ids), 5, 32))
		PackFastScan(packed, plain, len(ids), 5, 32)
		if !slices.Equal(il.IDs, ids) || !bytes.Equal(il.Codes, packed) {
			t.Errorf("list %d: %d ids, %d code bytes, want %d, %d packed", l, len(il.IDs), len(il.Codes), len(ids), len(packed))
		}
	}

	// Without residuals and HNSW: by_residual false, a flat quantizer.
	p2 := fastScanShape{d: 8, m: 8, nlist: 2, sizes: []int{3, 0}, metric: L2, noResidual: true}.params(r)
	ix, err = NewIVFIndex(*p2)
	if err != nil {
		t.Fatal(err)
	}
	fs = ix.(*IVFPQFastScan)
	if fs.ByResidual || fs.M2 != 8 || fs.CodeSize != 4 || fs.BlockSize != 128 {
		t.Errorf("no residual: by_residual %v M2 %d code size %d block %d", fs.ByResidual, fs.M2, fs.CodeSize, fs.BlockSize)
	}
	if _, ok := fs.Quantizer.(*Flat); !ok {
		t.Errorf("quantizer %T, want *Flat", fs.Quantizer)
	}
}

// TestWriteIVFFastScan: for every shape of fastScanShapes, WriteIVF writes
// WriteIndex's bytes of NewIVFIndex, with the narrow and the wide ordering,
// and reading them back gives p in list order.
func TestWriteIVFFastScan(t *testing.T) {
	r := ixRand(52)
	for i, s := range fastScanShapes() {
		t.Run(s.String(), func(t *testing.T) {
			if i%4 == 3 {
				old := narrowOrderLimit
				narrowOrderLimit = 0
				defer func() { narrowOrderLimit = old }()
			}
			p := s.params(r)
			b := checkWriteIVF(t, p, s.nlist)
			ix, err := ReadIndex(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			back, err := IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			sameParams(t, &back, inListOrder(p))
		})
	}
}

// TestWriteIVFHNSW: IVFFlat and IVFPQ with an HNSW quantizer, streamed.
func TestWriteIVFHNSW(t *testing.T) {
	r := ixRand(53)
	for i := range 8 {
		m, nbits := []int{0, 4, 2, 8}[i%4], []int{0, 8, 3, 4}[i%4]
		p := randomIVFParams(r, 8, 5+i*7, 3+i, m, nbits, 50*i, Metric(i%2), i%3 == 0)
		p.HNSW = testHNSW(r, p.Nlist, 3+i%3)
		t.Run(fmt.Sprintf("nlist%d-M%d-nbits%d-n%d", p.Nlist, m, nbits, len(p.IDs)), func(t *testing.T) {
			b := checkWriteIVF(t, p, p.Nlist)
			ix, err := ReadIndex(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			back, err := IVFParamsOf(ix)
			if err != nil {
				t.Fatal(err)
			}
			sameParams(t, &back, inListOrder(p))
		})
	}
}

// TestWriteIVFFastScanLarge streams a FastScan list of 100000 vectors: the
// bytes are WriteIndex's, and the writer allocates a few buffers, not a
// copy of the codes.
func TestWriteIVFFastScanLarge(t *testing.T) {
	r := ixRand(54)
	p := fastScanShape{d: 32, m: 32, nlist: 3, sizes: []int{100001, 17, 0}, metric: L2}.params(r)
	checkWriteIVF(t, p, 3)
	n := allocatedBy(func() {
		if err := WriteIVF(t.Context(), discard{}, p, nil); err != nil {
			t.Fatal(err)
		}
	})
	// The order (4 bytes a vector), the 1 MiB buffer, the head.
	if limit := uint64(len(p.IDs))*4 + 2<<20; n > limit {
		t.Errorf("WriteIVF of %d code bytes allocated %d, more than %d", len(p.Codes), n, limit)
	}
}

// discard is io.Discard as a type of its own, so that nothing it holds
// counts as the writer's allocation.
type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestIVFParamsCheckFastScan(t *testing.T) {
	r := ixRand(55)
	base := fastScanShape{d: 8, m: 4, nlist: 3, sizes: []int{2, 0, 1}, metric: L2, hnsw: true}.params(r)
	for _, c := range []struct {
		change func(p *IVFParams)
		want   string
	}{
		{func(p *IVFParams) { p.Nbits, p.Codebooks, p.Codes = 5, ixFloats(r, 8<<5), ixBytes(r, 3*3) }, "FastScan needs PQ codes of 4 bits, not M 4, nbits 5"},
		{func(p *IVFParams) { p.M, p.Nbits, p.Codebooks, p.Codes = 0, 0, nil, ixBytes(r, 3*32) }, "FastScan needs PQ codes of 4 bits, not M 0, nbits 0"},
		{func(p *IVFParams) { p.FastScan = false; p.NoResidual = true }, "NoResidual without FastScan"},
		{func(p *IVFParams) { p.HNSW.Levels = p.HNSW.Levels[1:] }, "HNSW graph has 2 levels, want one per list (3)"},
		{func(p *IVFParams) { p.HNSW.Offsets = append(p.HNSW.Offsets, 0) }, "HNSW graph has 5 offsets, want nlist+1 = 4"},
	} {
		p := *base
		p.HNSW = cloneHNSW(base.HNSW)
		c.change(&p)
		err := p.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
		if _, err := NewIVFIndex(p); err == nil {
			t.Errorf("NewIVFIndex accepted what Check refuses (%s)", c.want)
		}
	}
	if err := base.Check(); err != nil {
		t.Errorf("valid parameters: %v", err)
	}
}

// TestIVFParamsOfFastScanRefusals: IVFParamsOf refuses FastScan and HNSW
// indexes that IVFParams cannot describe.
func TestIVFParamsOfFastScanRefusals(t *testing.T) {
	r := ixRand(56)
	p := fastScanShape{d: 8, m: 4, nlist: 3, sizes: []int{40, 0, 1}, metric: L2, hnsw: true}.params(r)
	for _, c := range []struct {
		name   string
		change func(fs *IVFPQFastScan)
		want   string
	}{
		{"implem", func(fs *IVFPQFastScan) { fs.Implem = 12 }, "implem 12 and qbs2 0, want the defaults 0"},
		{"qbs2", func(fs *IVFPQFastScan) { fs.Qbs2 = 4 }, "implem 0 and qbs2 4"},
		{"padding", func(fs *IVFPQFastScan) { fs.Lists[2].Codes[5] |= 0x10 }, "list 2: the padding of its last block is not zero"},
		{"padding of a long list", func(fs *IVFPQFastScan) { fs.Lists[0].Codes[len(fs.Lists[0].Codes)-1] = 1 }, "list 0: the padding of its last block is not zero"},
		{"hnsw metric", func(fs *IVFPQFastScan) {
			h := fs.Quantizer.(*HNSWFlat)
			h.Metric, h.Storage.(*Flat).Metric = InnerProduct, InnerProduct
		}, "coarse quantizer IndexHNSWFlat does not have the index's metric"},
		{"hnsw untrained", func(fs *IVFPQFastScan) { fs.Quantizer.(*HNSWFlat).IsTrained = false }, "coarse quantizer IndexHNSWFlat is not trained"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix, err := NewIVFIndex(*p)
			if err != nil {
				t.Fatal(err)
			}
			c.change(ix.(*IVFPQFastScan))
			if _, err := IVFParamsOf(ix); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want %q", err, c.want)
			}
		})
	}
}

// allocatedBy is the bytes f allocates on the heap.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
