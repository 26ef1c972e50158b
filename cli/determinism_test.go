package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// TestBuildsAreDeterministic builds the same indexes with one and three
// threads (GOMAXPROCS and OpenBLAS), in separate processes, and requires
// byte-identical files from every run. OpenBLAS's threaded sgemm rounds
// differently for different thread counts, so this holds only because our
// kernels run every product single-threaded on blocks of a fixed shape
// (distill.serialBLAS), the OPQ training included. Three threads on two
// cores also splits the work unevenly, unlike two. The builds run two at a
// time, so that the single-threaded ones keep both cores busy.
func TestBuildsAreDeterministic(t *testing.T) {
	dir := t.TempDir()
	bin := distillvqBinary(t)
	builds := map[string][]string{
		"kmeans-ivfpq":   {"--train", "kmeans", "--m", "20"},
		"distill-ivfpq":  {"--train", "distill", "--m", "20", "--queries", gloveDir + "/train-queries.npy", "--pseudo-queries", "500", "--epochs", "1"},
		"kmeans-ivfflat": {"--train", "kmeans", "--index", "ivfflat", "--metric", "l2"},
		"distill-l2-opq": {"--train", "distill", "--m", "10", "--metric", "l2", "--opq", "--train-size", "2560", "--pseudo-queries", "2000", "--epochs", "1"},
		"distill-flat":   {"--train", "distill", "--index", "ivfflat", "--pseudo-queries", "2000", "--epochs", "1"},
		// The learned rotation: its gradient products and Cayley steps.
		"distill-opq-learn": {"--train", "distill", "--m", "10", "--opq=learn", "--train-size", "2560", "--pseudo-queries", "2000", "--epochs", "1"},
	}
	threads := []int{1, 3}
	type job struct {
		name    string
		threads int
	}
	jobs := make(chan job)
	errs := make(chan string, len(builds)*len(threads))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				out := filepath.Join(dir, fmt.Sprintf("%s-%d.faiss", j.name, j.threads))
				cmd := exec.Command(bin, append([]string{"build", "--docs", gloveDocs, "--nlist", "64", "--seed", "7", "--niter", "10", "-o", out}, builds[j.name]...)...)
				cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", j.threads), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", j.threads))
				if msg, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Sprintf("%s with %d thread(s): %v\n%s", j.name, j.threads, err, msg)
				}
			}
		}()
	}
	for name := range builds {
		for _, n := range threads {
			jobs <- job{name, n}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	for name := range builds {
		first, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.faiss", name, threads[0])))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range threads[1:] {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.faiss", name, n)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, first) {
				t.Errorf("%s: the build with %d threads wrote different bytes than with %d", name, n, threads[0])
			}
		}
	}
}
