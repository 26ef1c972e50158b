package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v3"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// BuildOptions are the parameters of one index build.
type BuildOptions struct {
	Docs   string // .npy file, folder or glob of shards, or .fvecs
	IDs    string // optional .npy of int64 ids; empty means 0..n-1
	Output string // the .faiss file to write

	Index  string // "ivfpq" or "ivfflat"
	Metric faissio.Metric
	// Nlist, M: 0 picks the defaults (DefaultNlist, DefaultM).
	Nlist, M, Nbits int
	// Train is "kmeans" (our FAISS-style training) or "faiss" (FAISS's own,
	// through cgo, for comparison).
	Train     string
	TrainSize int
	Niter     int
	Seed      uint64
	// OPQ puts FAISS's OPQ rotation (trained first, then frozen) in front of
	// an IVFPQ index; training happens in the rotated space.
	OPQ bool

	// Distillation (Train == "distill").
	Queries string // training queries; empty: pseudo-queries from the docs
	Qrels   string // optional labelled positives: query_index<TAB>doc_row lines
	Distill distill.DistillConfig
	// ExportLists is "train" (keep each document in its training-time list)
	// or "nearest" (re-assign to the nearest learned centroid).
	ExportLists string
	LogJSON     string // write the training curve here

	// MaxMemory bounds the build's planned peak memory in bytes: 0 means
	// the memory the machine has available, -1 no bound.
	MaxMemory int64

	// Checkpoint, when set, is a folder where each finished training stage
	// is saved (see checkpoint.go); Resume continues from what it holds.
	Checkpoint string
	Resume     bool
}

