package distill

import faiss "github.com/distillvq/distillvq/cgo"

// sgemm computes the row-major product C = alpha*op(A)*op(B) + beta*C:
// OpenBLAS, the BLAS FAISS links, in the cgo build, and gonum's pure-Go
// BLAS without cgo (cgo/nocgo.go). Every dense hot path (k-means distances,
// list assignment, PQ encoding, teacher scores) goes through it.
var sgemm = faiss.Sgemm

// serialBLAS makes sgemm run on the calling goroutine's thread until the
// returned function is called. Who owns the cores in this package:
// goroutines, always. Every exported entry point that reaches sgemm holds
// serialBLAS and splits its work into blocks of a fixed shape run by up to
// GOMAXPROCS goroutines, each block's product single-threaded. OpenBLAS's
// own pool would otherwise spin idle against the goroutines, and its
// threaded products round differently for different thread counts, which
// would make the trained index depend on the machine's cores.
var serialBLAS = faiss.SerialBLAS
