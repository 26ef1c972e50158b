"""Write a large structured embedding set as float16 .npy shards.

Usage: synthetic.py --n 1000000 --d 768 --queries 1000 --shard 100000 --out DIR

The vectors follow the recipe of FAISS's SyntheticDataset (contrib/datasets):
Gaussian points in a 10-dimensional latent space, mapped linearly into d
dimensions, scaled per coordinate and passed through a sine. They lie near a
curved 10-dimensional manifold, so nearest neighbours and clusters mean
something, unlike uniform noise, while needing no download. Documents go to
DIR/docs/part-NNN.npy (float16, C order), held-out queries drawn the same way
to DIR/queries.npy (float32). Run with /usr/bin/python3.
"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shard", type=int, default=100_000)
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1338)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    rs = np.random.RandomState(a.seed)
    proj = rs.rand(a.latent, a.d)
    scale = rs.rand(a.d) * 4 + 0.1

    def draw(n):
        z = rs.normal(size=(n, a.latent))
        return np.sin((z @ proj) * scale)

    os.makedirs(os.path.join(a.out, "docs"), exist_ok=True)
    width = len(str((a.n - 1) // a.shard))
    for i, start in enumerate(range(0, a.n, a.shard)):
        x = draw(min(a.shard, a.n - start)).astype(np.float16)
        path = os.path.join(a.out, "docs", f"part-{i:0{max(3, width)}d}.npy")
        # A hidden temporary name: readers of the folder skip it if this
        # run dies half-way.
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp.npy")
        np.save(tmp, x)
        os.replace(tmp, path)
    q = draw(a.queries).astype(np.float32)
    np.save(os.path.join(a.out, "queries.npy"), q)


if __name__ == "__main__":
    main()
