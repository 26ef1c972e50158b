package build

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"reflect"
	"slices"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// Trained is a trained index without its vectors, and everything encoding
// documents exactly as Run would needs: the model (centroids, codebooks
// and, for the query-weighted encoding, its weight), the OPQ rotation, and
// the training-time list of each document a distillation learned from.
// It is read-only once made, so Add may run from many goroutines (or
// machines, from its file) at once.
type Trained struct {
	Model    *distill.Model
	Rotation []float32 // D×D, or nil
	// Layout is how the index stores the parameters; HNSW, when set, is
	// the graph of the coarse quantizer over the model's centroids.
	Layout
	HNSW *faissio.HNSW
	// held maps the id of each document the distillation learned from to
	// its training-time list (ExportLists TrainLists, or AutoLists when they
	// won); Add files those documents there and every other one in its
	// nearest list.
	held map[int64]int32
}

// Layout is how an index stores trained parameters: the FAISS structure
// beyond centroids and codebooks.
type Layout struct {
	// FastScan packs 4-bit codes for FAISS's SIMD scan (IndexIVFPQFastScan,
	// IndexPQFastScan); NoResidual (FAISS's own IVF,PQx4fs training only)
	// encodes the vectors rather than their residuals.
	FastScan, NoResidual bool
	// Flat is an index without IVF (IndexPQ, IndexPQFastScan): one list
	// whose centroid is zero.
	Flat bool
}

// trainedFrom is the trained index of p, an index's parameters.
func trainedFrom(p *faissio.IVFParams) *Trained {
	return &Trained{Rotation: p.Rotation, Model: &distill.Model{D: p.D, Metric: p.Metric, Nlist: p.Nlist,
		Centroids: p.Centroids, M: p.M, Nbits: p.Nbits, Codebooks: p.Codebooks},
		Layout: Layout{FastScan: p.FastScan, NoResidual: p.NoResidual, Flat: p.Flat}, HNSW: p.HNSW}
}

// Params is the trained, empty index: shape, centroids, codebooks,
// rotation and layout, shared with t, without vectors.
func (t *Trained) Params() faissio.IVFParams {
	p := t.Model.IVFParams()
	p.Rotation = t.Rotation
	p.FastScan, p.NoResidual, p.Flat, p.HNSW = t.FastScan, t.NoResidual, t.Flat, t.HNSW
	p.Lists, p.IDs, p.Codes = []int64{}, []int64{}, []byte{}
	return p
}

// encoder is the model that encodes documents: t's own, or for an index
// that does not encode residuals the same with zero centroids (the lists
// still come from t's).
func (t *Trained) encoder() *distill.Model {
	if !t.NoResidual {
		return t.Model
	}
	m := *t.Model
	m.Centroids = make([]float32, len(m.Centroids))
	return &m
}

// Held is the number of documents whose training-time lists t carries.
func (t *Trained) Held() int { return len(t.held) }

// Add assigns and encodes docs (ids nil numbers them 0..n-1; ids must be
// unique and non-negative) with the trained parameters, a block at a time,
// exactly as Run encodes them: the result holds these documents only, and
// the parts of a collection added shard by shard, concatenated in order
// (faissio's merge), are the index Run builds of the whole collection.
// progress may be nil.
func (t *Trained) Add(ctx context.Context, docs *faissio.Source, ids []int64, progress func(phase string, done, total int)) (*faissio.IVFParams, error) {
	if err := docs.Err(); err != nil {
		return nil, err
	}
	if docs.Cols != t.Model.D {
		return nil, fmt.Errorf("documents have d=%d but the index has d=%d", docs.Cols, t.Model.D)
	}
	ids, err := idsFor(ids, docs.Rows)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string, int, int) {}
	}
	lists, codes, err := t.encodeSource(ctx, docs, ids, progress)
	if err != nil {
		return nil, err
	}
	p := t.Params()
	p.Lists, p.IDs, p.Codes = lists, ids, codes
	return &p, nil
}

