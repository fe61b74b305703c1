"""Issue 15's whole job as a user runs it: raw JSONL -> ``curate ingest`` -> ``curate clean
--target-lang any``, each round beside the polars floor (``read_ndjson`` + ``write_ndjson``).

The corpus is ``bench/out/recombined_<rows>.jsonl`` (every row new, from real en/ms/id/ko
sentences: bench/recombined.py; built if missing). Each command is a whole process, timed for wall
and CPU seconds (user + system) and its peak memory (ru_maxrss from wait4).

Give several source trees (``--tree``, e.g. a worktree at an older commit) to compare them on the
same host: the rounds alternate between them, so a shared machine's load falls on each alike. The
ingest runs in each tree's first round; every round cleans it again. The last lines are each tree's
medians: the rounds' own clean/floor ratios, CPU and peak. Issue 15's target: clean <= 6x the floor,
peak <= 2 GB (ingest: <= 3x, bench/ingest.py).

Rerun: .venv/bin/python bench/job.py [--rows 1000000] [--rounds 3] [--tree /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

sys.path.insert(0, str(ROOT / "bench"))
from ingest import FLOOR, run as run_process  # noqa: E402  (bench/ingest.py: the floor, one timed process)


def run(cmd: list[str], tree: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of ``cmd`` run with ``tree``'s curate."""
    return run_process(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", type=Path, action="append", default=[],
                    help="a source tree to time (repeatable; default: this checkout)")
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree] or [ROOT]
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = OUT / f"recombined_{args.rows}.jsonl"
    if not corpus.exists():
        print(f"building {corpus} ...", flush=True)
        import recombined

        recombined.build(corpus, args.rows)
        # again in a fresh process: a child's peak RSS starts at this process's own (Linux carries
        # ru_maxrss over exec), which building the corpus raised
        os.execv(sys.executable, [sys.executable, *sys.argv])
    py = sys.executable
    work = OUT / "job"
    work.mkdir(parents=True, exist_ok=True)
    print(f"corpus: {args.rows:,} rows, {corpus.stat().st_size / 1e6:,.0f} MB, on {os.cpu_count()} cores")
    print(f"{'round tree':<40} {'floor s':>7} {'stage':>6} {'wall s':>7} {'x floor':>7} {'CPU s':>6} {'peak MB':>7} {'load':>5}")
    clean: dict[Path, list[tuple[float, float, float]]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for i, tree in enumerate(trees):
            load = os.getloadavg()[0]
            floor = run([py, "-c", FLOOR, str(corpus), str(work / "floor.jsonl")], tree)
            ds, out = work / f"{i}_ds", work / f"{i}_clean"
            label = f"r{r} {tree}"[-40:]
            if r == 0:
                shutil.rmtree(ds, ignore_errors=True)
                wall, cpu, peak = run([py, "-m", "curate.cli", "ingest", str(corpus), "-o", str(ds), "-q"], tree)
                print(f"{label:<40} {floor[0]:>7.2f} {'ingest':>6} {wall:>7.2f} {wall / floor[0]:>7.2f} "
                      f"{cpu:>6.1f} {peak:>7,.0f} {load:>5.1f}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu, peak = run([py, "-m", "curate.cli", "clean", str(ds), "-o", str(out), "--target-lang", "any",
                                   "-q"], tree)
            clean[tree].append((wall / floor[0], cpu, peak))
            print(f"{label:<40} {floor[0]:>7.2f} {'clean':>6} {wall:>7.2f} {wall / floor[0]:>7.2f} "
                  f"{cpu:>6.1f} {peak:>7,.0f} {load:>5.1f}", flush=True)
    print(f"medians of {args.rounds} rounds (clean; target <= 6x the floor, <= 2,000 MB):")
    for tree, rows in clean.items():
        print(f"  {str(tree)[-38:]:<38} {statistics.median(x for x, _, _ in rows):>6.2f}x "
              f"{statistics.median(c for _, c, _ in rows):>6.1f} CPU s {max(p for _, _, p in rows):>7,.0f} MB peak")


if __name__ == "__main__":
    main()
