package eval

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// GroundTruth is the exact top-k of every query: ids (as the indexes name
// documents), nq rows of k, -1 where there are fewer than k documents.
type GroundTruth struct {
	K      int
	IDs    []int64
	Source string // "computed", "cache PATH" or "file PATH"
}

// Row returns the exact top-k ids of query i.
func (g *GroundTruth) Row(i int) []int64 { return g.IDs[i*g.K : (i+1)*g.K] }

// gtRequest names the inputs of an exact search.
type gtRequest struct {
	Docs, IDs, Queries string
	Column, IDColumn   string // of Parquet inputs, as in Options
	K                  int
	Metric             faissio.Metric
	NoCache            bool
}

// gtVersion changes the cache key when the cache's content would change.
const gtVersion = "distillvq-gt-2"

// loadGroundTruth returns the exact top-k of the queries q over the
// documents. It reads a cached table keyed by the inputs' fingerprints, k
// and the metric (gtKey), and otherwise computes it with
// an exact FAISS index and caches it beside the queries (a hidden file, so
// that folder-of-shards inputs do not pick it up). A cache that cannot be
// written is only a note on warn.
func loadGroundTruth(ctx context.Context, r gtRequest, q faissio.Matrix, warn io.Writer, prog func(string, int, int)) (*GroundTruth, error) {
	var cache string
	if !r.NoCache {
		key, err := gtKey(r)
		if err != nil {
			return nil, err
		}
		qfiles, err := faissio.VectorFiles(r.Queries)
		if err != nil {
			return nil, err
		}
		cache = filepath.Join(filepath.Dir(qfiles[0]), "."+filepath.Base(qfiles[0])+".gt-"+key[:16]+".npy")
		if rows, cols, ids, err := faissio.ReadNeighbors(cache); err == nil && rows == q.Rows && cols == r.K {
			return &GroundTruth{K: r.K, IDs: ids, Source: "cache " + cache}, nil
		}
	}
	docs, err := faissio.OpenSourceWith(r.Docs, columnOf(r.Docs, r.Column))
	if err != nil {
		return nil, err
	}
	if docs.Cols != q.Cols {
		return nil, fmt.Errorf("queries %s have d=%d but documents %s have d=%d", r.Queries, q.Cols, r.Docs, docs.Cols)
	}
	var ids []int64
	switch {
	case r.IDColumn != "":
		if ids, err = docs.ReadIDColumn(r.IDColumn); err != nil {
			return nil, err
		}
	case r.IDs != "":
		if ids, err = faissio.ReadIDs(r.IDs, docs.Rows); err != nil {
			return nil, err
		}
	}
	labels, err := exactSearch(ctx, docs, ids, q, r.K, r.Metric, prog)
	if err != nil {
		return nil, err
	}
	gt := &GroundTruth{K: r.K, IDs: labels, Source: "computed"}
	if !r.NoCache {
		if err := faissio.WriteNpyInt64(cache, q.Rows, r.K, labels); err != nil {
			fmt.Fprintf(warn, "distillvq: note: ground truth not cached: %v\n", err)
		} else {
			gt.Source = "computed, cached in " + cache
		}
	}
	return gt, nil
}

// gtKey identifies everything the exact top-k depends on, cheaply: the
// documents' fingerprint (each file's path, size, modification time and
// header, and sampled blocks of its data; see faissio.Source's
// Fingerprint), the same for the ids and the queries, k and the metric. A
// cache hit therefore reads a few MiB of the documents, not all of them;
// what would go unnoticed is an edit in place that keeps every file's size
// and modification time and misses the sampled blocks (--no-cache then).
func gtKey(r gtRequest) (string, error) {
	h := sha256.New()
	io.WriteString(h, gtVersion)
	docs, err := faissio.OpenSourceWith(r.Docs, columnOf(r.Docs, r.Column))
	if err != nil {
		return "", err
	}
	if err := docs.Fingerprint(h); err != nil {
		return "", err
	}
	for _, p := range []string{r.IDs, r.Queries} {
		if p == "" {
			io.WriteString(h, "\x00none")
			continue
		}
		files, err := faissio.VectorFiles(p)
		if err != nil {
			return "", err
		}
		if err := faissio.FingerprintFiles(h, files...); err != nil {
			return "", err
		}
	}
	// The id column's name (the vector column is in the fingerprint).
	io.WriteString(h, "\x00idcol "+r.IDColumn)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(r.K))
	binary.LittleEndian.PutUint64(b[8:], uint64(r.Metric))
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)), nil
}

// gtBlock is the number of queries searched per FAISS call for the ground
// truth: large enough for BLAS to run at full speed, small enough to report
// progress and stop promptly on an interrupt.
const gtBlock = 512

// gtDocBlock is the most document bytes (as float32) held at once for the
// ground truth; FAISS's exact index holds a copy of them too.
var gtDocBlock = 256 << 20

