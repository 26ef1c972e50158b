// C shim over FAISS's C++ API; see shim.h for the conventions.

#include "shim.h"

#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <typeinfo>
#include <vector>

#include <cblas.h>
#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPQFastScan.h>
#include <faiss/index_factory.h>
#include <faiss/impl/io.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/random.h>
#include <faiss/utils/utils.h>

// Declared here because the cblas.h found first may be netlib's, while we
// link OpenBLAS.
extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

struct dvq_index {};  // never defined: dvq_index* is a faiss::Index*

namespace {

using idx_t = int64_t;

faiss::Index* idx(dvq_index* p) { return reinterpret_cast<faiss::Index*>(p); }
const faiss::Index* idx(const dvq_index* p) { return reinterpret_cast<const faiss::Index*>(p); }
dvq_index* handle(faiss::Index* p) { return reinterpret_cast<dvq_index*>(p); }

char* message(const char* s) {
	size_t n = std::strlen(s);
	char* m = static_cast<char*>(std::malloc(n + 1));
	if (m != nullptr) {
		std::memcpy(m, s, n + 1);
	}
	return m;
}

// The thread counts in force, recorded on first use.
std::once_flag defaults_once;
int omp_default = 1;
int blas_default = 1;

// record_defaults runs before any thread count is set, so that a later
// request for the defaults can restore them.
//
// Who owns the cores in FAISS's calls: OpenBLAS (its own pthreads) runs
// the heavy products, so OpenMP gets one thread unless the user sets
// OMP_NUM_THREADS. (distillvq's own kernels hold SerialBLAS instead and
// parallelise with goroutines.) Both pools at full size on two cores made
// FAISS's IVFPQ training 9x slower here (47 s against 5.3 s on GloVe 20k):
// OpenMP's idle threads spin while OpenBLAS's work.
void record_defaults() {
	std::call_once(defaults_once, [] {
		omp_default = std::getenv("OMP_NUM_THREADS") != nullptr ? omp_get_max_threads() : 1;
		blas_default = openblas_get_num_threads();
	});
}

// apply_threads sets the OpenMP thread count on the calling thread: OpenMP
// keeps it per thread and Go runs each call on whichever thread it likes.
void apply_threads() {
	record_defaults();
	omp_set_num_threads(omp_default);
}

// guard runs f, turning any exception into a message.
template <typename F>
char* guard(F f) {
	try {
		apply_threads();
		f();
		return nullptr;
	} catch (const faiss::FaissException& e) {
		return message(e.what());
	} catch (const std::exception& e) {
		return message(e.what());
	} catch (...) {
		return message("unknown C++ exception");
	}
}

faiss::MetricType metric_type(int32_t m) {
	return m == 0 ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
}

faiss::IndexFlat* new_quantizer(int32_t d, int32_t metric) {
	if (metric == 0) {
		return new faiss::IndexFlatIP(d);
	}
	return new faiss::IndexFlatL2(d);
}

// set_mu serialises the searches that set parameters on the index
// itself for the call: FAISS 1.7.3's IndexIVFFastScan takes no search
// parameters, and its HNSW search sizes its beam by max(hnsw.efSearch, k)
// whatever SearchParametersHNSW says (the parameter only changes when the
// search stops), so an efSearch is set on the quantizer.
std::mutex set_mu;

// set_ef sets an HNSW quantizer's efSearch, returning the old value (or -1
// when q is not HNSW).
int set_ef(faiss::Index* q, int ef) {
	auto h = dynamic_cast<faiss::IndexHNSW*>(q);
	if (h == nullptr) {
		return -1;
	}
	int old = h->hnsw.efSearch;
	h->hnsw.efSearch = ef;
	return old;
}

// search_nprobe searches ix, giving nprobe (and, when ef > 0, the HNSW
// coarse quantizer's efSearch) to the first IVF index on the way down.
// Other indexes are never modified, so concurrent calls are safe; FastScan
// IVF indexes, and HNSW-quantized ones given an efSearch, are searched one
// call at a time.
void search_nprobe(const faiss::Index* ix, idx_t n, const float* x, idx_t k,
		idx_t nprobe, int32_t ef, float* dist, idx_t* labels) {
	auto fs = dynamic_cast<const faiss::IndexIVF*>(ix);
	if (fs != nullptr && (dynamic_cast<const faiss::IndexIVFFastScan*>(ix) != nullptr ||
			ef > 0 && dynamic_cast<const faiss::IndexHNSW*>(fs->quantizer) != nullptr)) {
		FAISS_THROW_IF_NOT_MSG(nprobe >= 1, "nprobe must be at least 1");
		std::lock_guard<std::mutex> lock(set_mu);
		auto m = const_cast<faiss::IndexIVF*>(fs);
		size_t old = m->nprobe;
		int old_ef = ef > 0 ? set_ef(m->quantizer, ef) : -1;
		m->nprobe = size_t(nprobe);
		try {
			m->search(n, x, k, dist, labels);
		} catch (...) {
			m->nprobe = old;
			if (old_ef >= 0) set_ef(m->quantizer, old_ef);
			throw;
		}
		m->nprobe = old;
		if (old_ef >= 0) set_ef(m->quantizer, old_ef);
		return;
	}
	if (auto ivf = dynamic_cast<const faiss::IndexIVF*>(ix)) {
		FAISS_THROW_IF_NOT_MSG(nprobe >= 1, "nprobe must be at least 1");
		faiss::SearchParametersIVF params;
		params.nprobe = size_t(nprobe);
		ivf->search(n, x, k, dist, labels, &params);
		return;
	}
	if (auto pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) {
		const float* xt = pt->apply_chain(n, x);
		std::unique_ptr<const float[]> del(xt == x ? nullptr : xt);
		search_nprobe(pt->index, n, xt, k, nprobe, ef, dist, labels);
		return;
	}
	ix->search(n, x, k, dist, labels);
}

// copy_out returns a malloc'd copy of v, or NULL when v is empty.
template <typename T, typename U>
U* copy_out(const std::vector<T>& v) {
	static_assert(sizeof(T) == sizeof(U), "element sizes differ");
	if (v.empty()) {
		return nullptr;
	}
	U* p = static_cast<U*>(std::malloc(v.size() * sizeof(U)));
	if (p == nullptr) {
		throw std::bad_alloc();
	}
	std::memcpy(p, v.data(), v.size() * sizeof(U));
	return p;
}

// fill_hnsw sets h's graph from g, as read_index would.
void fill_hnsw(faiss::HNSW& h, const dvq_hnsw& g) {
	h.assign_probas.assign(g.assign_probas, g.assign_probas + g.n_assign_probas);
	h.cum_nneighbor_per_level.assign(g.cum_nneighbor_per_level, g.cum_nneighbor_per_level + g.n_cum_nneighbor_per_level);
	h.levels.assign(g.levels, g.levels + g.n_levels);
	h.offsets.assign(g.offsets, g.offsets + g.n_offsets);
	h.neighbors.assign(g.neighbors, g.neighbors + g.n_neighbors);
	h.entry_point = g.entry_point;
	h.max_level = g.max_level;
	h.efConstruction = g.ef_construction;
	h.efSearch = g.ef_search;
	h.upper_beam = g.upper_beam;
}

// new_coarse is the coarse quantizer of nlist centroids: an IndexFlat of
// the metric, or with hnsw an IndexHNSWFlat holding that graph.
faiss::Index* new_coarse(int32_t d, int32_t metric, int64_t nlist, const float* centroids, const dvq_hnsw* hnsw) {
	if (hnsw == nullptr) {
		// The quantizer must learn its centroids through add: filling its
		// storage directly leaves ntotal at 0 and every search fails.
		std::unique_ptr<faiss::IndexFlat> q(new_quantizer(d, metric));
		q->add(nlist, centroids);
		return q.release();
	}
	FAISS_THROW_IF_NOT_MSG(hnsw->n_levels == nlist, "HNSW graph and centroids differ in size");
	std::unique_ptr<faiss::IndexHNSWFlat> h(new faiss::IndexHNSWFlat(d, 32, metric_type(metric)));
	h->storage->add(nlist, centroids);
	fill_hnsw(h->hnsw, *hnsw);
	h->ntotal = nlist;
	return h.release();
}

// class_name is the C++ class name without the faiss:: qualifiers.
std::string class_name(const std::type_info& t) {
	const char* mangled = t.name();
	int status = 0;
	char* dem = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
	std::string s = (status == 0 && dem != nullptr) ? dem : mangled;
	std::free(dem);
	const std::string ns = "faiss::";
	for (size_t p; (p = s.find(ns)) != std::string::npos;) {
		s.erase(p, ns.size());
	}
	return s;
}

std::string type_name(const faiss::Index* ix) { return class_name(typeid(*ix)); }

const faiss::IndexIVF* inner_ivf(const faiss::Index* ix) {
	if (auto pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) {
		ix = pt->index;
	}
	return dynamic_cast<const faiss::IndexIVF*>(ix);
}

// with_transform returns an IndexPreTransform that applies vt before index
// and owns both. If it throws, the caller's pointers still own them.
std::unique_ptr<faiss::IndexPreTransform> with_transform(
		std::unique_ptr<faiss::VectorTransform>& vt, std::unique_ptr<faiss::IndexIVF>& index) {
	std::unique_ptr<faiss::IndexPreTransform> pt(new faiss::IndexPreTransform(vt.get(), index.get()));
	pt->own_fields = true;
	vt.release();
	index.release();
	return pt;
}

// train_opq trains opq (d×d) on x as OPQMatrix::train does, with seed in
// place of the 1234 that FAISS 1.7.3 fixes for its three random choices,
// through the hooks OPQMatrix offers: the training sample is drawn here
// with FAISS's own sampler, so that train finds nothing left to sample; A
// starts as FAISS's own random rotation (float_randn then matrix_qr, as
// train makes it when A is empty); and the PQ that train uses is ours,
// built as train builds its default one, with the k-means seed set. With
// seed 1234 the result is FAISS's default training exactly.
void train_opq(faiss::OPQMatrix& opq, idx_t n, const float* x, int32_t seed) {
	FAISS_THROW_IF_NOT_MSG(opq.d_in == opq.d_out, "OPQ must be square");
	FAISS_THROW_IF_NOT_MSG(opq.niter >= 1, "OPQ needs at least one iteration");
	size_t d = size_t(opq.d_in);
	size_t ns = size_t(n);
	const float* xs = faiss::fvecs_maybe_subsample(d, &ns, opq.max_train_points, x, false, seed);
	std::unique_ptr<const float[]> del(xs == x ? nullptr : xs);

	opq.A.resize(d * d);
	faiss::float_randn(opq.A.data(), d * d, seed);
	faiss::matrix_qr(int(d), int(d), opq.A.data());

	faiss::ProductQuantizer pq(d, size_t(opq.M), 8);
	pq.cp.seed = seed;
	// opq.pq must not outlive pq, exception or not.
	struct unset {
		faiss::OPQMatrix& o;
		~unset() { o.pq = nullptr; }
	} u{opq};
	opq.pq = &pq;
	opq.train(idx_t(ns), xs);
}

}  // namespace

