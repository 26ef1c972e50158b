package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// benchBuild is one `distillvq build` of a benchmark case.
type benchBuild struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// benchCase is one data set with the builds compared on it.
type benchCase struct {
	Data         string       `json:"data"`
	Docs         string       `json:"docs"`
	Queries      string       `json:"queries"`
	TrainQueries string       `json:"train_queries,omitempty"`
	Metric       string       `json:"metric"`
	Nlist        int          `json:"nlist"`
	Builds       []benchBuild `json:"builds"`
}

// benchRun is one build process measured from outside, and its recall.
type benchRun struct {
	Case    string        `json:"case"`
	Build   string        `json:"build"`
	Wall    time.Duration `json:"wall_ns"`
	MaxRSS  int64         `json:"max_rss_bytes"`
	Report  BuildReport   `json:"report"`
	Recall  []float64     `json:"recall_at_10"`
	R100    float64       `json:"recall_100_at_100"`
	Nprobe  []int         `json:"nprobe"`
	Default int           `json:"nprobe_nlist_16"`
}

// TestBenchReport builds each case's indexes, each in its own process so time
// and peak memory are the process's own, measures recall against exact
// search, and writes out/bench.md and out/bench.json with ratios against
// FAISS's own train+add of the same parameters in the same run. It runs only
// under `make bench` (DISTILLVQ_BENCH=1): it times, it asserts nothing about
// speed.
func TestBenchReport(t *testing.T) {
	if os.Getenv("DISTILLVQ_BENCH") == "" {
		t.Skip("set DISTILLVQ_BENCH=1 (make bench) to run the benchmark report")
	}
	bin := filepath.Join(t.TempDir(), "distillvq")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	pq := func(m int) []string { return []string{"--index", "ivfpq", "--m", fmt.Sprint(m)} }
	with := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }
	cases := []benchCase{{
		Data: "glove20k", Docs: gloveDocs, Queries: gloveQ, TrainQueries: gloveDir + "/train-queries.npy", Metric: "ip", Nlist: 128,
		Builds: []benchBuild{
			{"FAISS IVFPQ", with(pq(20), "--train", "faiss")},
			{"k-means IVFPQ", with(pq(20), "--train", "kmeans")},
			{"distilled IVFPQ", with(pq(20), "--train", "distill")},
			{"FAISS IVFFlat", []string{"--index", "ivfflat", "--train", "faiss"}},
			{"k-means IVFFlat", []string{"--index", "ivfflat", "--train", "kmeans"}},
		},
	}}
	if haveSift() {
		cases = append(cases, benchCase{
			Data: "siftsmall", Docs: siftDir + "/siftsmall_base.fvecs", Queries: siftDir + "/siftsmall_query.fvecs", Metric: "l2", Nlist: 64,
			Builds: []benchBuild{
				{"FAISS IVFPQ", with(pq(16), "--train", "faiss")},
				{"k-means IVFPQ", with(pq(16), "--train", "kmeans")},
				{"distilled IVFPQ", with(pq(16), "--train", "distill", "--pseudo-queries", "2000")},
				{"FAISS OPQ+IVFPQ", with(pq(16), "--train", "faiss", "--opq")},
				{"distilled OPQ+IVFPQ", with(pq(16), "--train", "distill", "--pseudo-queries", "2000", "--opq")},
			},
		})
	}
	// GloVe 100k made by testdata/glove.py (make bench does it): the issue's
	// setting, raw vectors with inner product and cosine-normalised.
	if g := os.Getenv("DISTILLVQ_BENCH_GLOVE"); g != "" {
		gl := benchCase{Data: "GloVe 100k", Docs: g + "/docs.npy", Queries: g + "/queries.npy", TrainQueries: g + "/train-queries.npy", Metric: "ip", Nlist: 256,
			Builds: []benchBuild{
				{"FAISS IVFPQ", with(pq(20), "--train", "faiss")},
				{"k-means IVFPQ", with(pq(20), "--train", "kmeans")},
				{"distilled IVFPQ", with(pq(20), "--train", "distill")},
				{"FAISS OPQ+IVFPQ", with(pq(20), "--train", "faiss", "--opq")},
				{"distilled OPQ+IVFPQ", with(pq(20), "--train", "distill", "--opq")},
				{"k-means IVFFlat", []string{"--index", "ivfflat", "--train", "kmeans"}},
				{"distilled IVFFlat", []string{"--index", "ivfflat", "--train", "distill"}},
			}}
		cos := benchCase{Data: "GloVe 100k cosine", Metric: "ip", Nlist: 256, Builds: []benchBuild{
			{"FAISS IVFPQ", with(pq(20), "--train", "faiss")},
			{"distilled IVFPQ", with(pq(20), "--train", "distill")},
		}}
		cos.Docs, cos.Queries, cos.TrainQueries = normalised(t, dir, gl.Docs), normalised(t, dir, gl.Queries), normalised(t, dir, gl.TrainQueries)
		cases = append(cases, gl, cos)
	}

	// 1M x 768 float16 shards made by testdata/synthetic.py (make bench
	// LARGE=1): the scale target, built within 3 GiB.
	if l := os.Getenv("DISTILLVQ_BENCH_LARGE"); l != "" {
		mem := []string{"--max-memory", "3GiB", "--train-size", "262144"}
		cases = append(cases, benchCase{Data: "synthetic 1M x 768 float16", Docs: l + "/docs", Queries: l + "/queries.npy", Metric: "l2", Nlist: 4096,
			Builds: []benchBuild{
				{"k-means IVFPQ (3 GiB)", with(pq(64), with(mem, "--train", "kmeans")...)},
				{"distilled IVFPQ (3 GiB)", with(pq(64), with(mem, "--train", "distill", "--epochs", "2")...)},
			}})
	}

	var runs []benchRun
	for _, c := range cases {
		np16 := max(1, c.Nlist/16)
		nprobes := capNprobes(slices.Sorted(maps.Keys(map[int]bool{1: true, 4: true, np16: true, 4 * np16: true})), c.Nlist)
		for i, b := range c.Builds {
			out := filepath.Join(dir, fmt.Sprintf("%d.faiss", i))
			rep := filepath.Join(dir, fmt.Sprintf("%d.json", i))
			args := with([]string{"build", "--docs", c.Docs, "--metric", c.Metric, "--nlist", fmt.Sprint(c.Nlist), "-o", out, "--report-json", rep}, b.Args...)
			if c.TrainQueries != "" && strings.Contains(strings.Join(b.Args, " "), "distill") {
				args = append(args, "--queries", c.TrainQueries)
			}
			cmd := exec.Command(bin, args...)
			var output strings.Builder
			cmd.Stdout, cmd.Stderr = &output, &output
			t0 := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			peak := watchPeakRSS(cmd.Process.Pid)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, output.String())
			}
			r := benchRun{Case: c.Data, Build: b.Name, Wall: time.Since(t0), Nprobe: nprobes, Default: np16, MaxRSS: peak()}
			data, err := os.ReadFile(rep)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &r.Report); err != nil {
				t.Fatal(err)
			}
			ev, err := Eval(context.Background(), EvalOptions{Docs: c.Docs, Queries: c.Queries, Indexes: []string{out}, Ks: []int{10, 100},
				Nprobes: nprobes, NoCache: true}, io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ev.Indexes[0].Points {
				r.Recall = append(r.Recall, p.KRecall[10])
				if p.Nprobe == np16 {
					r.R100 = p.KRecall[100]
				}
			}
			runs = append(runs, r)
			t.Logf("%s %s: train %.1fs, wall %.1fs, R10@10 %v", c.Data, b.Name, r.Report.Fit.Seconds(), r.Wall.Seconds(), recalls(r.Recall))
		}
	}
	writeBenchReport(t, cases, runs)
}

