package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
)

// buildReport is what build --report-json writes: the library's report and
// the file written.
type buildReport struct {
	build.Report
	Output string        `json:"output"`
	Bytes  int64         `json:"bytes"`
	Write  time.Duration `json:"write_ns"`
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

func buildCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "build",
		Usage:     "train an IVFPQ or IVFFlat index on dense vectors and write it as a FAISS file",
		UsageText: "distillvq build --docs docs.npy [--index ivfpq|ivfflat] [--nlist N] [--m M] [--metric ip|l2] [--ids ids.npy] [--train distill|kmeans|faiss] [--queries train.npy] -o out.faiss",
		Flags: append(append(trainFlags("the .faiss file to write (atomically)"),
			&ucli.StringFlag{Name: "log-json", Category: "distillation", Usage: "write the training curve (loss, validation recall per epoch) as JSON"},
			&ucli.BoolFlag{Name: "compare", Category: "compare", Usage: "also build FAISS's own training of the same index (OUT-faiss.faiss) and compare the two on --eval-queries"},
			&ucli.StringFlag{Name: "eval-queries", Category: "compare", Usage: "held-out queries for --compare (not used in training)"},
		), append(engineFlags(e), evalFlags("eval-")...)...),
		Arguments: []ucli.Argument{&ucli.StringArg{Name: opqArg}},
		Action: func(ctx context.Context, c *ucli.Command) error {
			o, err := buildOptionsFrom(c)
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			in, err := inputsFrom(c)
			if err != nil {
				return err
			}
			var cmp *compareRun
			if c.Bool("compare") {
				if cmp, err = compareFrom(c, o, in); err != nil {
					return err
				}
			}
			out := buildOutputs{index: c.String("output"), logJSON: c.String("log-json"), reportJSON: c.String("report-json")}
			for _, path := range []string{out.index, out.logJSON, out.reportJSON} {
				if err := checkOutputDir(path); path != "" && err != nil {
					return fail(err)
				}
			}
			if cmp != nil {
				if err := cmp.files.checkDirs(); err != nil {
					return fail(err)
				}
			}
			p, err := newProgress(e, c.String("progress"))
			if err != nil {
				return err
			}
			if c.String("runner") != "" {
				return runDistributed(ctx, e, c, p, in, out, cmp, o)
			}
			src, err := in.read(&o)
			if err != nil {
				return fail(err)
			}
			rep, err := runBuild(ctx, e, p, src, o, out)
			if err != nil || cmp == nil {
				return fail(err)
			}
			return fail(cmp.run(ctx, e, p, src, o, rep))
		},
	}
}

