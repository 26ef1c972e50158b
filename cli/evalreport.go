package cli

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
)

// writeEvalReports prints the comparison and writes the files asked for.
func writeEvalReports(e *env, rep *eval.Report, o reportFiles) error {
	printTables(e.stdout, rep, false)
	if o.JSON != "" {
		if err := writeJSON(o.JSON, rep); err != nil {
			return err
		}
	}
	if o.Markdown != "" {
		var b bytes.Buffer
		fmt.Fprintf(&b, "# Comparison on %s (%d queries)\n\n", filepath.Base(rep.Queries), rep.NQ)
		printTables(&b, rep, true)
		fmt.Fprintf(&b, "\nRecall is against exact search (ground truth: %s). R@k is k-recall@k (the intersection measure), "+
			"1-R@k the share of queries whose nearest neighbour is in the top k. Batch QPS: all queries per FAISS call; "+
			"one-query figures: one query per call; FAISS search threads: %d; each loop ran at least %.1f s.\n",
			rep.GroundTruth, rep.Threads, rep.MinTime)
		if err := writeBytes(o.Markdown, b.Bytes()); err != nil {
			return err
		}
	}
	if o.Plot != "" {
		if err := plotRecallQPS(o.Plot, rep); err != nil {
			return err
		}
	}
	return nil
}

