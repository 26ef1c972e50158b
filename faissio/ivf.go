package faissio

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// IVFParams describes an IVF index whose parameters were trained outside
// FAISS. M == 0 means an IndexIVFFlat; otherwise an IndexIVFPQ that encodes
// residuals from the list centroids. The cgo package builds FAISS indexes
// from it (faiss.NewIVF) and NewIVFIndex builds the same index here, so
// that either writes the same file.
type IVFParams struct {
	D      int
	Metric Metric // the coarse quantizer is IndexFlatIP or IndexFlatL2 to match
	Nlist  int

	// Rotation is D×D, y = A x; when set, the index is
	// IndexPreTransform(LinearTransform A, the IVF index) and
	// Centroids/Codebooks/Codes live in the rotated space. Row-major, as
	// FAISS stores LinearTransform::A; the cgo package's ApplyRotation
	// applies it.
	Rotation []float32

	// Centroids holds the Nlist list centroids, row-major.
	Centroids []float32

	// M is the number of PQ sub-quantizers and Nbits (1 to 8) the bits per
	// sub-quantizer code; both are 0 for IVFFlat.
	M, Nbits int

	// Codebooks holds the PQ centroids in FAISS's order [M][2^Nbits][D/M].
	Codebooks []float32

	// FastScan makes the index an IndexIVFPQFastScan (IwPf; Nbits must be
	// 4), its lists packed in blocks of FastScanBlock vectors; Codes stay in
	// the plain PQ layout here. NoResidual (FastScan only) encodes the
	// vectors themselves rather than their residuals from the list
	// centroids, as FAISS's IVF{n},PQ{M}x4fs does by default.
	FastScan, NoResidual bool

	// Flat describes an index without IVF: an IndexPQ (IxPq) or, with
	// FastScan, an IndexPQFastScan (IPfs), trained as one list (Nlist 1)
	// whose centroid is zero, its vectors numbered 0..n-1 in order. Only
	// the build's writer (distill/build.WriteFile) writes it; NewIVFIndex and
	// WriteIVF refuse it.
	Flat bool

	// HNSW, when not nil, makes the coarse quantizer an IndexHNSWFlat over
	// the centroids with this graph (FAISS builds it: the cgo package's
	// BuildHNSW) instead of an IndexFlat.
	HNSW *HNSW

	// Lists and IDs give the list number and the id of each vector.
	Lists []int64
	IDs   []int64

	// Codes holds CodeSize bytes per vector: for IVFFlat the D float32 of
	// the vector, little-endian; for IVFPQ ceil(M*Nbits/8) bytes packed
	// least significant bit first, as FAISS's PQ encoder packs them.
	Codes []byte
}

// CodeSize is the number of bytes of Codes per vector.
func (p *IVFParams) CodeSize() int {
	if p.M == 0 {
		return 4 * p.D
	}
	return (p.M*p.Nbits + 7) / 8
}

