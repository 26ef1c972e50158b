package faissio

// This file holds the in-memory form of FAISS index files. The types mirror
// what FAISS 1.7.3's write_index stores, field for field, and nothing more:
// state FAISS rebuilds on reading (the IVFPQ precomputed table, the
// polysemous threshold of an IVFPQ, scan settings) has no field here because
// no file carries it. ReadIndex followed by WriteIndex reproduces a file
// FAISS wrote byte for byte.

// Index is one FAISS index: *Flat, *PQ, *PQFastScan, *IVFFlat, *IVFPQ,
// *IVFPQFastScan, *HNSWFlat or *PreTransform.
// The set is closed, so that WriteIndex can always write what it is given.
type Index interface {
	// IndexHeader returns the fields every FAISS index stores.
	IndexHeader() *Header
	fourcc() string
}

// Header is the part common to every FAISS index (faiss::Index).
type Header struct {
	D         int   // vector dimension, 1 to 2^20
	Ntotal    int64 // number of vectors stored
	IsTrained bool

	// Metric is FAISS's metric number. Only InnerProduct and L2 have names
	// here, but any metric FAISS defines reads and writes unchanged.
	Metric Metric

	// MetricArg is stored only when Metric > 1 (the p of an Lp metric);
	// WriteIndex ignores it otherwise.
	MetricArg float32
}

// IndexHeader returns h itself, so that embedding Header provides it.
func (h *Header) IndexHeader() *Header { return h }

// Flat is IndexFlat: the vectors themselves, searched exhaustively. FAISS
// names it IxF2 for L2, IxFI for inner product and IxFl for other metrics.
type Flat struct {
	Header
	Data []float32 // Ntotal×D, row-major
}

// PQ is IndexPQ (IxPq): vectors encoded by a product quantizer only.
type PQ struct {
	Header
	PQ    ProductQuantizer
	Codes []byte // Ntotal × PQ.CodeSize() bytes

	// Search settings FAISS stores with an IndexPQ; its constructor sets
	// SearchType 0 (ST_PQ), EncodeSigns false and PolysemousHT M*Nbits+1.
	SearchType   int32
	EncodeSigns  bool
	PolysemousHT int32
}

// ProductQuantizer is faiss::ProductQuantizer: M sub-quantizers of 2^Nbits
// centroids each, over D/M dimensions each.
type ProductQuantizer struct {
	D, M, Nbits int

	// Centroids in FAISS's order [M][2^Nbits][D/M].
	Centroids []float32
}

// CodeSize is the bytes per encoded vector: M codes of Nbits bits, packed
// least significant bit first, rounded up to whole bytes.
func (pq *ProductQuantizer) CodeSize() int { return (pq.M*pq.Nbits + 7) / 8 }

// IVF is the part common to IVF indexes (faiss::IndexIVF): a coarse
// quantizer assigning each vector to one of Nlist lists, and the lists.
type IVF struct {
	Header
	Nlist  int
	Nprobe int // lists searched by default

	// Quantizer is the coarse quantizer, usually a *Flat holding the Nlist
	// centroids. It is stored whole, fourcc and all, inside the IVF index.
	Quantizer Index

	DirectMap DirectMap

	// Lists holds the Nlist inverted lists (FAISS's ArrayInvertedLists,
	// written as "ilar").
	Lists []InvertedList
}

// InvertedList is one list of an IVF index: the ids of its vectors and their
// codes, code size bytes each, in the same order.
type InvertedList struct {
	IDs   []int64
	Codes []byte
}

// IVFFlat is IndexIVFFlat (IwFl): list codes are the D float32 of each
// vector, little-endian, so its code size is 4*D.
type IVFFlat struct {
	IVF
}

// IVFPQ is IndexIVFPQ (IwPQ): list codes are PQ codes, of the residual from
// the list centroid when ByResidual.
type IVFPQ struct {
	IVF
	ByResidual bool
	PQ         ProductQuantizer
}

