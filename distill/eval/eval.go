package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// MaxK bounds the result depth: results are queries*k ids and scores held
// in memory.
const MaxK = 1 << 16

// Validate reports option values that are wrong whatever the files hold,
// in the command line's words.
func (o *Options) Validate() error {
	switch {
	case o.Queries == "":
		return fmt.Errorf("eval needs --queries")
	case len(o.Indexes) == 0:
		return fmt.Errorf("eval needs at least one --index")
	case o.Docs == "" && o.GroundTruth == "":
		return fmt.Errorf("eval needs --docs (to compute the exact ground truth) or --groundtruth")
	case o.IDs != "" && o.IDColumn != "":
		return fmt.Errorf("--ids and --id-column both number the documents: give one")
	case o.Auto && (o.Target <= 0 || o.Target > 1):
		return fmt.Errorf("--target-recall %g outside (0, 1]", o.Target)
	case o.MinTime < 0:
		return fmt.Errorf("--min-time %v is negative", o.MinTime)
	case o.Metric != nil && *o.Metric != faissio.InnerProduct && *o.Metric != faissio.L2:
		return fmt.Errorf("--metric %v: want ip or l2", *o.Metric)
	}
	for _, k := range o.Ks {
		if k < 1 || k > MaxK {
			return fmt.Errorf("--k %d outside 1..%d", k, MaxK)
		}
	}
	for _, np := range o.Nprobes {
		if np < 1 {
			return fmt.Errorf("--nprobe %d must be at least 1", np)
		}
	}
	return nil
}

// Options name the inputs of a comparison and how to measure it.
type Options struct {
	Docs, IDs, Queries string
	// Column names the vector column of Parquet documents and queries
	// (default: their only list column of floats); IDColumn, the
	// documents' int64 id column, instead of IDs.
	Column, IDColumn string
	Indexes          []string
	// Ks are the result depths reported; the indexes are searched once per
	// point at the largest, and shallower results are its prefixes.
	Ks []int
	// Nprobes are swept for every index, capped at its nlist. Auto adds, per
	// index, the smallest nprobe whose k-recall@k (k = PrimaryK) reaches
	// Target.
	Nprobes []int
	// EfSearch, when positive, is the search beam of HNSW coarse
	// quantizers; 0 keeps each index's stored one.
	EfSearch int
	Auto     bool
	Target   float64
	// Metric, when set, is the exact search's metric for every index;
	// otherwise each index is measured against exact search in its own.
	Metric      *faissio.Metric
	Qrels       string
	GroundTruth string
	NoCache     bool
	// MinTime is how long each timing loop runs at least; 0 times a single
	// pass.
	MinTime time.Duration

	// Warn hears notes (an uncached ground truth, a metric other than an
	// index's own); nil discards them. Progress, when set, hears of each
	// phase's advance.
	Warn     io.Writer
	Progress func(phase string, done, total int)
}

// PrimaryK is the depth --nprobe auto and the plot use: 10 when asked for,
// as FAISS's benchmarks report, else the first depth given.
func (o *Options) PrimaryK() int {
	if slices.Contains(o.Ks, 10) {
		return 10
	}
	return o.Ks[0]
}

// Report is the outcome of a comparison: one entry per index.
type Report struct {
	Queries     string        `json:"queries"`
	NQ          int           `json:"nq"`
	Ks          []int         `json:"k"`
	PrimaryK    int           `json:"primary_k"`
	GroundTruth string        `json:"ground_truth"`
	Qrels       string        `json:"qrels,omitempty"`
	Threads     int           `json:"search_threads"`
	MinTime     float64       `json:"min_time_s"`
	Indexes     []IndexReport `json:"indexes"`
}

// IndexReport describes one index and its operating points.
type IndexReport struct {
	Path           string         `json:"path"`
	Type           string         `json:"type"`
	D              int            `json:"d"`
	Ntotal         int64          `json:"ntotal"`
	Metric         faissio.Metric `json:"metric"`
	GTMetric       faissio.Metric `json:"ground_truth_metric"`
	Nlist          int            `json:"nlist"`
	M              int            `json:"m,omitempty"`
	Nbits          int            `json:"nbits,omitempty"`
	Bytes          int64          `json:"file_bytes"`
	BytesPerVector float64        `json:"file_bytes_per_vector"`
	CodeSize       int            `json:"code_bytes_per_vector"`
	// Auto is the outcome of --nprobe auto, if asked.
	Auto   *AutoNprobe `json:"auto_nprobe,omitempty"`
	Points []Point     `json:"points"`
}