extern "C" {

char* dvq_new_ivf(int32_t d, int32_t metric, int64_t nlist, const float* centroids,
		int32_t m, int32_t nbits, const float* codebooks,
		int64_t n, const int64_t* lists, const int64_t* ids, const uint8_t* codes,
		const float* rotation, int32_t fastscan, int32_t by_residual, const dvq_hnsw* hnsw,
		dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		FAISS_THROW_IF_NOT_MSG(!fastscan || (m > 0 && nbits == 4), "FastScan needs 4-bit PQ");
		std::unique_ptr<faiss::Index> q(new_coarse(d, metric, nlist, centroids, hnsw));

		std::unique_ptr<faiss::IndexIVF> ivf;
		faiss::IndexIVFPQ* pq = nullptr;
		if (m == 0) {
			ivf.reset(new faiss::IndexIVFFlat(q.get(), d, size_t(nlist), metric_type(metric)));
		} else {
			pq = new faiss::IndexIVFPQ(q.get(), d, size_t(nlist), size_t(m), size_t(nbits),
					metric_type(metric));
			ivf.reset(pq);
			FAISS_THROW_IF_NOT(pq->pq.centroids.size() == size_t(d) << nbits);
			std::memcpy(pq->pq.centroids.data(), codebooks, pq->pq.centroids.size() * sizeof(float));
			pq->pq.transposed_centroids.clear();
			pq->pq.centroids_sq_lengths.clear();
			pq->do_polysemous_training = false;
			pq->by_residual = by_residual != 0 || !fastscan;
		}
		ivf->own_fields = true;
		q.release();
		ivf->is_trained = true;

		// Group the entries by list with a stable counting sort, so that
		// each list gets one add_entries in the caller's order.
		size_t cs = ivf->code_size;
		std::vector<idx_t> start(nlist + 1, 0);
		for (idx_t i = 0; i < n; i++) {
			FAISS_THROW_IF_NOT_FMT(lists[i] >= 0 && lists[i] < nlist,
					"list number %ld of vector %ld out of range", long(lists[i]), long(i));
			start[lists[i] + 1]++;
		}
		for (idx_t l = 0; l < nlist; l++) {
			start[l + 1] += start[l];
		}
		std::vector<idx_t> order(n);
		std::vector<idx_t> fill(start.begin(), start.end() - 1);
		for (idx_t i = 0; i < n; i++) {
			order[fill[lists[i]]++] = i;
		}
		std::vector<idx_t> lids;
		std::vector<uint8_t> lcodes;
		for (idx_t l = 0; l < nlist; l++) {
			idx_t size = start[l + 1] - start[l];
			if (size == 0) {
				continue;
			}
			lids.resize(size);
			lcodes.resize(size * cs);
			for (idx_t j = 0; j < size; j++) {
				idx_t i = order[start[l] + j];
				lids[j] = ids[i];
				std::memcpy(&lcodes[j * cs], codes + i * cs, cs);
			}
			ivf->invlists->add_entries(l, size, lids.data(), lcodes.data());
		}
		ivf->ntotal = n;

		// The table depends on the quantizer and the codebooks, so it is
		// built last.
		if (pq != nullptr) {
			pq->precompute_table();
		}
		if (fastscan) {
			// FAISS's own conversion packs each list into blocks of 32.
			// It shares the quantizer and keeps a pointer to the old
			// lists, which die with the IndexIVFPQ.
			std::unique_ptr<faiss::IndexIVFPQFastScan> fs(new faiss::IndexIVFPQFastScan(*pq, 32));
			fs->orig_invlists = nullptr;
			ivf->own_fields = false;
			fs->own_fields = true;
			ivf.reset(fs.release());
		}
		if (rotation == nullptr) {
			*out = handle(ivf.release());
			return;
		}

		// A LinearTransform rather than the OPQMatrix that FAISS trains:
		// write_index writes both as the same LTra record, and read_index
		// reads LTra back as a LinearTransform, so this is the object that
		// reading the file gives.
		std::unique_ptr<faiss::LinearTransform> lt(new faiss::LinearTransform(d, d, false));
		lt->A.assign(rotation, rotation + size_t(d) * size_t(d));
		lt->is_trained = true;
		lt->set_is_orthonormal();  // as read_index does; enables reverse_transform
		std::unique_ptr<faiss::VectorTransform> vt(lt.release());
		*out = handle(with_transform(vt, ivf).release());
	});
}