// FastScanBlock is the vectors per block of FAISS's FastScan indexes (bbs,
// the SIMD scan's block size): what its factory strings and constructors
// use unless told otherwise.
const FastScanBlock = 32

// PQFastScan is IndexPQFastScan (IPfs): 4-bit PQ codes packed in blocks of
// Bbs vectors, the layout FAISS's SIMD scan reads (PackFastScan).
type PQFastScan struct {
	Header
	PQ ProductQuantizer // Nbits 4

	// Implem and Qbs are search settings FAISS stores (0: its defaults);
	// Bbs is the block size, a multiple of 32.
	Implem, Bbs, Qbs int32
	Ntotal2          int64 // Ntotal rounded up to a multiple of Bbs
	M2               int64 // PQ.M rounded up to even

	// Codes holds Ntotal2*M2/2 bytes: the codes of the Ntotal vectors,
	// packed by PackFastScan. FAISS's add leaves zeros past them, but its
	// remove_ids leaves stale codes there; either reads and writes back
	// unchanged.
	Codes []byte
}

// IVFPQFastScan is IndexIVFPQFastScan (IwPf): an IVF whose lists hold
// 4-bit PQ codes packed per list in blocks of Bbs vectors (FAISS's
// BlockInvertedLists, "ilbl", written instead of the IVF's "ilar"): list
// i's Codes are ceil(len(IDs)/Bbs)*Bbs*M2/2 bytes, the list's codes packed
// by PackFastScan, zero past them. Its coarse quantizer may be a *Flat or
// an *HNSWFlat, as for the other IVF indexes.
type IVFPQFastScan struct {
	IVF
	// ByResidual: the PQ encodes residuals from the list centroids. FAISS's
	// factory string IVF{n},PQ{M}x4fs leaves it false, IVF{n},PQ{M}x4fsr
	// sets it.
	ByResidual bool
	CodeSize   int64 // PQ.CodeSize(), the bytes of a vector's codes before packing, as FAISS stores it
	Bbs        int32
	M2         int64
	Implem     int32
	Qbs2       int64
	PQ         ProductQuantizer // Nbits 4

	// The block lists' own header: the code size they record (FAISS
	// writes InvertedLists::INVALID_CODE_SIZE, 2^64-1, and reads that or
	// CodeSize), vectors per block (Bbs) and bytes per block (Bbs*M2/2).
	ListsCodeSize        uint64
	NPerBlock, BlockSize uint64
}

// HNSWFlat is IndexHNSWFlat (IHNf): an HNSW graph over the vectors of
// Storage, a *Flat of the same dimension, metric and Ntotal, which FAISS
// stores after the graph. As an IVF's coarse quantizer it holds the list
// centroids.
type HNSWFlat struct {
	Header
	HNSW    HNSW
	Storage Index
}

// HNSW is faiss::HNSW, the graph, field for field as write_HNSW stores it
// (vectors as a uint64 count then the elements; then five int32).
// ReadIndex and WriteIndex hold it to what FAISS's construction gives,
// because FAISS's search trusts it: CumNNeighborPerLevel rises from 0,
// vector i owns the CumNNeighborPerLevel[Levels[i]] slots of Neighbors
// from Offsets[i] (so Offsets[0] is 0 and Offsets[Ntotal] is
// len(Neighbors)), the slots of level L of a vector link only to vectors
// that reach level L, and EntryPoint is a vector of the top level,
// MaxLevel (both -1 in an empty graph).
type HNSW struct {
	AssignProbas         []float64 // probability of each level
	CumNNeighborPerLevel []int32   // neighbours per vector, cumulated over levels (one more than the levels)
	Levels               []int32   // level+1 of each vector (Ntotal)
	Offsets              []uint64  // where each vector's neighbours start in Neighbors (Ntotal+1)
	Neighbors            []int32   // vector numbers; -1 marks an unused slot
	EntryPoint           int32
	MaxLevel             int32
	EfConstruction       int32
	EfSearch             int32 // the search's default beam width
	UpperBeam            int32
}