// Check reports the first way in which p does not describe an index:
// dimension, metric, list count, PQ shape (4 bits for FastScan), options
// that do not go together, slice lengths that disagree with them, an HNSW
// graph that is not one over the Nlist centroids, or a list number out of
// range.
func (p *IVFParams) Check() error {
	if p.D < 1 || p.D > math.MaxInt32 {
		return fmt.Errorf("dimension %d out of range", p.D)
	}
	if p.Metric != InnerProduct && p.Metric != L2 {
		return fmt.Errorf("unsupported metric %v", p.Metric)
	}
	if p.Nlist < 1 {
		return fmt.Errorf("nlist %d, want at least 1", p.Nlist)
	}
	if want, ok := mulInt(p.D, p.D); p.Rotation != nil && (!ok || len(p.Rotation) != want) {
		return fmt.Errorf("%d rotation values, want d*d = %d", len(p.Rotation), want)
	}
	if want, ok := mulInt(p.Nlist, p.D); !ok || len(p.Centroids) != want {
		return fmt.Errorf("%d centroid values, want nlist*d = %d", len(p.Centroids), want)
	}
	switch {
	case p.M == 0 && p.Nbits != 0:
		return fmt.Errorf("nbits %d without PQ (M = 0)", p.Nbits)
	case p.M < 0:
		return fmt.Errorf("M %d, want at least 0", p.M)
	case p.M > 0 && p.D%p.M != 0:
		return fmt.Errorf("dimension %d not a multiple of M %d", p.D, p.M)
	case p.M > 0 && (p.Nbits < 1 || p.Nbits > 8):
		return fmt.Errorf("nbits %d out of range [1, 8]", p.Nbits)
	}
	switch {
	case p.FastScan && (p.M == 0 || p.Nbits != 4):
		return fmt.Errorf("FastScan needs PQ codes of 4 bits, not M %d, nbits %d", p.M, p.Nbits)
	case p.NoResidual && !p.FastScan:
		return errors.New("NoResidual without FastScan (an IndexIVFPQ always encodes residuals)")
	}
	if g := p.HNSW; g != nil {
		switch {
		case len(g.Levels) != p.Nlist:
			return fmt.Errorf("HNSW graph has %d levels, want one per list (%d)", len(g.Levels), p.Nlist)
		case len(g.Offsets) != p.Nlist+1:
			return fmt.Errorf("HNSW graph has %d offsets, want nlist+1 = %d", len(g.Offsets), p.Nlist+1)
		}
		if err := g.check(int64(p.Nlist)); err != nil {
			return fmt.Errorf("HNSW graph %w", err)
		}
	}
	want := 0
	if p.M > 0 {
		want = p.D << p.Nbits
	}
	if len(p.Codebooks) != want {
		return fmt.Errorf("%d codebook values, want M*2^nbits*(d/M) = %d", len(p.Codebooks), want)
	}
	n := len(p.Lists)
	if len(p.IDs) != n {
		return fmt.Errorf("%d ids for %d list numbers", len(p.IDs), n)
	}
	if want, ok := mulInt(n, p.CodeSize()); !ok || len(p.Codes) != want {
		return fmt.Errorf("%d code bytes, want %d vectors * %d", len(p.Codes), n, p.CodeSize())
	}
	for i, l := range p.Lists {
		if l < 0 || l >= int64(p.Nlist) {
			return fmt.Errorf("vector %d: list number %d out of range [0, %d)", i, l, p.Nlist)
		}
	}
	return nil
}

// NewIVFIndex builds the index that the cgo package's faiss.NewIVF(p)
// builds, field for field as FAISS writes it: an IVFFlat, or an IVFPQ
// encoding residuals, or with p.FastScan the IndexIVFPQFastScan that FAISS's
// conversion constructor IndexIVFPQFastScan(ivfpq, 32) makes of that IVFPQ
// (by_residual false with p.NoResidual), its lists packed by PackFastScan;
// with a flat coarse quantizer of p's metric, or with p.HNSW the
// IndexHNSWFlat FAISS holds once the centroids are added to it; nprobe 1,
// no direct map, the vectors of each list in their order in p, and, with
// p.Rotation, wrapped in a PreTransform whose one LinearTransform is the
// rotation (what FAISS writes for a trained OPQMatrix). Nothing is shared
// with p.
func NewIVFIndex(p IVFParams) (Index, error) {
	p.Rotation, p.Centroids, p.Codebooks = slices.Clone(p.Rotation), slices.Clone(p.Centroids), slices.Clone(p.Codebooks)
	p.HNSW = cloneHNSW(p.HNSW)
	ix, ivf, err := ivfShell(&p)
	if err != nil {
		return nil, fmt.Errorf("new IVF index: %w", err)
	}
	// Count first, so that each list is allocated once at its size.
	cs := p.CodeSize()
	sizes := listSizes(&p)
	if p.FastScan {
		fillFastScanLists(&p, ivf, sizes)
		return ix, nil
	}
	for l, s := range sizes {
		if s > 0 {
			ivf.Lists[l] = InvertedList{IDs: make([]int64, 0, s), Codes: make([]byte, 0, s*cs)}
		}
	}
	for i, l := range p.Lists {
		il := &ivf.Lists[l]
		il.IDs = append(il.IDs, p.IDs[i])
		il.Codes = append(il.Codes, p.Codes[i*cs:(i+1)*cs]...)
	}
	return ix, nil
}

