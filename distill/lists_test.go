package distill

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

func TestChoiceNprobes(t *testing.T) {
	for _, c := range []struct {
		val, nlist int
		want       []int
	}{
		{16, 256, []int{1, 2, 4, 8, 16, 32, 64}},
		{146, 2337, []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 584}},
		{8, 16, []int{1, 2, 4, 8, 16}},
		{1, 4, []int{1, 2, 4}},
	} {
		if got := choiceNprobes(c.val, c.nlist); !slices.Equal(got, c.want) {
			t.Errorf("choiceNprobes(%d, %d) = %v, want %v", c.val, c.nlist, got, c.want)
		}
	}
}

// A document filed in a list at random is found only when that list is
// probed: the nearest lists must win against scrambled ones, and lists that
// are already the nearest ones are reported as the same.
func TestChooseListsPrefersBetterLists(t *testing.T) {
	all := glove20k(t, "docs")
	docs := faissio.Matrix{Rows: 3000, Cols: all.Cols, Data: all.Data[:3000*all.Cols]}
	queries := glove20k(t, "queries")
	m, err := TrainKMeans(context.Background(), docs, Config{Metric: faissio.InnerProduct, Nlist: 32, M: 10, Nbits: 6, Seed: 1, Niter: 8})
	if err != nil {
		t.Fatal(err)
	}
	// Training queries given: the held-out comparison decides, not the
	// pseudo-queries-only rule.
	cfg := DistillConfig{Queries: queries, ValNprobe: 2, TopK: 10}
	val := make([]int, 200)
	for i := range val {
		val[i] = i
	}
	teacher := exactTopK(docs, queries, 10, faissio.InnerProduct, nil)
	nearest := assign(m, docs)
	scrambled := slices.Clone(nearest)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range scrambled {
		if i%3 == 0 {
			scrambled[i] = int64(rng.IntN(m.Nlist))
		}
	}
	c, err := newTrainer(cfg, docs, m, scrambled).chooseLists(context.Background(), m, m, queries, val, teacher, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, nr, _ := c.Means()
	if c.Chosen != "nearest" || !slices.Equal(c.Lists, nearest) || nr <= tr {
		t.Errorf("scrambled lists: chose %s, mean recall nearest %.4f, scrambled %.4f", c.Chosen, nr, tr)
	}
	if !slices.Equal(c.Nprobe, []int{1, 2, 4, 8}) || len(c.Train) != 4 || len(c.Nearest) != 4 || !slices.Equal(c.Start, c.Train) {
		t.Errorf("measured at %v: start %v, scrambled %v, nearest %v", c.Nprobe, c.Start, c.Train, c.Nearest)
	}
	c, err = newTrainer(cfg, docs, m, nearest).chooseLists(context.Background(), m, m, queries, val, teacher, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Chosen != "same" || c.Lists != nil || c.NearestWins() {
		t.Errorf("nearest lists: chose %s", c.Chosen)
	}
}
