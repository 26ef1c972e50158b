#!/usr/bin/python3
"""Time FAISS's own IVF training phases, each separately, as the reference
for distillvq's kernels (distill/speed_test.go, distill/SPEED.md).

Run with Debian's /usr/bin/python3 (python3-faiss 1.7.3, python3-numpy):

    /usr/bin/python3 testdata/phase_times.py --docs /work/data/glove341k/docs.npy \\
        --nlist 2337 --m 25 --nbits 8 --niter 25 --seed 1234 --metric ip

The phases, as FAISS's IndexIVFPQ::train and ::add run them:

  kmeans    faiss.Clustering(d, nlist) with niter, seed, at most
            --max-points-per-centroid points per centroid (FAISS subsamples
            the documents itself) and, for inner product, spherical = True as
            IndexIVF sets it, trained into an IndexFlatIP / IndexFlatL2.
  pq_train  ProductQuantizer(d, M, nbits).train on the residuals of a sample
            of --pq-train-size documents (FAISS's 256 * 2^nbits) to their
            nearest centroid; the sample and its residuals are not timed
            (pq_residuals reports the assignment and subtraction).
  add       index.add(all documents) on an IndexIVFPQ (IndexIVFFlat with
            --m 0) holding the centroids and codebooks trained above, with
            do_polysemous_training = False: list assignment, residual PQ
            encoding and appending to the inverted lists.

--breakdown also times the two halves of add on their own: add_assign (the
quantizer's search for each document's list) and add_encode
(pq.compute_codes of the residuals).

Threads: FAISS's OpenMP loops use OMP_NUM_THREADS, its products OpenBLAS's
own pthreads (OPENBLAS_NUM_THREADS); OpenBLAS reads its variable when it is
loaded, so both are set in the environment of a fresh process. --sweep runs
every combination of --threads (default 1,2) for both in child processes and
prints each one's result plus, per phase, the fastest configuration. The
printed JSON always carries the thread settings that produced it, the
OpenBLAS library FAISS runs on (its build configuration, core and thread
count, read through ctypes from the copy loaded in this process) and the
process's peak resident set (VmHWM) after each phase.

--versions prints only the FAISS and OpenBLAS versions and exits (no
--docs needed); cli/bench_test.go (make bench) records it in the report's
machine section.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", help=".npy of documents (float32 or float16, n x d); required")
    p.add_argument("--nlist", type=int, help="inverted lists; required")
    p.add_argument("--m", type=int, default=25, help="PQ sub-quantizers; 0 for IVFFlat (default 25)")
    p.add_argument("--nbits", type=int, default=8)
    p.add_argument("--niter", type=int, default=25, help="k-means iterations, IVF and PQ (default 25)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--metric", choices=["ip", "l2"], default="ip")
    p.add_argument("--max-points-per-centroid", type=int, default=256,
                   help="IVF k-means sample cap per centroid (FAISS's default 256)")
    p.add_argument("--pq-train-size", type=int, default=0,
                   help="residuals the PQ trains on (default 256 * 2^nbits, FAISS's)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N documents")
    p.add_argument("--repeat", type=int, default=1, help="time each phase this many times, keep the fastest")
    p.add_argument("--phases", default="kmeans,pq_train,add",
                   help="comma-separated subset of kmeans,pq_train,add (pq_train and add need kmeans's centroids)")
    p.add_argument("--breakdown", action="store_true", help="also time add_assign and add_encode alone")
    p.add_argument("--sweep", action="store_true",
                   help="run every OMP_NUM_THREADS x OPENBLAS_NUM_THREADS in --threads in child processes")
    p.add_argument("--threads", default="1,2", help="thread counts for --sweep (default 1,2)")
    p.add_argument("--versions", action="store_true",
                   help="print FAISS's and OpenBLAS's versions as JSON and exit")
    a = p.parse_args(argv)
    if not a.versions and (a.docs is None or a.nlist is None):
        p.error("--docs and --nlist are required")
    return a


def thread_settings(faiss):
    return {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_max_threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
    }


def peak_rss():
    """The process's peak resident set so far (VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def openblas_info():
    """Configuration of the OpenBLAS loaded in this process (FAISS's), from
    its own openblas_get_config / _corename / _num_threads; {} when no
    OpenBLAS is loaded."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line and "/" in line})
    except OSError:
        return {}
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return {"library": path, "config": lib.openblas_get_config().decode(),
                    "core": lib.openblas_get_corename().decode(),
                    "num_threads": lib.openblas_get_num_threads()}
        except (OSError, AttributeError):
            continue
    return {}


def versions():
    import numpy as np
    import faiss
    opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else ""
    return {"faiss": faiss.__version__, "faiss_compile_options": opts.strip(),
            "faiss_module": os.path.dirname(faiss.__file__), "numpy": np.__version__,
            "python": sys.version.split()[0], "openblas": openblas_info(),
            "omp_max_threads": faiss.omp_get_max_threads()}


CPU = {}  # phase -> CPU seconds (all threads) of the fastest run
RSS = {}  # phase -> peak resident set (VmHWM) of the process after it


def best_of(repeat, f, phase=None):
    """Runs f repeat times; returns the fastest wall time and the last
    result, and records that run's process CPU time in CPU[phase]."""
    best, out = float("inf"), None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = f()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best = t
            if phase:
                CPU[phase] = c
    if phase:
        RSS[phase] = peak_rss()
    return best, out


