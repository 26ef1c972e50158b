package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnwritableAndUnreadablePaths checks the one-line errors for an output
// folder without write permission, documents without read permission and an
// output on a read-only file system. Root ignores permissions, so as root
// the binary runs as the user nobody (setpriv); the read-only mount needs
// root and is skipped without it.
func TestUnwritableAndUnreadablePaths(t *testing.T) {
	dir, err := os.MkdirTemp("", "dvq-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "distillvq")
	if out, err := exec.Command("go", "build", "-o", bin, "./distillvq").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A copy the user nobody can read: the checkout may lie in a folder
	// only root may enter.
	docs := filepath.Join(dir, "docs.npy")
	data, err := os.ReadFile(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docs, data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	command := func(args ...string) *exec.Cmd {
		if root {
			return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		}
		return exec.Command(bin, args...)
	}
	fails := func(name, want string, cmd *exec.Cmd) {
		t.Helper()
		out, err := cmd.CombinedOutput()
		msg := string(out)
		if cmd.ProcessState == nil {
			t.Fatalf("%s: %v", name, err)
		}
		if code := cmd.ProcessState.ExitCode(); code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(strings.ToLower(msg), want) {
			t.Errorf("%s: exit %d, %q; want exit 1 and one line with %q", name, code, msg, want)
		}
	}
	if root {
		if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--help").CombinedOutput(); err != nil {
			t.Skipf("cannot run as nobody: %v %s", err, out)
		}
	}

	locked := filepath.Join(dir, "locked")
	os.Mkdir(locked, 0o755)
	out := filepath.Join(locked, "x.faiss")
	os.WriteFile(out, []byte("keep me"), 0o666)
	os.Chmod(locked, 0o555)
	build := func(docs, out string) []string {
		return []string{"build", "--docs", docs, "--index", "ivfflat", "--nlist", "16", "--train", "kmeans", "-o", out}
	}
	fails("output folder without write permission", "no permission to write in directory", command(build(docs, out)...))
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Error("the existing output was changed")
	}
	if entries, _ := os.ReadDir(locked); len(entries) != 1 {
		t.Errorf("files left in the locked folder: %v", entries)
	}

	secret := filepath.Join(dir, "secret.npy")
	os.WriteFile(secret, data, 0o600)
	if root {
		os.Chown(secret, 0, 0)
	}
	os.Chmod(secret, 0o000)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	fails("documents without read permission", "permission denied", command(build(secret, filepath.Join(open, "x.faiss"))...))
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Errorf("files left after the unreadable input: %v", entries)
	}

	if !root {
		return
	}
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	if msg, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro).CombinedOutput(); err != nil {
		t.Logf("no read-only tmpfs (%v %s): skipping that case", err, msg)
		return
	}
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	// As root: permissions would not stop it, the mount does.
	fails("output on a read-only file system", "read-only file system", exec.Command(bin, build(docs, filepath.Join(ro, "x.faiss"))...))
}
