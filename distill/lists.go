package distill

import (
	"context"
	"math"
	"slices"

	"github.com/distillvq/distillvq/faissio"
)

// ListChoice is what a distillation that was asked to choose the
// documents' lists (DistillConfig.ChooseLists) measured: held-out R10@10
// at each of Nprobe of the starting model (the k-means index distillation
// began from), of the trained one with the training-time lists and of the
// trained one with every document in its nearest learned centroid's list.
type ListChoice struct {
	Nprobe  []int     `json:"nprobe"`
	Start   []float64 `json:"start"`
	Train   []float64 `json:"train"`
	Nearest []float64 `json:"nearest"`
	// Chosen is "train", "nearest", or "same" when every document's
	// nearest list is its training-time one.
	Chosen string `json:"chosen"`
	// Weighted is the recall with the chosen lists and the export's
	// query-weighted codes (Train and Nearest are measured with the
	// nearest-codeword codes training refreshes), when the model has an
	// encoding weight; Encoding is then "weighted" or "codeword", the one
	// kept (the smallest gain over Start decides as for the lists).
	Weighted []float64 `json:"weighted,omitempty"`
	Encoding string    `json:"encoding,omitempty"`
	// Lists is the nearest assignment when it won, nil when the
	// training-time lists did (or when every document's nearest list is
	// its training-time one).
	Lists []int64 `json:"-"`
	// Codes are the documents' codes in the chosen lists with the chosen
	// encoding, as Model.Encode packs them, in document order: the
	// measurement encoded them already, so the export need not. Nil when
	// nothing was measured (Chosen "same").
	Codes []byte `json:"-"`
}

// NearestWins reports whether the nearest lists were chosen.
func (c *ListChoice) NearestWins() bool { return c != nil && c.Lists != nil }

// choiceNprobes are the nprobes a list choice is judged at: 1, 2, 4, ...
// up to four times the validation nprobe, capped at nlist, so that a
// serving nprobe anywhere from 1 to past nlist/16 counts.
func choiceNprobes(valNprobe, nlist int) []int {
	top := min(nlist, 4*max(1, valNprobe))
	var ps []int
	for p := 1; p < top; p *= 2 {
		ps = append(ps, p)
	}
	return append(ps, top)
}