// trainFlags are the flags that say what to train, shared by build and
// train; output says what -o names. Flags whose default depends on the
// data say so in their usage and hide urfave's "(default: 0)".
func trainFlags(output string) []ucli.Flag {
	return []ucli.Flag{
		progressFlag(),
		&ucli.StringFlag{Name: "docs", Usage: "document vectors: .npy (float32/float16/float64), a folder or glob of .npy shards, .fvecs, or a .parquet file, folder or glob of them", Required: true},
		&ucli.StringFlag{Name: "ids", Usage: "optional .npy of int64 ids, one per document (default 0..n-1)"},
		&ucli.StringFlag{Name: "column", Usage: "Parquet inputs: the vector column, a list of floats (default: the only one)"},
		&ucli.StringFlag{Name: "id-column", Usage: "Parquet documents: their int64 column of ids, instead of --ids"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: output, Required: true},
		&ucli.StringFlag{Name: "index", Value: "ivfpq", Usage: "index type: ivfpq, ivfflat, ivfpqfs (4-bit FastScan IVFPQ), pq or pqfs (PQ and FastScan PQ without IVF)"},
		&ucli.StringFlag{Name: "quantizer", Value: "flat", Usage: "coarse quantizer of the IVF kinds: flat, or hnsw (an HNSW graph FAISS builds over the learned centroids)"},
		&ucli.IntFlag{Name: "hnsw-m", Value: build.DefaultHNSWM, Usage: "neighbours per centroid in the HNSW quantizer's graph"},
		&ucli.IntFlag{Name: "ef-construction", Value: build.DefaultEfConstruction, Usage: "the HNSW quantizer's build beam"},
		&ucli.IntFlag{Name: "ef-search", Value: build.DefaultEfSearch, Usage: "the HNSW quantizer's search beam, stored in the index (FAISS widens it to nprobe)"},
		&ucli.StringFlag{Name: "metric", Value: "ip", Usage: "ip (inner product) or l2"},
		&ucli.IntFlag{Name: "nlist", HideDefault: true, Usage: "number of inverted lists (default 4*sqrt(n), at most n/39)"},
		&ucli.IntFlag{Name: "m", HideDefault: true, Usage: "PQ sub-quantizers; must divide d (default: the largest divisor of d that is at most min(64, d/4))"},
		&ucli.IntFlag{Name: "nbits", Value: build.DefaultNbits, Usage: "bits per PQ code, 1..8 (FastScan: 4)"},
		&ucli.StringFlag{Name: "train", Value: "distill", Usage: "trainer: distill (Distill-VQ from the dense teacher), kmeans (ours, FAISS-style) or faiss (FAISS's own, for comparison)"},
		&ucli.IntFlag{Name: "train-size", HideDefault: true, Usage: "documents sampled for training (default: 256 per centroid and per PQ codeword, as FAISS)"},
		&ucli.IntFlag{Name: "niter", Value: build.DefaultNiter, Usage: "k-means iterations"},
		&ucli.Uint64Flag{Name: "seed", Value: build.DefaultSeed, Usage: "random seed; the same seed gives the same index"},
		&ucli.GenericFlag{Name: "opq", Value: &opqValue{}, Usage: "rotate with OPQ first (IndexPreTransform in front of the index); `[faiss|learn]`: faiss, as --opq alone, keeps FAISS's trained rotation, learn distils it with the centroids and codebooks (--train distill)"},
		&ucli.IntFlag{Name: "opq-niter", HideDefault: true, Usage: "iterations of FAISS's OPQ training, its slowest step (default 50); fewer build faster and rotate worse"},
		&ucli.StringFlag{Name: "report-json", Usage: "also write what was built and the time of each phase as JSON"},
		&ucli.StringFlag{Name: "checkpoint", Usage: "save each finished training stage (k-means, every distillation epoch) in this folder"},
		&ucli.BoolFlag{Name: "resume", Usage: "continue from the stages saved in --checkpoint; the index is the same as an uninterrupted build's"},
		&ucli.StringFlag{Name: "max-memory", Usage: "memory the build may plan for, such as 3GiB or 500MB, or 'none' for no bound (default: what the machine has available)"},
		&ucli.StringFlag{Name: "queries", Category: "distillation", Usage: "training queries (.npy); default: pseudo-queries drawn from the documents"},
		&ucli.IntFlag{Name: "pseudo-queries", Category: "distillation", HideDefault: true, Usage: "documents drawn as extra training queries, -1 for none (default min(20000, n/5))"},
		&ucli.StringFlag{Name: "qrels", Category: "distillation", Usage: "labelled positives: query_index<TAB>doc_id per line"},
		&ucli.IntFlag{Name: "val", Category: "distillation", HideDefault: true, Usage: "training queries held out to report recall each epoch, -1 for none (default min(500, 10%))"},
		&ucli.IntFlag{Name: "topk", Category: "distillation", Value: 200, Usage: "teacher's top documents per query"},
		&ucli.IntFlag{Name: "topk-sample", Category: "distillation", HideDefault: true, Usage: "draw this many of the top-k per query and step instead of all (Top-K^n sampling; default all)"},
		&ucli.IntFlag{Name: "refresh-every", Category: "distillation", HideDefault: true, Usage: "steps between re-encodings of all documents (default: once per epoch)"},
		&ucli.StringFlag{Name: "negatives", Category: "distillation", Value: "inbatch", Usage: "other candidates: inbatch, random or none"},
		&ucli.IntFlag{Name: "in-batch", Category: "distillation", Value: 200, Usage: "negatives per query"},
		&ucli.StringFlag{Name: "loss", Category: "distillation", Value: "listnet", Usage: "listnet, kl, mse, margin-mse or ranknet"},
		&ucli.StringFlag{Name: "ivf-loss", Category: "distillation", Value: "list", Usage: "list (softmax over all lists) or doc (the paper's doc-level loss)"},
		&ucli.FloatFlag{Name: "temperature", Category: "distillation", HideDefault: true, Usage: "softmax temperature, in units of the median spread of the teacher's top-k scores (default 0.2; 1.6 for --index pq and pqfs)"},
		&ucli.BoolFlag{Name: "quantize-lut", Category: "distillation", Usage: "score the inner-product student with look-up tables rounded to 8 bits, as FAISS's FastScan search does"},
		&ucli.FloatFlag{Name: "ivf-weight", Category: "distillation", HideDefault: true, Usage: "weight of the IVF loss (default: scaled to the PQ loss on the first batch)"},
		&ucli.IntFlag{Name: "epochs", Category: "distillation", Value: distill.DefaultEpochs, Usage: "passes over the training queries"},
		&ucli.IntFlag{Name: "patience", Category: "distillation", Value: distill.DefaultPatience, Usage: "stop once held-out recall has not beaten its best for this many epochs (the best epoch is kept); -1: run every epoch"},
		&ucli.IntFlag{Name: "batch", Category: "distillation", Value: 256, Usage: "queries per step"},
		&ucli.FloatFlag{Name: "lr-ivf", Category: "distillation", HideDefault: true, Usage: "Adam learning rate of the centroids, in units of the documents' coordinate RMS (default 0.01 for ip, 0.003 for l2)"},
		&ucli.FloatFlag{Name: "lr-pq", Category: "distillation", HideDefault: true, Usage: "Adam learning rate of the codebooks, in the same units (default 0.01 for ip, 0.003 for l2)"},
		&ucli.FloatFlag{Name: "lr-rotation", Category: "distillation", HideDefault: true, Usage: "Cayley step size of the rotation per unit of Adam direction, with --opq learn (default 3e-4; 2e-3 measured best on 512-d embeddings)"},
		&ucli.StringFlag{Name: "encode", Category: "distillation", Value: "weighted", Usage: "PQ encoding for inner product: weighted (minimise the expected query-score error) or l2 (FAISS's)"},
		&ucli.StringFlag{Name: "export-lists", Category: "distillation", Value: "auto", Usage: "auto (the better of the two on held-out queries), train (keep training-time lists) or nearest (re-assign to learned centroids)"},
	}
}

