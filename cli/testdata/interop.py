"""Load a .faiss file with Python FAISS, search, and compare with distillvq.

Usage: interop.py INDEX QUERIES.npy K NPROBE OUR_IDS.npy OUR_SCORES.npy
Prints one JSON object: what FAISS reports of the index and how its results
compare with ours. Run with Debian's /usr/bin/python3 (python3-faiss).
"""
import json
import sys

import faiss
import numpy as np

path, qpath, k, nprobe, ids_path, scores_path = sys.argv[1:7]
k, nprobe = int(k), int(nprobe)
index = faiss.read_index(path)
q = np.ascontiguousarray(np.load(qpath).astype(np.float32))
try:
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
except RuntimeError:  # no IVF: IndexPQ, IndexPQFastScan
    ivf = faiss.downcast_index(index.index if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform) else index)
info = {"d": index.d, "ntotal": int(index.ntotal), "metric": int(index.metric_type),
        "nlist": int(getattr(ivf, "nlist", 0)), "type": type(ivf).__name__,
        "outer": type(faiss.downcast_index(index)).__name__}
if hasattr(ivf, "pq"):
    info["M"] = int(ivf.pq.M)
    info["nbits"] = int(ivf.pq.nbits)
if hasattr(ivf, "quantizer"):
    quantizer = faiss.downcast_index(ivf.quantizer)
    info["quantizer"] = type(quantizer).__name__
    if hasattr(quantizer, "hnsw"):
        info["ef_search"] = int(quantizer.hnsw.efSearch)
if hasattr(ivf, "nprobe"):
    ivf.nprobe = nprobe
D, I = index.search(q, k)
ours_i = np.load(ids_path)
ours_d = np.load(scores_path)
info["ids_equal"] = bool(np.array_equal(I, ours_i))
info["rows_with_different_ids"] = int((I != ours_i).any(axis=1).sum())
scale = max(1.0, float(np.abs(D).max()))
info["max_score_diff"] = float(np.abs(D - ours_d).max() / scale)
print(json.dumps(info))
