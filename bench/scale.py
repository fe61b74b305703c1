"""Benchmark the Ray executor against the local one (issue 13).

    flock /tmp/bench.lock .venv/bin/python bench/scale.py --rows 1000000        # clean, local vs Ray
    flock /tmp/bench.lock .venv/bin/python bench/scale.py --translate 4000      # translate, 1 vs 2 servers

1. **clean**: the synthetic Alpaca-style corpus of bench/clean.py (injected duplicates, mojibake,
   refusals, ...) ingested once; then, each as a whole process timed from outside: the polars floor
   (read the parquet dataset, write it again), ``curate clean`` local and ``curate clean --executor
   ray`` (which starts a local Ray instance on this machine's cores: the figure includes Ray's
   start-up: what a laptop user pays per command), then ``curate clean --executor ray --ray-address``
   against a Ray head started once before, outside the timing (``ray start --head`` with the CPUs
   and worker settings of the instance curate starts itself: what a cluster user pays per command),
   the first job on the new head and the next ones (Ray Data's detached actors are up by then).
   ``--repeat N`` runs that round (local, cold Ray, head up, first and next job, head down) N times;
   the figures quoted are the runs of median wall time, and the median of each Ray run's ratio to
   the local run of its own round (the host's speed drifts between rounds on a shared machine).
   The local run and the cold Ray run happen while no head is up (an idle head takes CPU too); the
   attached run's CPU and memory include the head's processes (their CPU during the run). Both Ray
   outputs are checked to be the local output (rows, quarantine entries, report figures). Ratio =
   Ray / local (target <= 1.5 on this 2-core machine). The ingested corpus is kept under
   ``bench/out/scale_<rows>`` and reused.
2. **translate**: ``curate translate --executor ray`` through loopback OpenAI-compatible servers that
   each answer one request at a time (``--server-ms`` per request, like a saturated model server),
   first one server, then two (``--base-url`` twice): requests per second of each, and the speed-up.

The machine is shared: the load average is printed beside every figure; quote ratios.
"""

from __future__ import annotations

import argparse
import contextlib
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
    from curate.executors.ray_session import descendants

    return [root, *descendants(root, zombies=True)]


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


def timed(cmd: list[str], label: str, env: dict | None = None, head: "Head | None" = None) -> dict:
    """Wall seconds, CPU seconds and peak memory of a whole process tree (Ray's workers included: the
    command waits for them). Memory is the tree's PSS sampled from /proc every 0.5 s; CPU the larger
    of the samples' sum (the last half second of a short-lived worker may be missed) and ``os.wait4``
    (the command's own process and the children it reaped). With ``head`` (a Ray head the command
    attaches to), the head's processes count too: their CPU during the run (what they had used
    before is subtracted) and their memory."""
    before: dict[int, float] = {}
    if head is not None:
        _sample(head.pids(), before)
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
        pids = _tree(proc.pid) + (head.pids() if head is not None else [])
        peak = max(peak, _sample(pids, cpu, titles))
        err += proc.stderr.read() or b""
        loads.append(os.getloadavg()[0])
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    err += proc.stderr.read() or b""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{label} failed ({code}):\n{err.decode(errors='replace')[-3000:]}")
    if head is not None:
        _sample(head.pids(), cpu)
        cpu = {p: c - before.get(p, 0.0) for p, c in cpu.items()}
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