// AutoNprobe is the smallest nprobe reaching a target recall.
type AutoNprobe struct {
	K       int     `json:"k"`
	Target  float64 `json:"target"`
	Nprobe  int     `json:"nprobe"`
	Recall  float64 `json:"recall"`
	Reached bool    `json:"reached"` // false: even nprobe = nlist falls short
}

// Point is one operating point of one index. Maps are keyed by k.
type Point struct {
	Nprobe int `json:"nprobe"`
	// KRecall is k-recall@k: |approximate top-k ∩ exact top-k| / k, averaged
	// over queries (FAISS's intersection measure).
	KRecall map[int]float64 `json:"k_recall"`
	// OneRecall is 1-recall@k: the share of queries whose exact nearest
	// neighbour is in the approximate top-k.
	OneRecall map[int]float64 `json:"one_recall"`
	// MRR10 and QrelsRecall use the labelled documents, over the queries
	// that have labels; nil without --qrels.
	MRR10       *float64        `json:"mrr10,omitempty"`
	QrelsRecall map[int]float64 `json:"qrels_recall,omitempty"`
	// Batch figures: all queries in one FAISS call, repeated for MinTime.
	BatchQPS float64 `json:"batch_qps"`
	// Single figures: one query per FAISS call, looped for MinTime.
	SingleQPS    float64 `json:"single_qps"`
	SingleMeanMs float64 `json:"single_mean_ms"`
	SingleP99Ms  float64 `json:"single_p99_ms"`
	Auto         bool    `json:"auto,omitempty"` // the point --nprobe auto chose
}

// Run measures each index at each nprobe: recall against the exact top-k,
// qrels metrics, and FAISS's search speed in batch and one query at a time.
// It stops with ctx's error between searches once ctx is cancelled.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	warn, prog := o.Warn, o.Progress
	if warn == nil {
		warn = io.Discard
	}
	if len(o.Ks) == 0 {
		o.Ks = []int{10}
	}
	if len(o.Nprobes) == 0 && !o.Auto {
		o.Nprobes = []int{1}
	}
	q, err := faissio.ReadVectorsWith(o.Queries, columnOf(o.Queries, o.Column))
	if err != nil {
		return nil, err
	}
	kmax := slices.Max(o.Ks)
	var qrels [][]int64
	if o.Qrels != "" {
		if qrels, err = faissio.ReadQrels(o.Qrels, q.Rows); err != nil {
			return nil, err
		}
	}
	searchK := kmax
	if qrels != nil {
		searchK = max(searchK, 10)
	}
	rep := &Report{
		Queries: o.Queries, NQ: q.Rows, Ks: o.Ks, PrimaryK: o.PrimaryK(), Qrels: o.Qrels,
		Threads: searchThreads(), MinTime: o.MinTime.Seconds(),
	}
	truths := map[faissio.Metric]*GroundTruth{}
	for _, path := range o.Indexes {
		ir, err := evalIndex(ctx, o, path, q, searchK, qrels, truths, warn, prog)
		if err != nil {
			return nil, err
		}
		rep.Indexes = append(rep.Indexes, *ir)
	}
	var sources []string
	for _, m := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		if gt := truths[m]; gt != nil {
			sources = append(sources, fmt.Sprintf("%s: %s", m, gt.Source))
		}
	}
	rep.GroundTruth = strings.Join(sources, "; ")
	return rep, nil
}

