"""Benchmark: decontamination speed at 1M rows, and precision/recall of planted test items by share.

**Speed.** A 1M-row SFT dataset built from the real fixture rows (instructions, inputs and outputs
of different rows recombined, so rows are distinct), with 1,000 GSM8K *test* questions planted in
it (perturbed as below). The eval side is 10,000 items: the 1,319 real GSM8K test items (question
and answer, both checked) plus synthetic items of random fixture words with the GSM8K length
distribution. Each phase runs in a fresh process: the polars floor (read the parquet and build
every row's text) and ``curate decontaminate`` as the command runs it (read the eval file, build the
index, stream the rows, write kept rows, quarantine, hits and report). Peak memory is the process's
VmHWM (interpreter and polars included).

**Precision/recall.** GSM8K test questions (the eval set) planted into real rows in many ways, and
hard negatives: the 200 real GSM8K *train* rows of the fixtures, every other fixture row, rows that
share a stock phrase with a test question (its last 9 words, its first 8 words) or a third of it.
For each threshold, recall per perturbation and precision over all flagged rows (a flag is right
only if it names the planted item). The default threshold is the one chosen from this table.

    .venv/bin/python bench/decontaminate.py                  # both parts, 1M rows
    .venv/bin/python bench/decontaminate.py --rows 100000 --skip-pr
    .venv/bin/python bench/decontaminate.py --pr-only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import decontaminate as dc  # noqa: E402
from curate import io, schemas  # noqa: E402
from curate.ingest import ingest  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "fixtures"
GSM8K = FIXTURES / "evalsets" / "gsm8k_test.jsonl"
FILES = ["malay_alpaca.json", "alpacacleaned_gsm8k.json", "chatdoctor.json", "malay_chatdoctor.jsonl",
         "malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl", "alpaca_seed_tasks.jsonl", "malay_seed_tasks.jsonl"]
FILLER = ("Please answer carefully.", "Jawab dengan ringkas.", "Show your work.", "Terangkan langkah demi langkah.")


def gsm8k() -> list[dict]:
    return [json.loads(line) for line in GSM8K.read_text().splitlines()]


def fixture_sft() -> pl.DataFrame:
    return ingest([FIXTURES / f for f in FILES]).frames["sft"]


# ---- perturbations --------------------------------------------------------------------------------
NAME = re.compile(r"(?<=[a-z,] )[A-Z][a-z]+")


def p_exact(q, r):
    return q


def p_spacing_punct(q, r):
    q = re.sub(r"\s+", lambda m: r.choice(["  ", "\n", " "]), q)
    return re.sub(r"[,.?!'’]", lambda m: r.choice([" ;", "!!", "", " ."]), q).upper()


def p_numbers(q, r):
    return re.sub(r"\d+", lambda m: str(r.randint(2, 999)), q)


def p_before(q, r):
    return "Solve this math word problem and explain each step before giving the final answer. " + q


def p_after(q, r):
    return q + " Think it through step by step, then write the final answer as a number on the last line."


def p_chat(q, r):
    return f"User: hello, I need help with my homework\nAssistant: Sure, send it.\nUser: {q}\nAssistant: Let us see."


def p_name(q, r):
    names = [m.group() for m in NAME.finditer(q)] or q.split()[:1]
    name = names[0]
    return re.sub(rf"\b{re.escape(name)}\b", r.choice(["Siti", "Ahmad", "Mei Ling", "Raju"]), q)


def p_drop10(q, r):
    w = q.split()
    return " ".join(x for x in w if r.random() > 0.10)


def p_swap10(q, r):
    w = q.split()
    return " ".join(r.choice(["really", "then", "also", "some", "very"]) if r.random() < 0.10 else x for x in w)


def p_half(q, r):
    w = q.split()
    return " ".join(w[: len(w) // 2])


POSITIVE = [p_exact, p_spacing_punct, p_numbers, p_before, p_after, p_chat, p_name, p_drop10, p_swap10]
AMBIGUOUS = [p_half]   # reported, not counted either way


def neg_tail(q, r):
    return "A shop sells pumpkins and cabbages at the weekend market near the river. " + " ".join(q.split()[-9:])


def neg_head(q, r):
    return " ".join(q.split()[:8]) + " and then walks home to cook dinner for the whole family."


def neg_third(q, r):
    w = q.split()
    return "Here is a different story. " + " ".join(w[: len(w) // 3]) + " The rest of this question is about painting a fence."


NEGATIVE = [neg_tail, neg_head, neg_third]


# ---- precision / recall ---------------------------------------------------------------------------
def pr(thresholds: list[float], per_kind: int, seed: int = 1, ngram: int = 13, min_ngram: int = 5) -> None:
    rng = random.Random(seed)
    items = gsm8k()
    base = fixture_sft()
    base_text = base.select(dc.row_text("sft").alias("t"))["t"].to_list()
    rows: list[tuple[str, str, int | None]] = [("neg:fixture_rows", t, None) for t in base_text]
    for f in POSITIVE + AMBIGUOUS:
        for i in rng.sample(range(len(items)), per_kind):
            host = rng.choice(base_text)
            rows.append((f"pos:{f.__name__[2:]}" if f in POSITIVE else f"amb:{f.__name__[2:]}",
                         f(items[i]["question"], rng) + "\n" + host[-400:], i))
    for f in NEGATIVE:
        for i in rng.sample(range(len(items)), per_kind):
            rows.append((f"neg:{f.__name__[4:]}", f(items[i]["question"], rng), None))
    texts = pl.Series([t for _, t, _ in rows], dtype=pl.String)
    kinds = sorted({k for k, _, _ in rows})
    with tempfile.TemporaryDirectory() as tmp:
        ev = Path(tmp) / "gsm8k_test.jsonl"
        ev.write_text(GSM8K.read_text())
        sets = [dc.load_eval(ev)]
        print(f"ngram {ngram}, min_ngram {min_ngram}")
        print(f"\nprecision/recall: {len(rows):,} rows ({per_kind} per planted kind; negatives: "
              f"{len(base_text)} real fixture rows incl. 200 GSM8K train rows, {per_kind} per stock-phrase kind) "
              f"vs GSM8K test ({len(items):,} items, question and answer)")
        head = f"{'threshold':>9} {'precision':>9} {'recall':>7} " + " ".join(f"{k.split(':')[1][:8]:>8}" for k in kinds)
        print(head)
        for t in thresholds:
            index = dc.build_index(sets, dc.Params(threshold=t, ngram=ngram, min_ngram=min_ngram))
            hits = dc.describe_hits(dc.scan(texts, index), texts, index)
            found: dict[int, set[int]] = {}
            for g, item in hits.select("_g", "item").iter_rows():
                found.setdefault(g, set()).add(item)
            tp = fp = 0
            per: dict[str, list[int]] = {k: [0, 0] for k in kinds}
            for g, (kind, _, item) in enumerate(rows):
                flagged = g in found
                right = flagged and item is not None and item in found[g]
                per[kind][1] += 1
                if kind.startswith("pos") or kind.startswith("amb"):
                    per[kind][0] += right
                else:
                    per[kind][0] += flagged
                if kind.startswith("amb"):
                    continue
                if flagged:
                    tp += right
                    fp += not right
            pos = sum(v[1] for k, v in per.items() if k.startswith("pos"))
            rec = sum(v[0] for k, v in per.items() if k.startswith("pos")) / pos
            prec = tp / (tp + fp) if tp + fp else 1.0
            cells = " ".join(f"{per[k][0] / per[k][1]:>8.3f}" for k in kinds)
            print(f"{t:>9.2f} {prec:>9.4f} {rec:>7.4f} {cells}")
        print("(columns after recall: share flagged per kind; for neg:* that is the false-positive rate, "
              "for amb:half the share of half-question rows flagged)")


# ---- speed ----------------------------------------------------------------------------------------
def make_data(tmp: Path, rows: int, eval_items: int, planted: int, seed: int = 2) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    base = fixture_sft().select("instruction", "input", "output")
    n = base.height
    a, b, c = (rng.integers(0, n, rows) for _ in range(3))
    filler = pl.Series(rng.choice(np.array(FILLER), rows))
    df = pl.DataFrame({"instruction": base["instruction"].gather(a), "_f": filler, "input": base["input"].gather(b),
                       "output": base["output"].gather(c)})
    df = df.with_columns(pl.concat_str(["instruction", "_f"], separator=" ").alias("instruction")).drop("_f")
    items = gsm8k()
    spots = rng.choice(rows, planted, replace=False)
    picks = [r.randrange(len(items)) for _ in range(planted)]
    instr = df["instruction"].gather(spots).to_list()
    for j, (i, f) in enumerate(zip(picks, [POSITIVE[k % len(POSITIVE)] for k in range(planted)])):
        instr[j] = f(items[i]["question"], r)
    df = df.with_columns(df["instruction"].scatter(spots, instr))
    df = df.with_columns(pl.lit("sft").alias("kind"), pl.lit("en").alias("lang"), pl.lit("bench").alias("source"),
                         pl.lit("bench").alias("format"), pl.int_range(pl.len()).alias("line"),
                         pl.lit(None, pl.String).alias("meta"),
                         pl.int_range(pl.len()).cast(pl.String).alias("id"))
    data = tmp / "train"
    io.write_dataset({"sft": schemas.conform(df, "sft")}, data)
    (tmp / "planted.json").write_text(json.dumps(sorted(int(x) for x in spots)))
    # eval: the real GSM8K test items, then synthetic items of random fixture words
    words = np.array(" ".join(base["output"].to_list()).split())
    qlen = np.array([len(x["question"].split()) for x in items])
    alen = np.array([len(x["answer"].split()) for x in items])
    ev = tmp / "eval.jsonl"
    with open(ev, "w") as fh:
        for x in items[:eval_items]:
            fh.write(json.dumps(x) + "\n")
        for _ in range(max(0, eval_items - len(items))):
            q = " ".join(rng.choice(words, int(rng.choice(qlen))))
            ans = " ".join(rng.choice(words, int(rng.choice(alen))))
            fh.write(json.dumps({"question": q, "answer": ans}) + "\n")
    return data, ev, planted


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(phase: str, data: str, ev: str, out: str) -> None:
    t0 = time.perf_counter()
    if phase == "floor":
        df = pl.read_parquet(Path(data) / "sft.parquet")
        text = df.select(dc.row_text("sft").alias("t"))["t"]
        total, rows = text.str.len_bytes().sum(), df.height
        res = {"rows": rows, "text_mb": total / 1e6}
    else:
        t_i = time.perf_counter()
        index = dc.load_index([ev])
        t_index = time.perf_counter() - t_i
        outcome = dc.decontaminate_dir(data, out, index, progress=False)
        r = outcome.report
        planted = set(json.loads((Path(data).parent / "planted.json").read_text()))
        dropped = {int(q["id"]) for q in outcome.quarantine}
        res = {"rows": r["rows_in"], "dropped": r["rows_dropped"], "index_s": round(t_index, 2),
               "eval_items": r["eval_sets"][0]["items"], "eval_ngrams": r["ngrams"]["eval_distinct"],
               "common_ignored": r["ngrams"]["ignored_common_in_training"],
               "true_pos": len(dropped & planted), "false_pos": len(dropped - planted)}
    res["seconds"] = round(time.perf_counter() - t0, 2)
    res["peak_mb"] = round(_hwm_mb(), 1)
    res["cpu_s"] = round(sum(os.times()[:2]), 2)
    print(json.dumps(res))


def run_child(phase: str, data: Path, ev: Path, out: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", phase, str(data), str(ev), str(out)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def speed(rows: int, eval_items: int, planted: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        data, ev, planted = make_data(tmp, rows, eval_items, planted)
        print(f"data: {rows:,} SFT rows with {planted:,} planted GSM8K test questions, {eval_items:,} eval items "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        floor = run_child("floor", data, ev, tmp / "out")
        res = run_child("decon", data, ev, tmp / "out")
        print(f"polars floor (read the parquet, build every row's text): {floor['seconds']:.2f} s, peak {floor['peak_mb']:.0f} MB "
              f"({floor['text_mb']:.0f} MB of text)")
        print(f"curate decontaminate: {res['seconds']:.2f} s wall ({res['cpu_s']:.1f} s CPU; index {res['index_s']:.2f} s, "
              f"{res['eval_ngrams']:,} eval n-grams), peak {res['peak_mb']:.0f} MB; "
              f"{res['seconds'] / max(floor['seconds'], 1e-9):.1f}x the floor")
        print(f"rows dropped {res['dropped']:,}: {res['true_pos']:,} of the {planted:,} planted "
              f"({res['true_pos'] / planted:.3f}), {res['false_pos']:,} others; common n-grams ignored "
              f"{res['common_ignored']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--eval-items", type=int, default=10_000)
    ap.add_argument("--planted", type=int, default=1000)
    ap.add_argument("--per-kind", type=int, default=150, help="planted rows per perturbation (precision/recall)")
    ap.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--min-ngram", type=int, default=5)
    ap.add_argument("--skip-pr", action="store_true")
    ap.add_argument("--pr-only", action="store_true")
    a = ap.parse_args()
    if not a.pr_only:
        speed(a.rows, a.eval_items, a.planted)
    if not a.skip_pr:
        pr([float(x) for x in a.thresholds.split(",")], a.per_kind, ngram=a.ngram, min_ngram=a.min_ngram)


if __name__ == "__main__":
    main()