// engineFlags are build's flags for a distributed run: the engine's, or
// in distillvq a --runner that says where the engine is.
func engineFlags(e *env) []ucli.Flag {
	if e.engine != nil {
		return e.engine.Flags()
	}
	return []ucli.Flag{&ucli.StringFlag{Name: "runner", Category: "distributed",
		Usage: "run the encoding and merge on Apache Beam (prism, dataflow, flink, spark, universal): distillvq-beam's build has it"}}
}

// runDistributed is build --runner: train here, encode and merge on the
// engine.
func runDistributed(ctx context.Context, e *env, c *ucli.Command, p *progress, in buildInputs, out buildOutputs, cmp *compareRun, o build.Options) error {
	switch {
	case e.engine == nil:
		return fmt.Errorf("--runner %s: this distillvq has no distributed engine; distillvq-beam (make beam) is distillvq with build on Apache Beam", c.String("runner"))
	case cmp != nil:
		return fmt.Errorf("--compare builds in one process; run it without --runner")
	case in.ids != "" || in.idColumn != "":
		return fmt.Errorf("--ids, --id-column: the distributed build numbers documents by their row; give ids to add, shard by shard")
	case out.logJSON != "":
		return fmt.Errorf("--log-json: the distributed build's curve is in --report-json")
	}
	if in.queries != "" {
		var err error
		if o.Queries, err = in.readQueries(); err != nil {
			return fail(err)
		}
		if in.qrels != "" {
			if o.Qrels, err = faissio.ReadQrels(in.qrels, o.Queries.Rows); err != nil {
				return fail(err)
			}
		}
	}
	// The engine's workers open the documents by path, and so need the
	// column by name.
	so, err := in.sourceOptions(in.docs)
	if err != nil {
		return err
	}
	o.Column = so.Column
	summary, report, err := e.engine.Build(ctx, c, in.docs, out.index, o, p.update)
	p.finish()
	if err != nil {
		return fail(err)
	}
	fmt.Fprint(e.stdout, summary)
	if out.reportJSON != "" {
		return fail(writeJSON(out.reportJSON, report))
	}
	return nil
}

