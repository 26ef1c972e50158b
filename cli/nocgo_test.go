package cli

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/eval"
)

// TestPureGoBuild builds the command with CGO_ENABLED=0, trains and writes
// indexes with it, and checks that they are real FAISS files: FAISS (this
// cgo build) reads and searches them with the recall of the same index built
// with cgo. The two builds differ only in their BLAS (gonum against
// OpenBLAS), so the files may differ in the last bits of the training, not
// in recall. Search in the pure-Go build says it needs cgo.
func TestPureGoBuild(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "distillvq-nocgo")
	cmd := exec.Command("go", "build", "-o", bin, "./distillvq")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	for _, index := range []string{"ivfpq", "ivfflat"} {
		args := []string{"build", "--docs", gloveDocs, "--train", "kmeans", "--index", index, "--nlist", "32"}
		if index == "ivfpq" {
			// gonum's sgemm makes the pure-Go PQ training the test's cost
			// (52 CPU-seconds on all 20,000 documents at 25 iterations, 9
			// here); both builds run the same settings and their recall is
			// still compared (R@10 at nprobe 4: 0.602 here, 0.621 with the
			// defaults, equal for the two builds either way).
			args = append(args, "--m", "20", "--train-size", "8192", "--niter", "10")
		}
		pure, withCgo := filepath.Join(dir, index+"-pure.faiss"), filepath.Join(dir, index+"-cgo.faiss")
		if out, err := exec.Command(bin, append(args, "-o", pure)...).CombinedOutput(); err != nil {
			t.Fatalf("pure-Go build: %v\n%s", err, out)
		}
		mustRun(t, append(args, "-o", withCgo)...)
		rep, err := eval.Run(context.Background(), eval.Options{Docs: gloveDocs, Queries: gloveQ, Indexes: []string{pure, withCgo},
			Ks: []int{10}, Nprobes: []int{1, 4, 16}, NoCache: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range rep.Indexes[0].Points {
			q := rep.Indexes[1].Points[i]
			t.Logf("%s nprobe %d: R@10 pure Go %.4f, cgo %.4f", index, p.Nprobe, p.KRecall[10], q.KRecall[10])
			if math.Abs(p.KRecall[10]-q.KRecall[10]) > 0.01 {
				t.Errorf("%s nprobe %d: pure-Go build's recall %.4f differs from cgo's %.4f", index, p.Nprobe, p.KRecall[10], q.KRecall[10])
			}
		}
	}
	out, err := exec.Command(bin, "search", "--index", filepath.Join(dir, "ivfpq-pure.faiss"), "--queries", gloveQ).CombinedOutput()
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "built without cgo") {
		t.Errorf("pure-Go search: %v, %s", err, out)
	}
	out, err = exec.Command(bin, "inspect", filepath.Join(dir, "ivfpq-pure.faiss")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "IndexIVFPQ") {
		t.Errorf("pure-Go inspect: %v, %s", err, out)
	}
}