char* dvq_build_hnsw(int32_t d, int32_t metric, int64_t n, const float* x,
		int32_t m, int32_t ef_construction, int32_t ef_search, dvq_hnsw* out) {
	std::memset(out, 0, sizeof(*out));
	return guard([&] {
		faiss::IndexHNSWFlat h(d, m, metric_type(metric));
		h.hnsw.efConstruction = ef_construction;
		h.hnsw.efSearch = ef_search;
		// One thread: FAISS inserts concurrently with locks otherwise, and
		// the graph then depends on the threads' timing.
		omp_set_num_threads(1);
		h.add(n, x);
		omp_set_num_threads(omp_default);
		const faiss::HNSW& g = h.hnsw;
		out->assign_probas = copy_out<double, double>(g.assign_probas);
		out->n_assign_probas = int64_t(g.assign_probas.size());
		out->cum_nneighbor_per_level = copy_out<int, int32_t>(g.cum_nneighbor_per_level);
		out->n_cum_nneighbor_per_level = int64_t(g.cum_nneighbor_per_level.size());
		out->levels = copy_out<int, int32_t>(g.levels);
		out->n_levels = int64_t(g.levels.size());
		out->offsets = copy_out<size_t, uint64_t>(g.offsets);
		out->n_offsets = int64_t(g.offsets.size());
		out->neighbors = copy_out<faiss::HNSW::storage_idx_t, int32_t>(g.neighbors);
		out->n_neighbors = int64_t(g.neighbors.size());
		out->entry_point = g.entry_point;
		out->max_level = g.max_level;
		out->ef_construction = g.efConstruction;
		out->ef_search = g.efSearch;
		out->upper_beam = g.upper_beam;
	});
}