// exactSearch is the ground truth: the top-k of each query over the
// documents by exact FAISS indexes, as ids. The documents are read and
// searched a block at a time and the per-block results merged, so that a
// collection larger than memory can be measured; with one block the result
// is exactly FAISS's IndexFlat search.
func exactSearch(ctx context.Context, docs *faissio.Source, ids []int64, q faissio.Matrix, k int, metric faissio.Metric, prog func(string, int, int)) ([]int64, error) {
	n, d := docs.Rows, docs.Cols
	block := max(1, min(n, gtDocBlock/(4*d)))
	bestD := make([]float32, q.Rows*k)
	bestI := make([]int64, q.Rows*k)
	for i := range bestI {
		bestI[i] = -1
	}
	better := func(a, b float32) bool { return a < b }
	if metric == faissio.InnerProduct {
		better = func(a, b float32) bool { return a > b }
	}
	buf := make([]float32, block*d)
	steps, total := 0, ((n+block-1)/block)*((q.Rows+gtBlock-1)/gtBlock)
	for start := 0; start < n; start += block {
		x := faissio.Matrix{Rows: min(block, n-start), Cols: d}
		x.Data = buf[:x.Rows*d]
		if err := docs.Read(start, start+x.Rows, x.Data); err != nil {
			return nil, err
		}
		flat, err := faiss.NewFlat(metric, x)
		if err != nil {
			return nil, err
		}
		for i := 0; i < q.Rows; i += gtBlock {
			if err := ctx.Err(); err != nil {
				flat.Close()
				return nil, err
			}
			if prog != nil {
				prog("ground truth", steps, total)
			}
			steps++
			j := min(i+gtBlock, q.Rows)
			dist, lab, err := flat.Search(q.Slice(i, j), k, 1)
			if err != nil {
				flat.Close()
				return nil, err
			}
			for r := range j - i {
				row := (i + r) * k
				mergeTopK(bestD[row:row+k], bestI[row:row+k], dist[r*k:(r+1)*k], lab[r*k:(r+1)*k], int64(start), better)
			}
		}
		flat.Close()
	}
	if prog != nil {
		prog("ground truth", total, total)
	}
	if ids != nil {
		for i, l := range bestI {
			if l >= 0 {
				bestI[i] = ids[l]
			}
		}
	}
	return bestI, nil
}

// mergeTopK merges a block's sorted top-k (labels relative to the block's
// first row, offset) into the running sorted top-k of one query. On equal
// scores the earlier block's document stays first, as one exact search
// over all documents would order them.
func mergeTopK(bestD []float32, bestI []int64, d []float32, l []int64, offset int64, better func(a, b float32) bool) {
	k := len(bestD)
	outD := make([]float32, 0, k)
	outI := make([]int64, 0, k)
	a, b := 0, 0
	for len(outD) < k {
		takeB := b < k && l[b] >= 0 && (a >= k || bestI[a] < 0 || better(d[b], bestD[a]))
		switch {
		case takeB:
			outD, outI = append(outD, d[b]), append(outI, l[b]+offset)
			b++
		case a < k && bestI[a] >= 0:
			outD, outI = append(outD, bestD[a]), append(outI, bestI[a])
			a++
		default:
			outD, outI = append(outD, 0), append(outI, -1)
		}
	}
	copy(bestD, outD)
	copy(bestI, outI)
}

// columnOf is the reading options of the input at path: column names the
// vector column of Parquet inputs and is ignored for the others, as
// build's --column is.
func columnOf(path, column string) faissio.SourceOptions {
	if column != "" && faissio.IsParquet(path) {
		return faissio.SourceOptions{Column: column}
	}
	return faissio.SourceOptions{}
}

// ExactGroundTruth computes the exact top-k of the queries over the
// documents (files, as eval takes them; ids may be ""), by FAISS's exact
// search over blocks of documents, without reading or writing a cache.
func ExactGroundTruth(ctx context.Context, docs, ids, queries string, k int, metric faissio.Metric) (*GroundTruth, error) {
	q, err := faissio.ReadVectors(queries)
	if err != nil {
		return nil, err
	}
	return loadGroundTruth(ctx, gtRequest{Docs: docs, IDs: ids, Queries: queries, K: k, Metric: metric, NoCache: true}, q, io.Discard, nil)
}

// ReadGroundTruth reads a table of exact neighbour ids (.ivecs or a 2-D int
// .npy) and checks that it covers nq queries to depth k; only its first k
// columns are kept.
func ReadGroundTruth(path string, nq, k int) (*GroundTruth, error) {
	return readGroundTruth(path, nq, k)
}

// readGroundTruth reads a supplied ground-truth table and checks it covers
// the queries to depth k; only its first k columns are used.
func readGroundTruth(path string, nq, k int) (*GroundTruth, error) {
	rows, cols, ids, err := faissio.ReadNeighbors(path)
	if err != nil {
		return nil, err
	}
	if rows != nq {
		return nil, fmt.Errorf("ground truth %s has %d rows for %d queries", path, rows, nq)
	}
	if cols < k {
		return nil, fmt.Errorf("ground truth %s has %d neighbours per query, fewer than k = %d", path, cols, k)
	}
	out := make([]int64, nq*k)
	for i := range nq {
		copy(out[i*k:(i+1)*k], ids[i*cols:i*cols+k])
	}
	return &GroundTruth{K: k, IDs: out, Source: "file " + path}, nil
}
