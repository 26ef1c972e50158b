package eval

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

// readBytes is this process's rchar: every byte its read system calls have
// returned so far.
func readBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}

// TestCachedGroundTruthReadsNoDocuments evaluates twice over 40 MB of
// documents: the second run finds the ground truth in its cache by the
// documents' fingerprint, reading at most the fingerprint's sampled blocks
// (4 MiB) of them rather than all, and gives the same recall.
func TestCachedGroundTruthReadsNoDocuments(t *testing.T) {
	dir := t.TempDir()
	g, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	rng := rand.New(rand.NewPCG(3, 4))
	docs := faissio.Matrix{Rows: n, Cols: g.Cols, Data: make([]float32, n*g.Cols)}
	for i := range n {
		for j, v := range g.Row(i % g.Rows) {
			docs.Data[i*g.Cols+j] = v + 0.05*float32(rng.NormFloat64())
		}
	}
	docsPath, queries := filepath.Join(dir, "docs.npy"), filepath.Join(dir, "queries.npy")
	if err := faissio.WriteNpy(docsPath, docs); err != nil {
		t.Fatal(err)
	}
	q, err := faissio.ReadVectors(gloveQ)
	if err != nil {
		t.Fatal(err)
	}
	if err := faissio.WriteNpy(queries, q.Slice(0, 200)); err != nil {
		t.Fatal(err)
	}
	// Any index of d=100 will do: a small one over the first documents.
	index := filepath.Join(dir, "ix.faiss")
	ix, _, err := build.Run(context.Background(), faissio.MatrixSource(docs.Slice(0, 5000)),
		build.Options{Train: build.KMeans, Nlist: 32, M: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := faissio.WriteIVFFile(context.Background(), index, ix, nil); err != nil {
		t.Fatal(err)
	}
	o := Options{Docs: docsPath, Queries: queries, Indexes: []string{index}, Ks: []int{10}, Nprobes: []int{4}}
	first, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	before := readBytes(t)
	second, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	read := readBytes(t) - before
	st, _ := os.Stat(docsPath)
	t.Logf("second eval read %d bytes in all; the documents are %d bytes", read, st.Size())
	if !strings.Contains(second.GroundTruth, "cache ") {
		t.Errorf("second run's ground truth: %s", second.GroundTruth)
	}
	// The index (~0.2 MB), the queries (80 kB), the cache (16 kB) and the
	// fingerprint's samples (4 MiB): far below the 40 MB of documents.
	if limit := int64(6 << 20); read > limit {
		t.Errorf("the cached run read %d bytes, more than %d: it read the documents", read, limit)
	}
	if a, b := first.Indexes[0].Points[0].KRecall[10], second.Indexes[0].Points[0].KRecall[10]; a != b {
		t.Errorf("recall %v with the cache, %v without", b, a)
	}
}
