"""Writes the small FAISS index files that seed FuzzReadIndex and the
format tests of faissio (index_test.go, index_fuzz_test.go).

Run from anywhere with Debian's Python, which sees python3-faiss:

    /usr/bin/python3 faissio/testdata/make_index_fixtures.py

The older files are on random data (seeded): they test the format, not
search quality. The FastScan and HNSW ones are on GloVe vectors
(testdata/glove20k, its first 40 dimensions), because FAISS's k-means and
HNSW graph are only realistic on real data; one OpenMP thread makes the
HNSW graphs deterministic. Each file is a few KB to some 70 KB. FAISS 1.7.3
wrote the checked-in ones.
"""

import os
import sys

import faiss
import numpy as np

out = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261125)
d = 8
train = rng.standard_normal((1000, d)).astype("float32")
docs = train[:40]


def write(ix, name):
    path = os.path.join(out, name)
    faiss.write_index(ix, path)
    print(f"{name}: {os.path.getsize(path)} bytes", file=sys.stderr)


def trained_ivfpq(metric, nlist, m, nbits, n=40):
    q = faiss.IndexFlatIP(d) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
    ix = faiss.IndexIVFPQ(q, d, nlist, m, nbits, metric)
    ix.do_polysemous_training = False
    ix.cp.niter = 4
    ix.pq.cp.niter = 4
    ix.train(train)
    ix.add_with_ids(train[:n], np.arange(100, 100 + n, dtype="int64"))
    ix.own_fields = True
    q.this.disown()
    return ix


faiss.cvar.distance_compute_blas_threshold = 1 << 30
faiss.omp_set_num_threads(1)

write(faiss.IndexFlatL2(d), "flat_empty.index")
f = faiss.IndexFlatL2(d)
f.add(docs[:10])
write(f, "flat_l2.index")
f = faiss.IndexFlatIP(d)
f.add(docs[:10])
write(f, "flat_ip.index")

pq = faiss.IndexPQ(d, 2, 4)
pq.pq.cp.niter = 4
pq.train(train)
pq.add(docs[:10])
write(pq, "pq.index")

write(trained_ivfpq(faiss.METRIC_L2, 4, 2, 8, n=8), "ivfpq_l2_nbits8.index")
write(trained_ivfpq(faiss.METRIC_INNER_PRODUCT, 4, 4, 5), "ivfpq_ip_nbits5.index")
write(trained_ivfpq(faiss.METRIC_L2, 4, 4, 3), "ivfpq_l2_nbits3.index")

ix = trained_ivfpq(faiss.METRIC_L2, 4, 2, 4, n=20)
ix.remove_ids(faiss.IDSelectorRange(0, 1 << 40))
ix.add(docs[:20])  # sequential ids 0..19, which an array direct map needs
ix.make_direct_map()
write(ix, "ivfpq_dm_array.index")
ix.set_direct_map_type(faiss.DirectMap.Hashtable)
write(ix, "ivfpq_dm_hashtable.index")

# Few non-empty lists: FAISS stores the list sizes sparsely ("sprs").
q = faiss.IndexFlatIP(d)
ivf = faiss.IndexIVFFlat(q, d, 8, faiss.METRIC_INNER_PRODUCT)
ivf.cp.niter = 4
ivf.train(train)
ivf.add(docs[:2])
write(ivf, "ivfflat_ip_sprs.index")

q = faiss.IndexFlatL2(d)
ivf = faiss.IndexIVFFlat(q, d, 4, faiss.METRIC_L2)
ivf.cp.niter = 4
ivf.train(train)
ivf.add(docs[:12])
write(ivf, "ivfflat_l2_full.index")

# Untrained: the quantizer holds no centroids yet.
q2 = faiss.IndexFlatL2(d)
write(faiss.IndexIVFFlat(q2, d, 4, faiss.METRIC_L2), "ivfflat_untrained.index")

