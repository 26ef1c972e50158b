package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v3"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

func evalCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "eval",
		Usage:     "measure the recall of FAISS indexes against exact search over the documents",
		UsageText: "distillvq eval --docs D.npy --queries Q.npy --index a.faiss [--index b.faiss ...] [-k 10] [--nprobe 1,4,16]",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "docs", Usage: "the document vectors the indexes hold", Required: true},
			&ucli.StringFlag{Name: "ids", Usage: "the documents' ids, if the indexes were built with --ids"},
			&ucli.StringFlag{Name: "queries", Usage: "evaluation queries", Required: true},
			&ucli.StringSliceFlag{Name: "index", Usage: "a .faiss file (repeat to compare)", Required: true},
			&ucli.IntFlag{Name: "k", Value: 10, Usage: "k of k-recall@k"},
			&ucli.StringFlag{Name: "nprobe", Value: "1,4,16,64", Usage: "comma-separated nprobe values (capped at nlist)"},
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			nprobes, err := parseInts(c.String("nprobe"))
			if err != nil {
				return fmt.Errorf("--nprobe: %w", err)
			}
			k := c.Int("k")
			if k < 1 || k > maxK {
				return fmt.Errorf("-k %d outside 1..%d", k, maxK)
			}
			rows, err := Eval(EvalOptions{
				Docs: c.String("docs"), IDs: c.String("ids"), Queries: c.String("queries"),
				Indexes: c.StringSlice("index"), K: k, Nprobes: nprobes,
			})
			if err != nil {
				return fail(err)
			}
			printEval(e, k, rows)
			return nil
		},
	}
}

// EvalOptions name the inputs of a recall comparison.
type EvalOptions struct {
	Docs, IDs, Queries string
	Indexes            []string
	K                  int
	Nprobes            []int
}

// EvalRow is one operating point of one index.
type EvalRow struct {
	Index  string
	Nprobe int
	// Recall is the k-recall@k: |approximate top-k ∩ exact top-k| / k,
	// averaged over the queries (FAISS's intersection measure).
	Recall float64
	// Recall1 is 1-recall@k: the share of queries whose exact nearest
	// neighbour is in the approximate top-k.
	Recall1 float64
	// MsPerQuery is the batch search time per query.
	MsPerQuery float64
}

// Eval measures each index against exact search over the documents, with the
// metric of each index, at every nprobe up to the index's nlist.
func Eval(o EvalOptions) ([]EvalRow, error) {
	docs, err := faissio.ReadVectors(o.Docs)
	if err != nil {
		return nil, err
	}
	var ids []int64
	if o.IDs != "" {
		if ids, err = faissio.ReadIDs(o.IDs, docs.Rows); err != nil {
			return nil, err
		}
	}
	exact := map[faissio.Metric][]int64{}
	var rows []EvalRow
	for _, path := range o.Indexes {
		index, info, q, err := openIndex(path, o.Queries)
		if err != nil {
			return nil, err
		}
		if info.D != docs.Cols {
			index.Close()
			return nil, fmt.Errorf("index %s has d=%d but documents %s have d=%d", path, info.D, o.Docs, docs.Cols)
		}
		if info.Ntotal != int64(docs.Rows) {
			index.Close()
			return nil, fmt.Errorf("index %s holds %d vectors but %s has %d documents", path, info.Ntotal, o.Docs, docs.Rows)
		}
		gt, ok := exact[info.Metric]
		if !ok {
			if gt, err = exactSearch(docs, ids, q, o.K, info.Metric); err != nil {
				index.Close()
				return nil, err
			}
			exact[info.Metric] = gt
		}
		for _, np := range capNprobes(o.Nprobes, info.Nlist) {
			t0 := time.Now()
			_, labels, err := index.Search(q, o.K, np)
			if err != nil {
				index.Close()
				return nil, err
			}
			el := time.Since(t0)
			rows = append(rows, EvalRow{
				Index: path, Nprobe: np,
				Recall:     KRecall(labels, gt, q.Rows, o.K),
				Recall1:    OneRecall(labels, gt, q.Rows, o.K),
				MsPerQuery: el.Seconds() * 1000 / float64(q.Rows),
			})
		}
		index.Close()
	}
	return rows, nil
}

// exactSearch is the ground truth: the top-k of each query over the docs by
// an exact FAISS index, as ids.
func exactSearch(docs faissio.Matrix, ids []int64, q faissio.Matrix, k int, metric faissio.Metric) ([]int64, error) {
	flat, err := faiss.NewFlat(metric, docs)
	if err != nil {
		return nil, err
	}
	defer flat.Close()
	_, labels, err := flat.Search(q, k, 1)
	if err != nil {
		return nil, err
	}
	if ids != nil {
		for i, l := range labels {
			if l >= 0 {
				labels[i] = ids[l]
			}
		}
	}
	return labels, nil
}

// capNprobes keeps the nprobe values at most nlist, adding nlist itself when
// a larger value was asked for; an index without lists gets one row.
func capNprobes(nprobes []int, nlist int) []int {
	if nlist == 0 {
		return []int{1}
	}
	var out []int
	for _, np := range nprobes {
		np = min(np, nlist)
		if len(out) == 0 || out[len(out)-1] != np {
			out = append(out, np)
		}
	}
	return out
}

// KRecall is the k-recall@k of labels against the exact top-k gt, both n
// rows of k ids.
func KRecall(labels, gt []int64, n, k int) float64 {
	var hit int
	set := make(map[int64]struct{}, k)
	for i := 0; i < n; i++ {
		clear(set)
		for _, id := range gt[i*k : (i+1)*k] {
			if id >= 0 {
				set[id] = struct{}{}
			}
		}
		for _, id := range labels[i*k : (i+1)*k] {
			if _, ok := set[id]; ok {
				hit++
				delete(set, id)
			}
		}
	}
	return float64(hit) / float64(n*k)
}

// OneRecall is the share of queries whose exact nearest neighbour appears in
// the approximate top-k.
func OneRecall(labels, gt []int64, n, k int) float64 {
	var hit int
	for i := 0; i < n; i++ {
		for _, id := range labels[i*k : (i+1)*k] {
			if id == gt[i*k] {
				hit++
				break
			}
		}
	}
	return float64(hit) / float64(n)
}

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

func printEval(e *env, k int, rows []EvalRow) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "index\tnprobe\t%d-recall@%d\t1-recall@%d\tms/query\t\n", k, k, k)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.4f\t%.4f\t%.4f\t\n", filepath.Base(r.Index), r.Nprobe, r.Recall, r.Recall1, r.MsPerQuery)
	}
	tw.Flush()
}
