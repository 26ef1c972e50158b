package cli

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInterruptLeavesNoOutput builds the binary, stops a distillation build
// mid-way with SIGTERM, and checks that it exits 130 promptly and leaves
// neither the output nor a temporary file, and that an existing output file
// is untouched.
func TestInterruptLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "distillvq")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
