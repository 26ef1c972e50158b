package distill

import (
	"context"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// must returns v, panicking on err: for test set-ups whose context is never
// cancelled, so they cannot fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// assign is m.Assign without a deadline.
func assign(m *Model, x faissio.Matrix) []int64 { return must(m.Assign(context.Background(), x)) }

// encode is m.Encode without a deadline.
func encode(m *Model, x faissio.Matrix, lists []int64) []byte {
	return must(m.Encode(context.Background(), x, lists))
}

// exactTopK is ExactTopK without a deadline.
func exactTopK(docs, queries faissio.Matrix, k int, metric faissio.Metric, exclude []int32) *Teacher {
	return must(ExactTopK(context.Background(), docs, queries, k, metric, exclude))
}

// valRecallNoCtx is valRecall without a deadline.
func (t *trainer) valRecallNoCtx(queries faissio.Matrix, val []int, teacher *Teacher, exclude []int32) float64 {
	return must(t.valRecall(context.Background(), queries, val, teacher, exclude))
}

// glove20k reads a file of the committed GloVe fixture (docs,
// train-queries or queries); failing to load it is a failure.
func glove20k(t *testing.T, name string) faissio.Matrix {
	t.Helper()
	m, err := faissio.ReadVectors("../testdata/glove20k/" + name + ".npy")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
