"""Benchmark: curate's hand-written code beside the library that replaced it (issue 17), same run.

The hand-written versions are not kept in the tree: ``--before REV`` loads them from git (default
the last commit that had them), so the comparison can be rerun at any time without dead code.
Every figure is printed beside a polars floor measured in the same run (a fixed polars job:
sort + group-by of 1M rows), as the machine is shared: quote the ratios.

Usage:
    python bench/libs.py hungarian [--sizes 175,500,1000]
    python bench/libs.py ids [--rows 1000000]
    python bench/libs.py minhash [--rows 20000]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["hungarian", "ids", "minhash"])
    ap.add_argument("--before", default=BEFORE, help="git revision holding the hand-written code")
    ap.add_argument("--sizes", default="175,500,1000")
    ap.add_argument("--rows", type=int, default=None)
    args = ap.parse_args()
    {"hungarian": bench_hungarian}[args.what](args)


if __name__ == "__main__":
    main()
