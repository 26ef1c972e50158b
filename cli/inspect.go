package cli

import (
	"context"
	"fmt"
	"slices"

	ucli "github.com/urfave/cli/v3"

	faiss "github.com/distillvq/distillvq/cgo"
)

func inspectCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "inspect",
		Usage:     "describe a FAISS index file: type, dimensions, metric, lists and their balance",
		UsageText: "distillvq inspect F.faiss",
		Arguments: []ucli.Argument{&ucli.StringArg{Name: "index"}},
		Action: func(ctx context.Context, c *ucli.Command) error {
			path := c.StringArg("index")
			if path == "" {
				return fmt.Errorf("inspect needs an index file")
			}
			index, err := faiss.ReadIndex(path)
			if err != nil {
				return fail(err)
			}
			defer index.Close()
			info, err := index.Info()
			if err != nil {
				return fail(err)
			}
			printInfo(e, path, info)
			return nil
		},
	}
}

func printInfo(e *env, path string, in faiss.Info) {
	w := e.stdout
	fmt.Fprintf(w, "file      %s\n", path)
	fmt.Fprintf(w, "type      %s\n", in.Type)
	fmt.Fprintf(w, "d         %d\n", in.D)
	fmt.Fprintf(w, "ntotal    %d\n", in.Ntotal)
	fmt.Fprintf(w, "metric    %s\n", in.Metric)
	if in.Nlist == 0 {
		return
	}
	fmt.Fprintf(w, "nlist     %d\n", in.Nlist)
	if in.M > 0 {
		fmt.Fprintf(w, "M         %d\n", in.M)
		fmt.Fprintf(w, "nbits     %d\n", in.Nbits)
		fmt.Fprintf(w, "by_resid. %v\n", in.ByResidual)
	}
	fmt.Fprintf(w, "code size %d bytes/vector\n", in.CodeSize)
	s := listStats(in.ListSizes)
	fmt.Fprintf(w, "lists     min %d, median %d, mean %.1f, max %d, empty %d, imbalance %.3f\n",
		s.min, s.median, s.mean, s.max, s.empty, s.imbalance)
}

type sizeStats struct {
	min, median, max, empty int64
	mean, imbalance         float64
}

// listStats summarises list sizes. The imbalance factor is FAISS's
// nlist*sum(size^2)/ntotal^2: 1 for equal lists, and the expected search
// cost relative to that.
func listStats(sizes []int64) sizeStats {
	var s sizeStats
	if len(sizes) == 0 {
		return s
	}
	sorted := slices.Clone(sizes)
	slices.Sort(sorted)
	s.min, s.max, s.median = sorted[0], sorted[len(sorted)-1], sorted[len(sorted)/2]
	var tot, sq float64
	for _, v := range sizes {
		if v == 0 {
			s.empty++
		}
		tot += float64(v)
		sq += float64(v) * float64(v)
	}
	s.mean = tot / float64(len(sizes))
	if tot > 0 {
		s.imbalance = float64(len(sizes)) * sq / (tot * tot)
	}
	return s
}
