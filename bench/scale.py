"""Benchmark the Ray executor against the local one (issue 13).

    flock /tmp/bench.lock .venv/bin/python bench/scale.py --rows 1000000        # clean, local vs Ray
    flock /tmp/bench.lock .venv/bin/python bench/scale.py --translate 4000      # translate, 1 vs 2 servers

1. **clean**: the synthetic Alpaca-style corpus of bench/clean.py (injected duplicates, mojibake,
   refusals, ...) ingested once; then, each as a whole process timed from outside: the polars floor
   (read the parquet dataset, write it again), ``curate clean`` local and ``curate clean --executor
   ray`` (which starts a local Ray instance on this machine's cores: the figure includes Ray's
   start-up). The Ray output is checked to be the local output (rows, quarantine bytes, report
   figures). Ratio = Ray / local (target <= 1.5 on this 2-core machine).
2. **translate**: ``curate translate --executor ray`` through loopback OpenAI-compatible servers that
   each answer one request at a time (``--server-ms`` per request, like a saturated model server),
   first one server, then two (``--base-url`` twice): requests per second of each, and the speed-up.

The machine is shared: the load average is printed beside every figure; quote ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import polars as pl  # noqa: E402

PY = sys.executable
CURATE = str(Path(PY).with_name("curate"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "CURATE_NO_FSYNC": "1"}


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def timed(cmd: list[str], label: str, env: dict | None = None) -> dict:
    """Wall seconds of a whole process (Ray's workers included: the command waits for them)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{label} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    print(f"  {label:<28} {wall:8.1f} s   ({load()})", flush=True)
    return {"label": label, "seconds": round(wall, 2)}


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in ("seconds", "engine_seconds", "input", "output")}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def same_output(a: Path, b: Path) -> bool:
    from curate import io

    fa, fb = io.read_input(a).collect(), io.read_input(b).collect()
    rows = sorted(fa) == sorted(fb) and all(fa[k].equals(fb[k]) for k in fa)
    from curate.clean import quarantine as qfile

    quarantine = qfile.read(a / qfile.NAME) == qfile.read(b / qfile.NAME)
    report = strip(json.loads((a / "report.json").read_text())) == strip(json.loads((b / "report.json").read_text()))
    print(f"  Ray output == local output: rows {rows}, quarantine {quarantine}, report {report}", flush=True)
    return rows and quarantine and report


def bench_clean(rows: int, work: Path) -> dict:
    from clean import build  # bench/clean.py: the synthetic corpus with injected issues

    src, _truth = build(rows, 13, work)
    norm = work / "normalized"
    timed([CURATE, "ingest", str(src), "-o", str(norm), "-q"], "ingest (setup)")
    floor = timed([PY, "-c", "import polars as pl, sys; pl.scan_parquet(sys.argv[1] + '/*.parquet')"
                   ".sink_parquet(sys.argv[2])", str(norm), str(work / "floor.parquet")], "polars floor (read+write)")
    local = timed([CURATE, "clean", str(norm), "-o", str(work / "local"), "--target-lang", "any", "-q"], "clean local")
    ray = timed([CURATE, "clean", str(norm), "-o", str(work / "ray"), "--target-lang", "any", "-q",
                 "--executor", "ray"], "clean --executor ray")
    ok = same_output(work / "local", work / "ray")
    passes = {k: v for k, v in json.loads((work / "ray" / "report.json").read_text())["engine_seconds"].items()
              if k.startswith("ray_")}
    ray["passes"] = passes
    print("  Ray passes (wall s, kinds overlap): " + ", ".join(f"{k[4:]} {v}" for k, v in passes.items()), flush=True)
    dedup = {r["code"]: r["seconds"] for r in json.loads((work / "local" / "report.json").read_text())["rules"]
             if r["code"] in ("exact_duplicate", "near_duplicate")}
    local["dedupe_seconds"] = dedup
    print(f"  local duplicate rules: {dedup}", flush=True)
    ratio = ray["seconds"] / local["seconds"]
    print(f"  ratio Ray / local = {ratio:.2f} (target <= 1.5); local / floor = {local['seconds'] / floor['seconds']:.1f}",
          flush=True)
    return {"rows": rows, "floor": floor, "local": local, "ray": ray, "ratio": round(ratio, 2), "identical": ok}


def bench_translate(n: int, work: Path, server_ms: float) -> dict:
    from curate.ingest import ingest_to_dir
    from tests.servers.openai_server import OpenAIServer, translator

    fixtures = ROOT / "tests" / "data" / "fixtures"
    base = work / "base"
    ingest_to_dir([fixtures / "kochatgpt_ppo.jsonl"], base, detect_lang=False)
    prompts = pl.read_parquet(base / "ppo.parquet")
    # n distinct rows (a number appended), so nothing is answered from the cache or deduplicated
    big = pl.concat([prompts] * (n // prompts.height + 1)).head(n).with_row_index("_i").with_columns(
        (pl.col("prompt") + " (" + pl.col("_i").cast(pl.String) + ")").alias("prompt"),
        pl.col("_i").cast(pl.String).alias("id")).drop("_i")
    inp = work / "prompts.parquet"
    big.write_parquet(inp)
    model = translator()
    stamps: list[float] = []

    def slow(request):  # one request at a time per server: a saturated model server
        stamps.append(time.perf_counter())
        time.sleep(server_ms / 1000)
        return model(request)

    out = {}
    servers = [OpenAIServer(slow).start(), OpenAIServer(slow).start()]
    try:
        for k in (1, 2):
            urls = [a for s in servers[:k] for a in ("--base-url", s.url)]
            target = work / f"out{k}"
            stamps.clear()
            cache = work / f"cache{k}.sqlite"
            r = timed([CURATE, "translate", str(inp), "-o", str(target), "--to", "ms", *urls, "--model", "loopback",
                       "--api-key", "sk-bench", "--cache", str(cache), "--concurrency", "32", "--max-chars", "200", "--executor", "ray", "-q"],
                      f"translate, {k} server(s)")
            rep = json.loads((target / "report.json").read_text())
            sent = rep["llm"]["requests_sent"]
            span = max(stamps) - min(stamps) if len(stamps) > 1 else float("nan")
            r.update(requests=sent, requests_per_second=round(len(stamps) / span, 1),
                     whole_command_rps=round(sent / r["seconds"], 1))
            print(f"    {sent} requests: {r['requests_per_second']} req/s while the servers were busy "
                  f"(first to last request), {r['whole_command_rps']} req/s over the whole command "
                  "(Ray start-up included)", flush=True)
            out[k] = r
    finally:
        for s in servers:
            s.stop()
    speedup = out[2]["requests_per_second"] / out[1]["requests_per_second"]
    print(f"  2 servers / 1 server throughput = {speedup:.2f}x (server: 1 request at a time, {server_ms} ms each)",
          flush=True)
    return {"rows": n, "server_ms": server_ms, "one": out[1], "two": out[2], "speedup": round(speedup, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=0, help="clean: rows of the synthetic corpus (1000000 for the issue)")
    ap.add_argument("--translate", type=int, default=0, help="translate: rows to translate")
    ap.add_argument("--server-ms", type=float, default=20.0, help="loopback server time per request")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    figures = {"cpus": os.cpu_count(), "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work) as tmp:
        work = Path(tmp)
        if args.rows:
            print(f"clean, {args.rows:,} rows, {os.cpu_count()} cores", flush=True)
            figures["clean"] = bench_clean(args.rows, work / "clean")
        if args.translate:
            print(f"translate, {args.translate:,} rows", flush=True)
            figures["translate"] = bench_translate(args.translate, work / "translate", args.server_ms)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
