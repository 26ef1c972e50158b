//go:build cgo

package distill

import faiss "github.com/distillvq/distillvq/cgo"

// sgemm computes the row-major product C = alpha*op(A)*op(B) + beta*C with
// OpenBLAS, the BLAS FAISS links. Every dense hot path (k-means distances,
// list assignment, PQ encoding, teacher scores) goes through it.
var sgemm = faiss.Sgemm
