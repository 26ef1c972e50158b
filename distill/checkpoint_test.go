package distill

import (
	"context"
	"slices"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// TestDistillResume stops nowhere but checkpoints every epoch, then resumes
// from each saved state and requires the uninterrupted run's model and
// curve (losses and recall) exactly, the learned rotation included; a
// state for another run is refused.
func TestDistillResume(t *testing.T) {
	for _, c := range []struct {
		metric faissio.Metric
		learn  bool
	}{{faissio.InnerProduct, false}, {faissio.L2, false}, {faissio.InnerProduct, true}, {faissio.L2, true}} {
		metric := c.metric
		tr, _, _, queries, _ := studentProblem(metric, 4, "list", "listnet")
		init := &Model{D: tr.d, Metric: metric, Nlist: tr.nlist, Centroids: slices.Clone(tr.model.Centroids),
			M: tr.M, Nbits: tr.model.Nbits, Codebooks: slices.Clone(tr.model.Codebooks)}
		lists := assign(init, tr.docs)
		cfg := DistillConfig{Queries: queries, Epochs: 3, Batch: 100, PseudoQueries: 200, Val: 50, TopK: 20, InBatch: 20, Seed: 5}
		if c.learn {
			cfg.LearnRotation, cfg.Rotation, cfg.LRRotation = true, randomRotation(tr.d, 9), 0.01
			cfg.Patience = -1 // every epoch, whatever the held-out recall
		}
		var states []*DistillState
		full := cfg
		full.Checkpoint = func(s *DistillState) error { states = append(states, s); return nil }
		want, wantCurve, err := Distill(context.Background(), tr.docs, init, lists, full)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) != 3 {
			t.Fatalf("%s: %d checkpoints for 3 epochs", metric, len(states))
		}
		for _, st := range states {
			r := cfg
			r.Resume = st
			epochs := 0
			r.Progress = func(EpochStats) { epochs++ }
			got, curve, err := Distill(context.Background(), tr.docs, init, lists, r)
			if err != nil {
				t.Fatal(err)
			}
			if epochs != 3-st.Epoch {
				t.Errorf("%s: resuming after epoch %d trained %d epochs, want %d", metric, st.Epoch, epochs, 3-st.Epoch)
			}
			if !slices.Equal(got.Centroids, want.Centroids) || !slices.Equal(got.Codebooks, want.Codebooks) ||
				!slices.Equal(got.Rotation, want.Rotation) || !slices.Equal(got.EncodeWeight, want.EncodeWeight) {
				t.Errorf("%s (rotation learned: %v): resuming after epoch %d gives another model", metric, c.learn, st.Epoch)
			}
			if len(curve) != len(wantCurve) {
				t.Fatalf("%s: resumed curve has %d points, want %d", metric, len(curve), len(wantCurve))
			}
			for i := range curve {
				a, b := curve[i], wantCurve[i]
				if a.LossPQ != b.LossPQ || a.LossIVF != b.LossIVF || a.ValRecall != b.ValRecall {
					t.Errorf("%s: resumed after epoch %d, curve point %d is %+v, want %+v", metric, st.Epoch, i, a, b)
				}
			}
		}
		// The state is what training continues from: a changed one
		// changes the result.
		moved := *states[1]
		moved.Centroids = slices.Clone(moved.Centroids)
		for i := range moved.Centroids {
			moved.Centroids[i] *= 1.5
		}
		r := cfg
		r.Resume = &moved
		if _, curve, _ := Distill(context.Background(), tr.docs, init, lists, r); curve[3].LossIVF == wantCurve[3].LossIVF {
			t.Errorf("%s: resuming ignored the state's centroids", metric)
		}
		other := cfg
		other.Epochs = 4
		other.Resume = states[0]
		if _, _, err := Distill(context.Background(), tr.docs, init, lists, other); err == nil {
			t.Errorf("%s: a state for 3 epochs resumed a 4-epoch run", metric)
		}
		if c.learn {
			if slices.Equal(states[2].Rotation, cfg.Rotation) {
				t.Errorf("%s: the rotation did not move", metric)
			}
			// A state with a rotation resumes only a run that learns one,
			// and the state's rotation is what training continues from.
			plain := cfg
			plain.LearnRotation, plain.Resume = false, states[0]
			if _, _, err := Distill(context.Background(), tr.docs, init, lists, plain); err == nil {
				t.Errorf("%s: a state with a rotation resumed a run without one", metric)
			}
			turned := *states[1]
			turned.Rotation = randomRotation(tr.d, 11)
			r := cfg
			r.Resume = &turned
			if _, curve, _ := Distill(context.Background(), tr.docs, init, lists, r); curve[3].LossPQ == wantCurve[3].LossPQ {
				t.Errorf("%s: resuming ignored the state's rotation", metric)
			}
		}
	}
}
