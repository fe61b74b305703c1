"""Benchmark `curate ingest` on a large Alpaca-style JSONL built from the real fixtures.

Builds N rows (default 1,000,000) by cycling the SFT rows of the fixtures (each row made unique
with a counter, as real datasets have few exact repeats), then times whole processes and reads
each one's peak memory (ru_maxrss from wait4):

* floor: polars reading the JSONL and writing it again as JSONL (issue 15's floor: the target
  is a multiple of it), and polars reading it and writing parquet (curate's output format; a
  stricter floor, printed beside it)
* curate ingest --no-lang (parsing, validation, repairs, ids, quarantine, parquet)
* curate ingest (the same plus language identification of every row)

Each run prints wall and CPU seconds (user + system), both also as a multiple of the floor's, and
the load average when it started: the machine is shared, so quote the ratios of one run.
``--repeat N`` runs the whole list N times, interleaved, and ends with each run's medians: the
median of the rounds' own ratios, and the median wall over the median floor (on a shared host the
floor alone moves by a third between runs, so one round's ratio says little).

``--corpus recombined`` builds every row new from real en/ms/id/ko sentences instead
(bench/recombined.py): ~20x as many distinct texts reach lingua, as in a real corpus.

Rerun: .venv/bin/python bench/ingest.py [--rows 1000000] [--skip-lang] [--corpus recombined] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "fixtures"
OUT = ROOT / "bench" / "out"
SOURCES = ["malay_alpaca.json", "alpacacleaned_gsm8k.json", "chatdoctor.json", "malay_chatdoctor.jsonl",
           "malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl"]


def build_corpus(path: Path, rows: int) -> None:
    sys.path.insert(0, str(ROOT))
    from curate.ingest import ingest

    base = ingest([FIXTURES / s for s in SOURCES], detect_lang=False).frames["sft"]
    records = base.select("instruction", "input", "output").to_dicts()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for i in range(rows):
            r = records[i % len(records)]
            fh.write(orjson.dumps({"instruction": f"{r['instruction']} ({i})", "input": r["input"],
                                   "output": r["output"]}) + b"\n")
    tmp.replace(path)


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed{f' in {cwd}' if cwd else ''}: {' '.join(cmd)}\n{err[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


FLOOR = """
import polars as pl, sys
df = pl.read_ndjson(sys.argv[1])
df.write_parquet(sys.argv[2]) if sys.argv[2].endswith(".parquet") else df.write_ndjson(sys.argv[2])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--skip-lang", action="store_true", help="skip the run with language identification")
    ap.add_argument("--corpus", choices=["cycled", "recombined"], default="cycled",
                    help="cycled: the fixtures' SFT rows again and again, a counter in each instruction; "
                         "recombined: every row new, from en/ms/id/ko sentences (bench/recombined.py), "
                         "like issue 15's independent benchmark")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of the whole list, interleaved; medians printed at the end")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = OUT / (f"alpaca_{args.rows}.jsonl" if args.corpus == "cycled" else f"recombined_{args.rows}.jsonl")
    if not corpus.exists():
        print(f"building {corpus} ...", flush=True)
        if args.corpus == "cycled":
            build_corpus(corpus, args.rows)
        else:
            sys.path.insert(0, str(ROOT / "bench"))
            import recombined

            recombined.build(corpus, args.rows)
        # again in a fresh process: a child's peak RSS (ru_maxrss) starts at this process's own
        # peak (Linux carries it over exec), which building the corpus raised
        os.execv(sys.executable, [sys.executable, *sys.argv])
    size_mb = corpus.stat().st_size / 1e6
    py = sys.executable
    curate = [py, "-m", "curate.cli"]
    runs = [("polars read+write JSONL", [py, "-c", FLOOR, str(corpus), str(OUT / "floor.jsonl")]),
            ("polars read, write parquet", [py, "-c", FLOOR, str(corpus), str(OUT / "floor.parquet")]),
            ("curate ingest --no-lang", curate + ["ingest", str(corpus), "-o", str(OUT / "ingest_nolang"),
                                                  "--no-lang", "-q"])]
    if not args.skip_lang:
        runs.append(("curate ingest", curate + ["ingest", str(corpus), "-o", str(OUT / "ingest"), "-q"]))
    print(f"corpus: {args.rows:,} rows, {size_mb:,.0f} MB, on {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f})")
    print("x floor: a multiple of the first line's figure (issue 15's floor: read and write JSONL)")
    print(f"{'run':<28} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} {'x floor':>8} {'CPU s':>7} {'x floor':>8} {'load':>5}")
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _ in runs}
    for _ in range(max(1, args.repeat)):
        floor = floor_cpu = None
        for name, cmd in runs:
            load = os.getloadavg()[0]
            secs, cpu, peak = run(cmd)
            floor, floor_cpu = floor or secs, floor_cpu or cpu
            results[name].append((secs, cpu, secs / floor, cpu / floor_cpu))
            print(f"{name:<28} {secs:>8.2f} {args.rows / secs:>10,.0f} {peak:>8,.0f} {secs / floor:>8.2f} "
                  f"{cpu:>7.2f} {cpu / floor_cpu:>8.2f} {load:>5.1f}", flush=True)
    if args.repeat > 1:
        floor_wall = statistics.median(r[0] for r in results[runs[0][0]])
        print(f"medians of {args.repeat} rounds: wall s, CPU s, the rounds' own x floor, median wall / median floor")
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            print(f"{name:<28} {wall:>8.2f} {statistics.median(r[1] for r in rows):>7.2f} "
                  f"{statistics.median(r[2] for r in rows):>8.2f} {wall / floor_wall:>8.2f}")


if __name__ == "__main__":
    main()