// fillFastScanLists fills the lists of a FastScan shell with p's vectors,
// of the given sizes per list, packing each list's codes. Each list's
// plain codes are gathered in one scratch buffer, the size of the largest
// list, rather than in a copy of all the codes.
func fillFastScanLists(p *IVFParams, ivf *IVF, sizes []int) {
	cs := p.CodeSize()
	for l, s := range sizes {
		if s > 0 {
			ivf.Lists[l].IDs = make([]int64, 0, s)
		}
	}
	for i, l := range p.Lists {
		il := &ivf.Lists[l]
		il.IDs = append(il.IDs, p.IDs[i])
	}
	order := byList[int64](p, sizes)
	plain := make([]byte, 0, slices.Max(append(sizes, 0))*cs)
	for l, s := range sizes {
		list := order[:s]
		order = order[s:]
		if s == 0 {
			continue
		}
		plain = plain[:0]
		for _, i := range list {
			plain = append(plain, p.Codes[int(i)*cs:(int(i)+1)*cs]...)
		}
		packed := make([]byte, FastScanPackedSize(s, p.M, FastScanBlock))
		PackFastScan(packed, plain, s, p.M, FastScanBlock)
		ivf.Lists[l].Codes = packed
	}
}

// ivfShell builds the index NewIVFIndex(*p) describes, sharing p's
// centroids, codebooks, rotation and graph, with all its lists empty, and
// checks it as WriteIndex would, catching what FAISS's files cannot hold
// (such as a dimension above 2^20) before anything is written. It then
// sets ntotal to p's vector count, so that only the lists are left:
// NewIVFIndex fills them, WriteIVF streams them. It returns the index and
// its IVF part.
func ivfShell(p *IVFParams) (Index, *IVF, error) {
	if p == nil {
		return nil, nil, errors.New("nil IVF parameters")
	}
	if err := p.Check(); err != nil {
		return nil, nil, err
	}
	if p.Flat {
		return nil, nil, errors.New("parameters of a PQ without IVF (Flat): distill/build's WriteFile writes those")
	}
	var q Index = &Flat{
		Header: Header{D: p.D, Ntotal: int64(p.Nlist), IsTrained: true, Metric: p.Metric},
		Data:   p.Centroids,
	}
	if p.HNSW != nil {
		// IndexHNSWFlat(d, M, metric) is trained from its construction,
		// and adding the centroids makes its ntotal and its storage's
		// nlist.
		q = &HNSWFlat{
			Header:  Header{D: p.D, Ntotal: int64(p.Nlist), IsTrained: true, Metric: p.Metric},
			HNSW:    *p.HNSW,
			Storage: q,
		}
	}
	ivf := IVF{
		Header:    Header{D: p.D, IsTrained: true, Metric: p.Metric},
		Nlist:     p.Nlist,
		Nprobe:    1,
		Quantizer: q,
		Lists:     make([]InvertedList, p.Nlist),
	}
	pq := ProductQuantizer{D: p.D, M: p.M, Nbits: p.Nbits, Centroids: p.Codebooks}
	var ix Index
	var v *IVF
	switch {
	case p.M == 0:
		x := &IVFFlat{IVF: ivf}
		ix, v = x, &x.IVF
	case p.FastScan:
		// What IndexIVFPQFastScan(const IndexIVFPQ&, bbs) sets: its
		// init_fastscan makes M2 M rounded up to even and the code size
		// M2/2 (the PQ's own for 4 bits), and BlockInvertedLists(nlist,
		// bbs, bbs*M2/2), which record an invalid code size; implem and
		// qbs2 keep their defaults, 0; by_residual, ntotal, is_trained and
		// nprobe are copied from the IndexIVFPQ.
		m2 := roundUpEven(p.M)
		x := &IVFPQFastScan{
			IVF:           ivf,
			ByResidual:    !p.NoResidual,
			CodeSize:      int64(m2 / 2),
			Bbs:           FastScanBlock,
			M2:            int64(m2),
			PQ:            pq,
			ListsCodeSize: math.MaxUint64,
			NPerBlock:     FastScanBlock,
			BlockSize:     uint64(FastScanBlock * m2 / 2),
		}
		ix, v = x, &x.IVF
	default:
		x := &IVFPQ{IVF: ivf, ByResidual: true, PQ: pq}
		ix, v = x, &x.IVF
	}
	var pt *PreTransform
	if p.Rotation != nil {
		pt = &PreTransform{
			Header: Header{D: p.D, IsTrained: true, Metric: p.Metric},
			Chain:  []*LinearTransform{{DIn: p.D, DOut: p.D, IsTrained: true, A: p.Rotation}},
			Index:  ix,
		}
		ix = pt
	}
	if err := checkIndex(ix, 0); err != nil {
		return nil, nil, err
	}
	v.Ntotal = int64(len(p.Lists))
	if pt != nil {
		pt.Ntotal = v.Ntotal
	}
	return ix, v, nil
}

