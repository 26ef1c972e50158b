// C interface over FAISS's C++ API, for cgo.
//
// Every function that can fail returns NULL on success or a malloc'd,
// NUL-terminated message that the caller frees; no C++ exception crosses
// this boundary. No function keeps a pointer it was given after it returns.
#ifndef DVQ_SHIM_H
#define DVQ_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dvq_index is a faiss::Index, opaque to C and Go.
typedef struct dvq_index dvq_index;

// dvq_info describes an index. For an IndexPreTransform the IVF fields
// describe the index it wraps.
typedef struct {
	char type_name[128];
	int32_t d;
	int64_t ntotal;
	int32_t metric;
	int32_t is_ivf; // an IVF index whose lists can be listed (nlist sizes)
	int64_t nlist;
	int32_t m, nbits;
	int64_t code_size;
	int32_t by_residual;
	char quantizer_name[128]; // an IVF index's coarse quantizer class
	int32_t ef_search;        // its efSearch when it is an HNSW index
} dvq_info;

// dvq_hnsw is a faiss::HNSW graph, its arrays malloc'd by dvq_build_hnsw
// (and freed by dvq_hnsw_free) or borrowed from the caller.
typedef struct {
	double *assign_probas;
	int64_t n_assign_probas;
	int32_t *cum_nneighbor_per_level;
	int64_t n_cum_nneighbor_per_level;
	int32_t *levels;
	int64_t n_levels;
	uint64_t *offsets;
	int64_t n_offsets;
	int32_t *neighbors;
	int64_t n_neighbors;
	int32_t entry_point, max_level, ef_construction, ef_search, upper_beam;
} dvq_hnsw;

// dvq_new_ivf wraps the IVF index in an IndexPreTransform applying the
// d×d matrix rotation (y = A x) when rotation is not NULL. With fastscan
// the IndexIVFPQ (nbits 4) becomes an IndexIVFPQFastScan, encoding
// residuals when by_residual; with hnsw the coarse quantizer is an
// IndexHNSWFlat with that graph.
char *dvq_new_ivf(int32_t d, int32_t metric, int64_t nlist, const float *centroids,
	int32_t m, int32_t nbits, const float *codebooks,
	int64_t n, const int64_t *lists, const int64_t *ids, const uint8_t *codes,
	const float *rotation, int32_t fastscan, int32_t by_residual, const dvq_hnsw *hnsw,
	dvq_index **out);

// dvq_build_hnsw builds IndexHNSWFlat(d, m, metric) over x[n*d] on one
// thread and copies its graph to out.
char *dvq_build_hnsw(int32_t d, int32_t metric, int64_t n, const float *x,
	int32_t m, int32_t ef_construction, int32_t ef_search, dvq_hnsw *out);
void dvq_hnsw_free(dvq_hnsw *h);

// dvq_train_factory trains index_factory(d, key, metric) with the seed and
// k-means iterations given, behind an OPQ rotation of opq_m sub-spaces
// when opq is not 0, then adds docs (with ids for IVF indexes).
char *dvq_train_factory(int32_t d, int32_t metric, const char *key,
	int32_t seed, int32_t niter, int32_t opq, int32_t opq_m,
	int64_t ntrain, const float *train,
	int64_t n, const float *docs, const int64_t *ids,
	dvq_index **out);

// dvq_serialize writes ix as write_index does to a malloc'd buffer.
char *dvq_serialize(const dvq_index *ix, uint8_t **data, int64_t *size);
char *dvq_deserialize(const uint8_t *data, int64_t size, dvq_index **out);

char *dvq_new_flat(int32_t d, int32_t metric, int64_t n, const float *x, dvq_index **out);

// dvq_train puts an OPQ rotation with m sub-quantizers before the IVF
// index when opq is not 0.
char *dvq_train(int32_t d, int32_t metric, int64_t nlist, int32_t m, int32_t nbits,
	int32_t seed, int32_t niter, int32_t opq,
	int64_t ntrain, const float *train,
	int64_t n, const float *docs, const int64_t *ids,
	dvq_index **out);

// dvq_train_opq trains FAISS's OPQMatrix(d, m) on x[n*d], with niter
// iterations (0: FAISS's 50) and threads OpenMP threads (0: the default),
// and fills a[d*d].
char *dvq_train_opq(int32_t d, int32_t m, int32_t seed, int32_t niter, int32_t threads, int64_t n, const float *x, float *a);

// dvq_search sets an HNSW coarse quantizer's efSearch to ef when ef > 0.
char *dvq_search(const dvq_index *ix, int64_t n, const float *x, int64_t k, int64_t nprobe,
	int32_t ef, float *dist, int64_t *labels);

char *dvq_read(const char *path, dvq_index **out);
char *dvq_write(const dvq_index *ix, const char *path);
void dvq_delete(dvq_index *ix);

char *dvq_info_get(const dvq_index *ix, dvq_info *out);
// dvq_list_sizes fills sizes[info.nlist].
char *dvq_list_sizes(const dvq_index *ix, int64_t *sizes);
// dvq_ivf_extract fills buffers sized from dvq_info and dvq_list_sizes:
// rotation[d*d] (for an IndexPreTransform, else NULL), centroids[nlist*d],
// codebooks[m*2^nbits*(d/m)] (NULL for IVFFlat), and lists, ids [n] and
// codes[n*code_size] with n the sum of the list sizes.
char *dvq_ivf_extract(const dvq_index *ix, float *rotation, float *centroids, float *codebooks,
	int64_t *lists, int64_t *ids, uint8_t *codes);

void dvq_set_threads(int32_t n);
int32_t dvq_get_threads(void);

// dvq_faiss_version gives the FAISS version of the headers built against and
// faiss::get_compile_options(), truncated to n bytes with its NUL.
void dvq_faiss_version(int32_t *major, int32_t *minor, int32_t *patch, char *options, int32_t n);

void dvq_sgemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k,
	float alpha, const float *a, int32_t lda, const float *b, int32_t ldb,
	float beta, float *c, int32_t ldc);

#ifdef __cplusplus
}
#endif

#endif