// opqValue is --opq's value. It is a flag that needs no value, as a
// BoolFlag, so that a bare --opq (FAISS's rotation, kept) still works
// before any other flag, and takes one after "=": --opq=faiss,
// --opq=learn.
type opqValue struct {
	set  bool
	mode string // faiss or learn
}

func (v *opqValue) Set(s string) error {
	switch s {
	case "true":
		v.set, v.mode = true, "faiss"
	case "false":
		v.set, v.mode = false, ""
	default:
		if _, err := build.ParseOPQRotation(s); err != nil {
			return err
		}
		v.set, v.mode = true, s
	}
	return nil
}

func (v *opqValue) String() string   { return v.mode }
func (v *opqValue) Get() any         { return v }
func (v *opqValue) IsBoolFlag() bool { return true }

// opqArg names the build command's one optional argument: the word after a
// bare --opq, which urfave/cli leaves as an argument since the flag needs
// no value, so that "--opq learn" reads as "--opq=learn". Any other word is
// refused as a stray one.
const opqArg = "opq-rotation"

// opqFrom reads --opq: whether there is a rotation and which.
func opqFrom(c *ucli.Command) (bool, build.OPQRotation, error) {
	v, _ := c.Generic("opq").(*opqValue)
	var word string
	for _, a := range c.Arguments {
		if a.HasName(opqArg) {
			word, _ = a.Get().(string)
		}
	}
	if v == nil || !v.set {
		if word != "" {
			return false, 0, fmt.Errorf("unexpected argument %q (see %s --help)", word, c.FullName())
		}
		return false, 0, nil
	}
	mode := v.mode
	if word != "" {
		r, err := build.ParseOPQRotation(word)
		if err != nil || mode != "faiss" {
			// Not a rotation, or one after --opq=...: a stray word.
			return false, 0, fmt.Errorf("unexpected argument %q (see %s --help)", word, c.FullName())
		}
		return true, r, nil
	}
	r, err := build.ParseOPQRotation(mode)
	return true, r, err
}

