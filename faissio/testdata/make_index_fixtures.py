"""Writes the small FAISS index files that seed FuzzReadIndex and the
format tests of faissio (index_test.go, index_fuzz_test.go).

Run from anywhere with Debian's Python, which sees python3-faiss:

    /usr/bin/python3 faissio/testdata/make_index_fixtures.py

The data are random (seeded): these files test the format, not search
quality. Each file is a few KB. FAISS 1.7.3 wrote the checked-in ones.
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
