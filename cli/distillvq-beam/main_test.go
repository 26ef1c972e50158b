package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distillvq/distillvq/faissio"
)

const gloveDocs = "../../testdata/glove20k/docs.npy"

// bin is distillvq-beam, built once for the tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "distillvq-beam")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "distillvq-beam")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	// The tests read stderr line by line; a machine whose OpenBLAS falls
	// back to old kernels would put cli's warning first.
	os.Setenv("DISTILLVQ_QUIET_BLAS", "1")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// shards writes the embedded set as four .npy shards of unequal sizes.
func shards(t *testing.T) string {
	t.Helper()
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shards")
	os.Mkdir(dir, 0o755)
	cuts := []int{0, 2000, 8000, 17000, 20000}
	for s := range 4 {
		if err := faissio.WriteNpy(filepath.Join(dir, fmt.Sprintf("s%d.npy", s)), m.Slice(cuts[s], cuts[s+1])); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRunnerPrismEqualsBuild runs build --runner prism with four workers
// and --shard-rows 5000 (shards of 4,096 rows, ShardAlign: five of them,
// across four files) and requires
// the file the same binary's plain build writes, byte for byte.
func TestRunnerPrismEqualsBuild(t *testing.T) {
	docs := shards(t)
	dir := t.TempDir()
	// Equality of two builds: 10 k-means iterations, one short epoch.
	args := []string{"build", "--docs", docs, "--nlist", "64", "--m", "20", "--pseudo-queries", "300", "--epochs", "1", "--niter", "10"}
	plain, beam, rep := filepath.Join(dir, "plain.faiss"), filepath.Join(dir, "beam.faiss"), filepath.Join(dir, "r.json")
	if out, err := exec.Command(bin, append(args, "-o", plain)...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, append(args, "-o", beam, "--runner", "prism", "--workers", "4", "--shard-rows", "5000", "--report-json", rep)...).CombinedOutput()
	if err != nil {
		t.Fatalf("build --runner prism: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in 5 shards on prism") || strings.Contains(string(out), "level=INFO") {
		t.Errorf("output:\n%s", out)
	}
	a, _ := os.ReadFile(plain)
	b, _ := os.ReadFile(beam)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("build --runner prism wrote other bytes than build (%d and %d)", len(b), len(a))
	}
	if js, err := os.ReadFile(rep); err != nil || !bytes.Contains(js, []byte(`"shard_memory_bytes"`)) {
		t.Errorf("report: %v %s", err, js)
	}
	for _, bad := range [][]string{
		{"--runner", "prism", "--beam", "no_such_option=1"},
		{"--runner", "prism", "--ids", "x.npy"},
		{"--runner", "prism", "--compare", "--eval-queries", gloveDocs},
	} {
		cmd := exec.Command(bin, append(append(args, "-o", filepath.Join(dir, "x.faiss")), bad...)...)
		msg, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || strings.Count(string(msg), "\n") != 1 {
			t.Errorf("%v: %v, %q", bad, err, msg)
		}
	}
}

// TestStoppedPipelineLeavesNoFile kills (SIGKILL) and interrupts (SIGINT)
// a build while its pipeline runs: no output file either way, and the
// interrupted one exits 130.
func TestStoppedPipelineLeavesNoFile(t *testing.T) {
	docs := shards(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "index.faiss")
			cmd := exec.Command(bin, "build", "--docs", docs, "--train", "kmeans", "--nlist", "32", "--m", "10", "-o", out,
				"--runner", "prism", "--shard-rows", "5000", "--progress", "log")
			cmd.Env = append(os.Environ(), "DISTILLVQ_TEST_SHARD_DELAY=2s")
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "distillvq: pipeline ") {
					break
				}
			}
			time.Sleep(500 * time.Millisecond)
			cmd.Process.Signal(sig)
			var rest []string
			for sc.Scan() {
				rest = append(rest, sc.Text())
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("the build was not stopped: %v", err)
			}
			if sig == syscall.SIGINT && ee.ExitCode() != 130 {
				t.Errorf("exit %d after SIGINT, want 130: %s", ee.ExitCode(), strings.Join(rest, "\n"))
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a stopped pipeline left its output")
			}
		})
	}
}