// chooseLists measures held-out recall of the starting model init and of
// the trained model m with t's training-time lists and with the nearest
// ones, at each of choiceNprobes, and keeps the assignment whose smallest
// gain over init is the larger (ties: the larger mean): a distilled index
// should be no worse than k-means at any nprobe a user may serve at, not
// better on average. Documents stay in the lists they were distilled in
// during training (the IVF loss learns centroids for those lists), but the
// centroids move: on GloVe 341k with pseudo-queries the nearest lists won
// at every nprobe on the evaluation words (.444 against .382 at nprobe 1,
// where FAISS's training has .415), on GloVe 100k with word queries the
// training-time ones won at every nprobe (.572 against .564 at nprobe 16),
// so no fixed rule is right everywhere. Without real training queries the
// nearest lists are kept whatever the held-out pseudo-queries say: those
// are documents, the distribution the training-time lists were distilled
// for, not the users' queries. On GloVe 341k (rare words as
// pseudo-queries, frequent ones as evaluation queries) they preferred the
// training-time lists by every measure (smallest gain over k-means .073
// against .064, mean .5224 against .5220) while the evaluation queries
// found the nearest lists better at every nprobe; on siftsmall the nearest
// lists were better or equal too.
//
// initCodes and mCodes, when not nil, are the documents' codes from init
// and m in t's lists, which distillation computed for validation already.
func (t *trainer) chooseLists(ctx context.Context, init, m *Model, initCodes, mCodes []uint8, queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) (*ListChoice, error) {
	// With a learned rotation, lists and codes live in its space: the
	// nearest lists are those of the documents it rotates, and each
	// trainer below rotates its queries by its model's rotation (the
	// starting one by the rotation distillation began from).
	space := t.docs
	var startRot, endRot *rotationLearner
	if t.rot != nil {
		space = faissio.Matrix{Rows: t.docs.Rows, Cols: t.docs.Cols, Data: make([]float32, len(t.docs.Data))}
		rotateRows(m.Rotation, t.docs.Data, t.docs.Rows, t.docs.Cols, space.Data)
		startRot = &rotationLearner{d: t.d, R: t.cfg.Rotation}
		if startRot.R == nil {
			startRot = newRotationLearner(nil, t.d, 0)
		}
		endRot = &rotationLearner{d: t.d, R: m.Rotation}
	}
	nearest, err := m.Assign(ctx, space)
	if err != nil {
		return nil, err
	}
	c := &ListChoice{Nprobe: choiceNprobes(t.cfg.ValNprobe, m.Nlist)}
	same := true
	for i, l := range nearest {
		if int32(l) != t.lists[i] {
			same = false
			break
		}
	}
	if same {
		c.Chosen = "same"
		return c, nil
	}
	lists := make([]int64, len(t.lists))
	for i, l := range t.lists {
		lists[i] = int64(l)
	}
	// Three trainers that only validate: t's codes are left as they were.
	trs := []*trainer{newTrainer(t.cfg, t.docs, init, lists), newTrainer(t.cfg, t.docs, m, lists), newTrainer(t.cfg, t.docs, m, nearest)}
	if t.rot != nil {
		trs[0].rot, trs[1].rot, trs[2].rot = startRot, endRot, endRot
	}
	for i, codes := range [][]uint8{initCodes, mCodes} {
		if codes != nil {
			trs[i].codes, trs[i].fresh = codes, true
		}
	}
	out := []*[]float64{&c.Start, &c.Train, &c.Nearest}
	for i, tr := range trs {
		var err error
		if *out[i], err = tr.recallAt(ctx, c.Nprobe, queries, val, teacher, exclude); err != nil {
			return nil, err
		}
	}
	c.Chosen = "train"
	chosen, plain := trs[1], c.Train
	if t.cfg.Queries.Rows == 0 || better(c.Nearest, c.Train, c.Start) {
		c.Chosen, c.Lists = "nearest", slices.Clone(nearest)
		chosen, plain = trs[2], c.Nearest
	}
	codes := chosen.codes
	if m.EncodeWeight != nil {
		// The export's weighted encoding, which training never
		// validates: on a 30k x 512 synthetic set it cost .03-.05 R10@10
		// at nprobe 4-16 against the nearest codeword (.430 / .464
		// against .466 / .514).
		codes = slices.Clone(codes)
		chosen.passes, chosen.fresh = weightedPasses, false
		if c.Weighted, err = chosen.recallAt(ctx, c.Nprobe, queries, val, teacher, exclude); err != nil {
			return nil, err
		}
		c.Encoding = "weighted"
		if better(plain, c.Weighted, c.Start) {
			c.Encoding = "codeword"
		} else {
			codes = chosen.codes
		}
	}
	if m.M > 0 {
		c.Codes = m.pack(codes)
	}
	return c, nil
}

// recallAt re-encodes t's documents, unless their codes are fresh, and
// measures held-out recall at each of nprobes.
func (t *trainer) recallAt(ctx context.Context, nprobes []int, queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) ([]float64, error) {
	if !t.fresh {
		if err := t.refreshCodes(ctx); err != nil {
			return nil, err
		}
	}
	return t.valRecalls(ctx, nprobes, queries, val, teacher, exclude)
}

// better reports whether a's smallest gain over base beats b's, or ties
// it with the larger mean.
func better(a, b, base []float64) bool {
	ga, gb := minGain(a, base), minGain(b, base)
	return ga > gb || ga == gb && mean(a) > mean(b)
}

// minGain is the smallest r[i] - base[i].
func minGain(r, base []float64) float64 {
	g := math.Inf(1)
	for i := range r {
		g = min(g, r[i]-base[i])
	}
	return g
}

// Means are the mean held-out recall over Nprobe with the training-time
// lists, the nearest ones and the weighted codes (0 when not measured).
func (c *ListChoice) Means() (train, nearest, weighted float64) {
	return mean(c.Train), mean(c.Nearest), mean(c.Weighted)
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(max(1, len(v)))
}
