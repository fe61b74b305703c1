"""LLM stages as a user runs them vs a bare AsyncOpenAI loop sending the very same request bodies.

For each stage (translate, reflect, judge) on 2,000 rows:

1. the loopback OpenAI-compatible server (its own process, ``--latency`` per request, rule-based
   models answering each stage's prompts in the shapes they ask for) records every request body;
2. ``curate STAGE IN -o OUT --concurrency 64 --cache FRESH -q`` runs as a whole process (interpreter
   start, imports, reading the dataset, the requests, the checks, writing the output);
3. ``bare``: a separate process with ``AsyncOpenAI`` + ``asyncio.Semaphore(64)`` sends the unique
   bodies curate sent (read from the recording) and nothing else;
4. 2 and 3 alternate ``--repeat`` times (best of each; the machine is shared), then curate runs
   once more over the full cache (zero requests).

rows/s = rows / wall seconds of the whole process, for both. The floor: curate >= 0.9x the bare loop.
The event loop of each curate run is watched (``CURATE_LOOP_STATS=1``): how late a 5 ms tick wakes,
and how long each callback held the loop, in wall and in CPU time of the loop's thread (the floor:
no callback's own work over 1 ms; wall times also count the OS running other processes).

    flock /tmp/bench.lock .venv/bin/python bench/llm_stages.py                 # all three stages
    flock /tmp/bench.lock .venv/bin/python bench/llm_stages.py --stages translate --rows 500
    flock /tmp/bench.lock .venv/bin/python bench/llm_stages.py --faults        # 5% 500, 5% 429, 1% hang, 2% malformed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "data" / "fixtures"

SERVER = """
import sys, json
sys.path.insert(0, {root!r})
from tests.servers.openai_server import OpenAIServer, chaos, translator
from tests.test_reflect import model as reflect_model
from tests.test_judge import scorer
tr, rf = translator(), reflect_model()
def handler(req):
    system = next((m.get("content") or "" for m in req.get("messages", []) if m.get("role") == "system"), "")
    if "strict evaluator" in system:
        return scorer(req)
    if "<turn" in json.dumps(req.get("messages")):
        return rf(req)
    return tr(req)
h = chaos(handler, seed=1) if {faults} else handler
with OpenAIServer(h, latency={latency}) as s:
    s.record = open({record!r}, "a", encoding="utf-8")
    print(s.url, flush=True)
    sys.stdin.read()
