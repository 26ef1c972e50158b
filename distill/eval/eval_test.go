package eval

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// The embedded GloVe set (testdata/glove20k at the module's root).
const (
	gloveDocs = "../../testdata/glove20k/docs.npy"
	gloveQ    = "../../testdata/glove20k/queries.npy"
)

// TestRecallMetrics checks the measures on hand-made results.
func TestRecallMetrics(t *testing.T) {
	// Two queries, exact top-3 and approximate top-3 (stride 3).
	gt := &GroundTruth{K: 3, IDs: []int64{1, 2, 3, 7, 8, 9}}
	labels := []int64{
		2, 5, 1, // query 0: finds 2 of the exact 3, the nearest (1) at rank 3
		9, 8, 7, // query 1: all three, nearest (7) last
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"1-recall@1", KRecall(labels, 3, gt, 1), 0},
		{"3-recall@3", KRecall(labels, 3, gt, 3), 5.0 / 6},
		{"2-recall@2", KRecall(labels, 3, gt, 2), (1 + 1) / 4.0},
		{"one-recall@1", OneRecall(labels, 3, gt, 1), 0},
		{"one-recall@3", OneRecall(labels, 3, gt, 3), 1},
		{"one-recall@2", OneRecall(labels, 3, gt, 2), 0},
		// Query 0 labels {5, 4}: first at rank 2; query 1 labels {1, 1}
		// (a repeat): none found; query 2 has no labels and no results.
		{"MRR", MRR(append(labels, -1, -1, -1), 3, [][]int64{{5, 4}, {1, 1}, nil}, 3), (0.5 + 0) / 2},
		{"qrels recall@3", QrelsRecall(labels, 3, [][]int64{{5, 4}, {1, 1}}, 3), (0.5 + 0) / 2},
		{"qrels recall@1", QrelsRecall(labels, 3, [][]int64{{2}, {9, 100}}, 1), (1 + 0.5) / 2},
	} {
		if math.Abs(c.got-c.want) > 1e-12 {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
	// Missing exact neighbours (-1) are never matched by missing results.
	gt = &GroundTruth{K: 2, IDs: []int64{4, -1}}
	if r := KRecall([]int64{4, -1}, 2, gt, 2); r != 0.5 {
		t.Errorf("recall with a missing neighbour = %g, want 0.5", r)
	}
}

// TestBlockedGroundTruth computes the exact top-100 over the embedded set in
// blocks of 3,000 documents and merges them: the result must equal one
// exact search over all documents, for both metrics.
func TestBlockedGroundTruth(t *testing.T) {
	q, err := faissio.ReadVectors(gloveQ)
	if err != nil {
		t.Fatal(err)
	}
	q = q.Slice(0, 300)
	src, err := faissio.OpenSource(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		whole, err := exactSearch(context.Background(), src, nil, q, 100, metric, nil)
		if err != nil {
			t.Fatal(err)
		}
		saved := gtDocBlock
		gtDocBlock = 3000 * 4 * src.Cols
		blocked, err := exactSearch(context.Background(), src, nil, q, 100, metric, nil)
		gtDocBlock = saved
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(whole, blocked) {
			var diff int
			for i := range whole {
				if whole[i] != blocked[i] {
					diff++
				}
			}
			t.Errorf("%s: blocked ground truth differs in %d of %d entries", metric, diff, len(whole))
		}
	}
}
