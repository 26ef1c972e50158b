package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// pyBuildOPQ is evalcheck.py's build of an OPQ index (argv[1], a factory
// string with OPQ first) for the tests that only need one to read: FAISS's
// OPQ training, their cost, on about 2,500 of the documents (argv[3], .npy;
// 40 per list of IVF64) and in 5 rounds, not 5,000 and 10.
const pyBuildOPQ = `
import sys, faiss, numpy as np
factory, metric, docs, out = sys.argv[1:5]
x = np.ascontiguousarray(np.load(docs).astype(np.float32))
index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)
ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
ivf.do_polysemous_training = False
faiss.downcast_VectorTransform(index.chain.at(0)).niter = 5
index.train(np.ascontiguousarray(x[:: len(x) // 2560]))
index.add(x)
faiss.write_index(index, out)
`

// buildPythonOPQ writes Python FAISS's index of the factory string (OPQ
// first) over the .npy documents docs to out.
func buildPythonOPQ(t *testing.T, factory, metric, docs, out string) {
	t.Helper()
	testutil.Run{Script: pyBuildOPQ, Args: []string{factory, metric, docs, out}, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)
}

// pyEval is evalcheck.py's output: per nprobe, per k.
type pyEval map[string]struct {
	KRecall     map[string]float64 `json:"k_recall"`
	OneRecall   map[string]float64 `json:"one_recall"`
	MRR10       *float64           `json:"mrr10"`
	QrelsRecall map[string]float64 `json:"qrels_recall"`
}

