package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBuildsAreDeterministic builds the same indexes with one, two and three
// threads (GOMAXPROCS and OpenBLAS), in separate processes, and requires
// byte-identical files from every run. OpenBLAS's
// threaded sgemm rounds differently for different thread counts, so this
// holds only because our kernels run every product single-threaded on
// blocks of a fixed shape (distill.serialBLAS), the OPQ training included.
func TestBuildsAreDeterministic(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "distillvq")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	builds := map[string][]string{
		"kmeans-ivfpq":   {"--train", "kmeans", "--m", "20"},
		"distill-ivfpq":  {"--train", "distill", "--m", "20", "--queries", gloveDir + "/train-queries.npy", "--epochs", "2"},
		"kmeans-ivfflat": {"--train", "kmeans", "--index", "ivfflat", "--metric", "l2"},
		"distill-l2-opq": {"--train", "distill", "--m", "10", "--metric", "l2", "--opq", "--pseudo-queries", "2000", "--epochs", "1"},
		"distill-flat":   {"--train", "distill", "--index", "ivfflat", "--pseudo-queries", "2000", "--epochs", "1"},
	}
	for name, args := range builds {
		var first []byte
		for i, threads := range []int{1, 2, 3} {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d.faiss", name, i))
			cmd := exec.Command(bin, append([]string{"build", "--docs", gloveDocs, "--nlist", "64", "--seed", "7", "-o", out}, args...)...)
			cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", threads), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", threads))
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, msg)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = b
			} else if !bytes.Equal(b, first) {
				t.Errorf("%s: run %d with %d thread(s) wrote different bytes than run 0 with 1", name, i, threads)
			}
		}
	}
}