opq = faiss.index_factory(d, "OPQ2,IVF4,PQ2x4")
faiss.ParameterSpace().set_index_parameter(opq, "verbose", 0)
opq.train(train)
opq.add(docs[:10])
write(opq, "opq_ivfpq.index")

# FastScan and HNSW indexes, on GloVe (d 40: divisible by 8 and by 5).
glove_path = os.path.join(out, "..", "..", "testdata", "glove20k", "docs.npy")
glove = np.load(glove_path)[:3000, :40].astype("float32")
gtrain, gdocs = glove[:2000], glove[2000:]
gd = glove.shape[1]


def factory(spec, metric=faiss.METRIC_L2):
    ix = faiss.index_factory(gd, spec, metric)
    ivf = faiss.try_extract_index_ivf(ix)
    if ivf is not None:
        ivf.cp.niter = 4
        ivf = faiss.downcast_index(ivf)
        if hasattr(ivf, "do_polysemous_training"):
            # On by default for PQ8; it only slows this down.
            ivf.do_polysemous_training = False
    for sub in (faiss.downcast_index(ix), ivf):
        if sub is not None and hasattr(sub, "pq"):
            sub.pq.cp.niter = 4
    ix.train(gtrain)
    return ix


def add_skipping_list(ix, skip, n):
    """Adds the first n docs but those the coarse quantizer puts in list
    skip, so that the list stays empty; ids are 1000 + the doc's row."""
    ivf = faiss.extract_index_ivf(ix)
    _, lists = ivf.quantizer.search(gdocs[:n], 1)
    keep = np.flatnonzero(lists[:, 0] != skip)
    ix.add_with_ids(gdocs[keep], 1000 + keep.astype("int64"))


# Plain FastScan (IPfs): 1000 vectors, not a multiple of the 32 of a block.
ix = factory("PQ8x4fs")
ix.add(gdocs[:1000])
write(ix, "pqfs_l2.index")
ix = factory("PQ8x4fs", faiss.METRIC_INNER_PRODUCT)
ix.add(gdocs[:300])
write(ix, "pqfs_ip.index")
# An odd M (FAISS pads the codes to M2 = 6 sub-quantizers) and blocks of 64.
ix = faiss.IndexPQFastScan(gd, 5, 4, faiss.METRIC_L2, 64)
ix.pq.cp.niter = 4
ix.train(gtrain)
ix.add(gdocs[:150])
write(ix, "pqfs_m5_bbs64.index")

# IVF FastScan (IwPf, block lists ilbl): list 3 left empty, the others
# about 60 vectors long, so more than one block.
ix = factory("IVF16,PQ8x4fs")
add_skipping_list(ix, 3, 1000)
write(ix, "ivfpqfs_l2.index")
ix = factory("IVF16,PQ8x4fsr", faiss.METRIC_INNER_PRODUCT)
ix.add(gdocs[:600])
write(ix, "ivfpqfsr_ip.index")
ix = factory("IVF8,PQ5x4fsr")
ix.add(gdocs[:200])
write(ix, "ivfpqfsr_m5_l2.index")

# IVF indexes whose coarse quantizer is an IndexHNSWFlat (IHNf).
ix = factory("IVF16_HNSW32,PQ8")
ix.add(gdocs[:300])
write(ix, "ivfpq_hnsw_l2.index")
ix = factory("IVF16_HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
ix.add(gdocs[:100])
write(ix, "ivfflat_hnsw_ip.index")
ix = factory("IVF16_HNSW32,PQ8x4fs")
ix.add(gdocs[:400])
write(ix, "ivfpqfs_hnsw_l2.index")

# A bare IndexHNSWFlat, and an empty one (no entry point).
ix = faiss.IndexHNSWFlat(gd, 32)
ix.add(gdocs[:150])
write(ix, "hnsw_l2.index")
write(faiss.IndexHNSWFlat(gd, 16, faiss.METRIC_INNER_PRODUCT), "hnsw_empty_ip.index")