// python runs testdata/evalcheck.py and returns its standard output.
func python(t *testing.T, py string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(py, append([]string{"testdata/evalcheck.py"}, args...)...)
	// FAISS's OpenMP and OpenBLAS pools together oversubscribe two cores.
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("evalcheck.py %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return out
}

// checkAgainstPython compares every recall figure of an eval report with
// Python FAISS's own computation for the same index.
func checkAgainstPython(t *testing.T, py string, rep *eval.Report, docs, queries, metric, qrels string) {
	t.Helper()
	for _, ir := range rep.Indexes {
		var nps []string
		for _, p := range ir.Points {
			nps = append(nps, fmt.Sprint(p.Nprobe))
		}
		var ks []string
		for _, k := range rep.Ks {
			ks = append(ks, fmt.Sprint(k))
		}
		args := []string{"eval", docs, queries, ir.Path, strings.Join(ks, ","), strings.Join(nps, ","), metric}
		if qrels != "" {
			args = append(args, qrels)
		}
		var want pyEval
		if err := json.Unmarshal(python(t, py, args...), &want); err != nil {
			t.Fatal(err)
		}
		for _, p := range ir.Points {
			w := want[fmt.Sprint(p.Nprobe)]
			for _, k := range rep.Ks {
				ks := fmt.Sprint(k)
				if d := math.Abs(p.KRecall[k] - w.KRecall[ks]); d > 1e-6 {
					t.Errorf("%s nprobe %d: %d-recall@%d %.6f, Python FAISS %.6f", filepath.Base(ir.Path), p.Nprobe, k, k, p.KRecall[k], w.KRecall[ks])
				}
				if d := math.Abs(p.OneRecall[k] - w.OneRecall[ks]); d > 1e-6 {
					t.Errorf("%s nprobe %d: 1-recall@%d %.6f, Python FAISS %.6f", filepath.Base(ir.Path), p.Nprobe, k, p.OneRecall[k], w.OneRecall[ks])
				}
				if qrels != "" {
					if d := math.Abs(p.QrelsRecall[k] - w.QrelsRecall[ks]); d > 1e-6 {
						t.Errorf("%s nprobe %d: qrels recall@%d %.6f, Python %.6f", filepath.Base(ir.Path), p.Nprobe, k, p.QrelsRecall[k], w.QrelsRecall[ks])
					}
				}
			}
			if qrels != "" && (p.MRR10 == nil || w.MRR10 == nil || math.Abs(*p.MRR10-*w.MRR10) > 1e-6) {
				t.Errorf("%s nprobe %d: MRR@10 %v, Python %v", filepath.Base(ir.Path), p.Nprobe, p.MRR10, w.MRR10)
			}
		}
		t.Logf("%s: %d points agree with Python FAISS", filepath.Base(ir.Path), len(ir.Points))
	}
}

// readReport reads an eval --json file.
func readReport(t *testing.T, path string) *eval.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep eval.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// TestEvalSiftsmallMatchesPythonFAISS compares, on siftsmall, our ground
// truth with the one shipped with the set, and every recall figure of eval
// with Python FAISS's own computation, for an index of ours and two built by
// Python FAISS.
func TestEvalSiftsmallMatchesPythonFAISS(t *testing.T) {
	if !haveSift() {
		t.Skip("siftsmall not found in ../shared/data")
	}
	py := pythonFAISS(t)
	docs, queries := siftDir+"/siftsmall_base.fvecs", siftDir+"/siftsmall_query.fvecs"
	shipped := siftDir + "/siftsmall_groundtruth.ivecs"
	q, err := faissio.ReadVectors(queries)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := eval.ExactGroundTruth(context.Background(), docs, "", queries, 100, faissio.L2)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := eval.ReadGroundTruth(shipped, q.Rows, 100)
	if err != nil {
		t.Fatal(err)
	}
	// SIFT's integer vectors tie: where the two tables name different
	// documents at a rank, the documents must be at the same exact distance.
	x, err := faissio.ReadVectors(docs)
	if err != nil {
		t.Fatal(err)
	}
	dist := func(i int, id int64) float64 {
		var s float64
		for j, v := range x.Row(int(id)) {
			d := float64(v) - float64(q.Row(i)[j])
			s += d * d
		}
		return s
	}
	var rowsDiffer int
	for i := range q.Rows {
		if slices.Equal(ours.Row(i), theirs.Row(i)) {
			continue
		}
		rowsDiffer++
		for r, id := range ours.Row(i) {
			if other := theirs.Row(i)[r]; other != id && dist(i, id) != dist(i, other) {
				t.Errorf("query %d rank %d: computed %d at distance %g, shipped %d at %g", i, r, id, dist(i, id), other, dist(i, other))
			}
		}
	}
	t.Logf("computed ground truth names other ids than the shipped one in %d of %d rows, all at tied distances", rowsDiffer, q.Rows)

	dir := t.TempDir()
	ourIndex := filepath.Join(dir, "ours-ivfpq.faiss")
	mustRun(t, "build", "--docs", docs, "--train", "kmeans", "--metric", "l2", "--nlist", "64", "--m", "16", "--niter", "10", "-o", ourIndex)
	pyPQ, pyFlat := filepath.Join(dir, "python-ivfpq.faiss"), filepath.Join(dir, "python-ivfflat.faiss")
	python(t, py, "build", "IVF64,PQ16", "l2", docs, pyPQ)
	python(t, py, "build", "IVF64,Flat", "l2", docs, pyFlat)

	for _, gt := range []string{"", shipped} {
		js := filepath.Join(dir, "eval.json")
		args := []string{"eval", "--docs", docs, "--queries", queries, "--index", ourIndex, "--index", pyPQ, "--index", pyFlat,
			"--k", "1,10,100", "--nprobe", "1,4,16,64", "--min-time", "0", "--no-cache", "--json", js}
		if gt != "" {
			args = append(args, "--groundtruth", gt)
		}
		mustRun(t, args...)
		rep := readReport(t, js)
		if len(rep.Indexes) != 3 || len(rep.Indexes[0].Points) != 4 {
			t.Fatalf("report has %d indexes, %d points", len(rep.Indexes), len(rep.Indexes[0].Points))
		}
		checkAgainstPython(t, py, rep, docs, queries, "l2", "")
	}
}

// TestEvalGloVeMatchesPythonFAISS does the same on the embedded GloVe set
// (inner product), with qrels, the cached ground truth and --nprobe auto.
func TestEvalGloVeMatchesPythonFAISS(t *testing.T) {
	py := pythonFAISS(t)
	dir := t.TempDir()
	// Copies, so that the cache lands in the temporary folder.
	docs, queries := filepath.Join(dir, "docs.npy"), filepath.Join(dir, "queries.npy")
	copyFile(t, gloveDocs, docs)
	copyFile(t, gloveQ, queries)
	ivfpq, ivfflat := filepath.Join(dir, "ivfpq.faiss"), filepath.Join(dir, "ivfflat.faiss")
	// Indexes to measure, not to be good: a sample and few iterations.
	mustRun(t, "build", "--docs", docs, "--train", "kmeans", "--nlist", "64", "--m", "20", "--train-size", "6000", "--niter", "10", "-o", ivfpq)
	mustRun(t, "build", "--docs", docs, "--train", "kmeans", "--index", "ivfflat", "--nlist", "64", "--niter", "10", "-o", ivfflat)
	pyPQ := filepath.Join(dir, "python-opq.faiss")
	buildPythonOPQ(t, "OPQ20,IVF64,PQ20", "ip", docs, pyPQ)

	// Qrels: the exact nearest and 5th nearest document of two queries in
	// three, and none for the rest.
	q, err := faissio.ReadVectors(queries)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := eval.ExactGroundTruth(context.Background(), docs, "", queries, 10, faissio.InnerProduct)
	if err != nil {
		t.Fatal(err)
	}
	var qrels strings.Builder
	for i := range q.Rows {
		if i%3 != 2 {
			fmt.Fprintf(&qrels, "%d\t%d\n%d\t%d\n", i, gt.Row(i)[0], i, gt.Row(i)[4])
		}
	}
	qrelsPath := filepath.Join(dir, "qrels.tsv")
	if err := os.WriteFile(qrelsPath, []byte(qrels.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	js, md, plotPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.md"), filepath.Join(dir, "r.png")
	args := []string{"eval", "--docs", docs, "--queries", queries, "--index", ivfpq, "--index", ivfflat, "--index", pyPQ,
		"--k", "1,10,100", "--nprobe", "1,2,8,auto", "--target-recall", "0.8", "--qrels", qrelsPath, "--min-time", "0",
		"--json", js, "--markdown", md, "--plot", plotPath}
	_, errs := runOK(t, args...)
	if errs != "" {
		t.Errorf("unexpected notes: %s", errs)
	}
	rep := readReport(t, js)
	if !strings.Contains(rep.GroundTruth, "cached in") {
		t.Errorf("first run's ground truth: %s", rep.GroundTruth)
	}
	checkAgainstPython(t, py, rep, docs, queries, "ip", qrelsPath)

	// --nprobe auto: the chosen nprobe reaches the target and the one below
	// it does not.
	for _, ir := range rep.Indexes {
		a := ir.Auto
		if a == nil {
			t.Fatalf("%s: no auto nprobe", ir.Path)
		}
		t.Logf("%s: auto nprobe %d (R@10 %.4f, reached %v)", filepath.Base(ir.Path), a.Nprobe, a.Recall, a.Reached)
		if a.Reached != (a.Recall >= 0.8) {
			t.Errorf("%s: auto nprobe %+v inconsistent", ir.Path, a)
		}
		if !a.Reached || a.Nprobe == 1 {
			continue
		}
		below := filepath.Join(dir, "below.json")
		mustRun(t, "eval", "--docs", docs, "--queries", queries, "--index", ir.Path, "--k", "10", "--nprobe", fmt.Sprint(a.Nprobe-1),
			"--min-time", "0", "--json", below)
		if r := readReport(t, below).Indexes[0].Points[0].KRecall[10]; r >= 0.8 {
			t.Errorf("%s: nprobe %d already reaches %.4f >= 0.8, auto chose %d", ir.Path, a.Nprobe-1, r, a.Nprobe)
		}
	}
	if rep.Indexes[1].Auto == nil || !rep.Indexes[1].Auto.Reached {
		t.Errorf("IVFFlat should reach R@10 0.8 at some nprobe: %+v", rep.Indexes[1].Auto)
	}

	// The second run reads the cached ground truth and gives the same recall.
	js2 := filepath.Join(dir, "r2.json")
	mustRun(t, "eval", "--docs", docs, "--queries", queries, "--index", ivfpq, "--k", "1,10,100", "--nprobe", "1,2,8", "--min-time", "0", "--json", js2)
	rep2 := readReport(t, js2)
	if !strings.Contains(rep2.GroundTruth, "ip: cache ") {
		t.Errorf("second run's ground truth: %s", rep2.GroundTruth)
	}
	for i, p := range rep2.Indexes[0].Points {
		if p.KRecall[10] != rep.Indexes[0].Points[i].KRecall[10] {
			t.Errorf("cached ground truth gives R@10 %v, computed %v", p.KRecall[10], rep.Indexes[0].Points[i].KRecall[10])
		}
	}
	// Other queries: another cache key.
	q.Data[0] += 1
	if err := faissio.WriteNpy(queries, q); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "eval", "--docs", docs, "--queries", queries, "--index", ivfpq, "--k", "1,10,100", "--nprobe", "1", "--min-time", "0", "--json", js2)
	if gt := readReport(t, js2).GroundTruth; strings.Contains(gt, ": cache ") {
		t.Errorf("changed queries read the old cache: %s", gt)
	}

	// The reports a person reads.
	mdText, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| index | nprobe | R@1 | R@10 | R@100 |", "MRR@10", "| ivfpq.faiss | 8 |", "python-opq.faiss", "IndexPreTransform"} {
		if !strings.Contains(string(mdText), want) {
			t.Errorf("markdown lacks %q:\n%s", want, mdText)
		}
	}
	checkPNG(t, plotPath)
}

// checkPNG checks that path is a PNG picture of the plot's size with
// something drawn on it.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	colours := map[[3]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 12, g >> 12, bl >> 12}] = true
		}
	}
	if b.Dx() < 500 || b.Dy() < 300 || len(colours) < 4 {
		t.Errorf("%s: %dx%d with %d colours: not a plot", path, b.Dx(), b.Dy(), len(colours))
	}
}