// BuildReport says what a build made and how long each phase took.
type BuildReport struct {
	Output          string         `json:"output"`
	N               int            `json:"n"`
	D               int            `json:"d"`
	Index           string         `json:"index"`
	Metric          faissio.Metric `json:"metric"`
	Nlist           int            `json:"nlist"`
	M               int            `json:"m"`
	Nbits           int            `json:"nbits"`
	Train           string         `json:"train"`
	OPQ             bool           `json:"opq"`
	Bytes           int64          `json:"bytes"`
	CodeBytesPerVec int            `json:"code_bytes_per_vector"`
	// Phase times: reading inputs, training, assigning and encoding (for
	// --train faiss, FAISS's train and add together are Fit), writing.
	Read  time.Duration `json:"read_ns"`
	Fit   time.Duration `json:"train_ns"`
	Add   time.Duration `json:"add_ns"`
	Write time.Duration `json:"write_ns"`
	// Within Fit, for our trainers: the IVF k-means, the PQ training (the
	// sample's assignment and the sub-space k-means) and the distillation
	// (teacher search and every epoch; its curve has each epoch's time).
	IVFKMeans time.Duration `json:"ivf_kmeans_ns,omitempty"`
	PQTrain   time.Duration `json:"pq_train_ns,omitempty"`
	Distill   time.Duration `json:"distill_ns,omitempty"`
	// Epochs is the distillation's training curve: loss, held-out recall
	// and elapsed time after each epoch.
	Epochs []distill.EpochStats `json:"epochs,omitempty"`
	// TrainRows is the size of the training sample read from disk, and
	// MemoryPlan the peak memory the build was planned for (bytes).
	TrainRows  int   `json:"train_rows"`
	MemoryPlan int64 `json:"memory_plan_bytes"`
	// DistillDocs is the number of documents distillation learned from
	// when --max-memory did not allow all of them; 0 means all.
	DistillDocs int `json:"distill_docs,omitempty"`
	// Resumed names the training stages a --resume took from the
	// checkpoint instead of computing them.
	Resumed string `json:"resumed,omitempty"`
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return faissio.WriteFileAtomic(path, func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// DefaultNlist is autofaiss's choice, 4*sqrt(n), kept at or below n/39 so
// that every list gets the 39 training points FAISS asks for.
func DefaultNlist(n int) int {
	nl := int(4 * math.Sqrt(float64(n)))
	return max(1, min(nl, n/39))
}

// DefaultM is the largest divisor of d that leaves sub-spaces of at least 4
// dimensions and is at most 64: about 4 dimensions per byte of code for
// small d, 64-byte codes for large d.
func DefaultM(d int) int {
	for m := min(64, d/4); m > 1; m-- {
		if d%m == 0 {
			return m
		}
	}
	return 1
}

func buildCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "build",
		Usage:     "train an IVFPQ or IVFFlat index on dense vectors and write it as a FAISS file",
		UsageText: "distillvq build --docs docs.npy [--index ivfpq|ivfflat] [--nlist N] [--m M] [--metric ip|l2] [--ids ids.npy] [--train distill|kmeans|faiss] [--queries train.npy] -o out.faiss",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "docs", Usage: "document vectors: .npy (float32/float16/float64), a folder or glob of .npy shards, or .fvecs", Required: true},
			&ucli.StringFlag{Name: "ids", Usage: "optional .npy of int64 ids, one per document (default 0..n-1)"},
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the .faiss file to write (atomically)", Required: true},
			&ucli.StringFlag{Name: "index", Value: "ivfpq", Usage: "index type: ivfpq or ivfflat"},
			&ucli.StringFlag{Name: "metric", Value: "ip", Usage: "ip (inner product) or l2"},
			&ucli.IntFlag{Name: "nlist", Usage: "number of inverted lists (default 4*sqrt(n), at most n/39)"},
			&ucli.IntFlag{Name: "m", Usage: "PQ sub-quantizers; must divide d (default: largest divisor of d <= min(64, d/4))"},
			&ucli.IntFlag{Name: "nbits", Value: 8, Usage: "bits per PQ code, 1..8"},
			&ucli.StringFlag{Name: "train", Value: "distill", Usage: "trainer: distill (Distill-VQ from the dense teacher), kmeans (ours, FAISS-style) or faiss (FAISS's own, for comparison)"},
			&ucli.IntFlag{Name: "train-size", Usage: "documents sampled for training (default: 256 per centroid, as FAISS)"},
			&ucli.IntFlag{Name: "niter", Value: 25, Usage: "k-means iterations"},
			&ucli.Uint64Flag{Name: "seed", Value: 1234, Usage: "random seed; the same seed gives the same index"},
			&ucli.BoolFlag{Name: "opq", Usage: "rotate with FAISS's OPQ first (IndexPreTransform in front of the IVFPQ index)"},
			&ucli.StringFlag{Name: "report-json", Usage: "also write what was built and the time of each phase as JSON"},
			&ucli.StringFlag{Name: "checkpoint", Usage: "save each finished training stage (k-means, every distillation epoch) in this folder"},
			&ucli.BoolFlag{Name: "resume", Usage: "continue from the stages saved in --checkpoint; the index is the same as an uninterrupted build's"},
			&ucli.StringFlag{Name: "max-memory", Usage: "memory the build may plan for, such as 3GiB or 500MB (default: what the machine has available; 'none' for no bound)"},
			&ucli.StringFlag{Name: "queries", Category: "distillation", Usage: "training queries (.npy); default: pseudo-queries drawn from the documents"},
			&ucli.IntFlag{Name: "pseudo-queries", Category: "distillation", Usage: "documents drawn as extra training queries (default min(20000, n/5); -1 for none)"},
			&ucli.StringFlag{Name: "qrels", Category: "distillation", Usage: "labelled positives: query_index<TAB>doc_row per line"},
			&ucli.IntFlag{Name: "val", Category: "distillation", Usage: "training queries held out to report recall each epoch (default min(500, 10%); -1 none)"},
			&ucli.IntFlag{Name: "topk", Category: "distillation", Value: 200, Usage: "teacher's top documents per query"},
			&ucli.IntFlag{Name: "topk-sample", Category: "distillation", Usage: "draw this many of the top-k per query and step instead of all (Top-K^n sampling)"},
			&ucli.IntFlag{Name: "refresh-every", Category: "distillation", Usage: "steps between re-encodings of all documents (default: once per epoch)"},
			&ucli.StringFlag{Name: "negatives", Category: "distillation", Value: "inbatch", Usage: "other candidates: inbatch, random or none"},
			&ucli.IntFlag{Name: "in-batch", Category: "distillation", Value: 200, Usage: "negatives per query"},
			&ucli.StringFlag{Name: "loss", Category: "distillation", Value: "listnet", Usage: "listnet, kl, mse, margin-mse or ranknet"},
			&ucli.StringFlag{Name: "ivf-loss", Category: "distillation", Value: "list", Usage: "list (softmax over all lists) or doc (the paper's doc-level loss)"},
			&ucli.FloatFlag{Name: "temperature", Category: "distillation", Value: 0.2, Usage: "softmax temperature, in units of the median spread of the teacher's top-k scores"},
			&ucli.FloatFlag{Name: "ivf-weight", Category: "distillation", Usage: "weight of the IVF loss (default: scaled to the PQ loss on the first batch)"},
			&ucli.IntFlag{Name: "epochs", Category: "distillation", Value: 8, Usage: "passes over the training queries"},
			&ucli.IntFlag{Name: "batch", Category: "distillation", Value: 256, Usage: "queries per step"},
			&ucli.FloatFlag{Name: "lr-ivf", Category: "distillation", Usage: "Adam learning rate of the centroids, in units of the documents' coordinate RMS (default 0.01 for ip, 0.003 for l2)"},
			&ucli.FloatFlag{Name: "lr-pq", Category: "distillation", Usage: "Adam learning rate of the codebooks, same units and defaults"},
			&ucli.StringFlag{Name: "encode", Category: "distillation", Value: "weighted", Usage: "PQ encoding for inner product: weighted (minimise the expected query-score error) or l2 (FAISS's)"},
			&ucli.StringFlag{Name: "export-lists", Category: "distillation", Value: "train", Usage: "train (keep training-time lists) or nearest (re-assign to learned centroids)"},
			&ucli.StringFlag{Name: "log-json", Category: "distillation", Usage: "write the training curve (loss, validation recall per epoch) as JSON"},
			&ucli.BoolFlag{Name: "compare", Category: "compare", Usage: "also build FAISS's own training of the same index (OUT-faiss.faiss) and compare the two on --eval-queries"},
			&ucli.StringFlag{Name: "eval-queries", Category: "compare", Usage: "held-out queries for --compare (not used in training)"},
		}, evalFlags("eval-")...),
		Action: func(ctx context.Context, c *ucli.Command) error {
			metric, err := faissio.ParseMetric(c.String("metric"))
			if err != nil {
				return err
			}
			opts := BuildOptions{
				Docs: c.String("docs"), IDs: c.String("ids"), Output: c.String("output"),
				Index: c.String("index"), Metric: metric,
				Nlist: c.Int("nlist"), M: c.Int("m"), Nbits: c.Int("nbits"),
				Train: c.String("train"), TrainSize: c.Int("train-size"), Niter: c.Int("niter"), Seed: c.Uint64("seed"), OPQ: c.Bool("opq"),
				Queries: c.String("queries"), Qrels: c.String("qrels"), ExportLists: c.String("export-lists"), LogJSON: c.String("log-json"),
				Checkpoint: c.String("checkpoint"), Resume: c.Bool("resume"),
				Distill: distill.DistillConfig{
					PseudoQueries: c.Int("pseudo-queries"), Val: c.Int("val"), TopK: c.Int("topk"),
					TopKSample: c.Int("topk-sample"), RefreshEvery: c.Int("refresh-every"),
					Negatives: c.String("negatives"), InBatch: c.Int("in-batch"), Loss: c.String("loss"), IVFLoss: c.String("ivf-loss"),
					Temperature: c.Float("temperature"), IVFWeight: c.Float("ivf-weight"), Epochs: c.Int("epochs"), Batch: c.Int("batch"),
					LRIVF: c.Float("lr-ivf"), LRPQ: c.Float("lr-pq"), Encode: c.String("encode"),
				},
			}
			if err := opts.checkFlags(); err != nil {
				return err
			}
			if opts.MaxMemory, err = parseBytes(c.String("max-memory")); err != nil {
				return fmt.Errorf("--max-memory: %w", err)
			}
			var cmp *EvalOptions
			if c.Bool("compare") {
				eo, err := compareOptions(c, opts)
				if err != nil {
					return err
				}
				cmp = &eo
			}
			outs := []string{c.String("report-json")}
			if cmp != nil {
				outs = append(outs, cmp.JSON, cmp.Markdown, cmp.Plot)
			}
			for _, out := range outs {
				if err := checkOutputDir(out); out != "" && err != nil {
					return fail(err)
				}
			}
			p := newProgress(e)
			rep, err := Build(ctx, opts, p.update)
			p.finish()
			if err != nil {
				return fail(err)
			}
			printBuildReport(e, rep)
			if path := c.String("report-json"); path != "" {
				if err := writeJSON(path, rep); err != nil {
					return fail(err)
				}
			}
			if cmp == nil {
				return nil
			}
			return fail(compareWithFAISS(ctx, e, opts, rep, *cmp))
		},
	}
}