void dvq_hnsw_free(dvq_hnsw* h) {
	std::free(h->assign_probas);
	std::free(h->cum_nneighbor_per_level);
	std::free(h->levels);
	std::free(h->offsets);
	std::free(h->neighbors);
	std::memset(h, 0, sizeof(*h));
}

char* dvq_train_factory(int32_t d, int32_t metric, const char* key,
		int32_t seed, int32_t niter, int32_t opq, int32_t opq_m,
		int64_t ntrain, const float* train,
		int64_t n, const float* docs, const int64_t* ids,
		dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		std::unique_ptr<faiss::Index> ix(faiss::index_factory(d, key, metric_type(metric)));
		// The seeds and iterations every trainer here takes, set where
		// index_factory leaves FAISS's defaults.
		auto set_cp = [&](faiss::ClusteringParameters& cp) {
			cp.seed = seed;
			if (niter > 0) {
				cp.niter = niter;
			}
		};
		if (auto ivf = dynamic_cast<faiss::IndexIVF*>(ix.get())) {
			set_cp(ivf->cp);
		}
		if (auto p = dynamic_cast<faiss::IndexIVFPQ*>(ix.get())) {
			p->do_polysemous_training = false;
			set_cp(p->pq.cp);
		} else if (auto p = dynamic_cast<faiss::IndexIVFPQFastScan*>(ix.get())) {
			set_cp(p->pq.cp);
		} else if (auto p = dynamic_cast<faiss::IndexPQ*>(ix.get())) {
			p->do_polysemous_training = false;
			set_cp(p->pq.cp);
		} else if (auto p = dynamic_cast<faiss::IndexPQFastScan*>(ix.get())) {
			set_cp(p->pq.cp);
		}
		bool has_ids = dynamic_cast<faiss::IndexIVF*>(ix.get()) != nullptr;
		FAISS_THROW_IF_NOT_MSG(has_ids || ids == nullptr, "this index numbers its vectors itself: no ids");
		auto fill = [&](faiss::Index* top) {
			if (n == 0) {
				return;
			}
			if (has_ids) {
				top->add_with_ids(n, docs, ids);
			} else {
				top->add(n, docs);
			}
		};
		if (opq == 0) {
			ix->train(ntrain, train);
			fill(ix.get());
			*out = handle(ix.release());
			return;
		}
		std::unique_ptr<faiss::OPQMatrix> o(new faiss::OPQMatrix(d, opq_m));
		train_opq(*o, ntrain, train, seed);
		std::unique_ptr<faiss::VectorTransform> vt(o.release());
		std::unique_ptr<faiss::IndexPreTransform> pt(new faiss::IndexPreTransform(vt.release(), ix.release()));
		pt->own_fields = true;
		pt->train(ntrain, train);
		fill(pt.get());
		*out = handle(pt.release());
	});
}