// cloneHNSW is a deep copy of g (nil for nil).
func cloneHNSW(g *HNSW) *HNSW {
	if g == nil {
		return nil
	}
	c := *g
	c.AssignProbas = slices.Clone(g.AssignProbas)
	c.CumNNeighborPerLevel = slices.Clone(g.CumNNeighborPerLevel)
	c.Levels = slices.Clone(g.Levels)
	c.Offsets = slices.Clone(g.Offsets)
	c.Neighbors = slices.Clone(g.Neighbors)
	return &c
}

// listSizes counts the vectors of each of p's lists.
func listSizes(p *IVFParams) []int {
	sizes := make([]int, p.Nlist)
	for _, l := range p.Lists {
		sizes[l]++
	}
	return sizes
}

// IVFParamsOf extracts the contents of an index in the form NewIVFIndex
// gives: an IVFFlat, an IVFPQ with residual encoding, or an
// IVFPQFastScan as FAISS's conversion from such an IVFPQ leaves it (blocks
// of FastScanBlock vectors, default search settings, with or without
// residual encoding, zero padding), whose coarse quantizer is a flat index
// of the index's metric holding the centroids or an HNSWFlat over such a
// flat index; bare or wrapped in a PreTransform whose only transform is a
// trained D×D LinearTransform without bias (an OPQ rotation, which becomes
// Rotation): NewIVFIndex of the result gives back the index, but for its
// nprobe and direct map, which IVFParams does not hold. The vectors come
// list by list, in list order, FastScan codes unpacked. Nothing is shared
// with ix.
func IVFParamsOf(ix Index) (IVFParams, error) {
	p, err := ivfParamsOf(ix)
	if err != nil {
		return IVFParams{}, fmt.Errorf("IVF parameters: %w", err)
	}
	return p, nil
}

func ivfParamsOf(ix Index) (IVFParams, error) {
	var p IVFParams
	if ix == nil {
		return p, errors.New("nil index")
	}
	if err := checkIndex(ix, 0); err != nil {
		return p, err
	}
	if pt, ok := ix.(*PreTransform); ok {
		if len(pt.Chain) != 1 {
			return p, fmt.Errorf("IndexPreTransform has %d transforms, want one rotation", len(pt.Chain))
		}
		lt, d := pt.Chain[0], pt.D
		sub := pt.Index.IndexHeader()
		switch {
		case lt.DIn != d || lt.DOut != d:
			return p, fmt.Errorf("transform maps %d to %d dimensions, want %d to %d", lt.DIn, lt.DOut, d, d)
		case lt.HaveBias || len(lt.B) > 0:
			return p, errors.New("linear transform has a bias")
		case !lt.IsTrained:
			return p, errors.New("linear transform is not trained")
		case pt.Ntotal != sub.Ntotal || pt.Metric != sub.Metric:
			return p, errors.New("IndexPreTransform disagrees with its index on ntotal or metric")
		}
		p.Rotation = slices.Clone(lt.A)
		ix = pt.Index
	}
	var v *IVF
	var fs *IVFPQFastScan
	switch x := ix.(type) {
	case *IVFFlat:
		v = &x.IVF
	case *IVFPQ:
		if !x.ByResidual {
			return p, errors.New("IVFPQ index does not encode residuals")
		}
		v = &x.IVF
		p.M, p.Nbits = x.PQ.M, x.PQ.Nbits
		p.Codebooks = slices.Clone(x.PQ.Centroids)
	case *IVFPQFastScan:
		if err := checkFastScanForm(x); err != nil {
			return p, err
		}
		v, fs = &x.IVF, x
		p.M, p.Nbits = x.PQ.M, x.PQ.Nbits
		p.Codebooks = slices.Clone(x.PQ.Centroids)
		p.FastScan, p.NoResidual = true, !x.ByResidual
	default:
		return p, fmt.Errorf("%s is not an IndexIVFFlat or IndexIVFPQ, nor an IndexIVFPQFastScan", typeName(ix))
	}
	if v.Metric != InnerProduct && v.Metric != L2 {
		return p, errors.New("metric is neither inner product nor L2")
	}
	q, err := coarseCentroids(v)
	if err != nil {
		return p, err
	}
	if h, ok := v.Quantizer.(*HNSWFlat); ok {
		p.HNSW = cloneHNSW(&h.HNSW)
	}
	p.D, p.Metric, p.Nlist = v.D, v.Metric, v.Nlist
	p.Centroids = slices.Clone(q.Data)
	n := int(v.Ntotal)
	cs := p.CodeSize()
	p.Lists = make([]int64, 0, n)
	p.IDs = make([]int64, 0, n)
	p.Codes = make([]byte, 0, n*cs)
	var blocks *fastScanBlocks
	if fs != nil {
		blocks = newFastScanBlocks(p.M, nil)
	}
	for l, il := range v.Lists {
		for range il.IDs {
			p.Lists = append(p.Lists, int64(l))
		}
		p.IDs = append(p.IDs, il.IDs...)
		if fs == nil {
			p.Codes = append(p.Codes, il.Codes...)
			continue
		}
		k := len(il.IDs)
		if len(il.Codes) != FastScanPackedSize(k, p.M, FastScanBlock) {
			return p, fmt.Errorf("list %d: %d code bytes for %d vectors in blocks of %d", l, len(il.Codes), k, FastScanBlock)
		}
		if !blocks.listPaddingZero(il.Codes, k) {
			return p, fmt.Errorf("list %d: the padding of its last block is not zero, as FAISS leaves it", l)
		}
		at := len(p.Codes)
		p.Codes = p.Codes[:at+k*cs]
		UnpackFastScan(p.Codes[at:], il.Codes, k, p.M, FastScanBlock)
	}
	return p, p.Check()
}