// buildOptionsFrom parses the build flags into the library's options; the
// strings are parsed here, once.
func buildOptionsFrom(c *ucli.Command) (build.Options, error) {
	var o build.Options
	var err error
	if o.Metric, err = faissio.ParseMetric(c.String("metric")); err != nil {
		return o, err
	}
	if o.Index, err = build.ParseKind(c.String("index")); err != nil {
		return o, err
	}
	if o.Train, err = build.ParseTrainer(c.String("train")); err != nil {
		return o, err
	}
	if o.ExportLists, err = build.ParseExportLists(c.String("export-lists")); err != nil {
		return o, err
	}
	if o.MaxMemory, err = parseBytes(c.String("max-memory")); err != nil {
		return o, fmt.Errorf("--max-memory: %w", err)
	}
	if o.Quantizer, err = build.ParseQuantizer(c.String("quantizer")); err != nil {
		return o, err
	}
	o.Nlist, o.M, o.Nbits = c.Int("nlist"), c.Int("m"), c.Int("nbits")
	fastScan := o.Index == build.IVFPQFastScan || o.Index == build.PQFastScan
	if fastScan && !c.IsSet("nbits") {
		o.Nbits = 0 // FastScan's only size, 4
	}
	if o.Index != build.IVFFlat && !fastScan && (o.Nbits < 1 || o.Nbits > 8) {
		return o, fmt.Errorf("--nbits %d outside 1..8", o.Nbits)
	}
	if o.Index == build.IVFFlat {
		o.M, o.Nbits = 0, 0 // no PQ
	}
	if o.Quantizer == build.HNSWQuantizer {
		o.HNSWM, o.EfConstruction, o.EfSearch = c.Int("hnsw-m"), c.Int("ef-construction"), c.Int("ef-search")
		if o.EfSearch < 1 || o.EfConstruction < 1 {
			return o, fmt.Errorf("--ef-search %d, --ef-construction %d must be at least 1", o.EfSearch, o.EfConstruction)
		}
	}
	if o.Niter = c.Int("niter"); o.Niter < 1 {
		return o, fmt.Errorf("--niter %d must be at least 1", o.Niter)
	}
	o.TrainSize, o.Seed = c.Int("train-size"), c.Uint64("seed")
	if o.OPQ, o.OPQRotation, err = opqFrom(c); err != nil {
		return o, err
	}
	o.OPQNiter = c.Int("opq-niter")
	o.Checkpoint, o.Resume = c.String("checkpoint"), c.Bool("resume")
	dc := distill.DistillConfig{
		PseudoQueries: c.Int("pseudo-queries"), Val: c.Int("val"), TopK: c.Int("topk"),
		TopKSample: c.Int("topk-sample"), RefreshEvery: c.Int("refresh-every"), InBatch: c.Int("in-batch"),
		Temperature: c.Float("temperature"), IVFWeight: c.Float("ivf-weight"), Epochs: c.Int("epochs"), Patience: c.Int("patience"), Batch: c.Int("batch"),
		LRIVF: c.Float("lr-ivf"), LRPQ: c.Float("lr-pq"), LRRotation: c.Float("lr-rotation"), QuantizeLUT: c.Bool("quantize-lut"),
	}
	if c.IsSet("lr-rotation") && o.OPQRotation != build.LearnedRotation {
		return o, fmt.Errorf("--lr-rotation needs --opq learn: only a learned rotation takes steps")
	}
	if dc.Negatives, err = distill.ParseNegatives(c.String("negatives")); err != nil {
		return o, err
	}
	if dc.Loss, err = distill.ParseLoss(c.String("loss")); err != nil {
		return o, err
	}
	if dc.IVFLoss, err = distill.ParseIVFLoss(c.String("ivf-loss")); err != nil {
		return o, err
	}
	if dc.Encode, err = distill.ParseEncoding(c.String("encode")); err != nil {
		return o, err
	}
	o.Distill = dc
	return o, nil
}

// buildInputs are the files a build reads, and the columns of the Parquet
// ones: column is the vector column of each, idColumn the documents' ids.
type buildInputs struct{ docs, ids, queries, qrels, column, idColumn string }

// inputsFrom reads the input flags of build and train.
func inputsFrom(c *ucli.Command) (buildInputs, error) {
	in := buildInputs{docs: c.String("docs"), ids: c.String("ids"), queries: c.String("queries"), qrels: c.String("qrels"),
		column: c.String("column"), idColumn: c.String("id-column")}
	switch {
	case in.qrels != "" && in.queries == "":
		return in, fmt.Errorf("--qrels needs --queries: labels refer to training queries")
	case in.ids != "" && in.idColumn != "":
		return in, fmt.Errorf("--ids and --id-column both number the documents: give one")
	}
	return in, nil
}

