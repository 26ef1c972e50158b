package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointResume kills a distillation build (SIGKILL, as a crash or an
// OOM kill would) once it has saved its first epoch, resumes it from the
// checkpoint, and requires the very bytes of an uninterrupted build. It then
// checks that a checkpoint for other options or with a damaged file is
// refused in one line, and that a k-means build resumes too.
func TestCheckpointResume(t *testing.T) {
	dir := t.TempDir()
	bin := distillvqBinary(t)
	args := func(out string, extra ...string) []string {
		// Few k-means iterations and 800 training queries: the resumed
		// bytes are compared with the uninterrupted ones, and each epoch
		// still re-encodes all 20,000 documents, long enough to be killed
		// in the epochs after the first.
		return append([]string{"build", "--docs", gloveDocs, "--nlist", "64", "--m", "20", "--pseudo-queries", "1000",
			"--val", "200", "--epochs", "3", "--seed", "5", "--niter", "10", "-o", out}, extra...)
	}
	ref := filepath.Join(dir, "ref.faiss")
	runOK(t, args(ref)...)
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}

	ck := filepath.Join(dir, "ck")
	killed := filepath.Join(dir, "killed.faiss")
	cmd := exec.Command(bin, args(killed, "--checkpoint", ck)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(ck, "distill.ckpt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no distillation checkpoint after 5 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the build finished before it was killed; give it more epochs")
	}
	if _, err := os.Stat(killed); err == nil {
		t.Fatal("a killed build left its output")
	}
	var info struct{ Stage string }
	if b, err := os.ReadFile(filepath.Join(ck, "checkpoint.json")); err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("checkpoint.json: %v", err)
	}
	t.Logf("killed at stage %q", info.Stage)

	resumed := filepath.Join(dir, "resumed.faiss")
	rep := filepath.Join(dir, "resumed.json")
	runOK(t, args(resumed, "--checkpoint", ck, "--resume", "--report-json", rep)...)
	if got, _ := os.ReadFile(resumed); !bytes.Equal(got, want) {
		t.Fatal("the resumed build differs from the uninterrupted one")
	}
	var r buildReport
	if b, err := os.ReadFile(rep); err != nil || json.Unmarshal(b, &r) != nil {
		t.Fatalf("report: %v", err)
	}
	if !strings.Contains(r.Resumed, "distillation epochs") {
		t.Errorf("report says resumed %q, want the distillation epochs taken from the checkpoint", r.Resumed)
	}
	if len(r.Epochs) != 4 { // the starting point and three epochs
		t.Errorf("resumed report has %d curve points, want 4", len(r.Epochs))
	}

	// All three epochs are saved now: resuming again trains nothing.
	again := filepath.Join(dir, "again.faiss")
	out, _ := runOK(t, args(again, "--checkpoint", ck, "--resume")...)
	if !strings.Contains(out, "3 of 3 distillation epochs") {
		t.Errorf("output %q does not say all epochs came from the checkpoint", out)
	}
	if got, _ := os.ReadFile(again); !bytes.Equal(got, want) {
		t.Fatal("resuming a finished distillation gave other bytes")
	}

	// Refusals: another seed, a damaged file, flags that do not go together.
	code, _, msg := run(t, append(args(filepath.Join(dir, "x.faiss"), "--checkpoint", ck, "--resume"), "--seed", "6")...)
	if code != 1 || !strings.Contains(msg, "written for other") || strings.Count(msg, "\n") != 1 {
		t.Errorf("other seed: exit %d, %q", code, msg)
	}
	ckFile := filepath.Join(ck, "distill.ckpt")
	b, _ := os.ReadFile(ckFile)
	b[len(b)/2] ^= 0x10
	os.WriteFile(ckFile, b, 0o644)
	code, _, msg = run(t, args(filepath.Join(dir, "x.faiss"), "--checkpoint", ck, "--resume")...)
	if code != 1 || !strings.Contains(msg, "checksum mismatch") || strings.Count(msg, "\n") != 1 {
		t.Errorf("damaged checkpoint: exit %d, %q", code, msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.faiss")); err == nil {
		t.Error("a refused resume wrote an output")
	}
	code, _, msg = run(t, args(filepath.Join(dir, "x.faiss"), "--resume")...)
	if code != 2 || !strings.Contains(msg, "--resume needs --checkpoint") {
		t.Errorf("--resume alone: exit %d, %q", code, msg)
	}
	code, _, msg = run(t, args(filepath.Join(dir, "x.faiss"), "--train", "faiss", "--checkpoint", ck)...)
	if code != 2 || !strings.Contains(msg, "--checkpoint works with") {
		t.Errorf("--train faiss --checkpoint: exit %d, %q", code, msg)
	}
	code, _, msg = run(t, args(filepath.Join(dir, "x.faiss"), "--checkpoint", filepath.Join(dir, "empty"), "--resume")...)
	if code != 1 || !strings.Contains(msg, "holds no checkpoint") {
		t.Errorf("resume from an empty folder: exit %d, %q", code, msg)
	}

	// A k-means build resumes from its trained model.
	km := func(out string, extra ...string) []string {
		return append([]string{"build", "--docs", gloveDocs, "--nlist", "64", "--m", "20", "--train", "kmeans", "--seed", "5", "--niter", "10", "-o", out}, extra...)
	}
	ck2 := filepath.Join(dir, "ck2")
	first := filepath.Join(dir, "km1.faiss")
	runOK(t, km(first, "--checkpoint", ck2)...)
	second := filepath.Join(dir, "km2.faiss")
	out, _ = runOK(t, km(second, "--checkpoint", ck2, "--resume")...)
	if !strings.Contains(out, "resumed: k-means") {
		t.Errorf("output %q does not say k-means came from the checkpoint", out)
	}
	b1, _ := os.ReadFile(first)
	b2, _ := os.ReadFile(second)
	if len(b1) == 0 || !bytes.Equal(b1, b2) {
		t.Error("the resumed k-means build differs")
	}
}