// watchPeakRSS samples the process's VmHWM (its own peak resident set) every
// 20 ms until it exits and returns a function giving the last value read.
// The rusage of a child is no use here: Linux carries the parent's peak
// into a child started by vfork+exec, as Go starts them.
func watchPeakRSS(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					var kb int64
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
					if kb*1024 > peak.Load() {
						peak.Store(kb * 1024)
					}
				}
			}
			if strings.Contains(string(b), "State:\tZ") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 {
		<-done
		return peak.Load()
	}
}

// normalised writes a unit-norm copy of an .npy file (cosine similarity as
// inner product) and returns its path.
func normalised(t *testing.T, dir, path string) string {
	t.Helper()
	m, err := faissio.ReadVectors(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < m.Rows; i++ {
		r := m.Row(i)
		var s float64
		for _, v := range r {
			s += float64(v) * float64(v)
		}
		if s > 0 {
			inv := float32(1 / math.Sqrt(s))
			for j := range r {
				r[j] *= inv
			}
		}
	}
	out := filepath.Join(dir, "cos-"+filepath.Base(path))
	if err := faissio.WriteNpy(out, m); err != nil {
		t.Fatal(err)
	}
	return out
}

func recalls(rows []float64) string {
	s := make([]string, len(rows))
	for i, r := range rows {
		s[i] = fmt.Sprintf("%.3f", r)
	}
	return strings.Join(s, " / ")
}

// writeBenchReport writes the Markdown and JSON reports. Ratios are against
// the case's first build (FAISS's own training).
func writeBenchReport(t *testing.T, cases []benchCase, runs []benchRun) {
	t.Helper()
	if err := os.MkdirAll("../out", 0o755); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	date := time.Now().UTC().Format(time.RFC3339)
	if err := writeJSON("../out/bench.json", map[string]any{"date": date, "host": host, "cpus": runtime.NumCPU(), "go": runtime.Version(), "cases": cases, "runs": runs}); err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# distillvq benchmark\n\n%s, %d CPUs, %s. Each build is its own process (train = training, add = assign+encode+fill; FAISS's train and add are one figure). Ratios are against FAISS's own training of the same index in the same run. Recall is k-recall@k against exact search on held-out queries.\n",
		date, runtime.NumCPU(), runtime.Version())
	for _, c := range cases {
		var base *benchRun
		for i := range runs {
			if runs[i].Case == c.Data && base == nil {
				base = &runs[i]
			}
		}
		np := make([]string, len(base.Nprobe))
		for i, v := range base.Nprobe {
			np[i] = fmt.Sprint(v)
		}
		fmt.Fprintf(&md, "\n## %s (%s, nlist %d)\n\n| index | train+add s | ratio | wall s | ratio | peak RSS MiB | ratio | R10@10 at nprobe %s | R100@100 at nprobe %d |\n|---|---|---|---|---|---|---|---|---|\n",
			c.Data, c.Metric, c.Nlist, strings.Join(np, " / "), base.Default)
		for _, r := range runs {
			if r.Case != c.Data {
				continue
			}
			ta, tb := (r.Report.Fit + r.Report.Add).Seconds(), (base.Report.Fit + base.Report.Add).Seconds()
			fmt.Fprintf(&md, "| %s | %.1f | %.2f | %.1f | %.2f | %.0f | %.2f | %s | %.3f |\n", r.Build,
				ta, ta/tb, r.Wall.Seconds(), r.Wall.Seconds()/base.Wall.Seconds(),
				float64(r.MaxRSS)/(1<<20), float64(r.MaxRSS)/float64(base.MaxRSS), recalls(r.Recall), r.R100)
		}
	}
	if err := os.WriteFile("../out/bench.md", []byte(md.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote out/bench.md and out/bench.json\n%s", md.String())
}