"""


def start_server(latency: float, record: Path, faults: bool):
    code = SERVER.format(root=str(ROOT), latency=latency, record=str(record), faults=faults)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _vary(text: str | None, i: int) -> str | None:
    return f"{text} ({i})" if text else text


def make_inputs(tmp: Path, rows: int) -> dict[str, Path]:
    """English SFT rows (translate, judge) and chats (reflect), ``rows`` of each, every text unique."""
    from curate import io, schemas
    from curate.ingest import ingest

    res = ingest([FIXTURES / "chatdoctor.json", FIXTURES / "alpacacleaned_gsm8k.json"], detect_lang=False)
    base = [r for r in res.frames["sft"].to_dicts() if r["instruction"] and r["output"]]
    sft = []
    for i in range(rows):
        r = base[i % len(base)]
        sft.append({**r, "instruction": _vary(r["instruction"], i), "input": _vary(r["input"], i),
                    "output": _vary(r["output"], i), "lang": "en"})
    chats_src = ingest([FIXTURES / "sharegpt.json", FIXTURES / "malay_kochatgpt_conversation.jsonl"],
                       detect_lang=False).frames["chat"].to_dicts()
    chats_src = [c for c in chats_src if len(c["messages"]) >= 4]
    chats = []
    for i in range(rows):
        c = chats_src[i % len(chats_src)]
        msgs = [{**m, "content": _vary(m["content"], i)} for m in c["messages"][:4]]
        chats.append({**c, "messages": msgs})
    out = {}
    for name, kind, data in (("sft", "sft", sft), ("chat", "chat", chats)):
        d = tmp / f"in-{name}"
        d.mkdir()
        io.write_dataset({kind: schemas.from_rows(kind, data)}, d)
        out[name] = d
    return out


STAGES = {
    "translate": ("sft", ["translate", "--to", "ms"]),
    "reflect": ("chat", ["reflect"]),
    "judge": ("sft", ["judge"]),
}


async def _bare(url: str, bodies_path: str, conc: int) -> int:
    from openai import AsyncOpenAI

    bodies = [json.loads(line) for line in open(bodies_path, encoding="utf-8")]
    client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(conc)

    async def one(body: dict) -> str:
        async with sem:
            extra = {k: v for k, v in body.items() if k not in ("model", "messages")}
            r = await client.chat.completions.create(model=body["model"], messages=body["messages"],
                                                     extra_body=extra or None)
            return r.choices[0].message.content

    out = await asyncio.gather(*(one(b) for b in bodies))
    await client.close()
    return len(out)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_curate(stage: str, inp: Path, out: Path, url: str, cache: Path, conc: int) -> dict:
    _, args = STAGES[stage]
    cmd = [sys.executable, "-m", "curate.cli", *args, str(inp), "-o", str(out), "--base-url", url,
           "--api-key", "bench", "--model", "loopback", "--cache", str(cache), "--concurrency", str(conc), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CURATE_LOOP_STATS": "1"}
    t0, c0 = time.perf_counter(), _cpu()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    if res.returncode not in (0, 3):
        raise SystemExit(f"curate {stage} failed ({res.returncode}): {res.stderr[-2000:]}")
    rep = json.loads((out / "report.json").read_text())
    return {"wall": wall, "sent": rep["llm"]["requests_sent"], "rows_out": rep["rows_out"], "rows_in": rep["rows_in"],
            "exit": res.returncode, "cpu": cpu, "lag": rep["llm"].get("event_loop_lag_ms"),
            "callbacks": rep["llm"].get("event_loop_callbacks_ms")}


def run_bare(url: str, bodies: Path, conc: int) -> dict:
    t0, c0 = time.perf_counter(), _cpu()
    res = subprocess.run([sys.executable, __file__, "--child-bare", url, str(bodies), str(conc)],
                         capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"bare loop failed: {res.stderr[-2000:]}")
    return {"wall": time.perf_counter() - t0, "sent": int(res.stdout.strip().splitlines()[-1]), "cpu": _cpu() - c0}


def unique_bodies(record: Path, start: int, dest: Path) -> int:
    from curate.llm import request_key

    seen: dict[str, str] = {}
    with open(record, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n >= start:
                seen.setdefault(request_key(json.loads(line)), line)
    dest.write_text("".join(seen.values()), encoding="utf-8")
    return len(seen)


def lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stages", default="translate,reflect,judge")
    ap.add_argument("--faults", action="store_true", help="the server fails like the acceptance server")
    ap.add_argument("--child-bare", nargs=3, metavar=("URL", "BODIES", "CONC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_bare:
        url, bodies, conc = args.child_bare
        print(asyncio.run(_bare(url, bodies, int(conc))))
        return
    load0 = os.getloadavg()[0]
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-llm-stages-") as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(tmp, args.rows)
        record = tmp / "record.jsonl"
        record.touch()
        proc, url = start_server(args.latency, record, args.faults)
        try:
            for stage in args.stages.split(","):
                kind, _ = STAGES[stage]
                best_c = best_b = None
                for rep in range(args.repeat):
                    start = lines(record)
                    cache = tmp / f"{stage}-{rep}.sqlite"
                    c = run_curate(stage, inputs[kind], tmp / f"out-{stage}-{rep}", url, cache, args.concurrency)
                    c["cache"] = cache
                    bodies = tmp / f"{stage}-bodies.jsonl"
                    n_bodies = unique_bodies(record, start, bodies)
                    b = run_bare(url, bodies, args.concurrency) if not args.faults else {"wall": float("nan"), "sent": n_bodies}
                    best_c = c if best_c is None or c["wall"] < best_c["wall"] else best_c
                    best_b = b if best_b is None or b["wall"] < best_b["wall"] else best_b
                start = lines(record)
                again = run_curate(stage, inputs[kind], tmp / f"out-{stage}-again", url, best_c["cache"], args.concurrency)
                again["server_saw"] = lines(record) - start
                table.append((stage, best_c, best_b, again))
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)
    print(f"\nbench/llm_stages: {args.rows} rows per stage; loopback server latency {args.latency * 1000:.0f} ms"
          f"{' with faults (5% 500, 5% 429, 1% hang, 2% malformed)' if args.faults else ''}; concurrency "
          f"{args.concurrency}; whole processes, best of {args.repeat} alternating runs; load average "
          f"{load0:.2f} at start, {os.getloadavg()[0]:.2f} at end, {os.cpu_count()} cores\n")
    print(f"{'stage':<10} {'curate s':>9} {'cpu s':>6} {'sent':>6} {'rows/s':>8} | {'bare s':>7} {'cpu s':>6} {'sent':>6} "
          f"{'rows/s':>8} | {'ratio':>6} | {'cached s':>8} {'sent':>5}")
    for stage, c, b, again in table:
        rows = c["rows_in"]
        ratio = b["wall"] / c["wall"]
        print(f"{stage:<10} {c['wall']:>9.2f} {c['cpu']:>6.2f} {c['sent']:>6} {rows / c['wall']:>8.1f} | {b['wall']:>7.2f} "
              f"{b.get('cpu', float('nan')):>6.2f} {b['sent']:>6} {rows / b['wall']:>8.1f} | {ratio:>5.2f}x | "
              f"{again['wall']:>8.2f} {again['server_saw']:>5}")
    print("\nratio = curate rows/s / bare rows/s (floor 0.90); cached = the same command over the full cache "
          "(floor < 3 s, 0 requests)")
    for stage, c, _, _ in table:
        if c.get("lag"):
            lag = c["lag"]
            print(f"{stage}: event loop woke late by p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms "
                  f"({lag['samples']} ticks of 5 ms; includes the OS descheduling the process on a loaded machine)")
        cb = c.get("callbacks")
        if cb:
            w, u = cb["wall"], cb["cpu"]
            print(f"{stage}: {cb['callbacks']} loop callbacks held the loop for p50 {u['p50']} / p99 {u['p99']} / max "
                  f"{u['max']} ms of CPU ({u['over_1ms']} over 1 ms); wall p50 {w['p50']} / p99 {w['p99']} / max "
                  f"{w['max']} ms ({w['over_1ms']} over 1 ms, with GIL waits and descheduling)")


if __name__ == "__main__":
    main()
