package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// The kinds without IVF (IndexPQ, IndexPQFastScan) are trained and encoded
// as one list whose centroid is zero, so that they share the IVF kinds'
// path through training and encoding; only the file differs. IVFParams
// says so with Flat, and WriteFile writes them.

// WriteFile writes the index p describes to path, atomically: the IVF
// kinds streamed list by list (faissio.WriteIVFFile), the kinds without
// IVF as FAISS's IndexPQ or IndexPQFastScan. progress may be nil.
func WriteFile(ctx context.Context, path string, p *faissio.IVFParams, progress func(done, total int)) error {
	if !p.Flat {
		return faissio.WriteIVFFile(ctx, path, p, progress)
	}
	ix, err := flatIndex(p)
	if err != nil {
		return fmt.Errorf("%s: faiss index: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = faissio.WriteFileAtomic(path, func(f *os.File) error { return faissio.WriteIndex(f, ix) })
	if progress != nil && err == nil {
		progress(1, 1)
	}
	return err
}

// flatIndex is the IndexPQ or IndexPQFastScan of p (one list, centroid
// zero, ids 0..n-1 in order), as FAISS holds it after adding p's codes,
// behind p's rotation if any.
func flatIndex(p *faissio.IVFParams) (faissio.Index, error) {
	switch {
	case p.Nlist != 1 || p.M == 0:
		return nil, fmt.Errorf("a PQ without IVF needs one list and PQ codes, not nlist %d and M %d", p.Nlist, p.M)
	case slices.ContainsFunc(p.Centroids, func(v float32) bool { return v != 0 }):
		return nil, errors.New("a PQ without IVF has a zero centroid")
	}
	for i, id := range p.IDs {
		if id != int64(i) {
			return nil, fmt.Errorf("vector %d has id %d: an IndexPQ numbers its vectors 0..n-1", i, id)
		}
	}
	h := faissio.Header{D: p.D, Ntotal: int64(len(p.IDs)), IsTrained: true, Metric: p.Metric}
	pq := faissio.ProductQuantizer{D: p.D, M: p.M, Nbits: p.Nbits, Centroids: p.Codebooks}
	var ix faissio.Index
	if p.FastScan {
		fs, err := faissio.NewPQFastScan(h, pq, p.Codes)
		if err != nil {
			return nil, err
		}
		ix = fs
	} else {
		ix = &faissio.PQ{Header: h, PQ: pq, Codes: p.Codes, PolysemousHT: int32(p.M*p.Nbits + 1)}
	}
	if p.Rotation == nil {
		return ix, nil
	}
	return &faissio.PreTransform{
		Header: h,
		Chain:  []*faissio.LinearTransform{{DIn: p.D, DOut: p.D, IsTrained: true, A: p.Rotation}},
		Index:  ix,
	}, nil
}

// flatParams takes an IndexPQ or IndexPQFastScan FAISS trained, bare or
// behind a rotation, apart as the parameters of a one-list index.
func flatParams(ix faissio.Index) (*faissio.IVFParams, error) {
	var rot []float32
	if pt, ok := ix.(*faissio.PreTransform); ok {
		if len(pt.Chain) != 1 || pt.Chain[0].DIn != pt.D || pt.Chain[0].DOut != pt.D || pt.Chain[0].HaveBias {
			return nil, errors.New("IndexPreTransform is not one rotation")
		}
		rot, ix = pt.Chain[0].A, pt.Index
	}
	p := &faissio.IVFParams{Flat: true, Nlist: 1, Rotation: rot}
	var pq *faissio.ProductQuantizer
	var n int
	switch x := ix.(type) {
	case *faissio.PQ:
		pq, n = &x.PQ, int(x.Ntotal)
		p.Codes = x.Codes
	case *faissio.PQFastScan:
		pq, n = &x.PQ, int(x.Ntotal)
		p.FastScan = true
		p.Codes = make([]byte, n*pq.CodeSize())
		faissio.UnpackFastScan(p.Codes, x.Codes, n, pq.M, int(x.Bbs))
	default:
		return nil, fmt.Errorf("%s is not an IndexPQ or IndexPQFastScan", faissio.ClassName(ix))
	}
	h := ix.IndexHeader()
	p.D, p.Metric, p.M, p.Nbits, p.Codebooks = h.D, h.Metric, pq.M, pq.Nbits, pq.Centroids
	p.Centroids = make([]float32, h.D)
	p.Lists, p.IDs = make([]int64, n), make([]int64, n)
	for i := range p.IDs {
		p.IDs[i] = int64(i)
	}
	return p, p.Check()
}

// faissKey is the index part of FAISS's factory string for the kinds that
// TrainFAISS builds through index_factory, or "" for those it builds
// itself (IVFPQ and IVFFlat with a flat quantizer).
func (o *Options) faissKey(nlist, m, nbits int) string {
	ivf := fmt.Sprintf("IVF%d", nlist)
	if o.Quantizer == HNSWQuantizer {
		ivf += fmt.Sprintf("_HNSW%d", o.HNSWM)
	}
	switch {
	case o.Index == IVFPQFastScan:
		return fmt.Sprintf("%s,PQ%dx4fs", ivf, m)
	case o.Index == PQ:
		return fmt.Sprintf("PQ%dx%d", m, nbits)
	case o.Index == PQFastScan:
		return fmt.Sprintf("PQ%dx4fs", m)
	case o.Quantizer != HNSWQuantizer:
		return ""
	case o.Index == IVFFlat:
		return ivf + ",Flat"
	}
	return fmt.Sprintf("%s,PQ%dx%d", ivf, m, nbits)
}

// faissParams takes what FAISS trained and filled apart.
func faissParams(index *faiss.Index, flat bool) (*faissio.IVFParams, error) {
	if !flat {
		p, err := index.IVFParams()
		return &p, err
	}
	b, err := index.Serialize()
	if err != nil {
		return nil, err
	}
	ix, err := faissio.ReadIndex(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return flatParams(ix)
}
