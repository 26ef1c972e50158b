package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
)

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
	// Few k-means iterations: the bytes of two reads are compared, and the
	// memory plan does not depend on them.
	args := []string{"build", "--train", "kmeans", "--nlist", "64", "--m", "20", "--niter", "10"}
	whole, sharded := filepath.Join(dir, "whole.faiss"), filepath.Join(dir, "sharded.faiss")
	mustRun(t, append(args, "--docs", gloveDocs, "-o", whole)...)
	full := filepath.Join(dir, "full.json")
	mustRun(t, append(args, "--docs", shards, "--report-json", full, "-o", sharded)...)
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(sharded)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("sharded float16 build differs from the whole-file build (%d and %d bytes)", len(a), len(b))
	}

	// A bound 2 MiB below the whole sample's plan (the plan's least and
	// most differ by about 8 MiB here) must shrink the sample.
	var r buildReport
	readBuildReport(t, full, &r)
	bound := r.MemoryPlan - 2<<20
	small, rep := filepath.Join(dir, "small.faiss"), filepath.Join(dir, "r.json")
	mustRun(t, append(args, "--docs", shards, "--max-memory", fmt.Sprint(bound), "--report-json", rep, "-o", small)...)
	readBuildReport(t, rep, &r)
	if r.TrainRows >= docs.Rows || r.TrainRows < 39*64 || r.MemoryPlan > bound {
		t.Errorf("%d-byte bound: %d training rows, plan %d bytes", bound, r.TrainRows, r.MemoryPlan)
	}
	t.Logf("%d-byte bound: %d training rows of %d", bound, r.TrainRows, docs.Rows)
}

// TestDistillOnSampleWithinMemory bounds memory so that the distillation
// learns from a sample of the documents: the index still holds them all and still
// beats FAISS's own training.
func TestDistillOnSampleWithinMemory(t *testing.T) {
	dir := t.TempDir()
	ours, theirs, rep := filepath.Join(dir, "ours.faiss"), filepath.Join(dir, "faiss.faiss"), filepath.Join(dir, "r.json")
	args := []string{"build", "--docs", gloveDocs, "--nlist", "128", "--m", "20", "--queries", gloveDir + "/train-queries.npy"}
	// The whole collection's plan, from a one-epoch build; holding every
	// document costs about 4 MiB more than streaming them, so a bound
	// 1 MiB below it must make the distillation learn from a sample.
	mustRun(t, append(args, "--epochs", "1", "--report-json", rep, "-o", ours)...)
	var r buildReport
	readBuildReport(t, rep, &r)
	bound := r.MemoryPlan - 1<<20
	out := mustRun(t, append(args, "--epochs", "3", "--max-memory", fmt.Sprint(bound), "--report-json", rep, "-o", ours)...)
	mustRun(t, append(args[:len(args)-2], "--train", "faiss", "-o", theirs)...)
	r = buildReport{}
	readBuildReport(t, rep, &r)
	if r.DistillDocs == 0 || r.DistillDocs >= r.N || !strings.Contains(out, "distilled on") {
		t.Fatalf("no sampled distillation: %+v\n%s", r, out)
	}
	ev, err := eval.Run(context.Background(), eval.Options{Docs: gloveDocs, Queries: gloveQ, Indexes: []string{ours, theirs}, Ks: []int{10},
		Nprobes: []int{4, 16}, NoCache: true})
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