// TestEvalSVGAndErrors checks the SVG plot and the refusals of eval.
func TestEvalSVGAndErrors(t *testing.T) {
	dir := t.TempDir()
	ivfpq := filepath.Join(dir, "ivfpq.faiss")
	mustRun(t, "build", "--docs", gloveDocs, "--train", "kmeans", "--nlist", "32", "--m", "10", "--train-size", "4000", "--niter", "10", "-o", ivfpq)
	svg := filepath.Join(dir, "r.svg")
	mustRun(t, "eval", "--docs", gloveDocs, "--queries", gloveQ, "--index", ivfpq, "--nprobe", "1,4", "--min-time", "0", "--no-cache", "--plot", svg)
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("ivfpq.faiss")) {
		t.Errorf("%s is not an SVG plot naming the index", svg)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--nprobe", "0"}, 2, "not a positive integer"},
		{[]string{"--k", "x"}, 2, "--k"},
		{[]string{"--plot", filepath.Join(dir, "r.gif")}, 2, ".png or .svg"},
		{[]string{"--nprobe", "auto", "--target-recall", "1.5"}, 2, "target-recall"},
		{[]string{"--groundtruth", "testdata/interop.py"}, 1, "unknown neighbour file type"},
		{[]string{"--qrels", filepath.Join(dir, "missing.tsv")}, 1, "missing.tsv"},
		{[]string{"--json", filepath.Join(dir, "no", "r.json")}, 1, "output folder"},
	} {
		args := append([]string{"eval", "--docs", gloveDocs, "--queries", gloveQ, "--index", ivfpq, "--min-time", "0", "--no-cache"}, c.args...)
		code, _, errs := run(t, args...)
		if code != c.code || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("eval %v: exit %d, %q; want exit %d and one line with %q", c.args, code, errs, c.code, c.want)
		}
	}
	// A supplied ground truth of the wrong shape.
	gt := filepath.Join(dir, "gt.npy")
	if err := faissio.WriteNpyInt64(gt, 5, 100, make([]int64, 500)); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "eval", "--queries", gloveQ, "--index", ivfpq, "--groundtruth", gt, "--min-time", "0")
	if code != 1 || !strings.Contains(errs, "5 rows for 1000 queries") {
		t.Errorf("short ground truth: exit %d, %q", code, errs)
	}
}