// compareOptions reads the --eval-* flags of build --compare.
func compareOptions(c *ucli.Command, o BuildOptions) (EvalOptions, error) {
	if o.Train == "faiss" {
		return EvalOptions{}, fmt.Errorf("--compare compares with FAISS's training, and --train faiss is that already")
	}
	q := c.String("eval-queries")
	if q == "" {
		return EvalOptions{}, fmt.Errorf("--compare needs --eval-queries: held-out queries that training did not see")
	}
	eo, err := evalOptionsFrom(c, "eval-")
	if err != nil {
		return eo, err
	}
	eo.Docs, eo.IDs, eo.Queries = o.Docs, o.IDs, q
	eo.Indexes = []string{o.Output, compareOutput(o.Output)}
	return eo, nil
}

// compareOutput names FAISS's index built beside ours: out.faiss → out-faiss.faiss.
func compareOutput(out string) string {
	ext := filepath.Ext(out)
	return strings.TrimSuffix(out, ext) + "-faiss" + ext
}

// compareWithFAISS builds FAISS's own training of the index just built, with
// the same shape, seed, iterations and sample, and compares the two.
func compareWithFAISS(ctx context.Context, e *env, o BuildOptions, ours *BuildReport, eo EvalOptions) error {
	o.Train, o.Output = "faiss", eo.Indexes[1]
	o.Nlist, o.M, o.LogJSON = ours.Nlist, ours.M, ""
	p := newProgress(e)
	rep, err := Build(ctx, o, p.update)
	p.finish()
	if err != nil {
		return err
	}
	printBuildReport(e, rep)
	fmt.Fprintln(e.stdout)
	p = newProgress(e)
	ev, err := Eval(ctx, eo, e.stderr, p.update)
	p.finish()
	if err != nil {
		return err
	}
	return writeEvalReports(e, ev, eo)
}

