package distill

import (
	"context"
	"math"
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
	c, err := newTrainer(cfg, docs, m, scrambled).chooseLists(context.Background(), m, m, nil, nil, queries, val, teacher, nil)
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
	c, err = newTrainer(cfg, docs, m, nearest).chooseLists(context.Background(), m, m, nil, nil, queries, val, teacher, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Chosen != "same" || c.Lists != nil || c.NearestWins() {
		t.Errorf("nearest lists: chose %s", c.Chosen)
	}
}

// With a learned rotation the choice works in the rotation's space: a
// trainer that rotates the documents and queries itself must measure what
// one given the rotated documents and queries measures (to rounding), and
// choose alike. A choice that assigned or scored unrotated vectors against
// centroids of the rotated space would find next to nothing.
func TestChooseListsInRotatedSpace(t *testing.T) {
	all := glove20k(t, "docs")
	docs := faissio.Matrix{Rows: 3000, Cols: all.Cols, Data: all.Data[:3000*all.Cols]}
	queries := glove20k(t, "queries")
	d := docs.Cols
	R := randomRotation(d, 7)
	rotate := func(x faissio.Matrix) faissio.Matrix {
		y := faissio.Matrix{Rows: x.Rows, Cols: d, Data: make([]float32, len(x.Data))}
		rotateRows(R, x.Data, x.Rows, d, y.Data)
		return y
	}
	rdocs, rqueries := rotate(docs), rotate(queries)
	m, err := TrainKMeans(context.Background(), rdocs, Config{Metric: faissio.InnerProduct, Nlist: 32, M: 10, Nbits: 6, Seed: 1, Niter: 8})
	if err != nil {
		t.Fatal(err)
	}
	val := make([]int, 200)
	for i := range val {
		val[i] = i
	}
	teacher := exactTopK(rdocs, rqueries, 10, faissio.InnerProduct, nil)
	scrambled := assign(m, rdocs)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range scrambled {
		if i%3 == 0 {
			scrambled[i] = int64(rng.IntN(m.Nlist))
		}
	}
	cfg := DistillConfig{Queries: queries, ValNprobe: 2, TopK: 10, Rotation: R, LearnRotation: true}
	rm := *m
	rm.Rotation = R
	tr := newTrainer(cfg, docs, &rm, scrambled)
	tr.rot = newRotationLearner(R, d, 0)
	got, err := tr.chooseLists(context.Background(), m, &rm, nil, nil, queries, val, teacher, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Queries, cfg.Rotation, cfg.LearnRotation = rqueries, nil, false
	want, err := newTrainer(cfg, rdocs, m, scrambled).chooseLists(context.Background(), m, m, nil, nil, rqueries, val, teacher, nil)
	if err != nil {
		t.Fatal(err)
	}
	close := func(a, b []float64) bool {
		for i := range a {
			if math.Abs(a[i]-b[i]) > .01 {
				return false
			}
		}
		return len(a) == len(b)
	}
	if got.Chosen != want.Chosen || !close(got.Start, want.Start) || !close(got.Train, want.Train) || !close(got.Nearest, want.Nearest) {
		t.Errorf("rotating itself: %s, start %v, train %v, nearest %v\nrotated given: %s, start %v, train %v, nearest %v",
			got.Chosen, got.Start, got.Train, got.Nearest, want.Chosen, want.Start, want.Train, want.Nearest)
	}
	if want.Chosen != "nearest" || want.Nearest[0] < .3 {
		t.Errorf("rotated given: chose %s with nearest lists' recall %v", want.Chosen, want.Nearest)
	}
}

// The codes a list choice hands the export are the ones the export would
// compute: Model.Encode of the documents (rotated, under a learned
// rotation) in the chosen lists, byte for byte, 8-bit and packed 6-bit.
func TestListChoiceCodesAreTheExports(t *testing.T) {
	all := glove20k(t, "docs")
	docs := faissio.Matrix{Rows: 4000, Cols: all.Cols, Data: all.Data[:4000*all.Cols]}
	queries := glove20k(t, "train-queries")
	queries = faissio.Matrix{Rows: 1500, Cols: queries.Cols, Data: queries.Data[:1500*queries.Cols]}
	// Seeds and temperatures picked so that each list and each encoding
	// is chosen at least once.
	seen := map[string]bool{}
	for _, c := range []struct {
		nbits int
		learn bool
		seed  uint64
		temp  float64
	}{{8, false, 1, .8}, {6, false, 2, .6}, {8, true, 5, .8}, {8, true, 1, .8}} {
		init, err := TrainKMeans(context.Background(), docs, Config{Metric: faissio.InnerProduct, Nlist: 32, M: 10, Nbits: c.nbits, Seed: 1, Niter: 8})
		if err != nil {
			t.Fatal(err)
		}
		lists := assign(init, docs)
		var choice *ListChoice
		cfg := DistillConfig{Queries: queries, Epochs: 1, PseudoQueries: -1, TopK: 50, InBatch: 50, Seed: c.seed,
			LearnRotation: c.learn, Temperature: c.temp, ChooseLists: func(lc *ListChoice) { choice = lc }}
		m, _, err := Distill(context.Background(), docs, init, lists, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if choice == nil || choice.Codes == nil {
			t.Fatalf("%+v: no codes chosen: %+v", c, choice)
		}
		x := docs
		if c.learn {
			x = faissio.Matrix{Rows: docs.Rows, Cols: docs.Cols, Data: make([]float32, len(docs.Data))}
			rotateRows(m.Rotation, docs.Data, docs.Rows, docs.Cols, x.Data)
		}
		if choice.NearestWins() {
			lists = choice.Lists
		}
		want, err := m.Encode(context.Background(), x, lists)
		if err != nil {
			t.Fatal(err)
		}
		seen[choice.Chosen], seen[choice.Encoding] = true, true
		if !slices.Equal(choice.Codes, want) {
			t.Errorf("%+v (%s lists, %s codes): the choice's codes are not the export's", c, choice.Chosen, choice.Encoding)
		}
	}
	if len(seen) != 4 {
		t.Errorf("chosen: %v, want train and nearest lists, weighted and codeword codes", seen)
	}
}

// ExactTopK keeps each query's k best documents, best first, as sorting
// every score would, for both metrics, with a document barred per query.
func TestExactTopKMatchesSort(t *testing.T) {
	all := glove20k(t, "docs")
	docs := faissio.Matrix{Rows: 20000, Cols: all.Cols, Data: all.Data}
	queries := glove20k(t, "queries").Slice(0, 40)
	for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
		exclude := make([]int32, queries.Rows)
		for i := range exclude {
			exclude[i] = int32(i * 7)
		}
		const k = 30
		got := exactTopK(docs, queries, k, metric, exclude)
		for qi := range queries.Rows {
			q := queries.Row(qi)
			order := make([]int32, 0, docs.Rows)
			score := make([]float64, docs.Rows)
			for i := range docs.Rows {
				score[i] = float64(Score(metric, q, docs.Row(i)))
				if int32(i) != exclude[qi] {
					order = append(order, int32(i))
				}
			}
			slices.SortStableFunc(order, func(a, b int32) int { return cmpDesc(score[a], score[b]) })
			for r := range k {
				id := got.Rows[qi*k+r]
				if math.Abs(score[id]-score[order[r]]) > 1e-4*math.Max(1, math.Abs(score[order[r]])) || id == exclude[qi] {
					t.Fatalf("%s query %d rank %d: document %d (score %g), sorting finds %d (score %g)", metric, qi, r, id, score[id], order[r], score[order[r]])
				}
			}
		}
	}
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
