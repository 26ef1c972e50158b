package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
)

func evalCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "eval",
		Usage: "compare FAISS indexes (ours or anyone's) by recall against exact search, speed and size",
		UsageText: "distillvq eval --docs D.npy --queries Q.npy --index a.faiss [--index b.faiss ...] [--k 1,10,100] [--nprobe 1,4,16|auto]\n" +
			"   [--qrels qrels.tsv] [--groundtruth gt.ivecs] [--json r.json] [--markdown r.md] [--plot r.png|r.svg]",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "docs", Usage: "the document vectors the indexes hold (for the exact ground truth)"},
			&ucli.StringFlag{Name: "ids", Usage: "the documents' ids, if the indexes were built with --ids"},
			&ucli.StringFlag{Name: "column", Usage: "Parquet documents and queries: the vector column, a list of floats (default: the only one)"},
			&ucli.StringFlag{Name: "id-column", Usage: "Parquet documents: their int64 column of ids, if the indexes were built with --id-column"},
			&ucli.StringFlag{Name: "queries", Usage: "evaluation queries (.npy, folder/glob of shards, .fvecs)", Required: true},
			&ucli.StringSliceFlag{Name: "index", Usage: "a .faiss file (repeat to compare)", Required: true},
			progressFlag(),
		}, evalFlags("")...),
		Action: func(ctx context.Context, c *ucli.Command) error {
			o, files, err := evalOptionsFrom(c, "")
			if err != nil {
				return err
			}
			o.Docs, o.IDs, o.Queries, o.Indexes = c.String("docs"), c.String("ids"), c.String("queries"), c.StringSlice("index")
			o.Column, o.IDColumn = c.String("column"), c.String("id-column")
			if err := o.Validate(); err != nil {
				return err
			}
			if err := files.checkDirs(); err != nil {
				return fail(err)
			}
			p, err := newProgress(e, c.String("progress"))
			if err != nil {
				return err
			}
			o.Warn, o.Progress = e.stderr, p.update
			rep, err := eval.Run(ctx, o)
			p.finish()
			if err != nil {
				return fail(err)
			}
			return fail(writeEvalReports(e, rep, files))
		},
	}
}

// reportFiles are the files a comparison is written to besides stdout.
type reportFiles struct{ JSON, Markdown, Plot string }

// checkDirs fails early, before any work, when a report cannot be written
// where asked.
func (f reportFiles) checkDirs() error {
	for _, out := range []string{f.JSON, f.Markdown, f.Plot} {
		if out == "" {
			continue
		}
		if err := checkOutputDir(out); err != nil {
			return err
		}
	}
	return nil
}

// evalFlags are the flags that shape a comparison, shared by eval and
// build --compare (where they carry prefix, such as "eval-").
func evalFlags(prefix string) []ucli.Flag {
	cat := ""
	if prefix != "" {
		cat = "compare"
	}
	return []ucli.Flag{
		&ucli.StringFlag{Name: prefix + "k", Category: cat, Value: "1,10,100", Usage: "result depths: k-recall@k and 1-recall@k for each"},
		&ucli.StringFlag{Name: prefix + "nprobe", Category: cat, Value: "1,2,4,8,16,32,64", Usage: "nprobe values (capped at nlist); 'auto' adds the smallest nprobe reaching --" + prefix + "target-recall"},
		&ucli.IntFlag{Name: prefix + "ef-search", Category: cat, HideDefault: true, Usage: "search beam of HNSW coarse quantizers (default: each index's stored one)"},
		&ucli.FloatFlag{Name: prefix + "target-recall", Category: cat, Value: 0.9, Usage: "k-recall@k (k = 10 if listed, else the first k) that --nprobe auto looks for"},
		&ucli.StringFlag{Name: prefix + "metric", Category: cat, Usage: "ip or l2: the exact search recall is measured against (default: each index's own)"},
		&ucli.StringFlag{Name: prefix + "qrels", Category: cat, Usage: "labelled relevant documents: query_index<TAB>doc_id per line; adds MRR@10 and Recall@k"},
		&ucli.StringFlag{Name: prefix + "groundtruth", Category: cat, Usage: "exact neighbour ids per query (.ivecs or 2-D int .npy) instead of computing them"},
		&ucli.BoolFlag{Name: prefix + "no-cache", Category: cat, Usage: "neither read nor write the cached ground truth"},
		&ucli.DurationFlag{Name: prefix + "min-time", Category: cat, Value: 2 * time.Second, Usage: "time each of the batch and one-query-at-a-time loops runs per point"},
		&ucli.StringFlag{Name: prefix + "json", Category: cat, Usage: "write the comparison as JSON"},
		&ucli.StringFlag{Name: prefix + "markdown", Category: cat, Usage: "write the comparison as a Markdown table"},
		&ucli.StringFlag{Name: prefix + "plot", Category: cat, Usage: "plot recall against QPS (.png or .svg)"},
	}
}

// evalOptionsFrom reads the flags of evalFlags(prefix).
func evalOptionsFrom(c *ucli.Command, prefix string) (eval.Options, reportFiles, error) {
	o := eval.Options{
		Target: c.Float(prefix + "target-recall"), Qrels: c.String(prefix + "qrels"),
		GroundTruth: c.String(prefix + "groundtruth"), NoCache: c.Bool(prefix + "no-cache"),
		MinTime: c.Duration(prefix + "min-time"), EfSearch: c.Int(prefix + "ef-search"),
	}
	if o.EfSearch < 0 || c.IsSet(prefix+"ef-search") && o.EfSearch < 1 {
		return o, reportFiles{}, fmt.Errorf("--%sef-search %d must be at least 1", prefix, o.EfSearch)
	}
	files := reportFiles{JSON: c.String(prefix + "json"), Markdown: c.String(prefix + "markdown"), Plot: c.String(prefix + "plot")}
	var err error
	if o.Ks, err = parseInts(c.String(prefix + "k")); err != nil {
		return o, files, fmt.Errorf("--%sk: %w", prefix, err)
	}
	for _, k := range o.Ks {
		if k > eval.MaxK {
			return o, files, fmt.Errorf("--%sk %d above %d", prefix, k, eval.MaxK)
		}
	}
	var np []string
	for _, f := range strings.Split(c.String(prefix+"nprobe"), ",") {
		if strings.TrimSpace(f) == "auto" {
			o.Auto = true
		} else {
			np = append(np, f)
		}
	}
	if len(np) > 0 {
		if o.Nprobes, err = parseInts(strings.Join(np, ",")); err != nil {
			return o, files, fmt.Errorf("--%snprobe: %w", prefix, err)
		}
	}
	if o.Auto && (o.Target <= 0 || o.Target > 1) {
		return o, files, fmt.Errorf("--%starget-recall %g outside (0, 1]", prefix, o.Target)
	}
	if m := c.String(prefix + "metric"); m != "" {
		metric, err := faissio.ParseMetric(m)
		if err != nil {
			return o, files, err
		}
		o.Metric = &metric
	}
	if o.MinTime < 0 {
		return o, files, fmt.Errorf("--%smin-time %v is negative", prefix, o.MinTime)
	}
	if p := files.Plot; p != "" && !strings.HasSuffix(p, ".png") && !strings.HasSuffix(p, ".svg") {
		return o, files, fmt.Errorf("--%splot %s: want a .png or .svg file", prefix, p)
	}
	return o, files, nil
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}
