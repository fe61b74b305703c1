"""reflect over every fixture chat against the loopback server, and the README's worked example.

Figures (``.venv/bin/python bench/reflect.py``): the fixture chats (ShareGPT, KoChatGPT in Korean
and in its Malay translation) are ingested, every reviewable answer becomes one request, and the
loopback server (its own process, ``--latency`` per request, the tests' rule-based reflect model)
answers them. Timed in this process:

* ``engine``   the same requests through ``curate.llm.Engine`` alone (fresh cache): the reference
* ``reflect``  the whole stage ``reflect_rows`` (prompt building, token budget, the engine, checks
  on every reply: K, language by curate.langid, refusal patterns; rows built), fresh cache
* ``cached``   the stage again over the full cache (zero requests)

Floor: the stage reaches at least 90% of the engine-alone answers/s (its own work must not be
the bottleneck), and the cached re-run makes zero requests.

``--example`` prints the README worked example instead: one real Malay chat in, the SFT and RM
rows out, with the reply scripted in the loopback server (no real model).

    .venv/bin/python bench/reflect.py                      # 200 ms latency, concurrency 64
    .venv/bin/python bench/reflect.py --latency 0.05 --concurrency 32
    .venv/bin/python bench/reflect.py --example
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "data" / "fixtures"

EXAMPLE_ID = "0e97b86c9a643383"  # malay_kochatgpt_conversation.jsonl line 1890
# The reply the loopback server gives for the example (written by hand for the README; not a model's).
EXAMPLE_REPLY = {
    "C": ("Jawapan L hanya bertanya semula topik apa yang pengguna mahu, menggunakan 'kamu' dan ayat gaya "
          "Indonesia. Giliran seterusnya menunjukkan pengguna sudah ada topik (kesan kecerdasan buatan terhadap "
          "teknologi masa depan), jadi L patut terus mempersilakan pengguna bertanya dan memberi beberapa "
          "contoh topik supaya perbualan bergerak ke hadapan."),
    "L_new": ("Sudah tentu, anda boleh bertanya tentang apa-apa topik. Contohnya, kita boleh berbincang tentang "
              "kecerdasan buatan dan masa depan teknologi, sains, kesihatan, ekonomi atau kehidupan seharian. "
              "Apakah topik yang anda ingin ketahui?"),
}

SERVER = """
import sys, time, json
sys.path.insert(0, {root!r})
from tests.servers.openai_server import OpenAIServer
from tests.test_reflect import model, parse
example = {example!r}
good = model()
def handler(req):
    p = parse(req)
    if example and p["K"] == example["K"]:
        return json.dumps({{"K": p["K"], **example["reply"]}}, ensure_ascii=False)
    return good(req)
with OpenAIServer(handler, latency={latency}) as s:
    print(s.url, flush=True)
    sys.stdin.read()
"""


def start_server(latency: float, example: dict | None = None):
    code = SERVER.format(root=str(ROOT), latency=latency, example=example)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def chats() -> list[dict]:
    from curate.ingest import ingest

    res = ingest([FIXTURES / "sharegpt.json", FIXTURES / "malay_kochatgpt_conversation.jsonl",
                  FIXTURES / "kochatgpt_conversation.jsonl"], detect_lang=False)
    return res.frames["chat"].to_dicts()


def engine(url: str, cache: Path, concurrency: int):
    from curate.llm import Engine, resolve

    return Engine(resolve(base_url=url, api_key="bench", model="loopback", cache_path=cache, concurrency=concurrency,
                          progress=False))


def figures(args) -> None:
    from curate import reflect as R

    rows = chats()
    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            # the reference: the stage's own requests through the engine alone
            items = []
            for ri, row in enumerate(rows):
                lang = R.chat_lang(row)
                for k in R.review_points(row["messages"]):
                    it = R.Item(row=row, k=k, lang=lang, messages=row["messages"], key=f"{ri}:{row['id']}:{k + 1}")
                    if R.fit(it, args.max_context):
                        items.append(it)
            reqs = R.build_requests(items)
            for r in reqs:
                r.validate, r.schema = None, None
            e = engine(url, tmp / "ref.sqlite", args.concurrency)
            t0 = time.perf_counter()
            e.run(reqs)
            t_engine = time.perf_counter() - t0
            n = len(reqs)
            e = engine(url, tmp / "stage.sqlite", args.concurrency)
            t0 = time.perf_counter()
            out = R.reflect_rows(rows, e, max_context=args.max_context)
            t_stage = time.perf_counter() - t0
            e2 = engine(url, tmp / "stage.sqlite", args.concurrency)
            t0 = time.perf_counter()
            again = R.reflect_rows(rows, e2, max_context=args.max_context)
            t_cached = time.perf_counter() - t0
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    rep = out.report
    print(f"chats {len(rows)}, answers reviewed {rep['answers_reviewed']}, requests {n}, reflected "
          f"{rep['answers_reflected']}, quarantined {rep['quarantine_codes']}, cut {rep['counts'].get('answers_cut', 0)}")
    print(f"latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}: latency bound "
          f"{args.concurrency / args.latency:.0f} requests/s")
    print(f"engine alone  {n / t_engine:8.1f} answers/s  ({t_engine:.2f} s)")
    print(f"reflect stage {n / t_stage:8.1f} answers/s  ({t_stage:.2f} s)  = {t_engine / t_stage:.0%} of the engine "
          f"(floor 90%: {'ok' if t_engine / t_stage >= 0.9 else 'BELOW'})")
    print(f"cached re-run {t_cached:.2f} s, requests sent {again.report['llm']['requests_sent']} (floor 0: "
          f"{'ok' if again.report['llm']['requests_sent'] == 0 else 'BELOW'})")


def example(args) -> None:
    from curate import schemas
    from curate.reflect import reflect_rows

    row = next(r for r in chats() if r["id"] == EXAMPLE_ID)
    k = row["messages"][0]["content"]
    proc, url = start_server(0.0, {"K": k, "reply": EXAMPLE_REPLY})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = reflect_rows([row], engine(url, Path(tmp) / "c.sqlite", 4))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    show = lambda r: {**r, "meta": schemas.meta_of(r["meta"])}  # noqa: E731
    print("# chat in")
    print(json.dumps({k: row[k] for k in ("id", "source", "line", "messages")}, ensure_ascii=False, indent=2))
    for kind in ("sft", "rm"):
        print(f"# {kind} out")
        for r in out.frames[kind].to_dicts():
            print(json.dumps(show(r), ensure_ascii=False, indent=2))
    print("# quarantine", json.dumps(out.report["quarantine_codes"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--max-context", type=int, default=6000)
    ap.add_argument("--example", action="store_true", help="print the README worked example")
    args = ap.parse_args()
    example(args) if args.example else figures(args)


if __name__ == "__main__":
    main()
