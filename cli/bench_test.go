package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchSet is one benchmark configuration.
type benchSet struct {
	Name    string `json:"name"`
	Docs    string `json:"docs"`
	Queries string `json:"queries"`
	Metric  string `json:"metric"`
	Index   string `json:"index"`
	Nlist   int    `json:"nlist"`
	M       int    `json:"m"`
}

// benchRun is one `distillvq build` process, measured from outside.
type benchRun struct {
	Trainer string        `json:"trainer"`
	Wall    time.Duration `json:"wall_ns"`
	MaxRSS  int64         `json:"max_rss_bytes"`
	Report  BuildReport   `json:"report"`
	Recall  []EvalRow     `json:"recall"`
}

type benchResult struct {
	Set  benchSet   `json:"set"`
	Runs []benchRun `json:"runs"`
	// Ratios are ours / FAISS's for the same data and parameters.
	TrainRatio  float64 `json:"train_plus_add_ratio"`
	WallRatio   float64 `json:"wall_ratio"`
	MaxRSSRatio float64 `json:"max_rss_ratio"`
}

// TestBenchReport measures our k-means build against FAISS's own train+add
// on the same data and parameters, each in its own process so peak memory
// is the process's own, and writes out/bench.md and out/bench.json. It runs
// only under `make bench` (DISTILLVQ_BENCH=1): it times, it asserts nothing
// about speed.
func TestBenchReport(t *testing.T) {
	if os.Getenv("DISTILLVQ_BENCH") == "" {
		t.Skip("set DISTILLVQ_BENCH=1 (make bench) to run the benchmark report")
	}
	bin := filepath.Join(t.TempDir(), "distillvq")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sets := []benchSet{
		{"glove20k IVFPQ", gloveDocs, gloveQ, "ip", "ivfpq", 128, 20},
		{"glove20k IVFFlat", gloveDocs, gloveQ, "ip", "ivfflat", 128, 0},
	}
	if haveSift() {
		sets = append(sets,
			benchSet{"siftsmall IVFPQ", siftDir + "/siftsmall_base.fvecs", siftDir + "/siftsmall_query.fvecs", "l2", "ivfpq", 64, 16})
	}
	// A larger GloVe set made by testdata/glove.py (see the README).
	if dir := os.Getenv("DISTILLVQ_BENCH_GLOVE"); dir != "" {
		sets = append(sets, benchSet{"GloVe " + filepath.Base(dir) + " IVFPQ", dir + "/docs.npy", dir + "/queries.npy", "ip", "ivfpq", 1024, 20})
	}
	dir := t.TempDir()
	var results []benchResult
	for _, s := range sets {
		res := benchResult{Set: s}
		for _, trainer := range []string{"kmeans", "faiss"} {
			out := filepath.Join(dir, trainer+".faiss")
			rep := filepath.Join(dir, trainer+".json")
			args := []string{"build", "--docs", s.Docs, "--index", s.Index, "--metric", s.Metric,
				"--nlist", fmt.Sprint(s.Nlist), "--train", trainer, "-o", out, "--report-json", rep}
			if s.M > 0 {
				args = append(args, "--m", fmt.Sprint(s.M))
			}
			cmd := exec.Command(bin, args...)
			t0 := time.Now()
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
			}
			r := benchRun{Trainer: trainer, Wall: time.Since(t0), MaxRSS: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024}
			b, err := os.ReadFile(rep)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &r.Report); err != nil {
				t.Fatal(err)
			}
			if r.Recall, err = Eval(EvalOptions{Docs: s.Docs, Queries: s.Queries, Indexes: []string{out}, K: 10, Nprobes: []int{1, 4, 16}}); err != nil {
				t.Fatal(err)
			}
			res.Runs = append(res.Runs, r)
		}
		ours, theirs := res.Runs[0], res.Runs[1]
		res.TrainRatio = (ours.Report.Fit + ours.Report.Add).Seconds() / (theirs.Report.Fit + theirs.Report.Add).Seconds()
		res.WallRatio = ours.Wall.Seconds() / theirs.Wall.Seconds()
		res.MaxRSSRatio = float64(ours.MaxRSS) / float64(theirs.MaxRSS)
		results = append(results, res)
		t.Logf("%s: train+add ratio %.2f, wall ratio %.2f, peak RSS ratio %.2f", s.Name, res.TrainRatio, res.WallRatio, res.MaxRSSRatio)
	}
	if err := os.MkdirAll("../out", 0o755); err != nil {
		t.Fatal(err)
	}
	report := map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "cpus": runtime.NumCPU(), "go": runtime.Version(), "results": results}
	if err := writeJSON("../out/bench.json", report); err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# distillvq build vs FAISS train+add\n\n%s, %d CPUs, %s. Each build is its own process; ratios are ours / FAISS's.\n\n",
		report["date"], runtime.NumCPU(), runtime.Version())
	md.WriteString("| data | trainer | train s | add s | train+add ratio | wall s | wall ratio | peak RSS MiB | RSS ratio | R10@10 np=1 / 4 / 16 |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		for i, run := range r.Runs {
			tr, wr, rr := "", "", ""
			if i == 0 {
				tr, wr, rr = fmt.Sprintf("%.2f", r.TrainRatio), fmt.Sprintf("%.2f", r.WallRatio), fmt.Sprintf("%.2f", r.MaxRSSRatio)
			}
			rec := make([]string, len(run.Recall))
			for j, e := range run.Recall {
				rec[j] = fmt.Sprintf("%.3f", e.Recall)
			}
			fmt.Fprintf(&md, "| %s | %s | %.2f | %.2f | %s | %.2f | %s | %.0f | %s | %s |\n", r.Set.Name, run.Trainer,
				run.Report.Fit.Seconds(), run.Report.Add.Seconds(), tr, run.Wall.Seconds(), wr, float64(run.MaxRSS)/(1<<20), rr, strings.Join(rec, " / "))
		}
	}
	if err := os.WriteFile("../out/bench.md", []byte(md.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote out/bench.md and out/bench.json\n%s", md.String())
}
