package build_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// TestExampleFileLoadsInPython runs Example, the README's "Use it from
// Go", and checks that Python FAISS loads the file it writes as the index
// it built and finds the same neighbours as FAISS through cgo.
func TestExampleFileLoadsInPython(t *testing.T) {
	testutil.Python(t)
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	Example()
	path := filepath.Join(dir, "distillvq-example.faiss")
	checkPythonSearch(t, path, "IndexIVFPQ", 10000)
}

// checkPythonSearch loads path in Python FAISS, checks its class and size,
// and compares its top-10 at nprobe 8 for the embedded queries with FAISS's
// through cgo.
func checkPythonSearch(t *testing.T, path, class string, ntotal int) {
	t.Helper()
	out := testutil.RunPython(t, `
import sys, faiss, numpy as np
ix = faiss.read_index(sys.argv[1])
q = np.load(sys.argv[2]).astype(np.float32)
faiss.extract_index_ivf(ix).nprobe = 8
_, I = ix.search(q, 10)
print(type(ix).__name__, ix.ntotal, ix.d)
print(" ".join(str(v) for v in I.ravel()))
`, path, gloveQ)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("python printed %q", out)
	}
	if want := fmt.Sprintf("%s %d 100", class, ntotal); lines[0] != want {
		t.Errorf("Python FAISS sees %q, want %q", lines[0], want)
	}
	q, err := faissio.ReadVectors(gloveQ)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := faiss.ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	_, labels, err := ix.Search(q, 10, 8)
	if err != nil {
		t.Fatal(err)
	}
	var py []int64
	for _, f := range strings.Fields(lines[1]) {
		var v int64
		fmt.Sscan(f, &v)
		py = append(py, v)
	}
	if !slices.Equal(py, labels) {
		t.Errorf("Python FAISS's neighbours differ from cgo FAISS's")
	}
}

// The program a user writes outside this module: its build is the lines
// between the markers, counted by TestOutsideModuleProgram and quoted in
// the README.
const outsideMain = `package main

import (
	"context"
	"log"
	"os"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

func main() {
	rows := embeddings(os.Args[1]) // the program's own [][]float32
	// build:
	index, _, err := build.Run(context.Background(), faissio.RowsSource(rows), build.Options{})
	if err == nil {
		err = faissio.WriteIVFFile(context.Background(), os.Args[2], index, nil)
	}
	if err != nil {
		log.Fatal(err)
	}
	// end
}
`

// outsideData gives the program its vectors: the first 5,000 embedded words.
const outsideData = `package main

import (
	"log"

	"github.com/distillvq/distillvq/faissio"
)

func embeddings(path string) [][]float32 {
	m, err := faissio.ReadVectors(path)
	if err != nil {
		log.Fatal(err)
	}
	rows := make([][]float32, 5000)
	for i := range rows {
		rows[i] = m.Row(i)
	}
	return rows
}
`

// TestOutsideModuleProgram builds a program in a module of its own that
// imports only distillvq's public API, runs it, and checks that its
// distilled IVFPQ takes at most ten lines of code and loads in Python
// FAISS.
func TestOutsideModuleProgram(t *testing.T) {
	body := outsideMain[strings.Index(outsideMain, "// build:\n")+len("// build:\n") : strings.Index(outsideMain, "\t// end")]
	if n := strings.Count(body, "\n"); n > 10 {
		t.Errorf("the build takes %d lines, more than ten", n)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gosum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	// The program's go.mod is the tidy one, listing what this module
	// requires: with every module of the build listed, the go command
	// loads no deeper graph, whose go.mod files (of modules that no
	// package comes from) a fresh module cache does not hold.
	gomod := string(readFile(t, filepath.Join(root, "go.mod")))
	requires := gomod[strings.Index(gomod, "\nrequire"):]
	files := map[string]string{
		"go.mod": "module example.com/embedder\n\ngo 1.26.0\n\nrequire github.com/distillvq/distillvq v0.0.0\n" + requires +
			"\nreplace github.com/distillvq/distillvq => " + root + "\n",
		"go.sum":  string(gosum),
		"main.go": outsideMain,
		"data.go": outsideData,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		// Offline: every module the program needs is this module's, in the
		// module cache since this module was built.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	goCmd("build", "-o", "embedder", ".")
	out := filepath.Join(dir, "out.faiss")
	docs, err := filepath.Abs(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(filepath.Join(dir, "embedder"), docs, out).CombinedOutput(); err != nil {
		t.Fatalf("the program: %v\n%s", err, msg)
	}
	checkPythonSearch(t, out, "IndexIVFPQ", 5000)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