def run(a):
    import numpy as np
    import faiss

    docs = np.load(a.docs, mmap_mode="r")
    if a.limit:
        docs = docs[:a.limit]
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    n, d = docs.shape
    ip = a.metric == "ip"
    metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    phases = set(a.phases.split(","))
    unknown = phases - {"kmeans", "pq_train", "add"}
    if unknown:
        sys.exit(f"unknown phases {sorted(unknown)}")
    ksub = 1 << a.nbits
    pq_size = a.pq_train_size or 256 * ksub
    out = {
        "faiss": faiss.__version__, "docs": os.path.abspath(a.docs), "n": n, "d": d,
        "nlist": a.nlist, "m": a.m, "nbits": a.nbits, "niter": a.niter, "seed": a.seed,
        "metric": a.metric, "kmeans_sample": min(n, a.max_points_per_centroid * a.nlist),
        "pq_sample": min(n, pq_size) if a.m else 0,
        "threads": thread_settings(faiss), "seconds": {},
        "cpu_seconds": {}, "openblas": openblas_info(),
        "faiss_compile_options": (faiss.get_compile_options().strip()
                                  if hasattr(faiss, "get_compile_options") else ""),
    }
    secs = out["seconds"]

    def new_quantizer():
        return faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)

    # (a) IVF k-means, as IndexIVF::train_q1 runs it.
    def kmeans():
        q = new_quantizer()
        clus = faiss.Clustering(d, a.nlist)
        clus.niter = a.niter
        clus.seed = a.seed
        clus.max_points_per_centroid = a.max_points_per_centroid
        clus.spherical = ip
        clus.train(docs, q)
        return q
    t, quantizer = best_of(a.repeat if "kmeans" in phases else 1, kmeans, "kmeans")
    if "kmeans" in phases:
        secs["kmeans"] = t

    pq = None
    if a.m:
        # (b) PQ training on the residuals of a sample, as
        # IndexIVFPQ::train_residual_o does (fvecs_maybe_subsample, assign,
        # compute_residual, pq.train).
        rng = np.random.default_rng(a.seed)
        sample = docs[np.sort(rng.choice(n, min(n, pq_size), replace=False))] if n > pq_size else docs
        t0 = time.perf_counter()
        _, lab = quantizer.search(sample, 1)
        res = sample - faiss.rev_swig_ptr(quantizer.get_xb(), a.nlist * d).reshape(a.nlist, d)[lab[:, 0]]
        res = np.ascontiguousarray(res, dtype=np.float32)
        pq_res = time.perf_counter() - t0

        def pq_train():
            p = faiss.ProductQuantizer(d, a.m, a.nbits)
            p.cp.niter = a.niter
            p.cp.seed = a.seed
            p.train(res)
            return p
        t, pq = best_of(a.repeat if "pq_train" in phases else 1, pq_train, "pq_train")
        if "pq_train" in phases:
            secs["pq_residuals"] = pq_res
            secs["pq_train"] = t

    # (c) add every document to a trained index.
    def new_index():
        if a.m:
            index = faiss.IndexIVFPQ(quantizer, d, a.nlist, a.m, a.nbits, metric)
            index.do_polysemous_training = False
            index.pq = pq
        else:
            index = faiss.IndexIVFFlat(quantizer, d, a.nlist, metric)
        index.is_trained = True
        return index

    if "add" in phases:
        indexes = []

        def add():
            index = new_index()
            index.add(docs)
            indexes.append(index)  # keep it (and its lists) alive until timed
            return index
        t, index = best_of(a.repeat, add, "add")
        secs["add"] = t
        if index.ntotal != n:
            sys.exit(f"add: index holds {index.ntotal} vectors, want {n}")
        del indexes
        if a.breakdown:
            t, (_, lab) = best_of(a.repeat, lambda: quantizer.search(docs, 1))
            secs["add_assign"] = t
            if a.m:
                cent = faiss.rev_swig_ptr(quantizer.get_xb(), a.nlist * d).reshape(a.nlist, d)
                res = np.ascontiguousarray(docs - cent[lab[:, 0]])
                codes = np.empty((n, pq.code_size), dtype=np.uint8)
                t, _ = best_of(a.repeat, lambda: pq.compute_codes_c(
                    faiss.swig_ptr(res), faiss.swig_ptr(codes), n))
                secs["add_encode"] = t
    out["cpu_seconds"] = {k: v for k, v in CPU.items() if k in secs}
    out["rss_hwm_bytes"] = {k: v for k, v in RSS.items() if k in secs}
    out["peak_rss_bytes"] = peak_rss()
    out["loadavg"] = os.getloadavg()
    return out


def sweep(a, argv):
    counts = [int(t) for t in a.threads.split(",")]
    child = [x for x in argv if x != "--sweep"]
    runs = []
    for omp, blas in itertools.product(counts, counts):
        env = dict(os.environ, OMP_NUM_THREADS=str(omp), OPENBLAS_NUM_THREADS=str(blas))
        r = subprocess.run([sys.executable, os.path.abspath(__file__)] + child,
                           env=env, check=True, capture_output=True, text=True)
        res = json.loads(r.stdout)
        print(f"OMP_NUM_THREADS={omp} OPENBLAS_NUM_THREADS={blas}: {json.dumps(res['seconds'])}",
              file=sys.stderr, flush=True)
        runs.append(res)
    best = {}
    for phase in runs[0]["seconds"]:
        r = min(runs, key=lambda r: r["seconds"][phase])
        best[phase] = {"seconds": r["seconds"][phase], "OMP_NUM_THREADS": r["threads"]["OMP_NUM_THREADS"],
                       "OPENBLAS_NUM_THREADS": r["threads"]["OPENBLAS_NUM_THREADS"]}
    return {"best": best, "runs": runs}


def main():
    argv = sys.argv[1:]
    a = parse_args(argv)
    if a.versions:
        out = versions()
    else:
        out = sweep(a, argv) if a.sweep else run(a)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
