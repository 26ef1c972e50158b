"""Independent recall computation with Python FAISS, to check `distillvq eval`.

Usage:
  evalcheck.py build FACTORY METRIC DOCS OUT.faiss
      train and fill an index with FAISS's index_factory and write it;
  evalcheck.py eval DOCS QUERIES INDEX KS NPROBES METRIC [QRELS]
      exact top-k with IndexFlat, the index's own search at each nprobe, and
      k-recall@k, 1-recall@k (and MRR@10, qrels Recall@k) as one JSON object
      keyed by nprobe.
Vectors are .npy (any float dtype) or .fvecs. Run with /usr/bin/python3.
"""
import json
import sys

import faiss
import numpy as np


def load(path):
    if path.endswith(".fvecs"):
        a = np.fromfile(path, dtype="int32")
        d = a[0]
        return np.ascontiguousarray(a.reshape(-1, d + 1)[:, 1:].view("float32"))
    return np.ascontiguousarray(np.load(path).astype(np.float32))


def metric_of(name):
    return faiss.METRIC_INNER_PRODUCT if name == "ip" else faiss.METRIC_L2


def build(factory, metric, docs_path, out):
    x = load(docs_path)
    index = faiss.index_factory(x.shape[1], factory, metric_of(metric))
    # Keep test builds short: no polysemous code permutation (it does not
    # change search results) and fewer OPQ iterations.
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    if isinstance(index, faiss.IndexPreTransform):
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = 10
    train = x
    if isinstance(index, faiss.IndexPreTransform):
        # OPQ training dominates a test build; every k-th of the vectors
        # (about 5,000) gives the same structure to evaluate.
        train = np.ascontiguousarray(x[:: max(1, len(x) // 5000)])
    index.train(train)
    index.add(x)
    faiss.write_index(index, out)


def evaluate(docs_path, q_path, index_path, ks, nprobes, metric, qrels_path=None):
    x, q = load(docs_path), load(q_path)
    ks = [int(k) for k in ks.split(",")]
    kmax = max(ks)
    flat = faiss.IndexFlatIP(x.shape[1]) if metric == "ip" else faiss.IndexFlatL2(x.shape[1])
    flat.add(x)
    _, gt = flat.search(q, kmax)
    index = faiss.read_index(index_path)
    qrels = None
    search_k = kmax
    if qrels_path:
        qrels = {}
        for line in open(qrels_path):
            f = line.split()
            if f and not f[0].startswith("#"):
                qrels.setdefault(int(f[0]), set()).add(int(f[1]))
        search_k = max(kmax, 10)
    out = {}
    for npb in [int(v) for v in nprobes.split(",")]:
        faiss.extract_index_ivf(index).nprobe = npb
        _, I = index.search(q, search_k)
        r = {"k_recall": {}, "one_recall": {}}
        for k in ks:
            hits = sum(len(set(I[i, :k]) & set(gt[i, :k])) for i in range(len(q)))
            r["k_recall"][k] = hits / (len(q) * k)
            r["one_recall"][k] = float(np.mean([gt[i, 0] in I[i, :k] for i in range(len(q))]))
        if qrels is not None:
            rr, rec = [], {k: [] for k in ks}
            for i, rel in qrels.items():
                first = [j for j in range(10) if I[i, j] in rel]
                rr.append(1.0 / (first[0] + 1) if first else 0.0)
                for k in ks:
                    rec[k].append(len(rel & set(I[i, :k])) / len(rel))
            r["mrr10"] = float(np.mean(rr))
            r["qrels_recall"] = {k: float(np.mean(v)) for k, v in rec.items()}
        out[npb] = r
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(*sys.argv[2:6])
    else:
        evaluate(*sys.argv[2:])
