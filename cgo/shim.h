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
} dvq_info;

// dvq_new_ivf wraps the IVF index in an IndexPreTransform applying the
// d×d matrix rotation (y = A x) when rotation is not NULL.
char *dvq_new_ivf(int32_t d, int32_t metric, int64_t nlist, const float *centroids,
	int32_t m, int32_t nbits, const float *codebooks,
	int64_t n, const int64_t *lists, const int64_t *ids, const uint8_t *codes,
	const float *rotation, dvq_index **out);

char *dvq_new_flat(int32_t d, int32_t metric, int64_t n, const float *x, dvq_index **out);

// dvq_train puts an OPQ rotation with m sub-quantizers before the IVF
// index when opq is not 0.
char *dvq_train(int32_t d, int32_t metric, int64_t nlist, int32_t m, int32_t nbits,
	int32_t seed, int32_t niter, int32_t opq,
	int64_t ntrain, const float *train,
	int64_t n, const float *docs, const int64_t *ids,
	dvq_index **out);

// dvq_train_opq trains FAISS's OPQMatrix(d, m) on x[n*d] and fills a[d*d].
char *dvq_train_opq(int32_t d, int32_t m, int32_t seed, int64_t n, const float *x, float *a);

char *dvq_search(const dvq_index *ix, int64_t n, const float *x, int64_t k, int64_t nprobe,
	float *dist, int64_t *labels);

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

void dvq_sgemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k,
	float alpha, const float *a, int32_t lda, const float *b, int32_t ldb,
	float beta, float *c, int32_t ldc);

#ifdef __cplusplus
}
#endif

#endif
