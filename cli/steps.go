package cli

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

// The composable steps of a build too large for one machine: train once,
// add each shard anywhere (a Beam pipeline, a Kubernetes Indexed Job, a
// Slurm array, a shell loop), merge the parts into one FAISS file.

func trainCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "train",
		Usage:     "train an index as build would and write it empty (ntotal 0), for add to fill shard by shard",
		UsageText: "distillvq train --docs docs.npy [build's training options] -o trained.faiss",
		Flags:     trainFlags("the trained, empty index to write (atomically); FAISS loads it, add fills it"),
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
			out, reportJSON := c.String("output"), c.String("report-json")
			for _, path := range []string{out, reportJSON} {
				if err := checkOutputDir(path); path != "" && err != nil {
					return fail(err)
				}
			}
			p, err := newProgress(e, c.String("progress"))
			if err != nil {
				return err
			}
			src, err := in.read(&o)
			if err != nil {
				return fail(err)
			}
			o.Progress = p.update
			tr, rep, err := build.Train(ctx, src, o)
			p.finish()
			if err != nil {
				return fail(err)
			}
			r := buildReport{Report: *rep, Output: out}
			t0 := time.Now()
			if err := tr.WriteFile(ctx, out); err != nil {
				return fail(err)
			}
			r.Write = time.Since(t0)
			if st, err := os.Stat(out); err == nil {
				r.Bytes = st.Size()
			}
			printTrainReport(e, &r, tr)
			if reportJSON != "" {
				return fail(writeJSON(reportJSON, r))
			}
			return nil
		},
	}
}

func printTrainReport(e *env, r *buildReport, tr *build.Trained) {
	kind := kindName(&r.Report)
	fmt.Fprintf(e.stdout, "wrote %s: trained, empty %s nlist=%d metric=%s, d=%d, %d bytes\n",
		r.Output, kind, r.Nlist, r.Metric, r.D, r.Bytes)
	fmt.Fprintf(e.stdout, "trainer %s on %d documents: read %.2fs, train %.2fs, write %.2fs\n",
		r.Train, r.N, r.Read.Seconds(), r.Fit.Seconds(), r.Write.Seconds())
	fmt.Fprintf(e.stdout, "add shards starting at multiples of %d rows to get, merged, the bytes build writes (elsewhere: the same but for rare documents at a tie of two lists)\n", build.ShardAlign)
	if n := tr.Held(); n > 0 {
		fmt.Fprintf(e.stdout, "it carries the training-time lists of the %d documents it was distilled on: add files them there\n", n)
	}
	if r.Resumed != "" {
		fmt.Fprintf(e.stdout, "resumed: %s taken from the checkpoint\n", r.Resumed)
	}
}

func addCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "add",
		Usage: "encode documents with a trained index (one shard of a distributed build) or add them to a filled one",
		UsageText: "distillvq add --index trained.faiss --docs SHARD.npy [--first-id N | --ids ids.npy] -o part.faiss\n" +
			"   distillvq add --index full.faiss [--trained trained.faiss] --docs new.npy -o full2.faiss",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "index", Usage: "the trained index (train's output), or a filled index to add to", Required: true},
			&ucli.StringFlag{Name: "trained", Usage: "with a filled --index: its trained index file, whose encoding (the query-weighted one of a distilled build) new documents get"},
			&ucli.StringFlag{Name: "docs", Usage: "the documents to add: .npy, a folder or glob of .npy shards, .fvecs, or a .parquet file, folder or glob of them", Required: true},
			&ucli.StringFlag{Name: "column", Usage: "Parquet documents: the vector column, a list of floats (default: the only one)"},
			&ucli.StringFlag{Name: "id-column", Usage: "Parquet documents: their int64 column of ids, instead of --first-id or --ids"},
			&ucli.Int64Flag{Name: "first-id", Value: -1, HideDefault: true, Usage: "ids first-id, first-id+1, ... for the documents (default: after the index's largest id, 0 for a trained index)"},
			&ucli.StringFlag{Name: "ids", Usage: ".npy of int64 ids, one per document, instead of --first-id"},
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the index to write (atomically; a retried worker writing the same part is harmless)", Required: true},
			progressFlag(),
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			firstID, idsPath, idColumn := c.Int64("first-id"), c.String("ids"), c.String("id-column")
			if n := boolCount(c.IsSet("first-id"), idsPath != "", idColumn != ""); n > 1 {
				return fmt.Errorf("--first-id, --ids and --id-column all number the documents: give one")
			}
			if c.IsSet("first-id") && firstID < 0 {
				return fmt.Errorf("--first-id %d must not be negative", firstID)
			}
			out := c.String("output")
			if err := checkOutputDir(out); err != nil {
				return fail(err)
			}
			p, err := newProgress(e, c.String("progress"))
			if err != nil {
				return err
			}
			tr, have, err := build.ReadIndexFile(c.String("index"))
			if err != nil {
				return fail(err)
			}
			if path := c.String("trained"); path != "" {
				from, _, err := build.ReadIndexFile(path)
				if err != nil {
					return fail(err)
				}
				if err := tr.TakeEncoding(from); err != nil {
					return failf("--trained %s: %v", path, err)
				}
			}
			// A FAISS file holds no encoding weight: a distilled index's new
			// documents then get FAISS's nearest codeword, which is worth
			// saying once the add has succeeded.
			unweighted := c.String("trained") == "" && len(have.IDs) > 0 && tr.Model.M > 0 &&
				tr.Model.Metric == faissio.InnerProduct && tr.Model.EncodeWeight == nil
			src, err := faissio.OpenSourceWith(c.String("docs"), faissio.SourceOptions{Column: c.String("column")})
			if err != nil {
				return fail(err)
			}
			var ids []int64
			switch {
			case idsPath != "":
				if ids, err = faissio.ReadIDs(idsPath, src.Rows); err != nil {
					return fail(err)
				}
			case idColumn != "":
				if ids, err = src.ReadIDColumn(idColumn); err != nil {
					return fail(err)
				}
			default:
				if !c.IsSet("first-id") {
					firstID = 0
					if len(have.IDs) > 0 {
						firstID = slices.Max(have.IDs) + 1
					}
				}
				ids = make([]int64, src.Rows)
				for i := range ids {
					ids[i] = firstID + int64(i)
				}
			}
			t0 := time.Now()
			part, err := tr.Add(ctx, src, ids, p.update)
			if err != nil {
				p.finish()
				return fail(err)
			}
			added := time.Since(t0)
			if len(have.IDs) > 0 {
				if part, err = build.Append(have, part); err != nil {
					p.finish()
					return fail(err)
				}
			}
			err = faissio.WriteIVFFile(ctx, out, part, func(done, total int) { p.update("write", done, total) })
			p.finish()
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(e.stdout, "wrote %s: %d vectors (%d added", out, len(part.IDs), src.Rows)
			if src.Rows > 0 {
				fmt.Fprintf(e.stdout, ", ids %d..%d", slices.Min(ids), slices.Max(ids))
			}
			fmt.Fprintf(e.stdout, ") in %.2fs\n", added.Seconds())
			if unweighted {
				fmt.Fprintf(e.stderr, "distillvq: note: %s holds no encoding weight, so the new documents got the nearest codeword; if it was distilled, give --trained with its train output to encode them as its build did\n", c.String("index"))
			}
			return nil
		},
	}
}

func mergeCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "merge",
		Usage:     "concatenate the inverted lists of index parts trained identically into one FAISS file, streamed",
		UsageText: "distillvq merge -o full.faiss part-0.faiss part-1.faiss ...",
		Arguments: []ucli.Argument{&ucli.StringArgs{Name: "parts", Min: 1, Max: -1}},
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the merged index to write (atomically)", Required: true},
			&ucli.IntFlag{Name: "workers", HideDefault: true, Usage: "goroutines writing ranges of lists at once (default: the number of CPUs)"},
			progressFlag(),
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			parts := c.StringArgs("parts")
			if len(parts) == 0 {
				return fmt.Errorf("merge needs the part files to merge")
			}
			if c.Int("workers") < 0 {
				return fmt.Errorf("--workers %d must not be negative", c.Int("workers"))
			}
			out := c.String("output")
			if err := checkOutputDir(out); err != nil {
				return fail(err)
			}
			if slices.Contains(parts, out) {
				return fmt.Errorf("the output %s is also a part", out)
			}
			p, err := newProgress(e, c.String("progress"))
			if err != nil {
				return err
			}
			t0 := time.Now()
			err = faissio.MergeIVFFiles(ctx, out, parts, c.Int("workers"), func(done, total int) { p.update("merge", done, total) })
			p.finish()
			if err != nil {
				return fail(err)
			}
			st, err := os.Stat(out)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(e.stdout, "wrote %s: %d parts merged, %d bytes in %.2fs\n", out, len(parts), st.Size(), time.Since(t0).Seconds())
			return nil
		},
	}
}

// boolCount is how many of bs are true.
func boolCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
