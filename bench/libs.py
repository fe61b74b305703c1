"""Benchmark: curate's hand-written code beside the library that replaced it (issue 17), same run.

The hand-written versions are not kept in the tree: ``--before REV`` loads them from git (default
the last commit that had them), so the comparison can be rerun at any time without dead code.
Every figure is printed beside a polars floor measured in the same run (a fixed polars job:
sort + group-by of 1M rows), as the machine is shared: quote the ratios.

Usage:
    python bench/libs.py hungarian [--sizes 175,500,1000]
    python bench/libs.py ids [--rows 1000000]
    python bench/libs.py minhash [--rows 100000]   (end to end: bench/dedupe.py --methods curate,rensa)
(ROUGE-L against rapidfuzz is in ``bench/rouge.py --rapidfuzz``.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BEFORE = "35152f7"  # main before issue 17: hungarian(), blake2b ids in Python


def load_before(path: str, rev: str) -> types.ModuleType:
    """The module at ``path`` as it was at git revision ``rev`` (its imports resolve to today's tree)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"before_{Path(path).stem}")
    mod.__file__ = str(ROOT / path)
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
    return mod


def best_of(fn, repeat: int = 3) -> float:
    """Least CPU seconds of ``repeat`` runs (CPU, not wall: the 2 cores are shared by other sessions)."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def cpu_of(fn):
    """(result, CPU seconds) of one call."""
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def polars_floor() -> float:
    """A fixed polars job (sort + group-by of 1M rows), best of 3: the machine's speed right now."""
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"k": rng.integers(0, 1000, 1_000_000), "v": rng.random(1_000_000)})
    return best_of(lambda: df.sort("v").group_by("k").agg(pl.col("v").sum()))


def line(label: str, secs: float, floor: float) -> str:
    return f"{label:<48} {secs:>9.4f} s CPU {secs / floor:>8.2f} x floor"


def bench_hungarian(args) -> None:
    from scipy.optimize import linear_sum_assignment
    old = load_before("curate/seeds.py", args.before)
    floor = polars_floor()
    print(line("polars floor (sort + group-by 1M rows)", floor, floor))
    rng = np.random.default_rng(0)
    for n in [int(x) for x in args.sizes.split(",")]:
        for shape in [(n, n), (n, n + n // 4)]:
            c = -rng.random(shape)
            a = old.hungarian(c)
            r, k = linear_sum_assignment(c)
            same = abs(sum(c[i, j] for i, j in a) - c[r, k].sum()) < 1e-9
            t_old = best_of(lambda: old.hungarian(c), 1 if n >= 1000 else 3)
            t_new = best_of(lambda: linear_sum_assignment(c))
            print(line(f"{shape} hand-written hungarian()", t_old, floor))
            print(line(f"{shape} scipy linear_sum_assignment", t_new, floor)
                  + f"   {t_old / t_new:>6.1f}x faster, same total cost: {same}")


def bench_ids(args) -> None:
    """Per-row content ids at 1M SFT rows: blake2b-64 in Python (today) vs polars-hash expressions.

    polars-hash has no blake2b (printed below), so the same ids cannot come from it: the candidates
    hash a length-prefixed canonical string built with polars expressions, and would need a
    migration (old id kept in meta). Timed on the columns as ingest has them (Python lists for
    blake2b, as the ingest batches build them; a polars frame for the expressions).
    """
    import polars_hash as plh

    from curate import schemas
    sys.path.insert(0, str(ROOT / "bench"))
    from tokens import corpus

    rows = args.rows or 1_000_000
    df = corpus(rows).select("instruction", "input", "output")
    cols = {c: df[c].to_list() for c in df.columns}
    print(f"{rows:,} sft rows; polars-hash {plh.__version__} cryptographic: "
          f"{', '.join(m for m in dir(plh.CryptographicHashingNameSpace) if not m.startswith('_'))} (no blake2b)")
    floor = polars_floor()
    print(line("polars floor (sort + group-by 1M rows)", floor, floor))

    def field(c: str) -> pl.Expr:
        e = pl.col(c)
        return pl.when(e.is_null()).then(pl.lit("-")).otherwise(e.str.len_bytes().cast(pl.String) + ":" + e)

    canon = pl.concat_str([pl.lit("sft"), *(field(c) for c in ("instruction", "input", "output"))], separator="|")
    runs = [("blake2b-64 compiled, from Arrow (curate now)", lambda: schemas.frame_ids("sft", df)),
            ("blake2b-64 in Python (the reference)", lambda: schemas.content_ids("sft", cols)),
            ("blake2b-64 in Python incl. Series.to_list", lambda: schemas.content_ids(
                "sft", {c: df[c].to_list() for c in df.columns})),
            ("polars-hash blake3 (first 64 bits)", lambda: df.select(canon.alias("_c")).select(
                plh.col("_c").chash.blake3().str.slice(0, 16))),
            ("polars-hash xxh3_64", lambda: df.select(canon.alias("_c")).select(plh.col("_c").nchash.xxh3_64()))]
    for label, fn in runs:
        t = time.perf_counter()
        cpu = best_of(fn, 1)
        wall = time.perf_counter() - t
        print(line(label, cpu, floor) + f"   wall {wall:.2f} s")


def bench_minhash(args) -> None:
    """MinHash sketches only, on bench/dedupe.py's corpus: curate.dedupe.signatures vs rensa's
    R-MinHash matrix from the same flat shingle hashes (end to end with clusters, precision and
    recall: ``bench/dedupe.py --methods curate,rensa``)."""
    from rensa import RMinHash

    from curate import dedupe
    sys.path.insert(0, str(ROOT / "bench"))
    from dedupe import TEXT, build_corpus

    rows = args.rows or 100_000
    df = build_corpus(rows)[0]
    texts = df.select(dedupe.normalize(TEXT)).to_series()
    floor = polars_floor()
    print(f"{df.height:,} rows (bench/dedupe.py corpus)")
    print(line("polars floor (sort + group-by 1M rows)", floor, floor))
    sh, t_sh = cpu_of(lambda: dedupe.shingles(texts))
    print(line("curate shingles (numpy, shared by both below)", t_sh, floor))
    offsets = sh.offsets.astype(np.uint64)
    for perm in (128, dedupe.DEFAULT_PERM):
        _, t_cur = cpu_of(lambda: dedupe.signatures(texts, perm))
        print(line(f"curate signatures, {perm} slots (incl. shingles)", t_cur, floor))
        mat, t_r = cpu_of(lambda: RMinHash.digest_matrix_from_flat_token_hashes(sh.values, offsets, perm, 42))
        _, t_rows = cpu_of(lambda: np.array(mat.to_rows(), dtype=np.uint32))
        print(line(f"rensa digest matrix, {perm} slots (+ shingles)", t_r + t_sh, floor)
              + f"   + {t_rows:.2f} s to get it out as numpy (to_rows; no buffer protocol)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["hungarian", "ids", "minhash"])
    ap.add_argument("--before", default=BEFORE, help="git revision holding the hand-written code")
    ap.add_argument("--sizes", default="175,500,1000")
    ap.add_argument("--rows", type=int, default=None)
    args = ap.parse_args()
    {"hungarian": bench_hungarian, "ids": bench_ids, "minhash": bench_minhash}[args.what](args)


if __name__ == "__main__":
    main()
