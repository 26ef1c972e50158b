// Package distill trains the parameters of FAISS IVF indexes: the coarse
// centroids and, for IVFPQ, the product-quantizer codebooks. TrainKMeans
// trains them as FAISS does (k-means on a sample, then k-means in each
// sub-space of the residuals); Distill then refines them by Distill-VQ, so
// that search over the quantized documents ranks like exact search over the
// dense ones (the teacher, ExactTopK). A Model assigns and encodes
// documents exactly as FAISS's IndexIVFPQ / IndexIVFFlat would store them.
//
// Threads: goroutines own the cores. Every function here that computes
// products holds cgo's SerialBLAS, so OpenBLAS runs each product on the
// calling goroutine's thread, and splits its work into blocks of a fixed
// shape, up to GOMAXPROCS at a time. Results are therefore identical for
// any GOMAXPROCS and any OPENBLAS_NUM_THREADS.
//
// Concurrency: a Model is read-only once trained, so Assign, Encode and
// Validate may run from several goroutines at once; TrainKMeans, KMeans,
// Distill, ExactTopK and SecondMoment only read their inputs and may run
// concurrently with each other. What must not happen concurrently is
// changing a Model (or a Matrix) while any of them reads it.
package distill