char* dvq_serialize(const dvq_index* ix, uint8_t** data, int64_t* size) {
	*data = nullptr;
	*size = 0;
	return guard([&] {
		faiss::VectorIOWriter w;
		faiss::write_index(idx(ix), &w);
		*data = copy_out<uint8_t, uint8_t>(w.data);
		*size = int64_t(w.data.size());
	});
}

char* dvq_deserialize(const uint8_t* data, int64_t size, dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		faiss::VectorIOReader r;
		r.data.assign(data, data + size);
		*out = handle(faiss::read_index(&r));
	});
}

char* dvq_new_flat(int32_t d, int32_t metric, int64_t n, const float* x, dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		std::unique_ptr<faiss::IndexFlat> f(new_quantizer(d, metric));
		if (n > 0) {
			f->add(n, x);
		}
		*out = handle(f.release());
	});
}

char* dvq_train(int32_t d, int32_t metric, int64_t nlist, int32_t m, int32_t nbits,
		int32_t seed, int32_t niter, int32_t opq,
		int64_t ntrain, const float* train,
		int64_t n, const float* docs, const int64_t* ids,
		dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		FAISS_THROW_IF_NOT_MSG(opq == 0 || m > 0, "OPQ needs PQ (M > 0)");
		std::unique_ptr<faiss::IndexFlat> q(new_quantizer(d, metric));
		std::unique_ptr<faiss::IndexIVF> ivf;
		if (m == 0) {
			ivf.reset(new faiss::IndexIVFFlat(q.get(), d, size_t(nlist), metric_type(metric)));
		} else {
			auto pq = new faiss::IndexIVFPQ(q.get(), d, size_t(nlist), size_t(m), size_t(nbits),
					metric_type(metric));
			ivf.reset(pq);
			pq->do_polysemous_training = false;
			pq->pq.cp.seed = seed;
			if (niter > 0) {
				pq->pq.cp.niter = niter;
			}
		}
		ivf->own_fields = true;
		q.release();
		ivf->cp.seed = seed;
		if (niter > 0) {
			ivf->cp.niter = niter;
		}
		if (opq == 0) {
			ivf->train(ntrain, train);
			if (n > 0) {
				ivf->add_with_ids(n, docs, ids);
			}
			*out = handle(ivf.release());
			return;
		}

		// What index_factory builds for "OPQ{m},IVF...": the OPQMatrix
		// is trained first, then IndexPreTransform::train, seeing it
		// trained, trains the IVF index on the rotated vectors only.
		std::unique_ptr<faiss::OPQMatrix> o(new faiss::OPQMatrix(d, m));
		train_opq(*o, ntrain, train, seed);
		std::unique_ptr<faiss::VectorTransform> vt(o.release());
		std::unique_ptr<faiss::IndexPreTransform> pt = with_transform(vt, ivf);
		pt->train(ntrain, train);
		if (n > 0) {
			pt->add_with_ids(n, docs, ids);
		}
		*out = handle(pt.release());
	});
}