// PreTransform is IndexPreTransform (IxPT): vectors go through Chain, in
// order, before reaching Index. Its Header.D is the input dimension.
type PreTransform struct {
	Header
	Chain []*LinearTransform
	Index Index
}

// LinearTransform is faiss::LinearTransform, y = A x + b, the record
// ("LTra") that FAISS writes for it and for a trained OPQMatrix alike: the
// OPQ class is not recorded, and FAISS reads it back as a LinearTransform.
type LinearTransform struct {
	DIn, DOut int
	IsTrained bool
	HaveBias  bool
	A         []float32 // DOut×DIn, row-major
	B         []float32 // DOut values when HaveBias, else empty
}

// DirectMapType says how an IVF index finds a vector from its id.
type DirectMapType int8

const (
	// NoDirectMap keeps no map; ids are only found by scanning the lists.
	NoDirectMap DirectMapType = 0
	// ArrayDirectMap maps id i (ids must be 0..Ntotal-1) to Array[i].
	ArrayDirectMap DirectMapType = 1
	// HashtableDirectMap maps arbitrary ids through a hash table.
	HashtableDirectMap DirectMapType = 2
)

// DirectMap is faiss::DirectMap. Each entry locates one vector as
// list<<32 | offset within the list; -1 in Array marks no vector.
type DirectMap struct {
	Type  DirectMapType
	Array []int64

	// Hashtable lists (id, location) pairs in the order FAISS wrote them,
	// which is its unordered_map's iteration order: keeping that order is
	// what makes rewriting a file give the same bytes.
	Hashtable []DirectMapEntry
}

// DirectMapEntry is one id of a hash table direct map and where it is.
type DirectMapEntry struct {
	ID, Loc int64
}

// CodeSize is the bytes per vector in the lists of an IVFFlat: 4*D.
func (ix *IVFFlat) CodeSize() int { return 4 * ix.D }

// CodeSize is the bytes per vector in the lists of an IVFPQ.
func (ix *IVFPQ) CodeSize() int { return ix.PQ.CodeSize() }

func (ix *Flat) fourcc() string       { return flatFourcc(ix.Metric) }
func (*PQ) fourcc() string            { return "IxPq" }
func (*PQFastScan) fourcc() string    { return "IPfs" }
func (*IVFPQFastScan) fourcc() string { return "IwPf" }
func (*HNSWFlat) fourcc() string      { return "IHNf" }
func (*IVFFlat) fourcc() string       { return "IwFl" }
func (*IVFPQ) fourcc() string         { return "IwPQ" }
func (*PreTransform) fourcc() string  { return "IxPT" }

// flatFourcc is the fourcc FAISS picks for an IndexFlat from its metric.
func flatFourcc(m Metric) string {
	switch m {
	case InnerProduct:
		return "IxFI"
	case L2:
		return "IxF2"
	}
	return "IxFl"
}

// ClassName is the name of ix's FAISS C++ class, such as "IndexIVFPQ" or
// "IndexFlatIP", as FAISS itself reports it (the cgo build's Info).
func ClassName(ix Index) string {
	switch x := ix.(type) {
	case *Flat:
		switch x.Metric {
		case InnerProduct:
			return "IndexFlatIP"
		case L2:
			return "IndexFlatL2"
		}
		return "IndexFlat"
	case *PQ:
		return "IndexPQ"
	case *PQFastScan:
		return "IndexPQFastScan"
	case *IVFPQFastScan:
		return "IndexIVFPQFastScan"
	case *HNSWFlat:
		return "IndexHNSWFlat"
	case *IVFFlat:
		return "IndexIVFFlat"
	case *IVFPQ:
		return "IndexIVFPQ"
	case *PreTransform:
		return "IndexPreTransform"
	}
	return ""
}