class Head:
    """A Ray head started once with ``ray start --head``, outside any timing: a cluster that is
    already up, as a cluster user has it. Its settings are those of the local instance ``curate``
    starts itself (this machine's CPUs, Ray's default object store and memory, the same
    ``_system_config``: ``ray_session.local_instance_kwargs``). Its processes are this process's
    children (a child subreaper: ``ray start`` daemonizes them), so they are counted by pid and
    stopped by pid (never ``ray stop``, which stops every Ray on the machine)."""

    def __init__(self, cpus: int):
        import ctypes
        import socket

        from curate.executors.ray_session import local_instance_kwargs

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.temp = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")  # short: Ray's socket paths live here
        self.address = f"127.0.0.1:{port}"
        system = local_instance_kwargs(num_cpus=cpus)["_system_config"]
        # Ray's token authentication (on by default since Ray 2.5x when ~/.ray/auth_token exists): a
        # driver given an explicit address sends the token only with RAY_AUTH_MODE=token
        self.env = {**ENV, "RAY_AUTH_MODE": "token"}
        mine = set(_tree(os.getpid()))
        t0 = time.perf_counter()
        done = subprocess.run([str(Path(PY).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1",
                               f"--port={port}", f"--num-cpus={cpus}",
                               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp}",
                               "--system-config=" + json.dumps(system)],
                              env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.roots = [p for p in _tree(os.getpid()) if p not in mine]
        if done.returncode != 0:
            self.stop()
            raise SystemExit(f"ray start --head failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
        time.sleep(3)  # let the new head settle (its first workers start) before anything is timed
        print(f"  Ray head up at {self.address} in {time.perf_counter() - t0:.1f} s (not timed): "
              f"{len(self.pids())} processes, {cpus} CPUs", flush=True)

    def pids(self) -> list[int]:
        return sorted({p for r in self.roots for p in _tree(r) if os.path.exists(f"/proc/{p}")})

    def stop(self) -> None:
        import shutil
        import signal

        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            end = time.time() + wait
            while time.time() < end and _reap(self.pids()):
                time.sleep(0.2)
        _reap(self.pids())
        shutil.rmtree(self.temp, ignore_errors=True)


def _reap(pids: list[int]) -> list[int]:
    """Collect the exit status of those of ``pids`` that are this process's children and have
    exited; return those still running."""
    alive = []
    for p in pids:
        try:
            got, _ = os.waitpid(p, os.WNOHANG)
        except ChildProcessError:  # not our child: alive while /proc has it (and it is not a zombie)
            try:
                with open(f"/proc/{p}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(p)
            except OSError:
                pass
            continue
        if got == 0:
            alive.append(p)
    return alive


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in ("seconds", "engine_seconds", "input", "output")}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def same_output(a: Path, b: Path, label: str) -> bool:
    from curate import io

    fa, fb = io.read_input(a).collect(), io.read_input(b).collect()
    rows = sorted(fa) == sorted(fb) and all(fa[k].equals(fb[k]) for k in fa)
    from curate.clean import quarantine as qfile

    quarantine = qfile.read(a / qfile.NAME) == qfile.read(b / qfile.NAME)
    report = strip(json.loads((a / "report.json").read_text())) == strip(json.loads((b / "report.json").read_text()))
    print(f"  {label} output == local output: rows {rows}, quarantine {quarantine}, report {report}", flush=True)
    return rows and quarantine and report


def corpus(rows: int) -> Path:
    """The ingested corpus of ``rows`` rows (bench/clean.py's synthetic Alpaca rows with injected
    issues), built and ingested once under ``bench/out/scale_<rows>`` and reused."""
    from clean import build  # bench/clean.py: the synthetic corpus with injected issues

    keep = ROOT / "bench" / "out" / f"scale_{rows}"
    norm = keep / "normalized"
    if not (norm / "manifest.json").exists():
        src, _truth = build(rows, 13, keep)
        timed([CURATE, "ingest", str(src), "-o", str(norm), "-q"], "ingest (setup)")
        src.unlink()
    else:
        print(f"  corpus: {norm} (kept from an earlier run)", flush=True)
    return norm


def _passes(out: Path, label: str) -> dict:
    passes = {k: v for k, v in json.loads((out / "report.json").read_text())["engine_seconds"].items()
              if k.startswith("ray_")}
    print(f"  {label} passes (wall s, kinds overlap): " + ", ".join(f"{k[4:]} {v}" for k, v in passes.items()),
          flush=True)
    return passes


def _median(runs: list[dict]) -> dict:
    """The run of median wall time (the machine is shared: one slow run is load, not the code)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def _ratio(label: str, ray: dict, local: dict) -> None:
    ray["ratio"] = round(ray["seconds"] / local["seconds"], 2)
    ray["cpu_ratio"] = round(ray["cpu_seconds"] / local["cpu_seconds"], 2)
    print(f"  ratio {label} / local = {ray['ratio']:.2f} wall, {ray['cpu_ratio']:.2f} CPU (target <= 1.5)", flush=True)


def bench_clean(rows: int, work: Path, attached: bool = True, repeat: int = 1) -> dict:
    norm = corpus(rows)
    work.mkdir(parents=True, exist_ok=True)
    clean = [CURATE, "clean", str(norm), "--target-lang", "any", "-q"]
    floor = timed([PY, "-c", "import polars as pl, sys; pl.scan_parquet(sys.argv[1] + '/*.parquet')"
                   ".sink_parquet(sys.argv[2])", str(norm), str(work / "floor.parquet")], "polars floor (read+write)")
    ok = True
    runs: dict[str, list[dict]] = {"local": [], "ray": [], "ray_attached_first": [], "ray_attached": []}
    for i in range(repeat):  # each round: local, cold Ray, then a head and two jobs on it: all see the same load
        local = timed([*clean, "-o", str(work / "local")], "clean local")
        local["dedupe_seconds"] = {r["code"]: r["seconds"]
                                   for r in json.loads((work / "local" / "report.json").read_text())["rules"]
                                   if r["code"] in ("exact_duplicate", "near_duplicate")}
        runs["local"].append(local)
        ray = timed([*clean, "-o", str(work / "ray"), "--executor", "ray"], "clean --executor ray (cold)")
        ok = same_output(work / "local", work / "ray", "Ray (cold)") and ok
        ray["passes"] = _passes(work / "ray", "Ray (cold)")
        _ratio("Ray (cold)", ray, local)
        runs["ray"].append(ray)
        if not attached:
            continue
        # two jobs on one head: the first also starts Ray Data's detached stats, autoscaling-coordinator
        # and usage actors, which every later job on that cluster finds running
        head = Head(os.cpu_count() or 1)
        try:
            for key, name in (("ray_attached_first", "first job"), ("ray_attached", "next job")):
                target = work / key
                label = f"Ray (attached, {name})"
                r = timed([*clean, "-o", str(target), "--executor", "ray", "--ray-address", head.address],
                          f"clean --executor ray (attached, {name})", env=head.env, head=head)
                ok = same_output(work / "local", target, label) and ok
                r["passes"] = _passes(target, label)
                _ratio(label, r, local)
                runs[key].append(r)
        finally:
            head.stop()
    out = {"rows": rows, "floor": floor, "runs": runs}
    out.update({k: _median(v) for k, v in runs.items() if v})
    local, ray = out["local"], out["ray"]
    print(f"  medians of {repeat} run(s): local {local['seconds']} s / {local['cpu_seconds']} CPU s "
          f"(local / floor = {local['seconds'] / floor['seconds']:.1f}); "
          f"Ray cold {ray['seconds']} s / {ray['cpu_seconds']} CPU s = {ray['seconds'] / local['seconds']:.2f}x wall, "
          f"{ray['cpu_seconds'] / local['cpu_seconds']:.2f}x CPU", flush=True)
    for key in ("ray_attached_first", "ray_attached") if attached else ():
        att = out[key]
        print(f"  Ray attached ({'first' if key.endswith('first') else 'next'} job) {att['seconds']} s / "
              f"{att['cpu_seconds']} CPU s = {att['seconds'] / local['seconds']:.2f}x wall, "
              f"{att['cpu_seconds'] / local['cpu_seconds']:.2f}x CPU", flush=True)
    if repeat > 1:  # each Ray run against the local run of its own round (the same load and host speed)
        paired = {}
        for key in ("ray", "ray_attached_first", "ray_attached"):
            if runs[key]:
                wall = sorted(r["ratio"] for r in runs[key])[(len(runs[key]) - 1) // 2]
                cpu = sorted(r["cpu_ratio"] for r in runs[key])[(len(runs[key]) - 1) // 2]
                paired[key] = {"ratio": wall, "cpu_ratio": cpu}
        out["paired"] = paired
        print("  medians of the rounds' own ratios: " + ", ".join(
            f"{ {'ray': 'cold', 'ray_attached_first': 'first job', 'ray_attached': 'next job'}[k]} "
            f"{v['ratio']:.2f}x wall / {v['cpu_ratio']:.2f}x CPU" for k, v in paired.items()), flush=True)
    out["identical"] = ok
    return out


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
    ap.add_argument("--no-attached", action="store_true", help="clean: skip the run against a Ray head started before")
    ap.add_argument("--repeat", type=int, default=1,
                    help="clean: rounds of local, cold Ray and attached runs; the figures are the runs of "
                         "median wall time")
    args = ap.parse_args()
    figures = {"cpus": os.cpu_count(), "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work) as tmp:
        work = Path(tmp)
        if args.rows:
            print(f"clean, {args.rows:,} rows, {os.cpu_count()} cores", flush=True)
            figures["clean"] = bench_clean(args.rows, work / "clean", attached=not args.no_attached,
                                          repeat=max(1, args.repeat))
        if args.translate:
            print(f"translate, {args.translate:,} rows", flush=True)
            figures["translate"] = bench_translate(args.translate, work / "translate", args.server_ms)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
