//go:build !cgo

package distill

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// sgemm computes the row-major product C = alpha*op(A)*op(B) + beta*C with
// gonum's pure-Go BLAS, for builds without cgo (blas_cgo.go has OpenBLAS).
// Every dense hot path (k-means distances, list assignment, PQ encoding,
// teacher scores) goes through it.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	blas32.Implementation().Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