// TestBuildCompare runs build --compare and checks both indexes are built
// and compared.
func TestBuildCompare(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ours.faiss")
	js := filepath.Join(dir, "cmp.json")
	// A 4,000-document sample and 10 iterations for both trainings (build
	// and --compare's FAISS one): the test is about the pair and its report.
	stdout := mustRun(t, "build", "--docs", gloveDocs, "--train", "kmeans", "--nlist", "32", "--m", "10", "--train-size", "4000", "--niter", "10", "-o", out,
		"--compare", "--eval-queries", gloveQ, "--eval-k", "10", "--eval-nprobe", "1,8", "--eval-min-time", "0", "--eval-no-cache", "--eval-json", js)
	rep := readReport(t, js)
	if len(rep.Indexes) != 2 || rep.Indexes[1].Path != filepath.Join(dir, "ours-faiss.faiss") || rep.Indexes[1].M != 10 || rep.Indexes[1].Nlist != 32 {
		t.Fatalf("compare report: %+v", rep.Indexes)
	}
	if !strings.Contains(stdout, "trainer faiss") || !strings.Contains(stdout, "ours-faiss.faiss") {
		t.Errorf("build --compare output:\n%s", stdout)
	}
	code, _, errs := run(t, "build", "--docs", gloveDocs, "--compare", "-o", out)
	if code != 2 || !strings.Contains(errs, "--eval-queries") {
		t.Errorf("--compare without queries: exit %d, %q", code, errs)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEvalMetricNote evaluates an inner-product index against exact L2
// search (--metric l2): allowed, with a one-line note on stderr, and the
// report says which metric the recall was measured against.
func TestEvalMetricNote(t *testing.T) {
	dir := t.TempDir()
	index := filepath.Join(dir, "ip.faiss")
	mustRun(t, "build", "--docs", gloveDocs, "--index", "ivfflat", "--nlist", "16", "--train", "kmeans", "--metric", "ip", "-o", index)
	js := filepath.Join(dir, "r.json")
	_, errs := runOK(t, "eval", "--docs", gloveDocs, "--queries", gloveQ, "--index", index, "--nprobe", "4",
		"--metric", "l2", "--no-cache", "--min-time", "1ms", "--json", js)
	if !strings.Contains(errs, "searches by ip; its recall is measured against exact l2 search") {
		t.Errorf("stderr %q lacks the metric note", errs)
	}
	var rep eval.Report
	if b, err := os.ReadFile(js); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatal(err)
	}
	if got := rep.Indexes[0]; got.Metric != faissio.InnerProduct || got.GTMetric != faissio.L2 {
		t.Errorf("report metric %v, ground truth %v; want ip and l2", got.Metric, got.GTMetric)
	}
}
