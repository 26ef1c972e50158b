package cli

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

// TestInterruptLeavesNoOutput builds the binary, stops a distillation build
// mid-way with SIGTERM, and checks that it exits 130 promptly and leaves
// neither the output nor a temporary file, and that an existing output file
// is untouched.
func TestInterruptLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	bin := distillvqBinary(t)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "x.faiss")
	os.WriteFile(out, []byte("previous index"), 0o644)
	cmd := exec.Command(bin, "build", "--docs", gloveDocs, "--nlist", "64", "--m", "20", "--epochs", "50", "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want code 130", err)
	}
	if took := time.Since(sent); took > 10*time.Second {
		t.Errorf("took %v to stop", took)
	}
	// Training checks the context every step: it must stop by itself, not
	// by the forced exit after the grace period.
	if msg := stderr.String(); msg != "distillvq: interrupted\n" {
		t.Errorf("stderr %q, want the one line of an interrupt honoured by training", msg)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Errorf("files left in the output folder: %v", entries)
	}
	if b, _ := os.ReadFile(out); string(b) != "previous index" {
		t.Errorf("the existing output was changed")
	}
}

// TestInterruptEachPhase signals SIGINT to a 100,000-document distilled
// build in each of its phases (k-means, teacher, an epoch, encoding,
// writing), found from its --progress log lines, and requires that it stops
// by itself: exit 130 within a second, the one line of an honoured
// interrupt (not the forced exit's "did not return"), and no file left.
// The write takes milliseconds here, so that phase is slowed through the
// progress hook DISTILLVQ_TEST_PHASE_DELAY to be caught while it runs.
func TestInterruptEachPhase(t *testing.T) {
	dir := t.TempDir()
	bin := distillvqBinary(t)
	docs := filepath.Join(dir, "docs100k.npy")
	writeNoisyCopies(t, docs, 100_000)
	for _, c := range []struct {
		phase, line, delay string
	}{
		{"k-means", "distillvq: IVF k-means ", ""},
		{"teacher", "distillvq: distill: teacher ", ""},
		{"epoch", "distillvq: distill: loss ", ""},
		{"encode", "distillvq: encode ", ""},
		{"write", "distillvq: write ", "write=100ms"},
	} {
		t.Run(c.phase, func(t *testing.T) {
			outDir := filepath.Join(dir, c.phase)
			os.Mkdir(outDir, 0o755)
			// The teacher and the epochs are caught with 2,000 queries
			// and a second epoch (the loss line comes after the first);
			// the phases after them need neither, only to be reached.
			queries, epochs := "2000", "2"
			if c.phase == "encode" || c.phase == "write" {
				queries, epochs = "300", "1"
			}
			cmd := exec.Command(bin, "build", "--docs", docs, "--nlist", "256", "--m", "20", "--pseudo-queries", queries,
				"--epochs", epochs, "--train-size", "16384", "--niter", "10", "--progress", "log", "-o", filepath.Join(outDir, "x.faiss"))
			if c.delay != "" {
				cmd.Env = append(os.Environ(), "DISTILLVQ_TEST_PHASE_DELAY="+c.delay)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var log []string
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				log = append(log, sc.Text())
				if strings.HasPrefix(sc.Text(), c.line) {
					break
				}
			}
			sent := time.Now()
			cmd.Process.Signal(os.Interrupt)
			for sc.Scan() {
				log = append(log, sc.Text())
			}
			err = cmd.Wait()
			took := time.Since(sent)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Fatalf("exit %v, want code 130; stderr:\n%s", err, strings.Join(log, "\n"))
			}
			if took > time.Second {
				t.Errorf("took %v to stop after the signal", took)
			}
			if last := log[len(log)-1]; last != "distillvq: interrupted" {
				t.Errorf("last line %q, want the interrupt honoured by the phase itself; stderr:\n%s", last, strings.Join(log, "\n"))
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Errorf("files left in the output folder: %v", entries)
			}
			t.Logf("stopped %v after the signal, in %q", took.Round(time.Millisecond), log[len(log)-2])
		})
	}
}

// writeNoisyCopies writes n documents: the embedded GloVe words again and
// again, each copy with a little noise, as a float32 .npy.
func writeNoisyCopies(t *testing.T, path string, n int) {
	t.Helper()
	g, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m := faissio.Matrix{Rows: n, Cols: g.Cols, Data: make([]float32, n*g.Cols)}
	for i := range n {
		for j, v := range g.Row(i % g.Rows) {
			m.Data[i*g.Cols+j] = v + 0.05*float32(rng.NormFloat64())
		}
	}
	if err := faissio.WriteNpy(path, m); err != nil {
		t.Fatal(err)
	}
}
