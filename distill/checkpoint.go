package distill

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// DistillState is everything Distill needs to carry on after an epoch as if
// it had never stopped: the parameters, the optimiser's moments, the random
// generator, the order of the training queries and the best model so far.
// DistillConfig.Checkpoint receives one after every epoch and
// DistillConfig.Resume takes one back; resuming from it with the same
// documents, initial model and configuration gives the same model, bit for
// bit, as the run that wrote it.
type DistillState struct {
	Epoch, Epochs int // epochs done, of Epochs
	Step          int // optimiser steps done
	Centroids     []float32
	Codebooks     []float32
	AdamO, AdamC  AdamState
	RNG           []byte  // the PCG generator's state (MarshalBinary)
	Train         []int32 // training queries in their current order
	IVFWeight     float64
	Best          float64 // best held-out recall, -1 when none is held out
	BestCentroids []float32
	BestCodebooks []float32
	Curve         []EpochStats
	// Rotation, BestRotation and AdamR are the rotation being learned
	// (DistillConfig.LearnRotation), the best one so far and its
	// optimiser's state; empty otherwise.
	Rotation, BestRotation []float32
	AdamR                  AdamState
}

// AdamState is the Adam optimiser's step count and moment estimates.
type AdamState struct {
	T    int
	M, V []float64
}

func (a *adam) state() AdamState {
	return AdamState{T: a.t, M: slices.Clone(a.m), V: slices.Clone(a.v)}
}

func (a *adam) restore(s AdamState) error {
	if len(s.M) != len(a.m) || len(s.V) != len(a.v) || s.T < 0 {
		return fmt.Errorf("optimiser state for %d parameters and %d second moments, want %d and %d", len(s.M), len(s.V), len(a.m), len(a.v))
	}
	a.t = s.T
	copy(a.m, s.M)
	copy(a.v, s.V)
	return nil
}

// check reports whether s can resume training of model m on the training
// queries train (in any order) for epochs epochs, learning a rotation or
// not.
func (s *DistillState) check(m *Model, train []int, epochs int, rotation bool) error {
	ntrain := len(train)
	switch {
	case rotation && (len(s.Rotation) != m.D*m.D || len(s.BestRotation) != m.D*m.D):
		return fmt.Errorf("resume: the state holds no %dx%d rotation; it was written without learning one", m.D, m.D)
	case !rotation && s.Rotation != nil:
		return fmt.Errorf("resume: the state learned a rotation; this run does not")
	case s.Epochs != epochs:
		return fmt.Errorf("resume: state is for %d epochs, this run has %d", s.Epochs, epochs)
	case s.Epoch < 0 || s.Epoch > epochs || s.Step < 0:
		return fmt.Errorf("resume: epoch %d of %d is impossible", s.Epoch, epochs)
	case len(s.Centroids) != len(m.Centroids) || len(s.BestCentroids) != len(m.Centroids):
		return fmt.Errorf("resume: %d centroid floats, the model has %d", len(s.Centroids), len(m.Centroids))
	case len(s.Codebooks) != len(m.Codebooks) || len(s.BestCodebooks) != len(m.Codebooks):
		return fmt.Errorf("resume: %d codebook floats, the model has %d", len(s.Codebooks), len(m.Codebooks))
	case len(s.Train) != ntrain:
		return fmt.Errorf("resume: %d training queries, this run has %d", len(s.Train), ntrain)
	}
	a, b := make([]int, ntrain), make([]int, ntrain)
	for i, q := range s.Train {
		a[i], b[i] = int(q), train[i]
	}
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return fmt.Errorf("resume: the state's training queries are not this run's")
	}
	return nil
}

// restoreRNG sets the generator behind rng to the state s.RNG.
func (s *DistillState) restoreRNG(pcg *rand.PCG) error {
	if err := pcg.UnmarshalBinary(s.RNG); err != nil {
		return fmt.Errorf("resume: random generator state: %w", err)
	}
	return nil
}

// state captures the training after epoch epochs.
func (t *trainer) state(epoch, step int, pcg *rand.PCG, optO, optC *adam, train []int, best float64,
	bestCentroids, bestCodebooks, bestRot []float32, curve []EpochStats) (*DistillState, error) {
	rng, err := pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	order := make([]int32, len(train))
	for i, q := range train {
		order[i] = int32(q)
	}
	st := &DistillState{
		Epoch: epoch, Epochs: t.cfg.Epochs, Step: step,
		Centroids: slices.Clone(t.model.Centroids), Codebooks: slices.Clone(t.model.Codebooks),
		AdamO: optO.state(), AdamC: optC.state(), RNG: rng, Train: order, IVFWeight: t.ivfW,
		Best: best, BestCentroids: slices.Clone(bestCentroids), BestCodebooks: slices.Clone(bestCodebooks),
		Curve: slices.Clone(curve),
	}
	if t.rot != nil {
		st.Rotation, st.BestRotation, st.AdamR = slices.Clone(t.rot.R), slices.Clone(bestRot), t.rot.opt.state()
	}
	return st, nil
}