// encodeSource reads, rotates, assigns and encodes every document of src, a
// block at a time, so that only a block of the documents is ever in
// memory. Documents whose ids t holds a training-time list for go there
// (ids nil: none).
func (t *Trained) encodeSource(ctx context.Context, src *faissio.Source, ids []int64, progress func(string, int, int)) ([]int64, []byte, error) {
	model, enc := t.Model, t.encoder()
	block := encodeBlock(src.Cols)
	lists := make([]int64, 0, src.Rows)
	codes := make([]byte, 0, src.Rows*model.CodeSize())
	buf := make([]float32, min(block, src.Rows)*src.Cols)
	for i := 0; i < src.Rows; i += block {
		x := faissio.Matrix{Rows: min(block, src.Rows-i), Cols: src.Cols}
		x.Data = buf[:x.Rows*x.Cols]
		if err := src.Read(i, i+x.Rows, x.Data); err != nil {
			return nil, nil, err
		}
		if t.Rotation != nil {
			x = faiss.ApplyRotation(t.Rotation, x)
		}
		l, err := model.Assign(ctx, x)
		if err != nil {
			return nil, nil, err
		}
		if t.held != nil && ids != nil {
			for r, id := range ids[i : i+x.Rows] {
				if h, ok := t.held[id]; ok {
					l[r] = int64(h)
				}
			}
		}
		c, err := enc.Encode(ctx, x, l)
		if err != nil {
			return nil, nil, err
		}
		lists, codes = append(lists, l...), append(codes, c...)
		progress("encode", i+x.Rows, src.Rows)
	}
	return lists, codes, nil
}

// A trained index file is the FAISS file of the trained, empty index (which
// FAISS and faissio read as such: FAISS stops reading where the index
// ends), followed by what FAISS's format cannot hold: the query-weighted
// encoding's weight and the held documents' training-time lists, as
//
//	gob(trainedExtra) | CRC-32 (IEEE) of it, u32 | its length, u64 | "DVQTRND1"
//
// all little-endian, so a reader finds it from the end.
const trainedMagic = "DVQTRND1"

// trainedExtra is the part of a trained index FAISS's format cannot hold.
type trainedExtra struct {
	// IndexCRC is the CRC-32 (IEEE) of the FAISS bytes before it, which
	// nothing else in FAISS's format guards.
	IndexCRC     uint32
	EncodeWeight []float32
	HeldIDs      []int64 // ascending
	HeldLists    []int32
}

// WriteFile writes t as a trained index file, atomically: FAISS loads it as
// the trained, empty index (ntotal 0), and ReadIndexFile gives t back.
func (t *Trained) WriteFile(ctx context.Context, path string) error {
	p := t.Params()
	var index bytes.Buffer
	if err := faissio.WriteIVF(ctx, &index, &p, nil); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ex := trainedExtra{IndexCRC: crc32.ChecksumIEEE(index.Bytes()), EncodeWeight: t.Model.EncodeWeight}
	for id := range t.held {
		ex.HeldIDs = append(ex.HeldIDs, id)
	}
	slices.Sort(ex.HeldIDs)
	for _, id := range ex.HeldIDs {
		ex.HeldLists = append(ex.HeldLists, t.held[id])
	}
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(ex); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return faissio.WriteFileAtomic(path, func(f *os.File) error {
		if _, err := f.Write(index.Bytes()); err != nil {
			return err
		}
		var tail [4 + 8 + len(trainedMagic)]byte
		binary.LittleEndian.PutUint32(tail[:], crc32.ChecksumIEEE(body.Bytes()))
		binary.LittleEndian.PutUint64(tail[4:], uint64(body.Len()))
		copy(tail[12:], trainedMagic)
		if _, err := f.Write(body.Bytes()); err != nil {
			return err
		}
		_, err := f.Write(tail[:])
		return err
	})
}