// checkFlags rejects option values that are wrong whatever the data.
func (o *BuildOptions) checkFlags() error {
	switch {
	case o.Index != "ivfpq" && o.Index != "ivfflat":
		return fmt.Errorf("--index %q: want ivfpq or ivfflat", o.Index)
	case o.Train != "kmeans" && o.Train != "faiss" && o.Train != "distill":
		return fmt.Errorf("--train %q: want distill, kmeans or faiss", o.Train)
	case o.ExportLists != "" && o.ExportLists != "train" && o.ExportLists != "nearest":
		return fmt.Errorf("--export-lists %q: want train or nearest", o.ExportLists)
	case o.Nlist < 0:
		return fmt.Errorf("--nlist %d must be at least 1", o.Nlist)
	case o.M < 0:
		return fmt.Errorf("--m %d must be at least 1", o.M)
	case o.Index == "ivfpq" && (o.Nbits < 1 || o.Nbits > 8):
		return fmt.Errorf("--nbits %d outside 1..8", o.Nbits)
	case o.Train == "distill" && o.Distill.Check() != nil:
		return o.Distill.Check()
	case o.OPQ && o.Index != "ivfpq":
		return fmt.Errorf("--opq needs --index ivfpq")
	case o.Niter < 1:
		return fmt.Errorf("--niter %d must be at least 1", o.Niter)
	case o.TrainSize < 0:
		return fmt.Errorf("--train-size %d must not be negative", o.TrainSize)
	case o.Resume && o.Checkpoint == "":
		return fmt.Errorf("--resume needs --checkpoint DIR")
	case o.Checkpoint != "" && o.Train == "faiss":
		return fmt.Errorf("--checkpoint works with --train distill or kmeans: FAISS's own training cannot be saved part-way")
	}
	return nil
}

