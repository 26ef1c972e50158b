package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

func TestSampleIndices(t *testing.T) {
	const n, k, trials = 50, 10, 4000
	count := make([]int, n)
	for s := range uint64(trials) {
		idx := sampleIndices(n, k, s)
		if len(idx) != k || !slices.IsSorted(idx) || len(slices.Compact(slices.Clone(idx))) != k || idx[0] < 0 || idx[k-1] >= n {
			t.Fatalf("seed %d: %v is not %d sorted distinct indices below %d", s, idx, k, n)
		}
		for _, i := range idx {
			count[i]++
		}
	}
	// Each index is drawn with probability k/n: 800 of 4000, sd ≈ 25.
	for i, c := range count {
		if math.Abs(float64(c)-trials*k/n) > 5*math.Sqrt(trials*k/n*(1-float64(k)/n)) {
			t.Errorf("index %d drawn %d times, want about %d", i, c, trials*k/n)
		}
	}
	if got := sampleIndices(5, 9, 1); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("k > n: %v", got)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "none": -1, "3GiB": 3 << 30, "500MB": 500e6, "2g": 2 << 30, "1048576": 1 << 20, "1.5 GiB": 3 << 29, "64k": 64 << 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "-1G", "0", "3 parsecs"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

// TestPlanMemory checks that the k-means plan shrinks its training sample
// to fit, never below 39 points per list, and that other trainers say what
// would fit instead.
func TestPlanMemory(t *testing.T) {
	cfg := distill.Config{Nlist: 4096, M: 64, Nbits: 8}
	const n, d = 1_000_000, 768
	o := BuildOptions{Train: "kmeans", MaxMemory: 3 << 30}
	p, err := planMemory(o, cfg, n, d)
	if err != nil {
		t.Fatal(err)
	}
	if p.bytes > 3<<30 || p.trainRows >= n || p.trainRows < 39*4096 {
		t.Errorf("1M x 768 in 3 GiB: plan %+v", p)
	}
	t.Logf("1M x 768, nlist 4096, M 64 in 3 GiB: %d training rows, %s planned", p.trainRows, showBytes(p.bytes))
	if _, err := planMemory(BuildOptions{Train: "kmeans", MaxMemory: 200 << 20}, cfg, n, d); err == nil || !strings.Contains(err.Error(), "39 per list") {
		t.Errorf("200 MiB: %v", err)
	}
	if p, err := planMemory(BuildOptions{Train: "distill", MaxMemory: 3 << 30}, cfg, n, d); err != nil || !p.distillSample || p.bytes > 3<<30 || p.trainRows >= n {
		t.Errorf("distill in 3 GiB: %+v, %v", p, err)
	} else {
		t.Logf("distill in 3 GiB: learns from %d documents, %s planned", p.trainRows, showBytes(p.bytes))
	}
	for _, o := range []BuildOptions{{Train: "distill", Qrels: "q.tsv", MaxMemory: 3 << 30}, {Train: "faiss", MaxMemory: 3 << 30}} {
		if _, err := planMemory(o, cfg, n, d); err == nil || !strings.Contains(err.Error(), "--train kmeans streams") {
			t.Errorf("%s in 3 GiB: %v", o.Train, err)
		}
	}
	if p, err := planMemory(BuildOptions{Train: "kmeans", MaxMemory: -1}, cfg, n, d); err != nil || p.trainRows != n {
		t.Errorf("no bound: %+v, %v", p, err)
	}
}

// TestStreamedBuildEqualsWholeRead builds from the embedded set as one file
// and as float16 shards in a folder: the k-means build streams both and
// must write the same bytes. A memory bound that shrinks the training
// sample still builds, with the sample size in the report.
func TestStreamedBuildEqualsWholeRead(t *testing.T) {
	dir := t.TempDir()
	docs, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	shards := filepath.Join(dir, "shards")
	if err := os.Mkdir(shards, 0o755); err != nil {
		t.Fatal(err)
	}
	// Shards in float16, as the embedded file is, cut by numpy.
	py := pythonFAISS(t)
	script := "import sys, numpy as np\nx = np.load(sys.argv[1])\nassert x.dtype == np.float16\n" +
		"for i, (a, b) in enumerate([(0, 7000), (7000, 13001), (13001, len(x))]): np.save(f'{sys.argv[2]}/part-{i}.npy', x[a:b])"
	if out, err := exec.Command(py, "-c", script, gloveDocs, shards).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	args := []string{"build", "--train", "kmeans", "--nlist", "64", "--m", "20"}
	whole, sharded := filepath.Join(dir, "whole.faiss"), filepath.Join(dir, "sharded.faiss")
	mustRun(t, append(args, "--docs", gloveDocs, "-o", whole)...)
	mustRun(t, append(args, "--docs", shards, "-o", sharded)...)
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(sharded)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("sharded float16 build differs from the whole-file build (%d and %d bytes)", len(a), len(b))
	}

	small, rep := filepath.Join(dir, "small.faiss"), filepath.Join(dir, "r.json")
	mustRun(t, append(args, "--docs", shards, "--max-memory", "166MiB", "--report-json", rep, "-o", small)...)
	var r BuildReport
	js, _ := os.ReadFile(rep)
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}
	if r.TrainRows >= docs.Rows || r.TrainRows < 39*64 || r.MemoryPlan > 166<<20 {
		t.Errorf("166 MiB bound: %d training rows, plan %d bytes", r.TrainRows, r.MemoryPlan)
	}
	t.Logf("166 MiB bound: %d training rows of %d", r.TrainRows, docs.Rows)
}

// TestDistillOnSampleWithinMemory bounds memory so that the distillation
// learns from half the documents: the index still holds them all and still
// beats FAISS's own training.
func TestDistillOnSampleWithinMemory(t *testing.T) {
	dir := t.TempDir()
	ours, theirs, rep := filepath.Join(dir, "ours.faiss"), filepath.Join(dir, "faiss.faiss"), filepath.Join(dir, "r.json")
	args := []string{"build", "--docs", gloveDocs, "--nlist", "128", "--m", "20"}
	out := mustRun(t, append(args, "--queries", gloveDir+"/train-queries.npy", "--epochs", "3", "--max-memory", "172MiB", "--report-json", rep, "-o", ours)...)
	mustRun(t, append(args, "--train", "faiss", "-o", theirs)...)
	var r BuildReport
	js, _ := os.ReadFile(rep)
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}
	if r.DistillDocs == 0 || r.DistillDocs >= r.N || !strings.Contains(out, "distilled on") {
		t.Fatalf("no sampled distillation: %+v\n%s", r, out)
	}
	ev, err := Eval(context.Background(), EvalOptions{Docs: gloveDocs, Queries: gloveQ, Indexes: []string{ours, theirs}, Ks: []int{10},
		Nprobes: []int{4, 16}, NoCache: true}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := ev.Indexes[0].Ntotal; n != int64(r.N) {
		t.Errorf("index holds %d of %d documents", n, r.N)
	}
	for i, p := range ev.Indexes[0].Points {
		f := ev.Indexes[1].Points[i].KRecall[10]
		t.Logf("nprobe %d: distilled on %d of %d documents R@10 %.4f, FAISS %.4f", p.Nprobe, r.DistillDocs, r.N, p.KRecall[10], f)
		if p.KRecall[10] < f {
			t.Errorf("nprobe %d: %.4f below FAISS's %.4f", p.Nprobe, p.KRecall[10], f)
		}
	}
}
