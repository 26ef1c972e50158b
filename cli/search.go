package cli

import (
	"bufio"
	"context"
	"fmt"
	"strconv"

	ucli "github.com/urfave/cli/v3"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// maxK bounds k: results are queries*k ids and scores held in memory.
const maxK = 1 << 16

// openIndex reads a FAISS index and the queries to run on it, and checks
// they agree in dimension.
func openIndex(indexPath, queriesPath string) (*faiss.Index, faiss.Info, faissio.Matrix, error) {
	q, err := faissio.ReadVectors(queriesPath)
	if err != nil {
		return nil, faiss.Info{}, q, err
	}
	index, err := faiss.ReadIndex(indexPath)
	if err != nil {
		return nil, faiss.Info{}, q, err
	}
	info, err := index.Info()
	if err == nil && info.D != q.Cols {
		err = fmt.Errorf("queries %s have d=%d but index %s has d=%d", queriesPath, q.Cols, indexPath, info.D)
	}
	if err != nil {
		index.Close()
		return nil, info, q, err
	}
	return index, info, q, nil
}

func searchCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "search",
		Usage:     "search a FAISS index (any, not only ours) with query vectors",
		UsageText: "distillvq search --index F.faiss --queries Q.npy [-k 10] [--nprobe 16] [--ids-out ids.npy --scores-out scores.npy]",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "index", Usage: "the .faiss file", Required: true},
			&ucli.StringFlag{Name: "queries", Usage: "query vectors (.npy, folder/glob of shards, .fvecs)", Required: true},
			&ucli.IntFlag{Name: "k", Aliases: []string{"K"}, Value: 10, Usage: "results per query"},
			&ucli.IntFlag{Name: "nprobe", Value: 16, Usage: "inverted lists visited per query (capped at nlist)"},
			&ucli.IntFlag{Name: "ef-search", HideDefault: true, Usage: "search beam of an HNSW coarse quantizer (default: the one stored in the index)"},
			&ucli.StringFlag{Name: "ids-out", Usage: "write the ids as an int64 .npy (queries x k) instead of printing"},
			&ucli.StringFlag{Name: "scores-out", Usage: "write the scores as a float32 .npy (queries x k)"},
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			k, nprobe := c.Int("k"), c.Int("nprobe")
			if k < 1 || k > maxK {
				return fmt.Errorf("-k %d outside 1..%d", k, maxK)
			}
			if nprobe < 1 {
				return fmt.Errorf("--nprobe %d must be at least 1", nprobe)
			}
			ef := c.Int("ef-search")
			if ef < 0 || c.IsSet("ef-search") && ef < 1 {
				return fmt.Errorf("--ef-search %d must be at least 1", ef)
			}
			idsOut, scoresOut := c.String("ids-out"), c.String("scores-out")
			for _, out := range []string{idsOut, scoresOut} {
				if err := checkOutputDir(out); out != "" && err != nil {
					return fail(err)
				}
			}
			index, _, q, err := openIndex(c.String("index"), c.String("queries"))
			if err != nil {
				return fail(err)
			}
			defer index.Close()
			dist, labels, err := index.SearchWith(q, k, faiss.SearchParams{Nprobe: nprobe, EfSearch: ef})
			if err != nil {
				return fail(err)
			}
			if idsOut == "" && scoresOut == "" {
				return fail(printResults(e, q.Rows, k, dist, labels))
			}
			if idsOut != "" {
				if err := faissio.WriteNpyInt64(idsOut, q.Rows, k, labels); err != nil {
					return fail(err)
				}
			}
			if scoresOut != "" {
				if err := faissio.WriteNpy(scoresOut, faissio.Matrix{Rows: q.Rows, Cols: k, Data: dist}); err != nil {
					return fail(err)
				}
			}
			return nil
		},
	}
}

// printResults writes one line per result: query, rank, id, score, tab
// separated, skipping the slots FAISS leaves empty (id -1).
func printResults(e *env, n, k int, dist []float32, labels []int64) error {
	w := bufio.NewWriterSize(e.stdout, 1<<16)
	w.WriteString("query\trank\tid\tscore\n")
	for i := 0; i < n; i++ {
		for r := 0; r < k; r++ {
			id := labels[i*k+r]
			if id < 0 {
				continue
			}
			w.WriteString(strconv.Itoa(i))
			w.WriteByte('\t')
			w.WriteString(strconv.Itoa(r + 1))
			w.WriteByte('\t')
			w.WriteString(strconv.FormatInt(id, 10))
			w.WriteByte('\t')
			w.WriteString(strconv.FormatFloat(float64(dist[i*k+r]), 'g', 9, 32))
			w.WriteByte('\n')
		}
	}
	return w.Flush()
}
