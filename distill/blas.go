package distill

import faiss "github.com/distillvq/distillvq/cgo"

// sgemm computes the row-major product C = alpha*op(A)*op(B) + beta*C:
// OpenBLAS, the BLAS FAISS links, in the cgo build, and gonum's pure-Go
// BLAS without cgo (cgo/nocgo.go). Every dense hot path (k-means distances,
// list assignment, PQ encoding, teacher scores) goes through it.
var sgemm = faiss.Sgemm