// searchThreads is the number of threads FAISS's search runs on: one,
// unless OMP_NUM_THREADS says otherwise (see cgo's thread policy).
func searchThreads() int {
	if n, err := strconv.Atoi(os.Getenv("OMP_NUM_THREADS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// evalIndex measures one index.
func evalIndex(ctx context.Context, o Options, path string, q faissio.Matrix, searchK int, qrels [][]int64,
	truths map[faissio.Metric]*GroundTruth, warn io.Writer, prog func(string, int, int)) (*IndexReport, error) {
	index, err := faiss.ReadIndex(path)
	if err != nil {
		return nil, err
	}
	defer index.Close()
	info, err := index.Info()
	if err != nil {
		return nil, err
	}
	if info.D != q.Cols {
		return nil, fmt.Errorf("queries %s have d=%d but index %s has d=%d", o.Queries, q.Cols, path, info.D)
	}
	gtMetric := info.Metric
	if o.Metric != nil {
		gtMetric = *o.Metric
	}
	if gtMetric != info.Metric {
		fmt.Fprintf(warn, "distillvq: note: %s searches by %s; its recall is measured against exact %s search\n", path, info.Metric, gtMetric)
	}
	gt := truths[gtMetric]
	if gt == nil {
		kmax := slices.Max(o.Ks)
		if o.GroundTruth != "" {
			gt, err = readGroundTruth(o.GroundTruth, q.Rows, kmax)
		} else {
			gt, err = loadGroundTruth(ctx, gtRequest{Docs: o.Docs, IDs: o.IDs, Queries: o.Queries, Column: o.Column, IDColumn: o.IDColumn, K: kmax, Metric: gtMetric, NoCache: o.NoCache}, q, warn, prog)
		}
		if err != nil {
			return nil, err
		}
		truths[gtMetric] = gt
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	ir := &IndexReport{
		Path: path, Type: info.Type, D: info.D, Ntotal: info.Ntotal, Metric: info.Metric, GTMetric: gtMetric,
		Nlist: info.Nlist, M: info.M, Nbits: info.Nbits, Bytes: fi.Size(), CodeSize: info.CodeSize,
	}
	if info.Ntotal > 0 {
		ir.BytesPerVector = float64(fi.Size()) / float64(info.Ntotal)
	}
	nprobes := CapNprobes(o.Nprobes, info.Nlist)
	if o.Auto && info.Nlist > 0 {
		a, err := autoNprobe(ctx, index, q, gt, o.PrimaryK(), o.Target, info.Nlist, searchK, o.EfSearch)
		if err != nil {
			return nil, err
		}
		ir.Auto = a
		if !slices.Contains(nprobes, a.Nprobe) {
			nprobes = append(nprobes, a.Nprobe)
			slices.Sort(nprobes)
		}
	}
	for i, np := range nprobes {
		if prog != nil {
			prog("eval "+filepath.Base(path), i, len(nprobes))
		}
		pt, err := measure(ctx, index, q, np, searchK, o, gt, qrels)
		if err != nil {
			return nil, err
		}
		pt.Auto = ir.Auto != nil && ir.Auto.Nprobe == np
		ir.Points = append(ir.Points, pt)
	}
	if prog != nil {
		prog("eval "+filepath.Base(path), len(nprobes), len(nprobes))
	}
	return ir, nil
}

// measure takes the recall of one search of all queries and then times
// FAISS's search in batch mode and one query at a time.
func measure(ctx context.Context, index *faiss.Index, q faissio.Matrix, nprobe, searchK int, o Options, gt *GroundTruth, qrels [][]int64) (Point, error) {
	pt := Point{Nprobe: nprobe, KRecall: map[int]float64{}, OneRecall: map[int]float64{}}
	t0 := time.Now()
	_, labels, err := index.SearchWith(q, searchK, faiss.SearchParams{Nprobe: nprobe, EfSearch: o.EfSearch})
	if err != nil {
		return pt, err
	}
	batches, elapsed := 1, time.Since(t0)
	for elapsed < o.MinTime {
		if err := ctx.Err(); err != nil {
			return pt, err
		}
		if _, _, err := index.SearchWith(q, searchK, faiss.SearchParams{Nprobe: nprobe, EfSearch: o.EfSearch}); err != nil {
			return pt, err
		}
		batches++
		elapsed = time.Since(t0)
	}
	pt.BatchQPS = float64(batches*q.Rows) / elapsed.Seconds()
	for _, k := range o.Ks {
		pt.KRecall[k] = KRecall(labels, searchK, gt, k)
		pt.OneRecall[k] = OneRecall(labels, searchK, gt, k)
	}
	if qrels != nil {
		mrr := MRR(labels, searchK, qrels, 10)
		pt.MRR10 = &mrr
		pt.QrelsRecall = map[int]float64{}
		for _, k := range o.Ks {
			pt.QrelsRecall[k] = QrelsRecall(labels, searchK, qrels, k)
		}
	}

	// One query per call, cycling through the queries, for at least
	// MinTime and at least one call per query up to 1000 queries.
	var lat []float64
	t0 = time.Now()
	for i := 0; ; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return pt, err
			}
		}
		if i >= min(q.Rows, 1000) && time.Since(t0) >= o.MinTime {
			break
		}
		s := time.Now()
		if _, _, err := index.SearchWith(q.Slice(i%q.Rows, i%q.Rows+1), searchK, faiss.SearchParams{Nprobe: nprobe, EfSearch: o.EfSearch}); err != nil {
			return pt, err
		}
		lat = append(lat, float64(time.Since(s).Nanoseconds())/1e6)
	}
	total := time.Since(t0)
	pt.SingleQPS = float64(len(lat)) / total.Seconds()
	var sum float64
	for _, v := range lat {
		sum += v
	}
	pt.SingleMeanMs = sum / float64(len(lat))
	slices.Sort(lat)
	pt.SingleP99Ms = lat[min(len(lat)-1, int(math.Ceil(0.99*float64(len(lat))))-1)]
	return pt, nil
}

// autoNprobe finds by binary search, as autofaiss does, the smallest nprobe
// in 1..nlist whose k-recall@k reaches target, assuming recall does not fall
// as nprobe grows.
func autoNprobe(ctx context.Context, index *faiss.Index, q faissio.Matrix, gt *GroundTruth, k int, target float64, nlist, searchK, ef int) (*AutoNprobe, error) {
	recall := func(np int) (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		_, labels, err := index.SearchWith(q, searchK, faiss.SearchParams{Nprobe: np, EfSearch: ef})
		if err != nil {
			return 0, err
		}
		return KRecall(labels, searchK, gt, k), nil
	}
	seen := map[int]float64{}
	a := &AutoNprobe{K: k, Target: target, Nprobe: nlist}
	r, err := recall(nlist)
	if err != nil {
		return nil, err
	}
	seen[nlist] = r
	if r >= target {
		a.Reached = true
		lo, hi := 1, nlist // recall(hi) >= target; find the smallest such
		for lo < hi {
			mid := (lo + hi) / 2
			r, err := recall(mid)
			if err != nil {
				return nil, err
			}
			seen[mid] = r
			if r >= target {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		a.Nprobe = hi
	}
	a.Recall = seen[a.Nprobe]
	return a, nil
}

// CapNprobes keeps the nprobe values at most nlist, adding nlist itself when
// a larger value was asked for; an index without lists gets one row.
func CapNprobes(nprobes []int, nlist int) []int {
	if nlist == 0 {
		return []int{1}
	}
	var out []int
	for _, np := range nprobes {
		np = min(np, nlist)
		if !slices.Contains(out, np) {
			out = append(out, np)
		}
	}
	slices.Sort(out)
	return out
}

// KRecall is the k-recall@k of labels (rows of stride ids, best first)
// against the exact top-k: |approximate top-k ∩ exact top-k| / k, averaged
// over queries. Missing exact neighbours (-1) count as misses.
func KRecall(labels []int64, stride int, gt *GroundTruth, k int) float64 {
	n := len(labels) / stride
	var hit int
	set := make(map[int64]struct{}, k)
	for i := range n {
		clear(set)
		for _, id := range gt.Row(i)[:k] {
			if id >= 0 {
				set[id] = struct{}{}
			}
		}
		for _, id := range labels[i*stride : i*stride+k] {
			if _, ok := set[id]; ok {
				hit++
				delete(set, id)
			}
		}
	}
	return float64(hit) / float64(n*k)
}

// OneRecall is 1-recall@k: the share of queries whose exact nearest
// neighbour appears in the approximate top-k.
func OneRecall(labels []int64, stride int, gt *GroundTruth, k int) float64 {
	n := len(labels) / stride
	var hit int
	for i := range n {
		if nn := gt.Row(i)[0]; nn >= 0 && slices.Contains(labels[i*stride:i*stride+k], nn) {
			hit++
		}
	}
	return float64(hit) / float64(n)
}

// MRR is the mean over labelled queries of 1/rank of the first labelled
// document in the top k (0 if none is there).
func MRR(labels []int64, stride int, qrels [][]int64, k int) float64 {
	return meanOverLabelled(qrels, func(i int, rel []int64) float64 {
		for r, id := range labels[i*stride : i*stride+k] {
			if slices.Contains(rel, id) {
				return 1 / float64(r+1)
			}
		}
		return 0
	})
}

// QrelsRecall is the mean over labelled queries of the share of their
// labelled documents found in the top k.
func QrelsRecall(labels []int64, stride int, qrels [][]int64, k int) float64 {
	return meanOverLabelled(qrels, func(i int, rel []int64) float64 {
		rel = slices.Compact(slices.Sorted(slices.Values(rel)))
		var hit int
		for _, id := range rel {
			if slices.Contains(labels[i*stride:i*stride+k], id) {
				hit++
			}
		}
		return float64(hit) / float64(len(rel))
	})
}

// meanOverLabelled averages f over the queries that have labels; 0 if none.
func meanOverLabelled(qrels [][]int64, f func(i int, rel []int64) float64) float64 {
	var sum float64
	var n int
	for i, rel := range qrels {
		if len(rel) > 0 {
			sum += f(i, rel)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
