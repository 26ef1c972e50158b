package faissio

import (
	"errors"
	"fmt"
)

// The checks of an HNSW graph that ReadIndex and WriteIndex share. FAISS's
// search follows offsets and neighbours without bounds checks, so a graph
// that disagrees with itself would make FAISS read out of bounds: the
// checks hold a graph to what FAISS's construction always gives.

// hnswField names a field of HNSW, for locating a problem in a file.
type hnswField int

const (
	hnswCum hnswField = iota
	hnswLevels
	hnswOffsets
	hnswNeighbors
	hnswEntryPoint
	hnswMaxLevel
	hnswFields
)

// hnswFieldSize is the bytes of one element of each field in a file.
var hnswFieldSize = [hnswFields]int64{4, 4, 8, 4, 0, 0}

// checkShape checks the graph's layout for ntotal vectors: the neighbour
// counts per level cumulated from 0, each vector's level within them, and
// the offsets, which FAISS derives from the levels (vector i owns
// CumNNeighborPerLevel[Levels[i]] slots from Offsets[i]). It returns the
// field and element at fault.
func (h *HNSW) checkShape(ntotal int64) (hnswField, int, error) {
	cum := h.CumNNeighborPerLevel
	for j, c := range cum {
		if j == 0 && c != 0 || j > 0 && c < cum[j-1] {
			return hnswCum, j, fmt.Errorf("cum_nneighbor_per_level[%d] is %d: the counts must rise from 0", j, c)
		}
	}
	if int64(len(h.Levels)) != ntotal {
		return hnswLevels, 0, fmt.Errorf("has %d levels for %d vectors", len(h.Levels), ntotal)
	}
	for i, l := range h.Levels {
		if l < 1 || int(l) >= len(cum) {
			return hnswLevels, i, fmt.Errorf("vector %d has level %d, out of range [1, %d)", i, l, len(cum))
		}
	}
	if int64(len(h.Offsets)) != ntotal+1 {
		return hnswOffsets, 0, fmt.Errorf("has %d offsets for %d vectors, want ntotal+1", len(h.Offsets), ntotal)
	}
	if h.Offsets[0] != 0 {
		return hnswOffsets, 0, fmt.Errorf("offsets start at %d, not 0", h.Offsets[0])
	}
	for i, l := range h.Levels {
		// No overflow: each step adds less than 2^31 to what starts at 0.
		if want := h.Offsets[i] + uint64(cum[l]); h.Offsets[i+1] != want {
			return hnswOffsets, i + 1, fmt.Errorf("offset %d is %d, want %d: vector %d of level %d has %d neighbour slots",
				i+1, h.Offsets[i+1], want, i, l, cum[l])
		}
	}
	return 0, 0, nil
}

// checkLinks checks, after checkShape, the neighbours (vector numbers
// below ntotal, or -1 for an empty slot), the entry point and the top
// level: -1 and -1 in an empty graph, else a vector of the top level.
func (h *HNSW) checkLinks(ntotal int64) (hnswField, int, error) {
	if uint64(len(h.Neighbors)) != h.Offsets[len(h.Offsets)-1] {
		return hnswNeighbors, 0, fmt.Errorf("has %d neighbour slots, the offsets %d", len(h.Neighbors), h.Offsets[len(h.Offsets)-1])
	}
	for i, v := range h.Neighbors {
		if v < -1 || int64(v) >= ntotal {
			return hnswNeighbors, i, fmt.Errorf("neighbour slot %d holds %d, out of range [-1, %d)", i, v, ntotal)
		}
	}
	// A neighbour at a level must have that level too: FAISS's search
	// reads the neighbour's own slots of the level, which it would
	// otherwise not have.
	cum := h.CumNNeighborPerLevel
	for i, l := range h.Levels {
		for level := range l {
			lo, hi := h.Offsets[i]+uint64(cum[level]), h.Offsets[i]+uint64(cum[level+1])
			for j := lo; j < hi; j++ {
				if v := h.Neighbors[j]; v >= 0 && h.Levels[v] <= level {
					return hnswNeighbors, int(j), fmt.Errorf("neighbour slot %d links vector %d at level %d to vector %d, whose top level is %d",
						j, i, level, v, h.Levels[v]-1)
				}
			}
		}
	}
	if ntotal == 0 {
		if h.EntryPoint != -1 || h.MaxLevel != -1 {
			return hnswEntryPoint, 0, fmt.Errorf("empty graph with entry point %d and max level %d, want -1 and -1", h.EntryPoint, h.MaxLevel)
		}
		return 0, 0, nil
	}
	if h.EntryPoint < 0 || int64(h.EntryPoint) >= ntotal {
		return hnswEntryPoint, 0, fmt.Errorf("entry point %d out of range [0, %d)", h.EntryPoint, ntotal)
	}
	top := int32(0)
	for _, l := range h.Levels {
		top = max(top, l)
	}
	if h.MaxLevel != top-1 || h.Levels[h.EntryPoint] != top {
		return hnswMaxLevel, 0, fmt.Errorf("max level %d with entry point %d of level %d, want the top level %d and a vector of it",
			h.MaxLevel, h.EntryPoint, h.Levels[h.EntryPoint]-1, top-1)
	}
	return 0, 0, nil
}

// check is checkShape and checkLinks, for WriteIndex.
func (h *HNSW) check(ntotal int64) error {
	if _, _, err := h.checkShape(ntotal); err != nil {
		return err
	}
	_, _, err := h.checkLinks(ntotal)
	return err
}

// checkHNSWStorage checks that the storage of an IndexHNSWFlat with header
// h is a flat index of the same vectors.
func checkHNSWStorage(h *Header, storage Index) error {
	f, ok := storage.(*Flat)
	switch {
	case storage == nil || ok && f == nil:
		return errors.New("HNSW storage is missing")
	case !ok:
		return fmt.Errorf("HNSW storage is an %s, want a flat index", typeName(storage))
	case f.D != h.D || f.Metric != h.Metric || f.Ntotal != h.Ntotal:
		return fmt.Errorf("HNSW storage has dimension %d, metric %d and %d vectors, the index %d, %d and %d",
			f.D, f.Metric, f.Ntotal, h.D, h.Metric, h.Ntotal)
	}
	return nil
}