// ReadIndexFile reads an IVF index file written by Trained.WriteFile, by a
// build (faissio.WriteIVFFile) or by FAISS: the trained index, and the
// vectors the file holds (none for a trained index file). A FAISS file
// carries no encoding weight: a distilled index's documents are then
// encoded by the nearest codeword unless the trained index file of its
// training is given to take the weight from (TakeEncoding).
func ReadIndexFile(path string) (*Trained, *faissio.IVFParams, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	index, ex, err := splitTrained(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	ix, err := faissio.ReadIndex(bytes.NewReader(index))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	p, err := faissio.IVFParamsOf(ix)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	t := trainedFrom(&p)
	if ex != nil {
		t.Model.EncodeWeight = ex.EncodeWeight
		if len(ex.HeldIDs) > 0 {
			t.held = make(map[int64]int32, len(ex.HeldIDs))
			for i, id := range ex.HeldIDs {
				t.held[id] = ex.HeldLists[i]
			}
		}
	}
	if err := t.check(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, &p, nil
}

// splitTrained separates a trained index file's FAISS bytes from what
// follows them; ex is nil for a plain FAISS file.
func splitTrained(data []byte) (index []byte, ex *trainedExtra, err error) {
	const tail = 4 + 8 + len(trainedMagic)
	if len(data) < tail || string(data[len(data)-len(trainedMagic):]) != trainedMagic {
		return data, nil, nil
	}
	n := binary.LittleEndian.Uint64(data[len(data)-tail+4:])
	if n > uint64(len(data)-tail) {
		return nil, nil, errors.New("trained index: truncated (its trailer claims more bytes than the file has)")
	}
	end := len(data) - tail
	body := data[end-int(n) : end]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[end:]) {
		return nil, nil, errors.New("trained index: corrupt (checksum mismatch)")
	}
	ex = new(trainedExtra)
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(ex); err != nil {
		return nil, nil, fmt.Errorf("trained index: corrupt: %v", err)
	}
	index = data[:end-int(n)]
	if crc32.ChecksumIEEE(index) != ex.IndexCRC {
		return nil, nil, errors.New("trained index: corrupt (the index's checksum does not match)")
	}
	return index, ex, nil
}

// check validates what a file gave t.
func (t *Trained) check() error {
	if err := t.Model.Validate(); err != nil {
		return err
	}
	if w := t.Model.EncodeWeight; w != nil && (t.Model.M == 0 || len(w) != t.Model.D*t.Model.D) {
		return fmt.Errorf("trained index: an encoding weight of %d values for d=%d", len(w), t.Model.D)
	}
	for id, l := range t.held {
		if id < 0 || l < 0 || int(l) >= t.Model.Nlist {
			return fmt.Errorf("trained index: document %d held in list %d of %d", id, l, t.Model.Nlist)
		}
	}
	return nil
}

// TakeEncoding gives t the encoding of other, the trained index file of
// the same training (its weight and held documents' lists), for adding
// documents to a filled index as its build did; it refuses an index
// trained differently.
func (t *Trained) TakeEncoding(other *Trained) error {
	a, b := t.Model, other.Model
	if a.D != b.D || a.Metric != b.Metric || a.Nlist != b.Nlist || a.M != b.M || a.Nbits != b.Nbits ||
		!slices.Equal(a.Centroids, b.Centroids) || !slices.Equal(a.Codebooks, b.Codebooks) || !slices.Equal(t.Rotation, other.Rotation) {
		return errors.New("the trained index was trained differently (its centroids, codebooks or rotation differ)")
	}
	if t.Layout != other.Layout || !reflect.DeepEqual(t.HNSW, other.HNSW) {
		return errors.New("the trained index is another kind of index (FastScan, residuals or HNSW quantizer differ)")
	}
	m := *a
	m.EncodeWeight = b.EncodeWeight
	t.Model, t.held = &m, other.held
	return nil
}

// Append adds the vectors of more after those of p, refusing an id both
// hold; both must come from the same trained index.
func Append(p, more *faissio.IVFParams) (*faissio.IVFParams, error) {
	seen := make(map[int64]struct{}, len(p.IDs))
	for _, id := range p.IDs {
		seen[id] = struct{}{}
	}
	for i, id := range more.IDs {
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("id %d of the new documents (position %d) is already in the index", id, i)
		}
	}
	out := *p
	out.Lists = append(slices.Clip(p.Lists), more.Lists...)
	out.IDs = append(slices.Clip(p.IDs), more.IDs...)
	out.Codes = append(slices.Clip(p.Codes), more.Codes...)
	return &out, out.Check()
}