char* dvq_train_opq(int32_t d, int32_t m, int32_t seed, int32_t niter, int32_t threads, int64_t n, const float* x, float* a) {
	return guard([&] {
		faiss::OPQMatrix opq(d, m);
		if (niter > 0) {
			opq.niter = niter;
		}
		// OpenMP threads split only work whose results are per vector or
		// per centroid (k-means assignment and update, encoding), so the
		// rotation has the same bits for any count; restored after, also
		// on an exception.
		struct restore {
			~restore() { omp_set_num_threads(omp_default); }
		} r;
		if (threads > 0) {
			omp_set_num_threads(threads);
		}
		train_opq(opq, n, x, seed);
		FAISS_THROW_IF_NOT(opq.A.size() == size_t(d) * size_t(d));
		std::memcpy(a, opq.A.data(), opq.A.size() * sizeof(float));
	});
}

char* dvq_search(const dvq_index* ix, int64_t n, const float* x, int64_t k, int64_t nprobe,
		int32_t ef, float* dist, int64_t* labels) {
	return guard([&] { search_nprobe(idx(ix), n, x, k, nprobe, ef, dist, labels); });
}

char* dvq_read(const char* path, dvq_index** out) {
	return guard([&] {
		*out = nullptr;
		*out = handle(faiss::read_index(path));
	});
}

