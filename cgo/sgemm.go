package faiss

/*
#include "shim.h"
*/
import "C"

import "math"

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(X) is X or its transpose, op(A) is m×k, op(B) is k×n and C is m×n. It
// runs OpenBLAS's cblas_sgemm, the BLAS that FAISS itself uses, so that
// distillvq's training kernels match FAISS's arithmetic and speed.
//
// Like gonum's blas32, Sgemm panics on inconsistent shapes, leading
// dimensions or slice lengths: those are programming errors.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		panic("faiss: Sgemm: bad dimensions")
	}
	// Rows and columns of A and B as stored.
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkOperand("A", a, ar, ac, lda)
	checkOperand("B", b, br, bc, ldb)
	checkOperand("C", c, m, n, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		// BLAS would only scale C, but A and B may be empty slices with
		// nothing to point at.
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	C.dvq_sgemm(cbool(transA), cbool(transB), C.int32_t(m), C.int32_t(n), C.int32_t(k),
		C.float(alpha), (*C.float)(&a[0]), C.int32_t(lda), (*C.float)(&b[0]), C.int32_t(ldb),
		C.float(beta), (*C.float)(&c[0]), C.int32_t(ldc))
}

// checkOperand panics unless s can hold a rows×cols row-major matrix with
// leading dimension ld.
func checkOperand(name string, s []float32, rows, cols, ld int) {
	if ld < max(1, cols) || ld > math.MaxInt32 {
		panic("faiss: Sgemm: bad leading dimension for " + name)
	}
	if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
		panic("faiss: Sgemm: " + name + " too short")
	}
}

func cbool(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}