// checkFastScanForm checks that x's FastScan settings are those
// NewIVFIndex gives, which IVFParams does not hold but implies.
func checkFastScanForm(x *IVFPQFastScan) error {
	m := x.PQ.M
	m2 := int64(roundUpEven(m))
	switch {
	case x.PQ.Nbits != 4:
		return fmt.Errorf("IndexIVFPQFastScan has PQ nbits %d, want 4", x.PQ.Nbits)
	case x.Bbs != FastScanBlock:
		return fmt.Errorf("IndexIVFPQFastScan has blocks of %d vectors, want %d", x.Bbs, FastScanBlock)
	case x.M2 != m2 || x.CodeSize != m2/2:
		return fmt.Errorf("IndexIVFPQFastScan has M2 %d and code size %d for M %d, want %d and %d", x.M2, x.CodeSize, m, m2, m2/2)
	case x.Implem != 0 || x.Qbs2 != 0:
		return fmt.Errorf("IndexIVFPQFastScan has implem %d and qbs2 %d, want the defaults 0", x.Implem, x.Qbs2)
	case x.ListsCodeSize != math.MaxUint64 || x.NPerBlock != FastScanBlock || x.BlockSize != uint64(FastScanBlock*m2/2):
		return fmt.Errorf("block inverted lists have code size %d, %d vectors and %d bytes a block, want %d, %d and %d",
			x.ListsCodeSize, x.NPerBlock, x.BlockSize, uint64(math.MaxUint64), FastScanBlock, FastScanBlock*m2/2)
	}
	return nil
}

// coarseCentroids returns the flat index holding v's centroids: its
// quantizer, or the storage of an HNSWFlat quantizer, checked to be in the
// form NewIVFIndex gives.
func coarseCentroids(v *IVF) (*Flat, error) {
	quantizer := v.Quantizer
	if h, ok := quantizer.(*HNSWFlat); ok {
		switch {
		case h.Metric != v.Metric:
			return nil, fmt.Errorf("coarse quantizer %s does not have the index's metric", typeName(h))
		case !h.IsTrained:
			return nil, fmt.Errorf("coarse quantizer %s is not trained", typeName(h))
		}
		if s, ok := h.Storage.(*Flat); !ok || s.Ntotal != h.Ntotal {
			return nil, fmt.Errorf("coarse quantizer %s does not store its %d vectors in a flat index", typeName(h), h.Ntotal)
		}
		quantizer = h.Storage
	}
	q, ok := quantizer.(*Flat)
	if !ok || q.Metric != v.Metric {
		return nil, fmt.Errorf("coarse quantizer %s is not a flat index with the index's metric", typeName(quantizer))
	}
	if q.Ntotal != int64(v.Nlist) {
		return nil, fmt.Errorf("coarse quantizer holds %d centroids for %d lists", q.Ntotal, v.Nlist)
	}
	return q, nil
}