char* dvq_write(const dvq_index* ix, const char* path) {
	return guard([&] { faiss::write_index(idx(ix), path); });
}

void dvq_delete(dvq_index* ix) {
	delete idx(ix);
}

char* dvq_info_get(const dvq_index* ix, dvq_info* out) {
	return guard([&] {
		const faiss::Index* x = idx(ix);
		std::memset(out, 0, sizeof *out);
		std::string name = type_name(x);
		std::strncpy(out->type_name, name.c_str(), sizeof out->type_name - 1);
		out->d = x->d;
		out->ntotal = x->ntotal;
		out->metric = int32_t(x->metric_type);
		if (auto fc = dynamic_cast<const faiss::IndexFlatCodes*>(x)) {
			out->code_size = int64_t(fc->code_size);
		}
		if (auto ivf = inner_ivf(x)) {
			out->is_ivf = ivf->invlists != nullptr;
			out->nlist = int64_t(ivf->nlist);
			out->code_size = int64_t(ivf->code_size);
			if (auto pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf)) {
				out->m = int32_t(pq->pq.M);
				out->nbits = int32_t(pq->pq.nbits);
				out->by_residual = pq->by_residual;
			}
			if (auto fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(ivf)) {
				out->m = int32_t(fs->pq.M);
				out->nbits = int32_t(fs->pq.nbits);
				out->by_residual = fs->by_residual;
				out->code_size = int64_t(fs->pq.code_size);
			}
			if (ivf->quantizer != nullptr) {
				std::string q = type_name(ivf->quantizer);
				std::strncpy(out->quantizer_name, q.c_str(), sizeof out->quantizer_name - 1);
				if (auto h = dynamic_cast<const faiss::IndexHNSW*>(ivf->quantizer)) {
					out->ef_search = h->hnsw.efSearch;
				}
			}
		}
		if (auto pq = dynamic_cast<const faiss::IndexPQ*>(x)) {
			out->m = int32_t(pq->pq.M);
			out->nbits = int32_t(pq->pq.nbits);
		}
		if (auto fs = dynamic_cast<const faiss::IndexPQFastScan*>(x)) {
			out->m = int32_t(fs->pq.M);
			out->nbits = int32_t(fs->pq.nbits);
			out->code_size = int64_t(fs->pq.code_size);
		}
	});
}

char* dvq_list_sizes(const dvq_index* ix, int64_t* sizes) {
	return guard([&] {
		const faiss::IndexIVF* ivf = inner_ivf(idx(ix));
		FAISS_THROW_IF_NOT_MSG(ivf != nullptr && ivf->invlists != nullptr,
				"not an IVF index with inverted lists");
		for (size_t l = 0; l < ivf->nlist; l++) {
			sizes[l] = int64_t(ivf->invlists->list_size(l));
		}
	});
}