// writeBytes writes b to path atomically.
func writeBytes(path string, b []byte) error {
	return faissio.WriteFileAtomic(path, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

// shortName is the file name of an index, for tables and legends.
func shortName(path string) string { return filepath.Base(path) }

// printTables writes the points table and the index table, aligned for a
// terminal or as Markdown.
func printTables(w io.Writer, rep *eval.Report, markdown bool) {
	head := []string{"index", "nprobe"}
	for _, k := range rep.Ks {
		head = append(head, fmt.Sprintf("R@%d", k))
	}
	for _, k := range rep.Ks {
		if k > 1 {
			head = append(head, fmt.Sprintf("1-R@%d", k))
		}
	}
	qrels := rep.Qrels != ""
	if qrels {
		head = append(head, "MRR@10")
		for _, k := range rep.Ks {
			head = append(head, fmt.Sprintf("qrels R@%d", k))
		}
	}
	head = append(head, "batch QPS", "1-query QPS", "mean ms", "p99 ms")
	var rows [][]string
	for _, ir := range rep.Indexes {
		for _, p := range ir.Points {
			np := fmt.Sprint(p.Nprobe)
			if p.Auto {
				np += " (auto)"
			}
			row := []string{shortName(ir.Path), np}
			for _, k := range rep.Ks {
				row = append(row, fmt.Sprintf("%.4f", p.KRecall[k]))
			}
			for _, k := range rep.Ks {
				if k > 1 {
					row = append(row, fmt.Sprintf("%.4f", p.OneRecall[k]))
				}
			}
			if qrels {
				row = append(row, fmt.Sprintf("%.4f", *p.MRR10))
				for _, k := range rep.Ks {
					row = append(row, fmt.Sprintf("%.4f", p.QrelsRecall[k]))
				}
			}
			row = append(row, fmt.Sprintf("%.0f", p.BatchQPS), fmt.Sprintf("%.0f", p.SingleQPS),
				fmt.Sprintf("%.3f", p.SingleMeanMs), fmt.Sprintf("%.3f", p.SingleP99Ms))
			rows = append(rows, row)
		}
	}
	writeTable(w, head, rows, markdown)

	fmt.Fprintln(w)
	head = []string{"index", "type", "d", "ntotal", "metric", "nlist", "PQ", "file MiB", "bytes/vector"}
	var auto *eval.AutoNprobe
	for _, ir := range rep.Indexes {
		if ir.Auto != nil {
			auto = ir.Auto
		}
	}
	if auto != nil {
		head = append(head, fmt.Sprintf("nprobe for R@%d ≥ %g", auto.K, auto.Target))
	}
	rows = rows[:0]
	for _, ir := range rep.Indexes {
		pq := "-"
		if ir.M > 0 {
			pq = fmt.Sprintf("%dx%d", ir.M, ir.Nbits)
		}
		metric := ir.Metric.String()
		if ir.GTMetric != ir.Metric {
			metric += " (vs exact " + ir.GTMetric.String() + ")"
		}
		row := []string{shortName(ir.Path), ir.Type, fmt.Sprint(ir.D), fmt.Sprint(ir.Ntotal), metric, fmt.Sprint(ir.Nlist), pq,
			fmt.Sprintf("%.2f", float64(ir.Bytes)/(1<<20)), fmt.Sprintf("%.1f", ir.BytesPerVector)}
		if a := ir.Auto; a != nil {
			cell := fmt.Sprintf("%d (R@%d %.4f)", a.Nprobe, a.K, a.Recall)
			if !a.Reached {
				cell = fmt.Sprintf("not reached (%.4f at nprobe %d)", a.Recall, a.Nprobe)
			}
			row = append(row, cell)
		} else if auto != nil {
			row = append(row, "- (no lists)")
		}
		rows = append(rows, row)
	}
	writeTable(w, head, rows, markdown)
}

// writeTable writes a header and rows as a Markdown table or as columns
// aligned for a terminal.
func writeTable(w io.Writer, head []string, rows [][]string, markdown bool) {
	if markdown {
		fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
		sep := make([]string, len(head))
		for i := range sep {
			sep[i] = "---"
			if i > 0 {
				sep[i] = "---:"
			}
		}
		fmt.Fprintf(w, "|%s|\n", strings.Join(sep, "|"))
		for _, r := range rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\t\n", strings.Join(head, "\t"))
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t\n", strings.Join(r, "\t"))
	}
	tw.Flush()
}

// plotRecallQPS draws batch QPS (log scale) against k-recall@k at the
// primary k, one line per index, each point labelled by its nprobe.
func plotRecallQPS(path string, rep *eval.Report) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %d queries, FAISS search threads: %d", filepath.Base(rep.Queries), rep.NQ, rep.Threads)
	p.X.Label.Text = fmt.Sprintf("%d-recall@%d", rep.PrimaryK, rep.PrimaryK)
	p.Y.Label.Text = "queries per second (batch)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks125{}
	// Curves fall from top left to bottom right: the bottom left is free.
	p.Legend.Top = false
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(10)
	p.Add(plotter.NewGrid())
	for i, ir := range rep.Indexes {
		xys := make(plotter.XYs, len(ir.Points))
		labels := make([]string, len(ir.Points))
		for j, pt := range ir.Points {
			xys[j].X, xys[j].Y = pt.KRecall[rep.PrimaryK], pt.BatchQPS
			labels[j] = fmt.Sprint(pt.Nprobe)
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return err
		}
		for j := range lab.TextStyle {
			lab.TextStyle[j].Color = plotutil.Color(i)
			lab.TextStyle[j].XAlign = -0.5
			lab.TextStyle[j].YAlign = 0.3
		}
		p.Add(line, points, lab)
		p.Legend.Add(shortName(ir.Path), line, points)
	}
	// Room for the nprobe labels of the rightmost and top points.
	p.X.Max += 0.04 * (p.X.Max - p.X.Min)
	p.Y.Max *= 1.15
	format := strings.TrimPrefix(filepath.Ext(path), ".")
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, format)
	if err != nil {
		return err
	}
	return faissio.WriteFileAtomic(path, func(f *os.File) error {
		_, err := wt.WriteTo(f)
		return err
	})
}

// logTicks125 labels a log axis at 1, 2 and 5 times powers of ten, or at
// every integer multiple when that leaves fewer than three labels, so that a
// range of less than a decade still gets several.
type logTicks125 struct{}

// Ticks returns the ticks between min and max.
func (logTicks125) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for _, mults := range [][]float64{{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}} {
		ticks = ticks[:0]
		for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
			for _, m := range mults {
				v := m * math.Pow(10, e)
				if v >= min && v <= max {
					ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
				}
			}
		}
		if len(ticks) >= 3 {
			break
		}
	}
	return ticks
}
