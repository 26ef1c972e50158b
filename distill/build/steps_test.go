package build_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// indexBytes is the FAISS file of p.
func indexBytes(t *testing.T, p *faissio.IVFParams) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := faissio.WriteIVF(context.Background(), &b, p, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// shardCuts splits n rows into four shards of unequal sizes.
func shardCuts(n int) []int { return []int{0, n / 10, n/10 + n/3, n - n/7, n} }

// sequentialIDs numbers n documents from first.
func sequentialIDs(first, n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(first + i)
	}
	return ids
}

// TestTrainAddEqualsRun trains once, adds the embedded set in four shards of
// unequal sizes and concatenates them: the file must be byte-identical to
// Run's of the whole set, for our trainers and their export rules. Adding
// to the filled index (the first shards, then the rest) gives it too, and
// the trained index survives its file.
func TestTrainAddEqualsRun(t *testing.T) {
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	m = m.Slice(0, 12000)
	queries, err := faissio.ReadVectors(gloveDir + "/train-queries.npy")
	if err != nil {
		t.Fatal(err)
	}
	// Byte equality of two paths needs no well-trained index: one short
	// epoch, 10 k-means iterations, and 500 of the training queries.
	queries = queries.Slice(0, 500)
	short := distill.DistillConfig{Epochs: 1, PseudoQueries: 300}
	for _, c := range []struct {
		name string
		o    build.Options
	}{
		{"kmeans-ivfpq", build.Options{Train: build.KMeans, Nlist: 64, M: 20}},
		{"kmeans-ivfflat-l2", build.Options{Train: build.KMeans, Index: build.IVFFlat, Metric: faissio.L2, Nlist: 64}},
		{"distill-ivfpq", build.Options{Nlist: 64, M: 20, Queries: queries, Distill: short}},
		{"distill-ivfpq-nearest", build.Options{Nlist: 64, M: 20, ExportLists: build.NearestLists, Distill: short}},
		// FAISS's OPQ training costs in proportion to its sample: 40
		// per list.
		{"distill-opq-l2", build.Options{Nlist: 32, M: 10, Metric: faissio.L2, OPQ: true, TrainSize: 1280, Distill: short}},
		{"distill-ivfflat", build.Options{Index: build.IVFFlat, Nlist: 64, Distill: short}},
	} {
		c.o.Niter = 10
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			whole, _, err := build.Run(ctx, faissio.MatrixSource(m), c.o)
			if err != nil {
				t.Fatal(err)
			}
			want := indexBytes(t, whole)
			tr, _, err := build.Train(ctx, faissio.MatrixSource(m), c.o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "trained.faiss")
			if err := tr.WriteFile(ctx, path); err != nil {
				t.Fatal(err)
			}
			back, empty, err := build.ReadIndexFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(empty.Lists) != 0 || back.Held() != tr.Held() {
				t.Fatalf("trained file: %d vectors, %d held documents (wrote %d)", len(empty.Lists), back.Held(), tr.Held())
			}
			cuts := shardCuts(m.Rows)
			var all *faissio.IVFParams
			for s := range 4 {
				part, err := back.Add(ctx, faissio.MatrixSource(m.Slice(cuts[s], cuts[s+1])), sequentialIDs(cuts[s], cuts[s+1]-cuts[s]), nil)
				if err != nil {
					t.Fatal(err)
				}
				if all == nil {
					all = part
				} else if all, err = build.Append(all, part); err != nil {
					t.Fatal(err)
				}
			}
			if got := indexBytes(t, all); !bytes.Equal(got, want) {
				t.Errorf("train + add of 4 shards differs from the whole build (%d and %d bytes)", len(got), len(want))
			}
			// Add to a filled index: what a file of the first two shards
			// holds, then the other two.
			filled := filepath.Join(t.TempDir(), "filled.faiss")
			first, err := back.Add(ctx, faissio.MatrixSource(m.Slice(0, cuts[2])), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := faissio.WriteIVFFile(ctx, filled, first, nil); err != nil {
				t.Fatal(err)
			}
			fromFile, have, err := build.ReadIndexFile(filled)
			if err != nil {
				t.Fatal(err)
			}
			if err := fromFile.TakeEncoding(back); err != nil {
				t.Fatal(err)
			}
			rest, err := fromFile.Add(ctx, faissio.MatrixSource(m.Slice(cuts[2], m.Rows)), sequentialIDs(cuts[2], m.Rows-cuts[2]), nil)
			if err != nil {
				t.Fatal(err)
			}
			full, err := build.Append(have, rest)
			if err != nil {
				t.Fatal(err)
			}
			if got := indexBytes(t, full); !bytes.Equal(got, want) {
				t.Errorf("adding to the filled index differs from the whole build")
			}
			if _, err := build.Append(have, first); err == nil {
				t.Errorf("adding the same ids twice was accepted")
			}
		})
	}
}

// TestTrainedFileErrors checks that a damaged trained file is refused in
// one line, and that an index trained otherwise cannot lend its encoding.
func TestTrainedFileErrors(t *testing.T) {
	ctx := context.Background()
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	m = m.Slice(0, 4000)
	tr, _, err := build.Train(ctx, faissio.MatrixSource(m), build.Options{Nlist: 16, M: 10, Distill: distill.DistillConfig{Epochs: 1}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trained.faiss")
	if err := tr.WriteFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	other, _, err := build.Train(ctx, faissio.MatrixSource(m), build.Options{Nlist: 16, M: 10, Seed: 9, Train: build.KMeans})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.TakeEncoding(tr); err == nil {
		t.Error("an index of another training lent its encoding")
	}
	data := readFile(t, path)
	for i, damage := range []func([]byte) []byte{
		func(b []byte) []byte { b[len(b)-30] ^= 1; return b }, // in the trailer's body
		func(b []byte) []byte { return b[:len(b)-17] },        // cut inside the trailer
		func(b []byte) []byte { b[100] ^= 0xff; return b },    // in the FAISS part
	} {
		bad := filepath.Join(t.TempDir(), fmt.Sprintf("bad%d.faiss", i))
		writeFile(t, bad, damage(append([]byte(nil), data...)))
		if _, _, err := build.ReadIndexFile(bad); err == nil {
			t.Errorf("damage %d accepted", i)
		} else {
			t.Logf("damage %d: %v", i, err)
		}
	}
}

// TestPythonLoadsTrainedFile checks that Python FAISS reads a trained index
// file, trailer and all, as the trained, empty index.
func TestPythonLoadsTrainedFile(t *testing.T) {
	testutil.Python(t)
	ctx := context.Background()
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	// The file's structure is the test: FAISS's OPQ on 1,024 documents (64
	// per list; its cost is in proportion to them), a short distillation.
	tr, _, err := build.Train(ctx, faissio.MatrixSource(m.Slice(0, 4000)), build.Options{Nlist: 16, M: 10, OPQ: true, TrainSize: 1024, Niter: 10,
		Distill: distill.DistillConfig{Epochs: 1, PseudoQueries: 300}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trained.faiss")
	if err := tr.WriteFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, `
import sys, faiss
ix = faiss.read_index(sys.argv[1])
ivf = faiss.extract_index_ivf(ix)
print(type(ix).__name__, ix.ntotal, ix.d, ix.is_trained, ivf.nlist, faiss.downcast_index(ivf).pq.M)
`, path)
	if got, want := strings.TrimSpace(string(out)), "IndexPreTransform 0 100 True 16 10"; got != want {
		t.Errorf("Python FAISS reads the trained file as %q, want %q", got, want)
	}
}