// Build reads the documents, trains the index, fills a FAISS index with every
// document and writes it to o.Output through a temporary file, so a failure
// at any step leaves no output behind. progress may be nil.
func Build(ctx context.Context, o BuildOptions, progress func(phase string, done, total int)) (*BuildReport, error) {
	if progress == nil {
		progress = func(string, int, int) {}
	}
	for _, out := range []string{o.Output, o.LogJSON} {
		if err := checkOutputDir(out); out != "" && err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	src, err := faissio.OpenSource(o.Docs)
	if err != nil {
		return nil, err
	}
	n, d := src.Rows, src.Cols
	var ids []int64
	if o.IDs != "" {
		if ids, err = faissio.ReadIDs(o.IDs, n); err != nil {
			return nil, err
		}
	} else {
		ids = make([]int64, n)
		for i := range ids {
			ids[i] = int64(i)
		}
	}
	rep := &BuildReport{Output: o.Output, N: n, D: d, Index: o.Index, Metric: o.Metric, Train: o.Train, OPQ: o.OPQ}
	rep.Nlist = o.Nlist
	if rep.Nlist == 0 {
		rep.Nlist = DefaultNlist(n)
	}
	if o.Index == "ivfpq" {
		rep.M, rep.Nbits = o.M, o.Nbits
		if rep.M == 0 {
			rep.M = DefaultM(d)
		}
	}
	cfg := distill.Config{
		Metric: o.Metric, Nlist: rep.Nlist, M: rep.M, Nbits: rep.Nbits,
		TrainSize: o.TrainSize, Niter: o.Niter, Seed: o.Seed, Progress: progress,
	}
	if err := cfg.Check(n, d); err != nil {
		return nil, err
	}
	plan, err := planMemory(o, cfg, n, d)
	if err != nil {
		return nil, err
	}
	rep.TrainRows, rep.MemoryPlan = plan.trainRows, plan.bytes
	if goLimit := goMemoryLimit(plan.limit); goLimit > 0 {
		// The plan counts live data; the Go collector, left to itself, lets
		// the heap grow to twice the live data before it runs. Its soft
		// limit makes it collect the k-means sample and other dropped
		// buffers before the process outgrows the bound.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(goLimit))
	}
	if plan.distillSample {
		rep.DistillDocs = plan.trainRows
	}

	j := &job{o: o, src: src, ids: ids, cfg: cfg, rep: rep, progress: progress}
	if o.Checkpoint != "" {
		key, err := checkpointKey(o, cfg, plan.trainRows)
		if err != nil {
			return nil, err
		}
		if j.ck, err = openCheckpoint(o.Checkpoint, key, o, o.Resume); err != nil {
			return nil, err
		}
		rep.Resumed = j.ck.stage()
	}
	// Distillation and FAISS's own training need every vector in memory;
	// our k-means path reads a training sample, then streams the rest.
	switch {
	case plan.distillSample:
		if j.docs, err = readSample(src, plan.trainRows, o.Seed); err != nil {
			return nil, err
		}
		j.train, j.sampled = j.docs, true
	case o.Train != "kmeans":
		j.docs = faissio.Matrix{Rows: n, Cols: d, Data: make([]float32, n*d)}
		if err := src.Read(0, n, j.docs.Data); err != nil {
			return nil, err
		}
		j.train = j.docs
	default:
		if plan.trainRows < n {
			// The sample does not see every row: check them all now, not
			// when encoding after the training.
			if err := src.CheckFinite(); err != nil {
				return nil, err
			}
		}
		if j.train, err = readSample(src, plan.trainRows, o.Seed); err != nil {
			return nil, err
		}
	}
	rep.Read = time.Since(t0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.OPQ && o.Train != "faiss" {
		if err := j.trainRotation(); err != nil {
			return nil, err
		}
	}
	var index *faiss.Index
	switch o.Train {
	case "faiss":
		index, err = j.buildFAISS()
	case "distill":
		index, err = j.buildDistill(ctx)
	default:
		index, err = j.buildKMeans(ctx)
	}
	if err != nil {
		return nil, err
	}
	defer index.Close()

	t0 = time.Now()
	err = faissio.WriteFileAtomic(o.Output, func(f *os.File) error { return index.WriteFile(f.Name()) })
	if err != nil {
		return nil, err
	}
	rep.Write = time.Since(t0)
	if st, err := os.Stat(o.Output); err == nil {
		rep.Bytes = st.Size()
	}
	if o.LogJSON != "" {
		if err := writeJSON(o.LogJSON, j.curve); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// job is one build in progress.
type job struct {
	o   BuildOptions
	src *faissio.Source // every document, on disk
	// docs holds every document (distill and faiss trainers only) and
	// train the training sample (the k-means trainer) or docs itself;
	// both are rotated when an OPQ rotation was trained.
	docs, train faissio.Matrix
	// sampled says docs is a random sample of the documents (a distillation
	// that would not fit in --max-memory with all of them).
	sampled  bool
	ids      []int64
	cfg      distill.Config
	rep      *BuildReport
	rotation []float32 // D×D OPQ rotation, or nil
	progress func(string, int, int)
	curve    []distill.EpochStats // the distillation's training curve
	ck       *checkpoint          // nil without --checkpoint
}

// trainRotation trains FAISS's OPQ rotation on a sample of the documents and
// moves the documents into the rotated space, where training happens; the
// rotation is frozen and written in front of the IVF index.
func (j *job) trainRotation() error {
	t0 := time.Now()
	// FAISS's OPQ training on one BLAS thread: its threaded products would
	// make the rotation, and so the index, depend on the number of cores.
	defer faiss.SerialBLAS()()
	j.progress("OPQ rotation", 0, 1)
	if j.ck != nil && j.ck.kmeans != nil {
		// The checkpoint's model was trained in its rotated space.
		if d := j.train.Cols; len(j.ck.kmeans.Rotation) != d*d {
			return fmt.Errorf("checkpoint %s: no %dx%d OPQ rotation", j.ck.dir, d, d)
		}
		j.rotation = j.ck.kmeans.Rotation
	} else {
		sample := j.train
		if n := max(256*j.cfg.Nlist, 256<<j.cfg.Nbits); sample.Rows > n {
			sample = distill.Sample(sample, n, j.cfg.Seed)
		}
		var err error
		if j.rotation, err = faiss.TrainOPQ(sample, j.cfg.M, int(j.cfg.Seed%(1<<31))); err != nil {
			return err
		}
	}
	j.train = faiss.ApplyRotation(j.rotation, j.train)
	if j.o.Train != "kmeans" {
		j.docs = j.train // train was docs itself
	}
	j.progress("OPQ rotation", 1, 1)
	j.rep.Fit += time.Since(t0)
	return nil
}

// buildKMeans trains with our k-means and fills FAISS with the codes we
// compute.
func (j *job) buildKMeans(ctx context.Context) (*faiss.Index, error) {
	t0 := time.Now()
	model, err := j.trainKMeans(ctx, j.train)
	if err != nil {
		return nil, err
	}
	j.train = faissio.Matrix{} // the sample is no longer needed
	j.rep.Fit += time.Since(t0)
	t0 = time.Now()
	lists, codes, err := encodeSource(ctx, model, j.src, j.rotation, j.progress)
	if err != nil {
		return nil, err
	}
	return j.fill(model, lists, codes, t0)
}

// trainKMeans runs our FAISS-style training on x and records its phase
// times, or takes the model from the checkpoint being resumed.
func (j *job) trainKMeans(ctx context.Context, x faissio.Matrix) (*distill.Model, error) {
	if j.ck != nil && j.ck.kmeans != nil {
		m := j.ck.kmeans.Model
		if m.D != x.Cols || m.Nlist != j.cfg.Nlist || m.M != j.cfg.M || m.Nbits != j.cfg.Nbits || m.Metric != j.cfg.Metric {
			return nil, fmt.Errorf("checkpoint %s: its model does not match this build's parameters", j.ck.dir)
		}
		return m, nil
	}
	var times distill.PhaseTimes
	cfg := j.cfg
	cfg.Times = &times
	model, err := distill.TrainKMeans(ctx, x, cfg)
	if err != nil {
		return nil, err
	}
	j.rep.IVFKMeans, j.rep.PQTrain = times.IVF, times.PQ
	if j.ck != nil {
		if err := j.ck.saveKMeans(kmeansState{Model: model, Rotation: j.rotation}); err != nil {
			return nil, err
		}
	}
	return model, nil
}

// fill builds the FAISS index from a trained model and the encoded documents.
func (j *job) fill(model *distill.Model, lists []int64, codes []byte, t0 time.Time) (*faiss.Index, error) {
	index, err := faiss.NewIVF(faiss.IVFParams{
		D: model.D, Metric: model.Metric, Nlist: model.Nlist, Centroids: model.Centroids,
		M: model.M, Nbits: model.Nbits, Codebooks: model.Codebooks,
		Lists: lists, IDs: j.ids, Codes: codes, Rotation: j.rotation,
	})
	j.rep.Add = time.Since(t0)
	j.rep.CodeBytesPerVec = model.CodeSize()
	return index, err
}

// buildDistill starts from our k-means model and distils it from the dense
// teacher, then fills FAISS with every document encoded by the learned
// parameters.
func (j *job) buildDistill(ctx context.Context) (*faiss.Index, error) {
	o, docs := j.o, j.docs
	dc := o.Distill
	if o.Queries != "" {
		q, err := faissio.ReadVectors(o.Queries)
		if err != nil {
			return nil, err
		}
		if q.Cols != docs.Cols {
			return nil, fmt.Errorf("training queries %s have d=%d but documents have d=%d", o.Queries, q.Cols, docs.Cols)
		}
		if j.rotation != nil {
			q = faiss.ApplyRotation(j.rotation, q)
		}
		dc.Queries = q
	}
	if o.Qrels != "" {
		if o.Queries == "" {
			return nil, fmt.Errorf("--qrels needs --queries: labels refer to training queries")
		}
		qrels, err := faissio.ReadQrels(o.Qrels, dc.Queries.Rows)
		if err != nil {
			return nil, err
		}
		if dc.Qrels, err = qrelRows(qrels, j.ids); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Qrels, err)
		}
	}
	t0 := time.Now()
	init, err := j.trainKMeans(ctx, docs)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	lists := init.Assign(docs)
	dc.Seed = o.Seed
	if j.ck != nil {
		dc.Checkpoint, dc.Resume = j.ck.saveDistill, j.ck.distill
	}
	dc.Progress = func(st distill.EpochStats) {
		j.progress(fmt.Sprintf("distill: loss %.3g, held-out R10@10 %.3f", st.LossPQ+st.LossIVF, st.ValRecall), st.Epoch, st.Epochs)
	}
	model, curve, err := distill.Distill(ctx, docs, init, lists, dc)
	if err != nil {
		return nil, err
	}
	j.rep.Distill = time.Since(t1)
	j.rep.Fit += time.Since(t0)
	j.curve, j.rep.Epochs = curve, curve
	t0 = time.Now()
	var codes []byte
	if j.sampled {
		// Only a sample was in memory: every document, streamed, goes to
		// its nearest learned list.
		j.docs = faissio.Matrix{}
		if lists, codes, err = encodeSource(ctx, model, j.src, j.rotation, j.progress); err != nil {
			return nil, err
		}
		return j.fill(model, lists, codes, t0)
	}
	if o.ExportLists == "nearest" {
		if lists, codes, err = encodeAll(ctx, model, docs, j.progress); err != nil {
			return nil, err
		}
	} else {
		codes = model.Encode(docs, lists)
	}
	return j.fill(model, lists, codes, t0)
}

// buildFAISS lets FAISS train and add, for a like-for-like comparison.
func (j *job) buildFAISS() (*faiss.Index, error) {
	t0 := time.Now()
	train := j.docs
	if j.cfg.TrainSize > 0 && j.cfg.TrainSize < train.Rows {
		train = distill.Sample(train, j.cfg.TrainSize, j.cfg.Seed)
	}
	index, err := faiss.TrainFAISS(faiss.FAISSParams{
		D: j.docs.Cols, Metric: j.cfg.Metric, Nlist: j.cfg.Nlist, M: j.cfg.M, Nbits: j.cfg.Nbits,
		Seed: int(j.cfg.Seed % (1 << 31)), Niter: j.cfg.Niter, OPQ: j.o.OPQ,
	}, train, j.docs, j.ids)
	j.rep.Fit = time.Since(t0)
	if err == nil {
		if info, ierr := index.Info(); ierr == nil {
			j.rep.CodeBytesPerVec = info.CodeSize
		}
	}
	return index, err
}

// qrelRows maps labelled document ids to document rows.
func qrelRows(qrels [][]int64, ids []int64) ([][]int32, error) {
	row := make(map[int64]int32, len(ids))
	for i, id := range ids {
		row[id] = int32(i)
	}
	out := make([][]int32, len(qrels))
	for q, labelled := range qrels {
		for _, id := range labelled {
			r, ok := row[id]
			if !ok {
				return nil, fmt.Errorf("query %d: document id %d is not among the documents", q, id)
			}
			out[q] = append(out[q], r)
		}
	}
	return out, nil
}

// encodeSource reads, rotates (if rotation is not nil), assigns and encodes
// every document, a block at a time, so that only a block of the documents
// is ever in memory.
func encodeSource(ctx context.Context, model *distill.Model, src *faissio.Source, rotation []float32, progress func(string, int, int)) ([]int64, []byte, error) {
	block := encodeBlock(model.Nlist, src.Cols)
	lists := make([]int64, 0, src.Rows)
	codes := make([]byte, 0, src.Rows*model.CodeSize())
	buf := make([]float32, block*src.Cols)
	for i := 0; i < src.Rows; i += block {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		x := faissio.Matrix{Rows: min(block, src.Rows-i), Cols: src.Cols}
		x.Data = buf[:x.Rows*x.Cols]
		if err := src.Read(i, i+x.Rows, x.Data); err != nil {
			return nil, nil, err
		}
		if rotation != nil {
			x = faiss.ApplyRotation(rotation, x)
		}
		l := model.Assign(x)
		lists = append(lists, l...)
		codes = append(codes, model.Encode(x, l)...)
		progress("encode", i+x.Rows, src.Rows)
	}
	return lists, codes, nil
}

// encodeBlock is the number of rows encoded at once: at most 65536, and
// fewer when the block and its distances to the centroids would pass
// 64 MiB.
func encodeBlock(nlist, d int) int {
	return max(256, min(1<<16, (16<<20)/(nlist+d)))
}

// encodeAll assigns every document to its list and encodes it, a block at a
// time so progress can be shown and an interrupt honoured.
func encodeAll(ctx context.Context, model *distill.Model, docs faissio.Matrix, progress func(string, int, int)) ([]int64, []byte, error) {
	block := encodeBlock(model.Nlist, docs.Cols)
	lists := make([]int64, 0, docs.Rows)
	codes := make([]byte, 0, docs.Rows*model.CodeSize())
	for i := 0; i < docs.Rows; i += block {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		x := docs.Slice(i, min(i+block, docs.Rows))
		l := model.Assign(x)
		lists = append(lists, l...)
		codes = append(codes, model.Encode(x, l)...)
		progress("encode", i+x.Rows, docs.Rows)
	}
	return lists, codes, nil
}

// checkOutputDir fails early, before any training, when the output cannot be
// written where asked.
func checkOutputDir(path string) error {
	if path == "" {
		return fmt.Errorf("no output path")
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output folder %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output folder %s is not a folder", dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("output %s is a folder", path)
	}
	return nil
}

func printBuildReport(e *env, r *BuildReport) {
	kind := "IVFFlat"
	if r.Index == "ivfpq" {
		kind = fmt.Sprintf("IVFPQ M=%d nbits=%d", r.M, r.Nbits)
	}
	if r.OPQ {
		kind = "OPQ+" + kind
	}
	fmt.Fprintf(e.stdout, "wrote %s: %s nlist=%d metric=%s, %d vectors of d=%d, %d bytes (%d code bytes/vector)\n",
		r.Output, kind, r.Nlist, r.Metric, r.N, r.D, r.Bytes, r.CodeBytesPerVec)
	fmt.Fprintf(e.stdout, "trainer %s: read %.2fs, train %.2fs, add %.2fs, write %.2fs\n",
		r.Train, r.Read.Seconds(), r.Fit.Seconds(), r.Add.Seconds(), r.Write.Seconds())
	if r.Resumed != "" {
		fmt.Fprintf(e.stdout, "resumed: %s taken from the checkpoint\n", r.Resumed)
	}
	if r.DistillDocs > 0 {
		fmt.Fprintf(e.stdout, "distilled on %d of the %d documents to stay within --max-memory (planned %s); all were encoded\n",
			r.DistillDocs, r.N, showBytes(r.MemoryPlan))
	}
}