char* dvq_ivf_extract(const dvq_index* ix, float* rotation, float* centroids, float* codebooks,
		int64_t* lists, int64_t* ids, uint8_t* codes) {
	return guard([&] {
		const faiss::Index* x = idx(ix);
		if (auto pt = dynamic_cast<const faiss::IndexPreTransform*>(x)) {
			FAISS_THROW_IF_NOT_FMT(pt->chain.size() == 1,
					"IndexPreTransform has %zu transforms, want one rotation", pt->chain.size());
			// Only the classes that write_index writes as LTra: another
			// LinearTransform (PCAMatrix, RandomRotationMatrix, ...) would
			// not come back from NewIVF as it was.
			const faiss::VectorTransform* vt = pt->chain[0];
			const std::type_info& t = typeid(*vt);
			FAISS_THROW_IF_NOT_FMT(t == typeid(faiss::LinearTransform) || t == typeid(faiss::OPQMatrix),
					"transform %s is not a LinearTransform or OPQMatrix", class_name(t).c_str());
			auto lt = static_cast<const faiss::LinearTransform*>(vt);
			size_t d = size_t(x->d);
			FAISS_THROW_IF_NOT_FMT(lt->d_in == x->d && lt->d_out == x->d,
					"transform maps %d to %d dimensions, want %d to %d", lt->d_in, lt->d_out, x->d, x->d);
			FAISS_THROW_IF_NOT_MSG(!lt->have_bias && lt->b.empty(), "linear transform has a bias");
			FAISS_THROW_IF_NOT_MSG(lt->is_trained && lt->A.size() == d * d,
					"linear transform is not trained or its matrix is not d×d");
			FAISS_THROW_IF_NOT_MSG(pt->ntotal == pt->index->ntotal && pt->metric_type == pt->index->metric_type,
					"IndexPreTransform disagrees with its index on ntotal or metric");
			FAISS_THROW_IF_NOT_MSG(rotation != nullptr, "no buffer for the rotation");
			std::memcpy(rotation, lt->A.data(), d * d * sizeof(float));
			x = pt->index;
		} else {
			FAISS_THROW_IF_NOT_MSG(rotation == nullptr, "index has no rotation");
		}
		const std::type_info& t = typeid(*x);
		FAISS_THROW_IF_NOT_FMT(t == typeid(faiss::IndexIVFFlat) || t == typeid(faiss::IndexIVFPQ),
				"%s is not an IndexIVFFlat or IndexIVFPQ", type_name(x).c_str());
		auto ivf = static_cast<const faiss::IndexIVF*>(x);
		FAISS_THROW_IF_NOT_MSG(ivf->invlists != nullptr, "index has no inverted lists");
		FAISS_THROW_IF_NOT_MSG(
				x->metric_type == faiss::METRIC_L2 || x->metric_type == faiss::METRIC_INNER_PRODUCT,
				"metric is neither inner product nor L2");
		auto q = dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer);
		FAISS_THROW_IF_NOT_FMT(q != nullptr && q->metric_type == x->metric_type,
				"coarse quantizer %s is not a flat index with the index's metric",
				type_name(ivf->quantizer).c_str());
		FAISS_THROW_IF_NOT_FMT(q->ntotal == idx_t(ivf->nlist),
				"coarse quantizer holds %ld centroids for %ld lists",
				long(q->ntotal), long(ivf->nlist));
		if (ivf->nlist > 0) {
			q->reconstruct_n(0, q->ntotal, centroids);
		}
		if (auto pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf)) {
			FAISS_THROW_IF_NOT_MSG(pq->by_residual, "IVFPQ index does not encode residuals");
			std::memcpy(codebooks, pq->pq.centroids.data(), pq->pq.centroids.size() * sizeof(float));
		}
		const faiss::InvertedLists* il = ivf->invlists;
		size_t cs = ivf->code_size;
		FAISS_THROW_IF_NOT(il->code_size == cs);
		size_t pos = 0;
		for (size_t l = 0; l < ivf->nlist; l++) {
			size_t size = il->list_size(l);
			if (size == 0) {
				continue;
			}
			faiss::InvertedLists::ScopedIds lid(il, l);
			faiss::InvertedLists::ScopedCodes lcode(il, l);
			std::memcpy(ids + pos, lid.get(), size * sizeof(idx_t));
			std::memcpy(codes + pos * cs, lcode.get(), size * cs);
			for (size_t j = 0; j < size; j++) {
				lists[pos + j] = int64_t(l);
			}
			pos += size;
		}
	});
}

void dvq_set_threads(int32_t n) {
	record_defaults();
	openblas_set_num_threads(n > 0 ? n : blas_default);
}

int32_t dvq_get_threads(void) {
	record_defaults();
	return openblas_get_num_threads();
}

void dvq_faiss_version(int32_t* major, int32_t* minor, int32_t* patch, char* options, int32_t n) {
	*major = FAISS_VERSION_MAJOR;
	*minor = FAISS_VERSION_MINOR;
	*patch = FAISS_VERSION_PATCH;
	if (n > 0) {
		std::string o;
		try {
			o = faiss::get_compile_options();
		} catch (...) {
		}
		std::strncpy(options, o.c_str(), size_t(n) - 1);
		options[n - 1] = '\0';
	}
}

void dvq_sgemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k,
		float alpha, const float* a, int32_t lda, const float* b, int32_t ldb,
		float beta, float* c, int32_t ldc) {
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
			trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // extern "C"