// sourceOptions are the options of the input at path: --column names the
// vector column of every Parquet input, and means nothing to the others,
// but is refused when no input is Parquet.
func (in buildInputs) sourceOptions(path string) (faissio.SourceOptions, error) {
	if in.column == "" || faissio.IsParquet(path) {
		return faissio.SourceOptions{Column: in.column}, nil
	}
	if faissio.IsParquet(in.docs) || in.queries != "" && faissio.IsParquet(in.queries) {
		return faissio.SourceOptions{}, nil
	}
	return faissio.SourceOptions{}, fmt.Errorf("--column %s: no input is a Parquet file", in.column)
}

// readQueries reads the training queries.
func (in buildInputs) readQueries() (faissio.Matrix, error) {
	so, err := in.sourceOptions(in.queries)
	if err != nil {
		return faissio.Matrix{}, err
	}
	return faissio.ReadVectorsWith(in.queries, so)
}

// read opens the documents and reads the ids, training queries and labels
// into o.
func (in buildInputs) read(o *build.Options) (*faissio.Source, error) {
	so, err := in.sourceOptions(in.docs)
	if err != nil {
		return nil, err
	}
	src, err := faissio.OpenSourceWith(in.docs, so)
	if err != nil {
		return nil, err
	}
	if in.ids != "" {
		if o.IDs, err = faissio.ReadIDs(in.ids, src.Rows); err != nil {
			return nil, err
		}
	}
	if in.idColumn != "" {
		if o.IDs, err = src.ReadIDColumn(in.idColumn); err != nil {
			return nil, err
		}
	}
	if in.queries != "" {
		if o.Queries, err = in.readQueries(); err != nil {
			return nil, err
		}
		if o.Queries.Cols != src.Cols {
			return nil, fmt.Errorf("training queries %s have d=%d but documents have d=%d", in.queries, o.Queries.Cols, src.Cols)
		}
	}
	if in.qrels != "" {
		if o.Qrels, err = faissio.ReadQrels(in.qrels, o.Queries.Rows); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// buildOutputs are the files a build writes.
type buildOutputs struct{ index, logJSON, reportJSON string }

// runBuild trains, writes the index and the reports, and prints what it
// made.
func runBuild(ctx context.Context, e *env, p *progress, src *faissio.Source, o build.Options, out buildOutputs) (*build.Report, error) {
	o.Progress = p.update
	ix, rep, err := build.Run(ctx, src, o)
	if err != nil {
		p.finish()
		return nil, err
	}
	r := buildReport{Report: *rep, Output: out.index}
	t0 := time.Now()
	err = build.WriteFile(ctx, out.index, ix, func(done, total int) { p.update("write", done, total) })
	p.finish()
	if err != nil {
		return nil, err
	}
	r.Write = time.Since(t0)
	if st, err := os.Stat(out.index); err == nil {
		r.Bytes = st.Size()
	}
	printBuildReport(e, &r)
	if out.logJSON != "" {
		if err := writeJSON(out.logJSON, rep.Epochs); err != nil {
			return nil, err
		}
	}
	if out.reportJSON != "" {
		if err := writeJSON(out.reportJSON, r); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// compareRun is build --compare: FAISS's own training of the same index,
// then both measured on held-out queries.
type compareRun struct {
	output string
	eval   eval.Options
	files  reportFiles
}

// compareFrom reads the --eval-* flags of build --compare.
func compareFrom(c *ucli.Command, o build.Options, in buildInputs) (*compareRun, error) {
	if o.Train == build.FAISS {
		return nil, fmt.Errorf("--compare compares with FAISS's training, and --train faiss is that already")
	}
	q := c.String("eval-queries")
	if q == "" {
		return nil, fmt.Errorf("--compare needs --eval-queries: held-out queries that training did not see")
	}
	eo, files, err := evalOptionsFrom(c, "eval-")
	if err != nil {
		return nil, err
	}
	ours := c.String("output")
	cr := &compareRun{output: compareOutput(ours), eval: eo, files: files}
	cr.eval.Docs, cr.eval.IDs, cr.eval.Queries = in.docs, in.ids, q
	cr.eval.Column, cr.eval.IDColumn = in.column, in.idColumn
	cr.eval.Indexes = []string{ours, cr.output}
	return cr, nil
}

// compareOutput names FAISS's index built beside ours: out.faiss → out-faiss.faiss.
func compareOutput(out string) string {
	ext := filepath.Ext(out)
	return strings.TrimSuffix(out, ext) + "-faiss" + ext
}

// run builds FAISS's own training of the index just built, with the same
// shape, seed, iterations and sample, and compares the two.
func (cr *compareRun) run(ctx context.Context, e *env, p *progress, src *faissio.Source, o build.Options, ours *build.Report) error {
	o.Train, o.Nlist, o.M = build.FAISS, ours.Nlist, ours.M
	o.Checkpoint, o.Resume = "", false
	o.OPQRotation = build.FrozenRotation // FAISS's own OPQ
	if _, err := runBuild(ctx, e, p, src, o, buildOutputs{index: cr.output}); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	cr.eval.Warn, cr.eval.Progress = e.stderr, p.update
	ev, err := eval.Run(ctx, cr.eval)
	p.finish()
	if err != nil {
		return err
	}
	return writeEvalReports(e, ev, cr.files)
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

// kindName names what a build made, as its summary line shows it.
func kindName(r *build.Report) string {
	kind := "IVFFlat"
	switch r.Index {
	case build.IVFPQ:
		kind = fmt.Sprintf("IVFPQ M=%d nbits=%d", r.M, r.Nbits)
	case build.IVFPQFastScan:
		kind = fmt.Sprintf("IVFPQFastScan M=%d nbits=4", r.M)
	case build.PQ:
		kind = fmt.Sprintf("PQ M=%d nbits=%d", r.M, r.Nbits)
	case build.PQFastScan:
		kind = fmt.Sprintf("PQFastScan M=%d nbits=4", r.M)
	}
	if r.Quantizer == build.HNSWQuantizer {
		kind += " quantizer=HNSW"
	}
	if r.OPQ {
		kind = "OPQ+" + kind
	}
	return kind
}

func printBuildReport(e *env, r *buildReport) {
	kind := kindName(&r.Report)
	if r.Index != build.PQ && r.Index != build.PQFastScan {
		kind += fmt.Sprintf(" nlist=%d", r.Nlist)
	}
	fmt.Fprintf(e.stdout, "wrote %s: %s metric=%s, %d vectors of d=%d, %d bytes (%d code bytes/vector)\n",
		r.Output, kind, r.Metric, r.N, r.D, r.Bytes, r.CodeBytesPerVec)
	fmt.Fprintf(e.stdout, "trainer %s: read %.2fs, train %.2fs, add %.2fs, write %.2fs\n",
		r.Train, r.Read.Seconds(), r.Fit.Seconds(), r.Add.Seconds(), r.Write.Seconds())
	if c := r.Lists; c != nil && c.Chosen != "same" {
		tr, nr, _ := c.Means()
		fmt.Fprintf(e.stdout, "lists: %s (held-out R10@10 over nprobe %d-%d: mean %.4f with the nearest lists, %.4f with the training-time ones)\n",
			c.Chosen, c.Nprobe[0], c.Nprobe[len(c.Nprobe)-1], nr, tr)
	}
	if c := r.Lists; c != nil && c.Encoding != "" {
		_, _, w := c.Means()
		fmt.Fprintf(e.stdout, "codes: %s (held-out R10@10 mean %.4f with the query-weighted encoding)\n", c.Encoding, w)
	}
	if r.Resumed != "" {
		fmt.Fprintf(e.stdout, "resumed: %s taken from the checkpoint\n", r.Resumed)
	}
	if r.DistillDocs > 0 {
		fmt.Fprintf(e.stdout, "distilled on %d of the %d documents to stay within --max-memory (planned %s); all were encoded\n",
			r.DistillDocs, r.N, build.ShowBytes(r.MemoryPlan))
	}
}
