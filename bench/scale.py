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


def _tree(root: int) -> list[int]:
    """``root`` and every process under it (Ray's GCS, raylet and workers are the command's descendants)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _title(pid: int) -> str:
    """What a process is: Ray names its workers by the task they run (``ray::MapBatches(_rules_block)``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    first = args[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(" ")[0]
    return Path(first).name + (" " + Path(args[1].decode(errors="replace")).name if len(args) > 1 and args[1] else "")


def _sample(pids: list[int], cpu: dict[int, float], titles: dict[int, str] | None = None) -> int:
    """Record each process's CPU seconds so far into ``cpu`` (and what it runs into ``titles``, the
    last title that is not ``ray::IDLE``); return the tree's memory now (bytes, PSS: shared pages
    such as Ray's object store counted once)."""
    tick = os.sysconf("SC_CLK_TCK")
    mem = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            cpu[p] = (int(f[11]) + int(f[12])) / tick
            if titles is not None:
                t = _title(p)
                if t.strip() and (t != "ray::IDLE" or p not in titles):  # an exiting process has no cmdline
                    titles[p] = t
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        mem += int(line.split()[1]) * 1024
                        break
        except (OSError, IndexError, ValueError):
            continue
    return mem


def timed(cmd: list[str], label: str, env: dict | None = None) -> dict:
    """Wall seconds, CPU seconds and peak memory of a whole process tree (Ray's workers included: the
    command waits for them). Memory is the tree's PSS sampled from /proc every 0.5 s; CPU the larger
    of the samples' sum (the last half second of a short-lived worker may be missed) and ``os.wait4``
    (the command's own process and the children it reaped)."""
    t0 = time.perf_counter()
    loads = [os.getloadavg()[0]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or ENV)
    cpu: dict[int, float] = {}
    titles: dict[int, str] = {}
    peak = 0
    err = bytearray()
    os.set_blocking(proc.stderr.fileno(), False)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _sample(_tree(proc.pid), cpu, titles))
        err += proc.stderr.read() or b""
        loads.append(os.getloadavg()[0])
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    err += proc.stderr.read() or b""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{label} failed ({code}):\n{err.decode(errors='replace')[-3000:]}")
    cpu_s = max(sum(cpu.values()), usage.ru_utime + usage.ru_stime)
    peak_mb = peak / 2**20  # not ru_maxrss: a forked child starts with this (big) process's RSS
    load_s = f"load {min(loads):.1f}-{max(loads):.1f}"
    print(f"  {label:<28} {wall:8.1f} s wall  {cpu_s:8.1f} s CPU  {peak_mb:7.0f} MB peak  ({load_s})", flush=True)
    by_title: dict[str, list[float]] = {}
    for p, c in cpu.items():
        by_title.setdefault(titles.get(p, "?"), []).append(c)
    top = sorted(((sum(v), len(v), t) for t, v in by_title.items()), reverse=True)
    if len(top) > 1:
        print("    CPU by process (seconds, processes): "
              + ", ".join(f"{t} {c:.1f} ({n})" for c, n, t in top[:8]), flush=True)
    return {"label": label, "seconds": round(wall, 2), "cpu_seconds": round(cpu_s, 1), "peak_mb": round(peak_mb),
            "load": [round(min(loads), 1), round(max(loads), 1)],
            "cpu_by_process": {t: [round(c, 1), n] for c, n, t in top}}


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
