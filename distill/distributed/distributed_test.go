package distributed_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/distill/distributed"
	"github.com/distillvq/distillvq/faissio"
)

const (
	gloveDocs = "../../testdata/glove20k/docs.npy"
)

func TestMain(m *testing.M) {
	beam.Init()
	os.Exit(m.Run())
}

// runPrism executes a pipeline on Prism, in this process.
func runPrism(ctx context.Context, p *beam.Pipeline) error {
	_, err := prism.Execute(ctx, p)
	return err
}

// writeShards cuts the documents into four .npy shards of unequal sizes
// in a folder of their own.
func writeShards(t *testing.T, docs string) string {
	t.Helper()
	m, err := faissio.ReadVectors(docs)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shards")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cuts := []int{0, m.Rows / 10, m.Rows/10 + m.Rows/3, m.Rows - m.Rows/7, m.Rows}
	for s := range 4 {
		if err := faissio.WriteNpy(filepath.Join(dir, fmt.Sprintf("shard-%d.npy", s)), m.Slice(cuts[s], cuts[s+1])); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPrismEqualsBuild runs the distributed build on Prism with four
// workers over a collection in four files of unequal sizes, cut into shards
// of 4,096 rows (ShardAlign) across them: the file must be byte-identical
// to build.Run's of the whole set, for k-means IVFPQ and IVFFlat and a
// distilled IVFPQ, on the embedded set. A shard whose first
// attempt fails is redone by a second run of the pipeline, which keeps the
// other parts, and the file is the same.
func TestPrismEqualsBuild(t *testing.T) {
	type set struct {
		name, docs string
		m          int
	}
	// The embedded set only: siftsmall ran the same cases through the same
	// code (four files of unequal sizes cut across by 4,096-row shards, as
	// here), and its three shards are fewer than the embedded set's five.
	sets := []set{{"glove20k", gloveDocs, 20}}
	for _, ds := range sets {
		shards := writeShards(t, ds.docs)
		for _, c := range []struct {
			name string
			o    build.Options
		}{
			// Equality of two builds: 10 k-means iterations, one short
			// epoch.
			{"kmeans-ivfpq", build.Options{Train: build.KMeans, Nlist: 64, M: ds.m, Niter: 10}},
			{"kmeans-ivfflat", build.Options{Train: build.KMeans, Index: build.IVFFlat, Metric: faissio.L2, Nlist: 64, Niter: 10}},
			{"distill-ivfpq", build.Options{Nlist: 64, M: ds.m, Niter: 10, Distill: distill.DistillConfig{PseudoQueries: 300, Epochs: 1}}},
		} {
			t.Run(ds.name+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				src, err := faissio.OpenSource(shards)
				if err != nil {
					t.Fatal(err)
				}
				whole, _, err := build.Run(ctx, src, c.o)
				if err != nil {
					t.Fatal(err)
				}
				var want bytes.Buffer
				if err := faissio.WriteIVF(ctx, &want, whole, nil); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "index.faiss")
				if c.name == "kmeans-ivfpq" {
					t.Setenv("DISTILLVQ_TEST_FAIL_SHARD", "2")
				}
				rep, err := distributed.Build(ctx, shards, out, distributed.Options{Build: c.o, Workers: 4, ShardRows: 4096, Execute: runPrism})
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want.Bytes()) {
					t.Errorf("the Prism pipeline's file differs from build's (%d and %d bytes)", len(got), want.Len())
				}
				wantAttempts := 1
				if c.name == "kmeans-ivfpq" {
					wantAttempts = 2
				}
				if want := (rep.Rows + 4095) / 4096; rep.Shards != want || rep.Attempts != wantAttempts {
					t.Errorf("%d shards in %d attempts, want %d in %d", rep.Shards, rep.Attempts, want, wantAttempts)
				}
				t.Logf("%d shards, %d attempt(s), worker memory %d MiB, pipeline %.1fs", rep.Shards, rep.Attempts, rep.ShardMemory>>20, rep.Pipeline.Seconds())
			})
		}
	}
}
