package distill

import (
	"container/heap"
	"context"
	"math"
	"runtime"

	"gonum.org/v1/gonum/blas/gonum"

	"github.com/distillvq/distillvq/faissio"
)

// Teacher holds, for each training query, its K best documents by exact
// search over the dense vectors, best first, with their scores.
type Teacher struct {
	K int
	// Rows are queries*K row numbers of the documents searched (not
	// FAISS ids): query i's best are Rows[i*K : (i+1)*K].
	Rows   []int32
	Scores []float32 // queries*K exact scores, on the Score scale
}

// Score is the exact similarity of q and x under metric: <q,x> for inner
// product, -||q-x||^2 for L2 (larger is better for both).
func Score(metric faissio.Metric, q, x []float32) float32 {
	if metric == faissio.L2 {
		return -l2Sq(q, x)
	}
	return dot(q, x)
}

// dot is a·b through gonum's assembly kernel, five times the speed of a
// Go loop at d = 512 (the candidates' teacher scores are most of a
// distillation step's work on wide embeddings).
func dot(a, b []float32) float32 { return sdot.Sdot(len(a), a, 1, b, 1) }

var sdot gonum.Implementation

// ExactTopK computes the teacher: the top-k documents of every query by exact
// search, with sgemm over blocks of queries and documents. exclude, when not
// nil, names one document per query (its own row, for pseudo-queries drawn
// from the documents; -1 for none) that must not be among its results.
//
// It stops with ctx's error once ctx is cancelled, between products of
// 256 queries by 16,384 documents.
func ExactTopK(ctx context.Context, docs, queries faissio.Matrix, k int, metric faissio.Metric, exclude []int32) (*Teacher, error) {
	defer serialBLAS()()
	k = min(k, docs.Rows)
	if exclude != nil {
		// One document per query is barred: every result slot must still
		// be filled by a real document.
		k = min(k, docs.Rows-1)
	}
	t := &Teacher{K: k, Rows: make([]int32, queries.Rows*k), Scores: make([]float32, queries.Rows*k)}
	var norms []float32
	if metric == faissio.L2 {
		norms = make([]float32, docs.Rows)
		for i := range norms {
			x := docs.Row(i)
			norms[i] = dot(x, x)
		}
	}
	// Goroutines own the cores (SerialBLAS): each takes blocks of queries in
	// turn and scores them against every block of documents with its own
	// single-threaded sgemm, then keeps each query's best. Block shapes do
	// not depend on the number of workers, so neither do the scores.
	const qBlock, dBlock = 256, 16384
	nqb := (queries.Rows + qBlock - 1) / qBlock
	err := eachJob(ctx, nqb, runtime.GOMAXPROCS(0), func(int) func(int) {
		dots := make([]float32, min(qBlock, queries.Rows)*min(dBlock, docs.Rows))
		heaps := make([]topHeap, qBlock)
		return func(b int) {
			q0 := b * qBlock
			nq := min(qBlock, queries.Rows-q0)
			for i := range heaps[:nq] {
				heaps[i].s = heaps[i].s[:0]
			}
			for d0 := 0; d0 < docs.Rows; d0 += dBlock {
				if ctx.Err() != nil {
					return // eachJob reports it
				}
				nd := min(dBlock, docs.Rows-d0)
				sgemm(false, true, nq, nd, docs.Cols, 1, queries.Data[q0*queries.Cols:], queries.Cols,
					docs.Data[d0*docs.Cols:], docs.Cols, 0, dots, nd)
				for i := 0; i < nq; i++ {
					h := &heaps[i]
					ex := int32(-1)
					if exclude != nil {
						ex = exclude[q0+i]
					}
					row := dots[i*nd : (i+1)*nd]
					if norms != nil {
						for j, x := range norms[d0 : d0+nd] {
							row[j] = 2*row[j] - x
						}
					}
					// Most scores lose to the heap's worst: one compare
					// against a local threshold each, the heap touched
					// only by the few that win.
					thr := float32(math.Inf(-1))
					if len(h.s) == k {
						thr = h.s[0].s
					}
					for j, s := range row {
						if !(s > thr) && len(h.s) == k {
							continue
						}
						id := int32(d0 + j)
						if id == ex {
							continue
						}
						if len(h.s) < k {
							heap.Push(h, entry{s, id})
						} else {
							h.s[0] = entry{s, id}
							heap.Fix(h, 0)
						}
						if len(h.s) == k {
							thr = h.s[0].s
						}
					}
				}
			}
			for i := 0; i < nq; i++ {
				h := &heaps[i]
				var qn float32
				if norms != nil {
					q := queries.Row(q0 + i)
					qn = dot(q, q)
				}
				for r := len(h.s) - 1; r >= 0; r-- {
					e := heap.Pop(h).(entry)
					t.Rows[(q0+i)*k+r] = e.id
					// For L2 the kept score is 2<q,x> - ||x||^2; the
					// true -||q-x||^2 subtracts ||q||^2.
					t.Scores[(q0+i)*k+r] = e.s - qn
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

type entry struct {
	s  float32
	id int32
}

// beats reports whether a ranks before b: the higher score, then the
// lower id. Every top-k here keeps this order.
func (a entry) beats(b entry) bool { return a.s > b.s || a.s == b.s && a.id < b.id }

// topHeap is a min-heap of the best entries seen so far.
type topHeap struct{ s []entry }

func (h topHeap) Len() int           { return len(h.s) }
func (h topHeap) Less(i, j int) bool { return h.s[j].beats(h.s[i]) }
func (h topHeap) Swap(i, j int)      { h.s[i], h.s[j] = h.s[j], h.s[i] }
func (h *topHeap) Push(x any)        { h.s = append(h.s, x.(entry)) }
func (h *topHeap) Pop() any {
	e := h.s[len(h.s)-1]
	h.s = h.s[:len(h.s)-1]
	return e
}
